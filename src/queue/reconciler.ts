/**
 * Recovery: the spool and the MetaStore are the source of truth, Redis is not (DESIGN §2). A pass gives every
 * unfinished message its next jobs again: it asks each stage of the list, in order, what the message needs
 * (Stage.recover); a stage whose own job still holds the message stops the asking for it. Job ids are derived from the message, so a job that still exists is left
 * alone; one that Redis lost (FLUSHALL, failover, a crash between the metadata write and the enqueue) is recreated
 * — deferred ones at their scheduled time; a delayed job due later than its schedule (the wall clock stepped back)
 * is brought forward.
 *
 * A pass costs a few Redis round trips per unfinished message: with a tenant's server down for hours, tens of
 * thousands of them. So a pass runs on start; then every queue.reconcileIntervalMs the reconciler only asks Redis
 * whether it still holds its data (Pipeline.redisEpoch, one round trip) and passes again when it does not, and in
 * any case every FULL_PASS_INTERVAL_MS.
 */
import type { Logger } from 'pino';
import type { MessageRecord } from '../spool/meta-store.ts';
import type { HandOff, RecoveryDeps } from './stage.ts';

/** Messages re-enqueued per batch; bounds memory when a large backlog is recovered. */
const RECONCILE_BATCH = 500;
/**
 * A full pass at least this often even when Redis kept its data: a safety net for jobs lost another way (removed
 * by hand, a bug). Long enough that a large deferred backlog is not walked every few seconds.
 */
const FULL_PASS_INTERVAL_MS = 10 * 60_000;
/**
 * A change of the wall clock against the monotonic one larger than this between two ticks is a step (NTP, a VM
 * restored from a snapshot), not drift: a full pass then reschedules what the step moved.
 */
const CLOCK_STEP_MS = 30_000;

export class Reconciler {
  readonly #deps: RecoveryDeps;
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;
  /** Redis's epoch when the last full pass started, and when that was. */
  #epoch: string | undefined;
  #lastPassAt = 0;
  /** Wall clock minus monotonic clock at the last tick. */
  #clockOffset = Date.now() - performance.now();

  constructor(deps: RecoveryDeps, log: Logger, intervalMs: number, now: () => number = () => performance.now()) {
    this.#deps = deps;
    this.#log = log.child({ component: 'reconciler' });
    this.#intervalMs = intervalMs;
    this.#now = now;
  }

  /** One full pass; returns how many messages it looked at. Concurrent calls share one pass. */
  run(): Promise<number> {
    this.#running ??= this.#pass().finally(() => (this.#running = undefined));
    return this.#running;
  }

  /** The periodic check: a full pass when Redis lost its data since the last one, the wall clock stepped, or the last is old. */
  async tick(): Promise<number | undefined> {
    const epoch = await this.#deps.pipeline.redisEpoch();
    const offset = Date.now() - performance.now();
    const stepMs = offset - this.#clockOffset;
    this.#clockOffset = offset;
    const stepped = Math.abs(stepMs) > CLOCK_STEP_MS;
    if (stepped) this.#log.warn({ stepMs: Math.round(stepMs) }, 'the wall clock stepped: rescheduling deferred deliveries');
    if (!stepped && epoch === this.#epoch && this.#now() - this.#lastPassAt < FULL_PASS_INTERVAL_MS) return undefined;
    if (epoch !== this.#epoch && this.#epoch !== undefined) this.#log.warn('Redis lost its data: re-enqueueing every unfinished message');
    return this.run();
  }

  async #pass(): Promise<number> {
    // Read before the pass: if Redis loses its data while the pass runs, the next tick sees a new epoch.
    this.#epoch = await this.#deps.pipeline.redisEpoch();
    this.#lastPassAt = this.#now();
    let seen = 0;
    for (let offset = 0; ; offset += RECONCILE_BATCH) {
      const batch = await this.#deps.meta.listUnfinished({ limit: RECONCILE_BATCH, offset });
      for (const msg of batch) {
        seen++;
        for (const h of await this.#handOffs(msg)) await this.#deps.pipeline.enqueueOrBringForward(h);
      }
      if (batch.length < RECONCILE_BATCH) break;
    }
    if (seen) this.#log.debug({ unfinished: seen }, 'reconciled');
    return seen;
  }

  /** What the stages need for one unfinished message, asked in list order. */
  async #handOffs(msg: MessageRecord): Promise<HandOff[]> {
    const recipients = await this.#deps.meta.getRecipients(msg.id);
    const handOffs: HandOff[] = [];
    for (const stage of this.#deps.pipeline.stages) {
      const r = await stage.recover(msg, recipients, this.#deps);
      handOffs.push(...r.handOffs);
      if (r.owned) break;
    }
    return handOffs;
  }

  start(): void {
    if (this.#intervalMs <= 0) return;
    this.#timer = setInterval(() => {
      this.tick().catch((err: unknown) => this.#log.warn({ err }, 'reconcile pass failed'));
    }, this.#intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }
}
