/**
 * The converter pool (DESIGN §6): untrusted bytes are parsed in long-lived child processes
 * (converter-child.ts), never in the process that calls `run`. Each job has a deadline, each child a memory limit,
 * and at most `processes` jobs run at once; a child that overruns, crashes or grows past its limit is SIGKILLed and
 * replaced, and only its job fails (a ConversionError whose reason the notice shows).
 *
 * The rule a reader must not break: every job settles exactly once — with the op's answer, or with a
 * ConversionError when its child dies, overruns or is killed — so no mail waits on a job that will never answer.
 * A child leaves the pool only on its 'exit', so the pool never holds more than `processes` child processes.
 */
import { existsSync } from 'node:fs';
import { fork, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import { silentLogger } from '../log.ts';
import { ConversionError, removalReasons, type RemovalReason } from './types.ts';

/** A file made by an op; `name` is a suggestion (the caller names what it attaches). */
export interface OpFile {
  name?: string;
  contentType: string;
  data: Buffer;
}

/** The usual shape of an op's answer: files, and facts about them (page count…). */
export interface OpResult {
  files?: OpFile[];
  meta?: unknown;
}

/**
 * One conversion, run in a child on hostile input. Its answer (an OpResult, or any structured-cloneable value:
 * Buffers arrive as Buffers, wherever they are in it) is what `run` resolves with. Throw a ConversionError to choose
 * the removal reason.
 */
export type ConverterOp = (input: Buffer, options: unknown) => Promise<unknown>;
export type ConverterOps = Record<string, ConverterOp>;

/** IPC message from the pool to a child. */
export interface ToChild {
  type: 'job';
  id: number;
  op: string;
  input: Buffer;
  options: unknown;
}

/** IPC messages from a child: its ops module is loaded, or a job's answer. */
export type FromChild =
  | { type: 'ready' }
  | { type: 'result'; id: number; value: unknown }
  | { type: 'error'; id: number; message: string; reason?: RemovalReason };

export interface ConverterPoolOptions {
  /** Module the child imports, exporting `ops: ConverterOps`. */
  opsModule: string | URL;
  /** Concurrency limit = number of child processes. */
  processes: number;
  /** Per-job deadline, counted from the moment a ready child takes the job: past it the child is SIGKILLed. */
  jobTimeoutMs: number;
  /** RSS limit of a child (also its V8 heap limit): a child over it is SIGKILLed and its job fails 'too-large'. */
  memoryLimitBytes: number;
  /**
   * Start each child in a network namespace of its own (`unshare -n`: not even loopback), so that a converter a
   * hostile file took over cannot reach anything. Needs root; the caller decides (see networkIsolationAvailable).
   */
  isolateNetwork?: boolean;
  /** Recycle a child after this many jobs (WASM heaps only grow); unlimited when absent. */
  maxJobsPerChild?: number;
  /** Called when a child dies (crashed, or killed for its deadline or memory) and a new one will take its place. */
  onRestart?: () => void;
  log?: Logger;
}

export interface ConverterPoolStats {
  /** Child processes started since the pool was created. */
  started: number;
  /** Child processes the pool SIGKILLed (deadline, memory, abort, close). */
  killed: number;
  /** Jobs running in a child now. */
  running: number;
  /** Jobs waiting for a child. */
  queued: number;
}

/**
 * How often each child's RSS is read from /proc. Bounds how far past `memoryLimitBytes` a child can grow before it
 * is killed: what it allocates in one interval (a few hundred MiB at memset speed, far less for a parser).
 */
const MEMORY_POLL_INTERVAL_MS = 100;
/**
 * A child that has not loaded its ops module by then is killed and its job failed: a hung start must not hold a
 * job forever. An ordinary start (tsx, the ops module, a WASM engine) takes under a second even on a loaded host.
 */
const CHILD_START_TIMEOUT_MS = 30_000;
/** Bytes of a child's stderr kept, to log when it dies and to recognise V8's out-of-memory abort. */
const STDERR_TAIL_BYTES = 4096;
/** After a child's exit, how long its last stderr bytes are awaited (an exit can overtake the pipe's last chunk). */
const STDERR_DRAIN_MS = 200;
/** close(): how long an idle child has to exit after its IPC channel closes before it is SIGKILLed. */
const CLOSE_GRACE_MS = 2_000;
const MIB = 1024 * 1024;
/**
 * The smallest memory limit accepted: an idle child (Node, tsx, the ops module) has an RSS of 70 MiB, 120 MiB with
 * MuPDF and sharp loaded; under this every job would fail 'too-large'.
 */
export const MIN_MEMORY_LIMIT_BYTES = 128 * MIB;
/**
 * The environment a child gets: nothing else of ours (credentials in the environment stay out of the process that
 * parses hostile files).
 */
const CHILD_ENV_KEYS = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'LC_CTYPE', 'TZ', 'NODE_ENV'];
/** What V8 prints when a child's heap reached --max-old-space-size and it aborted. */
const V8_OOM = /JavaScript heap out of memory|Reached heap limit/;

