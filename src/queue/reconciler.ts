/**
 * Recovery: the spool and the MetaStore are the source of truth, Redis is not (DESIGN §2). On start and every
 * queue.reconcileIntervalMs, every unfinished message gets its next job re-added. Job ids are derived from the
 * message, so a job that still exists is left alone; one that Redis lost (FLUSHALL, failover, a crash between
 * the metadata write and the enqueue) is recreated — deferred ones at their scheduled time.
 */
import type { Logger } from 'pino';
import type { MetaStore } from '../spool/meta-store.ts';
import type { Pipeline } from './pipeline.ts';

/** Messages re-enqueued per batch; bounds memory when a large backlog is recovered. */
const RECONCILE_BATCH = 500;

export class Reconciler {
  readonly #meta: MetaStore;
  readonly #pipeline: Pipeline;
  readonly #log: Logger;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(meta: MetaStore, pipeline: Pipeline, log: Logger, intervalMs: number) {
    this.#meta = meta;
    this.#pipeline = pipeline;
    this.#log = log.child({ component: 'reconciler' });
    this.#intervalMs = intervalMs;
  }

  /** One pass; returns how many messages it looked at. Concurrent calls share one pass. */
  run(): Promise<number> {
    this.#running ??= this.#pass().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #pass(): Promise<number> {
    let seen = 0;
    for (let offset = 0; ; offset += RECONCILE_BATCH) {
      const batch = await this.#meta.listUnfinished({ limit: RECONCILE_BATCH, offset });
      for (const msg of batch) {
        seen++;
        if (msg.state === 'received') {
          await this.#pipeline.enqueueScan(msg.id);
        } else if (msg.state === 'delivering' && !(await this.#pipeline.scanPending(msg.id))) {
          // (While its scan job lives, that job may be making the first delivery attempt: it hands over itself.)
          await this.#pipeline.enqueueOpenRoutes(msg.id, await this.#meta.getRecipients(msg.id));
        }
      }
      if (batch.length < RECONCILE_BATCH) break;
    }
    if (seen) this.#log.debug({ unfinished: seen }, 'reconciled');
    return seen;
  }

  start(): void {
    if (this.#intervalMs <= 0) return;
    this.#timer = setInterval(() => {
      this.run().catch((err: unknown) => this.#log.warn({ err }, 'reconcile pass failed'));
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }
}
