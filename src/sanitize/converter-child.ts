/**
 * A converter child process (forked by ConverterPool, converter-pool.ts): imports the ops module named by its first
 * argument and runs one job at a time on hostile bytes, so that a parser that loops, crashes or eats memory takes
 * down this process only. Jobs and results travel over the IPC channel with `advanced` serialization (Buffers as
 * binary).
 *
 * The rule a reader must not break: this process never outlives the pool's process. An idle child exits when the
 * IPC channel closes; a busy one (a synchronous loop in WASM never returns to the event loop) is killed by a
 * watchdog thread that sees its parent change, i.e. the pool's process die and this one be re-parented.
 */
import { Worker } from 'node:worker_threads';
import type { ConverterOps, FromChild, ToChild } from './converter-pool.ts';
import { ConversionError } from './types.ts';

/**
 * How often the watchdog thread checks that the parent is alive. Bounds how long an orphan whose main thread is
 * stuck in a loop keeps burning CPU after the pool's process was killed.
 */
const PARENT_CHECK_INTERVAL_MS = 200;

const WATCHDOG = `
const { workerData } = require('node:worker_threads');
setInterval(() => { if (process.ppid !== workerData) process.kill(process.pid, 'SIGKILL'); }, ${PARENT_CHECK_INTERVAL_MS});
`;

function send(m: FromChild): void {
  process.send?.(m);
}

function startParentWatchdog(): void {
  new Worker(WATCHDOG, { eval: true, workerData: process.ppid, execArgv: [] }).unref();
}

async function loadOps(specifier: string | undefined): Promise<ConverterOps> {
  if (!specifier) throw new Error('converter child started without an ops module');
  const mod = (await import(specifier)) as { ops?: unknown };
  if (typeof mod.ops !== 'object' || mod.ops === null) throw new Error(`${specifier} does not export \`ops\``);
  return mod.ops as ConverterOps;
}

async function runJob(ops: ConverterOps, m: ToChild): Promise<void> {
  const op = Object.hasOwn(ops, m.op) ? ops[m.op] : undefined;
  try {
    if (!op) throw new Error(`unknown converter op "${m.op}"`);
    const value = await op(m.input, m.options);
    try {
      send({ type: 'result', id: m.id, value });
    } catch (err) {
      // a value that cannot be cloned (a function, a class instance with private state): the op's bug, not the input's
      throw new Error(`result of ${m.op} cannot be sent to the pool: ${(err as Error).message}`, { cause: err });
    }
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const answer: FromChild = { type: 'error', id: m.id, message: e.message, ...(e instanceof ConversionError && { reason: e.reason }) };
    // A WebAssembly trap (MuPDF out of memory, an abort inside it) may leave the module unusable: answer, then go,
    // and the pool starts a fresh child for the next job.
    if (wasmTrap(e)) process.send?.(answer, () => process.exit(0));
    else send(answer);
  }
}

function wasmTrap(e: unknown): boolean {
  for (let x = e, depth = 0; x instanceof Error && depth < 5; x = x.cause, depth++) {
    if (x instanceof WebAssembly.RuntimeError) return true;
  }
  return false;
}

startParentWatchdog();
process.on('disconnect', () => process.exit(0));
const ops = await loadOps(process.argv[2]);
// One job at a time: the pool sends the next one only after this one's answer.
process.on('message', (m: ToChild) => void runJob(ops, m));
send({ type: 'ready' });
