/**
 * The BullMQ side of the flow (DESIGN §1, §5): one queue per entry of the list of stages (stages.ts), job data
 * carrying ids only, job ids from the stage (Stage.jobId) so that re-enqueueing — by a hand-off, a retried job
 * or the reconciler — is idempotent. Also the two Redis marks outside the queues: the in-session claim of a
 * verdict and the epoch the reconciler watches.
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type Job, type JobsOptions, type RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/schema.ts';
import type { AnyStage, HandOff } from './stage.ts';

/** A delayed job due within this of what a hand-off wants is left alone (no Redis write for timer noise). */
const RESCHEDULE_TOLERANCE_MS = 5_000;

export interface ScanJobData {
  mid: string;
  /** Epoch ms until which the SMTP session waits for this verdict (to answer 550 in-session); 0 when none. */
  sessionDeadline: number;
}

/** A job for one route of a message (sanitize, deliver). */
export interface RouteJobData {
  mid: string;
  /** Tenant id, or OUTBOUND_ROUTE for Sekisho's own DSNs to senders outside every tenant. */
  route: string;
}

export const OUTBOUND_ROUTE = '_outbound';

/** The hand-off of one route of a message to `stage` (sanitize, deliver), due in `delayMs`. */
export function routeHandOff(stage: string, mid: string, route: string, delayMs = 0): HandOff {
  const data: RouteJobData = { mid, route };
  return { stage, data, delayMs };
}

export type ScanResult = { outcome: 'rejected'; reply: string } | { outcome: 'accepted' };

/** The stage the ingress hands each message to, and whose result an SMTP session may wait for. */
const FIRST_STAGE = 'scan';

/** Redis commands of the ingress fail after this instead of waiting: the client gets 451 and retries later. */
const ENQUEUE_TIMEOUT_MS = 5_000;
/** How long the in-session claim key lives; far longer than any verdictWaitMs. */
const SESSION_CLAIM_TTL_MS = 10 * 60_000;
/** Job states a queue-depth count reports. */
const COUNTED_STATES = ['waiting', 'active', 'delayed', 'failed', 'prioritized', 'waiting-children'] as const;

export function redisOptions(url: string, forWorker: boolean): BullRedisOptions {
  const u = new URL(url);
  // unix:///path/redis.sock?db=N, or redis[s]://[user:password@]host:port/N
  const where =
    u.protocol === 'unix:'
      ? { path: decodeURIComponent(u.pathname), db: Number(u.searchParams.get('db') || 0) }
      : { host: u.hostname, port: Number(u.port || 6379), db: Number(u.pathname.slice(1) || 0) };
  return {
    ...where,
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
    // Workers block on Redis and must retry forever (BullMQ requirement); producers fail fast → SMTP 451.
    maxRetriesPerRequest: forWorker ? null : 1,
    enableOfflineQueue: forWorker,
    connectTimeout: ENQUEUE_TIMEOUT_MS,
    commandTimeout: forWorker ? undefined : ENQUEUE_TIMEOUT_MS,
  };
}

export class Pipeline {
  readonly stages: readonly AnyStage[];
  readonly #queues = new Map<string, Queue>();
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #queueCfg: Config['queue'];
  #events: QueueEvents | undefined;
  readonly #url: string;

