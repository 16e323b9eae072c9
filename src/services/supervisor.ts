/**
 * Keeps the services a process started running, as systemd's Restart=on-failure would: a service that exits is
 * started again after a backoff, each exit logged and each restart counted, and `status()` tells /healthz which
 * ones are down.
 *
 * The rule not to break: a service's start function must give it the same endpoint every time (the managed clamd's
 * socket, the managed redis-server's): other processes were told where it is once, and only reconnect.
 */
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.ts';

/** How a service's process ended. */
export interface ServiceExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One started instance of a service. */
export interface SupervisedService {
  /** Settles when its process exits, by itself or killed. */
  readonly exited: Promise<ServiceExit>;
  /** Stops it gracefully; once it has exited, releases what it left (run directory, socket). */
  stop(): Promise<void>;
  /** Stops it at once, synchronously (SIGKILL) and releases what it holds: the last resort of a shutdown. */
  kill(): void;
}

/** A service as /healthz shows it. */
export interface ServiceStatus {
  service: string;
  up: boolean;
  /** Restarts since the process started (attempts, successful or not). */
  restarts: number;
  /** How its process last ended (`code 1`, `signal SIGKILL`), null if it never did. */
  lastExit: string | null;
  /** Since when (ms since the epoch) it has been up, or down. */
  since: number;
}

export interface Backoff {
  /** Delay before the first restart after a death. */
  initialMs: number;
  /** The delay doubles on each death up to this, so that a crash loop does not spin. */
  maxMs: number;
  /** A service that stayed up this long is restarted after `initialMs` again when it dies. */
  resetAfterMs: number;
}

/** From 1 s to 30 s, as the stage worker children of `sekisho start` (src/cli/main.ts); a minute up resets it. */
export const DEFAULT_BACKOFF: Backoff = { initialMs: 1_000, maxMs: 30_000, resetAfterMs: 60_000 };

export type ServiceMetrics = Pick<Metrics, 'serviceRestarts' | 'serviceUp'>;

interface Entry {
  name: string;
  start: () => Promise<SupervisedService>;
  current: SupervisedService | undefined;
  /** A start (first or restart) in progress. */
  starting: Promise<SupervisedService> | undefined;
  timer: NodeJS.Timeout | undefined;
  up: boolean;
  restarts: number;
  lastExit: string | null;
  since: number;
  delayMs: number;
}

export class Supervisor {
  readonly #entries: Entry[] = [];
  readonly #log: Logger;
  readonly #metrics: ServiceMetrics | undefined;
  readonly #backoff: Backoff;
  readonly #now: () => number;
  #stopping = false;
  #killed = false;

  constructor(opts: { log: Logger; metrics?: ServiceMetrics; backoff?: Backoff; now?: () => number }) {
    this.#log = opts.log;
    this.#metrics = opts.metrics;
    this.#backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Starts a service and supervises it from then on. The first start's failure is the caller's (thrown, nothing
   * supervised); a later one is logged and retried with the backoff.
   */
  async start<T extends SupervisedService>(name: string, start: () => Promise<T>): Promise<T> {
    if (this.#stopping) throw new Error(`the supervisor is stopping: ${name} is not started`);
    const first = await start();
    if (this.#stopping) {
      await first.stop();
      throw new Error(`the supervisor stopped while ${name} was starting`);
    }
    const entry: Entry = {
      name,
      start,
      current: first,
      starting: undefined,
      timer: undefined,
      up: true,
      restarts: 0,
      lastExit: null,
      since: this.#now(),
      delayMs: this.#backoff.initialMs,
    };
    this.#entries.push(entry);
    this.#metrics?.serviceUp.set({ service: name }, 1);
    this.#metrics?.serviceRestarts.inc({ service: name }, 0);
    this.#watch(entry, first);
    return first;
  }

  status(): ServiceStatus[] {
    return this.#entries.map((e) => ({ service: e.name, up: e.up, restarts: e.restarts, lastExit: e.lastExit, since: e.since }));
  }

  /** Stops every service, the last started first; none is restarted any more. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const e of [...this.#entries].reverse()) {
      clearTimeout(e.timer);
      const starting = await e.starting?.catch(() => undefined);
      await (starting ?? e.current)?.stop();
    }
  }

  /** Kills every service at once (SIGKILL) and releases what they hold; none is restarted. Synchronous. */
  kill(): void {
    this.#stopping = true;
    this.#killed = true;
    for (const e of this.#entries) {
      clearTimeout(e.timer);
      e.current?.kill();
    }
  }

  #watch(entry: Entry, service: SupervisedService): void {
    void service.exited.then((exit) => this.#onExit(entry, service, exit));
  }

  #onExit(entry: Entry, service: SupervisedService, exit: ServiceExit): void {
    if (this.#stopping || entry.current !== service) return;
    const now = this.#now();
    if (now - entry.since >= this.#backoff.resetAfterMs) entry.delayMs = this.#backoff.initialMs;
    entry.up = false;
    entry.since = now;
    entry.lastExit = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
    this.#metrics?.serviceUp.set({ service: entry.name }, 0);
    this.#log.warn({ service: entry.name, code: exit.code, signal: exit.signal, restartInMs: entry.delayMs }, `${entry.name} exited; restarting`);
    // What the dead instance left (a socket, a run directory) is released before the next one starts.
    void service.stop().catch((err: unknown) => this.#log.warn({ err, service: entry.name }, `cannot clean up after ${entry.name}`));
    this.#schedule(entry);
  }

  #schedule(entry: Entry): void {
    const delay = entry.delayMs;
    entry.delayMs = Math.min(delay * 2, this.#backoff.maxMs);
    entry.timer = setTimeout(() => void this.#restart(entry), delay);
    entry.timer.unref();
  }

  async #restart(entry: Entry): Promise<void> {
    if (this.#stopping) return;
    entry.restarts++;
    this.#metrics?.serviceRestarts.inc({ service: entry.name });
    entry.starting = entry.start();
    let service: SupervisedService;
    try {
      service = await entry.starting;
    } catch (err) {
      this.#log.error({ err, service: entry.name, restartInMs: entry.delayMs }, `${entry.name} could not be restarted; trying again`);
      if (!this.#stopping) this.#schedule(entry);
      return;
    } finally {
      entry.starting = undefined;
    }
    entry.current = service;
    // stop() awaits this start and stops what it gave; kill() could not see it.
    if (this.#killed) service.kill();
    if (this.#stopping) return;
    entry.up = true;
    entry.since = this.#now();
    this.#metrics?.serviceUp.set({ service: entry.name }, 1);
    this.#log.info({ service: entry.name, restarts: entry.restarts }, `${entry.name} restarted`);
    this.#watch(entry, service);
  }
}
