/**
 * Teardown that runs whatever happens: normal end, an error, Ctrl-C, SIGTERM, or the bench's own time limit.
 * Each resource registers an async `stop` (orderly) and a sync `emergency` (for process exit, when no await is
 * possible any more). Tasks run newest first, each at most once.
 */
interface Task {
  name: string;
  stop: () => Promise<void>;
  emergency: () => void;
  /** pending → stopping → finished; the exit handler runs `emergency` for every task not finished. */
  state: 'pending' | 'stopping' | 'finished';
}

const tasks: Task[] = [];
let installed = false;
let exiting = false;

/** Registers a resource; the returned function runs its orderly stop now and unregisters it. */
export function onCleanup(name: string, stop: () => Promise<void>, emergency: () => void): () => Promise<void> {
  installHandlers();
  const task: Task = { name, stop, emergency, state: 'pending' };
  tasks.push(task);
  return () => finish(task);
}

async function finish(task: Task): Promise<void> {
  if (task.state !== 'pending') return;
  task.state = 'stopping';
  try {
    await task.stop();
  } finally {
    task.state = 'finished';
    tasks.splice(tasks.indexOf(task), 1);
  }
}

/** Runs every pending orderly stop, newest first; errors are reported, never thrown. */
export async function runCleanup(): Promise<void> {
  for (const task of [...tasks].reverse()) {
    if (task.state !== 'pending') continue;
    try {
      await finish(task);
    } catch (err) {
      console.error(`cleanup of ${task.name} failed:`, err);
      try {
        task.emergency();
      } catch {
        // nothing more to do
      }
    }
  }
}

/** Cleans up, then exits with `code`; a second signal while cleaning skips straight to the emergency path. */
export async function cleanupAndExit(code: number, why: string): Promise<never> {
  if (exiting) process.exit(code);
  exiting = true;
  if (why !== '') console.error(`\n${why}: stopping the systems under test and removing temp dirs…`);
  const watchdog = setTimeout(() => process.exit(code), 60_000);
  watchdog.unref();
  await runCleanup();
  process.exit(code);
}

/**
 * Runs a bench's `main`: an error is printed and exits 1, the cleanup runs whatever happens, and past `deadlineMs`
 * (when given) everything is stopped and the bench exits 2.
 */
export async function runBench(main: () => Promise<void>, deadlineMs?: number): Promise<void> {
  const watchdog =
    deadlineMs === undefined ? undefined : setTimeout(() => void cleanupAndExit(2, `time limit of ${deadlineMs / 60_000} min reached`), deadlineMs);
  watchdog?.unref();
  try {
    await main();
  } catch (err) {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  } finally {
    await runCleanup();
    clearTimeout(watchdog);
  }
}

function installHandlers(): void {
  if (installed) return;
  installed = true;
  for (const [signal, n] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ] as const) {
    process.on(signal, () => void cleanupAndExit(128 + n, signal));
  }
  process.on('uncaughtException', (err) => {
    console.error('uncaught exception:', err);
    void cleanupAndExit(1, 'error');
  });
  process.on('unhandledRejection', (err) => {
    console.error('unhandled rejection:', err);
    void cleanupAndExit(1, 'error');
  });
  process.on('exit', () => {
    for (const task of [...tasks].reverse()) {
      if (task.state === 'finished') continue;
      task.state = 'finished';
      try {
        task.emergency();
      } catch {
        // best effort at exit
      }
    }
  });
}