  constructor(redisUrl: string, prefix: string, queueCfg: Config['queue'], stages: readonly AnyStage[]) {
    this.#url = redisUrl;
    this.#prefix = prefix;
    this.#queueCfg = queueCfg;
    this.stages = stages;
    this.#redis = new Redis(redisOptions(redisUrl, false) as RedisOptions);
    this.#redis.on('error', () => undefined); // surfaced as command errors → 451
    for (const stage of stages) {
      if (this.#queues.has(stage.name)) throw new Error(`two stages are named "${stage.name}"`);
      const queue = new Queue(stage.name, { connection: this.#redis, prefix });
      queue.on('error', () => undefined);
      this.#queues.set(stage.name, queue);
    }
  }

  get prefix(): string {
    return this.#prefix;
  }

  get redisUrl(): string {
    return this.#url;
  }

  /** The stage named `name`; throws for a name that is not in the list (a bug, not an input). */
  stage(name: string): AnyStage {
    const stage = this.stages.find((s) => s.name === name);
    if (!stage) throw new Error(`no stage "${name}" in the list of stages`);
    return stage;
  }

  /** The BullMQ queue of a stage. */
  queue(name: string): Queue {
    const queue = this.#queues.get(name);
    if (!queue) throw new Error(`no stage "${name}" in the list of stages`);
    return queue;
  }

  #jobOptions(jobId: string, delayMs = 0): JobsOptions {
    return {
      jobId,
      delay: Math.max(0, Math.round(delayMs)),
      attempts: this.#queueCfg.maxAttempts,
      backoff: { type: 'exponential', delay: this.#queueCfg.attemptBackoffMs },
      removeOnComplete: true,
      removeOnFail: { age: 7 * 24 * 3600 },
    };
  }

  /** Adds the hand-off's job; a job with the same id that still exists is left as it is. */
  async enqueue(h: HandOff): Promise<Job> {
    const jobId = this.stage(h.stage).jobId(h.data);
    return this.queue(h.stage).add(h.stage, h.data, this.#jobOptions(jobId, h.delayMs));
  }

  /**
   * The hand-off's job if it is missing; and a delayed one that is due later than the hand-off wants is brought
   * forward — the reconciler's answer to a wall clock that stepped back, since BullMQ's delays are wall-clock times.
   * One more round trip than enqueue: for recovery, not for the flow of mail.
   */
  async enqueueOrBringForward(h: HandOff): Promise<void> {
    await this.enqueue(h);
    const job = await this.queue(h.stage).getJob(this.stage(h.stage).jobId(h.data));
    const wantAt = Date.now() + Math.max(0, h.delayMs);
    if (job && job.timestamp + job.delay > wantAt + RESCHEDULE_TOLERANCE_MS && (await job.isDelayed())) {
      await job.changeDelay(Math.max(0, wantAt - job.timestamp));
    }
  }

  /** The ingress's hand-off: the first stage's job for a message just spooled. */
  async enqueueScan(mid: string, sessionDeadline = 0, delayMs = 0): Promise<Job<ScanJobData, ScanResult>> {
    const data: ScanJobData = { mid, sessionDeadline };
    return (await this.enqueue({ stage: FIRST_STAGE, data, delayMs })) as Job<ScanJobData, ScanResult>;
  }

  /** Whether the stage's job for `data` is in Redis and not given up (waiting, active, delayed). */
  async pending(stage: string, data: { mid: string }): Promise<boolean> {
    const state = await this.queue(stage).getJobState(this.stage(stage).jobId(data));
    return state !== 'unknown' && state !== 'failed' && state !== 'completed';
  }

  /**
   * A mark that lives as long as Redis keeps its data: set once by whoever asks first, gone after a FLUSHALL, a
   * restart without persistence or a failover to a replica that never had it. The reconciler compares it between
   * passes to notice that Redis lost its jobs. Returns '' when it vanished between the set and the get.
   */
  async redisEpoch(): Promise<string> {
    const key = `${this.#prefix}:epoch`;
    // The connection has no offline queue: wait until it is up (at start-up the reconciler asks first).
    await this.queue(FIRST_STAGE).waitUntilReady();
    await this.#redis.set(key, randomUUID(), 'NX');
    return (await this.#redis.get(key)) ?? '';
  }

  /**
   * In-session verdicts: whoever claims a message first decides its fate. The worker claims it to reject it
   * (550 in the session); the ingress claims it when it stops waiting and answers 250 — after which a
   * "reject" verdict can only become a quarantine, never a silent drop.
   */
  async claimSession(mid: string, who: 'ingress' | 'worker'): Promise<boolean> {
    const r = await this.#redis.set(`${this.#prefix}:session:${mid}`, who, 'PX', SESSION_CLAIM_TTL_MS, 'NX');
    return r === 'OK';
  }

  /** Waits up to `timeoutMs` for the scan job's result; undefined on timeout or failure. */
  async waitForScan(job: Job<ScanJobData, ScanResult>, timeoutMs: number): Promise<ScanResult | undefined> {
    if (!this.#events) {
      this.#events = new QueueEvents(FIRST_STAGE, { connection: redisOptions(this.#url, true), prefix: this.#prefix });
      this.#events.on('error', () => undefined);
      await this.#events.waitUntilReady();
    }
    try {
      return (await job.waitUntilFinished(this.#events, timeoutMs)) as ScanResult;
    } catch {
      return undefined;
    }
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.#redis.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  /** Jobs per stage and state (the queue-depth gauge, /api/queues). */
  async counts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, queue] of this.#queues) out[name] = await queue.getJobCounts(...COUNTED_STATES);
    return out;
  }

  async close(): Promise<void> {
    await this.#events?.close();
    for (const queue of this.#queues.values()) await queue.close();
    this.#redis.disconnect();
  }
}
