/**
 * Controller of the bench sink child process (sink-process.ts): start it, point it at one run's id prefix, ask
 * how many messages arrived and when.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './cleanup.ts';

export type SinkRequest =
  | { type: 'reset'; seq: number; prefix: string }
  | { type: 'stats'; seq: number }
  | { type: 'arrivals'; seq: number }
  | { type: 'stop'; seq: number };

export interface SinkStats {
  /** Distinct messages with the current prefix. */
  count: number;
  /** Messages with the current prefix that arrived more than once. */
  duplicates: number;
  /** Messages without a bench id of the current run (bounces, notices, stragglers of earlier runs). */
  others: number;
  bytes: number;
  /** `now()` of the latest arrival with the current prefix (0 when none). */
  lastArrival: number;
}

export type SinkReply =
  | { type: 'listening'; seq: number; port: number }
  | { type: 'ok'; seq: number }
  | ({ type: 'stats'; seq: number } & SinkStats)
  | { type: 'arrivals'; seq: number; arrivals: Array<[string, number]> };

type WithoutSeq<T> = T extends unknown ? Omit<T, 'seq'> : never;

/** How long one IPC request may take before the sink is considered dead. */
const requestTimeoutMs = 15_000;

export class Sink {
  readonly port: number;
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, (r: SinkReply) => void>();
  #seq = 0;
  readonly #stop: () => Promise<void>;

  private constructor(child: ChildProcess, port: number) {
    this.#child = child;
    this.port = port;
    child.on('message', (msg: SinkReply) => {
      const resolve = this.#pending.get(msg.seq);
      this.#pending.delete(msg.seq);
      resolve?.(msg);
    });
    this.#stop = onCleanup(
      'bench sink',
      async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.send({ type: 'stop', seq: -1 } satisfies SinkRequest);
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3_000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      },
      () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      },
    );
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  static async start(): Promise<Sink> {
    const child = fork(fileURLToPath(new URL('./sink-process.ts', import.meta.url)), [], {
      // `--import tsx` resolves from the cwd: the repository root, where node_modules/tsx is.
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('bench sink did not start within 30 s')), 30_000);
      child.once('message', (msg: SinkReply) => {
        clearTimeout(timer);
        if (msg.type === 'listening') resolve(msg.port);
        else reject(new Error(`bench sink: unexpected first message ${msg.type}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`bench sink exited with ${code}`));
      });
    });
    return new Sink(child, port);
  }

  #request<T extends SinkReply>(req: WithoutSeq<SinkRequest>): Promise<T> {
    const seq = ++this.#seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(seq);
        reject(new Error(`bench sink did not answer "${req.type}" within ${requestTimeoutMs} ms`));
      }, requestTimeoutMs);
      this.#pending.set(seq, (r) => {
        clearTimeout(timer);
        resolve(r as T);
      });
      this.#child.send({ ...req, seq } as SinkRequest);
    });
  }

  /** Forgets all arrivals; from now on only ids starting with `prefix` count. */
  async reset(prefix: string): Promise<void> {
    await this.#request({ type: 'reset', prefix });
  }

  async stats(): Promise<SinkStats> {
    const { type: _t, seq: _s, ...stats } = await this.#request<Extract<SinkReply, { type: 'stats' }>>({
      type: 'stats',
    });
    return stats;
  }

  async arrivals(): Promise<Map<string, number>> {
    const r = await this.#request<Extract<SinkReply, { type: 'arrivals' }>>({ type: 'arrivals' });
    return new Map(r.arrivals);
  }

  stop(): Promise<void> {
    return this.#stop();
  }
}