const CHILD_SCRIPT = fileURLToPath(new URL('./converter-child.ts', import.meta.url));
/** tsx's loader by absolute URL: the child must compile TypeScript whatever the working directory. */
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
/** util-linux's unshare: execs the program in new namespaces, in the same process (the pid the pool watches). */
const UNSHARE = '/usr/bin/unshare';

/** Whether children can get a network namespace of their own here: root, with unshare installed. */
export function networkIsolationAvailable(): boolean {
  return process.getuid?.() === 0 && existsSync(UNSHARE);
}

interface Job {
  id: number;
  op: string;
  input: Buffer;
  options: unknown;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
  child?: Child;
  timer?: NodeJS.Timeout;
  settled: boolean;
}

interface Child {
  proc: ChildProcess;
  ready: boolean;
  job: Job | undefined;
  jobsDone: number;
  stderrTail: string;
  /** Set once the pool killed (or retired) it, so it is not killed twice nor given another job. */
  leaving: boolean;
  /** Why the pool killed it: what a queued job gets if it dies before it was ever ready. */
  failure?: unknown;
  startTimer: NodeJS.Timeout | undefined;
  exited: boolean;
  onExit: Promise<void>;
}

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of CHILD_ENV_KEYS) if (process.env[k] !== undefined) env[k] = process.env[k];
  // glibc's per-thread malloc arenas kept about 75 MB more at the peak of a 12-megapixel JPEG (sharp's threads).
  env.MALLOC_ARENA_MAX = '2';
  return env;
}

function isRemovalReason(r: unknown): r is RemovalReason {
  return (removalReasons as readonly unknown[]).includes(r);
}

/** VmRSS of a process in bytes, or undefined when it is gone or /proc is not there. */
async function rssBytes(pid: number): Promise<number | undefined> {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(await readFile(`/proc/${pid}/status`, 'latin1'));
    return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

export class ConverterPool {
  readonly #opsHref: string;
  readonly #processes: number;
  readonly #jobTimeoutMs: number;
  readonly #memoryLimitBytes: number;
  readonly #isolateNetwork: boolean;
  readonly #maxJobsPerChild: number;
  readonly #log: Logger;
  readonly #onRestart: (() => void) | undefined;
  readonly #children = new Set<Child>();
  readonly #queue: Job[] = [];
  #nextId = 1;
  #started = 0;
  #killed = 0;
  #closed = false;
  #memoryTimer: NodeJS.Timeout | undefined;
  #polling = false;

  constructor(opts: ConverterPoolOptions) {
    if (!Number.isInteger(opts.processes) || opts.processes < 1) throw new RangeError('processes must be an integer ≥ 1');
    if (!(opts.jobTimeoutMs > 0)) throw new RangeError('jobTimeoutMs must be > 0');
    if (!(opts.memoryLimitBytes >= MIN_MEMORY_LIMIT_BYTES)) throw new RangeError(`memoryLimitBytes must be ≥ ${MIN_MEMORY_LIMIT_BYTES}`);
    const ops = opts.opsModule;
    this.#opsHref = ops instanceof URL ? ops.href : /^[a-z][a-z0-9+.-]*:/i.test(ops) ? ops : pathToFileURL(ops).href;
    this.#processes = opts.processes;
    this.#jobTimeoutMs = opts.jobTimeoutMs;
    this.#memoryLimitBytes = opts.memoryLimitBytes;
    this.#isolateNetwork = opts.isolateNetwork ?? false;
    this.#maxJobsPerChild = opts.maxJobsPerChild ?? Infinity;
    this.#log = opts.log ?? silentLogger;
    this.#onRestart = opts.onRestart;
  }

  get stats(): ConverterPoolStats {
    let running = 0;
    for (const c of this.#children) if (c.job) running++;
    return { started: this.#started, killed: this.#killed, running, queued: this.#queue.length };
  }

  /**
   * Queues the job; resolves with the op's result, or rejects with ConversionError: 'timeout' (deadline),
   * 'too-large' (memory), 'conversion-failed' (the op threw — its message kept — or the child crashed/exited).
   * A ConversionError thrown by the op keeps its reason. The AbortSignal cancels a queued job, or kills the child
   * running it; the job then rejects with the signal's reason.
   */
  run<T = unknown>(op: string, input: Buffer, options?: unknown, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#closed) return reject(new ConversionError('conversion-failed', 'the converter pool is closed'));
      if (signal?.aborted) return reject(signal.reason);
      const job: Job = {
        id: this.#nextId++,
        op,
        input,
        options,
        signal,
        onAbort: undefined,
        resolve: resolve as (value: unknown) => void,
        reject,
        settled: false,
      };
      if (signal) {
        job.onAbort = () => this.#abort(job);
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      this.#queue.push(job);
      this.#pump();
    });
  }

  /** Fails the queued and running jobs, and resolves once every child process has exited. */
  async close(): Promise<void> {
    this.#closed = true;
    const closed = () => new ConversionError('conversion-failed', 'the converter pool was closed');
    for (const job of this.#queue.splice(0)) this.#fail(job, closed());
    const exits: Promise<void>[] = [];
    for (const child of this.#children) {
      exits.push(child.onExit);
      if (child.job) {
        this.#kill(child, closed(), 'pool closed');
        continue;
      }
      child.leaving = true;
      if (child.proc.connected) child.proc.disconnect();
      const grace = setTimeout(() => child.proc.kill('SIGKILL'), CLOSE_GRACE_MS);
      void child.onExit.then(() => clearTimeout(grace));
    }
    await Promise.all(exits);
    this.#stopMemoryWatch();
  }

  #pump(): void {
    let starting = 0;
    for (const c of this.#children) if (!c.ready && !c.leaving) starting++;
    while (this.#queue.length > 0) {
      const idle = [...this.#children].find((c) => c.ready && !c.job && !c.leaving);
      if (idle) {
        this.#dispatch(idle, this.#queue.shift() as Job);
        continue;
      }
      // children still starting take the queued jobs once ready; start more only for the jobs beyond them
      if (this.#queue.length > starting && this.#children.size < this.#processes) {
        this.#spawn();
        starting++;
        continue;
      }
      break;
    }
  }

  #spawn(): void {
    const heapMib = Math.floor(this.#memoryLimitBytes / MIB);
    const nodeArgs = ['--import', TSX_LOADER, `--max-old-space-size=${heapMib}`];
    const proc = fork(CHILD_SCRIPT, [this.#opsHref], {
      ...(this.#isolateNetwork ? { execPath: UNSHARE, execArgv: ['--net', '--', process.execPath, ...nodeArgs] } : { execArgv: nodeArgs }),
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: childEnv(),
    });
    let exited!: () => void;
    const child: Child = {
      proc,
      ready: false,
      job: undefined,
      jobsDone: 0,
      stderrTail: '',
      leaving: false,
      startTimer: undefined,
      exited: false,
      onExit: new Promise<void>((resolve) => (exited = resolve)),
    };
    this.#children.add(child);
    this.#started++;
    child.startTimer = setTimeout(
      () => this.#kill(child, new ConversionError('conversion-failed', `converter process did not start within ${CHILD_START_TIMEOUT_MS} ms`), 'start timeout'),
      CHILD_START_TIMEOUT_MS,
    );
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (s: string) => (child.stderrTail = (child.stderrTail + s).slice(-STDERR_TAIL_BYTES)));
    proc.on('message', (m: FromChild) => this.#onMessage(child, m));
    proc.on('error', (err) => {
      // spawn failed (no pid, no 'exit' to come), or a signal/send to a dead process: only the first matters
      if (proc.pid === undefined) this.#onExit(child, exited, null, null, err);
      else this.#log.warn({ err, pid: proc.pid }, 'converter process error');
    });
    proc.once('exit', (code, signal) => {
      const done = () => this.#onExit(child, exited, code, signal);
      if (!proc.stderr || proc.stderr.readableEnded) return done();
      const t = setTimeout(done, STDERR_DRAIN_MS);
      proc.stderr.once('end', () => {
        clearTimeout(t);
        done();
      });
    });
    this.#startMemoryWatch();
    this.#log.debug({ pid: proc.pid }, 'converter process started');
  }

  #dispatch(child: Child, job: Job): void {
    child.job = job;
    job.child = child;
    job.timer = setTimeout(
      () => this.#kill(child, new ConversionError('timeout', `${job.op} did not finish within ${this.#jobTimeoutMs} ms`), 'deadline'),
      this.#jobTimeoutMs,
    );
    const msg: ToChild = { type: 'job', id: job.id, op: job.op, input: job.input, options: job.options };
    try {
      child.proc.send(msg, (err) => {
        if (err) this.#kill(child, new ConversionError('conversion-failed', `could not send ${job.op} to its converter process: ${err.message}`), 'send failed');
      });
    } catch (err) {
      // options that cannot be cloned: the caller's mistake; the child never saw the job and stays
      child.job = undefined;
      this.#fail(job, new ConversionError('conversion-failed', `${job.op}: ${(err as Error).message}`));
    }
  }

  #onMessage(child: Child, m: FromChild): void {
    // the child parses hostile bytes: a message that is not one of ours means it is no longer running our code
    if (typeof m !== 'object' || m === null || !['ready', 'result', 'error'].includes(m.type)) {
      this.#kill(child, new ConversionError('conversion-failed', 'converter process sent a malformed message'), 'malformed message');
      return;
    }
    if (m.type === 'ready') {
      clearTimeout(child.startTimer);
      child.ready = true;
      this.#pump();
      return;
    }
    const job = child.job;
    if (!job || job.id !== m.id) return; // the answer of a job already failed (deadline, abort)
    if (m.type === 'result') this.#succeed(job, m.value);
    else this.#fail(job, new ConversionError(isRemovalReason(m.reason) ? m.reason : 'conversion-failed', String(m.message)));
    if (++child.jobsDone >= this.#maxJobsPerChild) {
      child.leaving = true;
      child.proc.disconnect(); // it exits by itself; its slot is free on 'exit'
    }
    this.#pump();
  }

  #onExit(child: Child, exited: () => void, code: number | null, signal: NodeJS.Signals | null, err?: Error): void {
    if (child.exited) return;
    child.exited = true;
    clearTimeout(child.startTimer);
    this.#children.delete(child);
    if (!child.leaving) {
      const how = err ? `could not start: ${err.message}` : `exited (code ${code}, signal ${signal})`;
      this.#log.warn({ pid: child.proc.pid, code, signal, op: child.job?.op, stderr: child.stderrTail }, `converter process ${how}`);
      child.failure = V8_OOM.test(child.stderrTail)
        ? new ConversionError('too-large', `${child.job?.op ?? 'converter'} ran out of memory (heap limit ${Math.floor(this.#memoryLimitBytes / MIB)} MiB)`)
        : new ConversionError('conversion-failed', `converter process ${how}${child.job ? ` while running ${child.job.op}` : ''}`);
      if (child.job) this.#fail(child.job, child.failure);
    }
    // a child that dies before it was ready (its ops module does not load, or hangs) fails a queued job, so that a
    // broken module cannot make the pool start children for ever
    if (!child.ready && child.failure !== undefined && this.#queue.length > 0) this.#fail(this.#queue.shift() as Job, child.failure);
    exited();
    // Not a restart: a child retired after maxJobsPerChild, or closed with the pool.
    if (!this.#closed && (!child.leaving || child.failure !== undefined)) this.#onRestart?.();
    if (this.#children.size === 0) this.#stopMemoryWatch();
    if (!this.#closed) this.#pump();
  }

  /** SIGKILLs a child; its job (if any) rejects at once with `failure`. */
  #kill(child: Child, failure: unknown, why: string): void {
    if (child.exited || (child.leaving && !child.job)) return;
    child.leaving = true;
    child.failure = failure;
    this.#killed++;
    this.#log.warn({ pid: child.proc.pid, op: child.job?.op, why }, 'converter process killed');
    child.proc.kill('SIGKILL');
    if (child.job) this.#fail(child.job, failure);
  }

  #abort(job: Job): void {
    if (job.settled) return;
    const reason: unknown = job.signal?.reason;
    if (job.child) return this.#kill(job.child, reason, 'aborted');
    this.#queue.splice(this.#queue.indexOf(job), 1);
    this.#fail(job, reason);
  }

  #succeed(job: Job, value: unknown): void {
    if (this.#finish(job)) job.resolve(value);
  }

  #fail(job: Job, err: unknown): void {
    if (this.#finish(job)) job.reject(err);
  }

  /** Detaches a job from its timer, signal and child; false when it had already settled. */
  #finish(job: Job): boolean {
    if (job.settled) return false;
    job.settled = true;
    clearTimeout(job.timer);
    if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort);
    if (job.child?.job === job) job.child.job = undefined;
    return true;
  }

  #startMemoryWatch(): void {
    this.#memoryTimer ??= setInterval(() => void this.#checkMemory(), MEMORY_POLL_INTERVAL_MS).unref();
  }

  #stopMemoryWatch(): void {
    clearInterval(this.#memoryTimer);
    this.#memoryTimer = undefined;
  }

  async #checkMemory(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      await Promise.all(
        [...this.#children].map(async (child) => {
          const pid = child.proc.pid;
          if (pid === undefined || child.exited) return;
          const rss = await rssBytes(pid);
          if (rss === undefined || rss <= this.#memoryLimitBytes) return;
          const limitMib = Math.floor(this.#memoryLimitBytes / MIB);
          const what = child.job?.op ?? 'an idle converter process';
          this.#kill(child, new ConversionError('too-large', `${what} used ${Math.round(rss / MIB)} MiB, over the ${limitMib} MiB limit`), 'memory');
        }),
      );
    } finally {
      this.#polling = false;
    }
  }
}
