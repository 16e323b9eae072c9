/**
 * The BullMQ side of the flow (DESIGN §1, §5): one queue per stage, job data carrying ids only, job ids derived
 * from message id + stage (+ tenant) so that re-enqueueing — by the ingress, a retried job or the reconciler —
 * is idempotent. Stages: `scan` → (`sanitize`, later) → `deliver` (one job per tenant of the message). The scan
 * job makes the first delivery attempt itself; a `deliver` job exists for what that attempt deferred (retries).
 *
 * Job lifecycle: waiting → active → completed (removed at once: the MetaStore keeps the history) | delayed (a
 * deferred delivery or a scan waiting for a failed engine) | failed (after queue.maxAttempts crashes; the
 * message is then held in the `failed` state for operators).
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type Job, type JobsOptions, type RedisOptions as BullRedisOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/schema.ts';
import { isOpenRecipient, type RecipientRecord } from '../spool/meta-store.ts';

export const STAGES = ['scan', 'deliver'] as const;
export type Stage = (typeof STAGES)[number];

export interface ScanJobData {
  mid: string;
  /** Epoch ms until which the SMTP session waits for this verdict (to answer 550 in-session); 0 when none. */
  sessionDeadline: number;
}

export interface DeliverJobData {
  mid: string;
  /** Tenant id, or OUTBOUND_ROUTE for Sekisho's own DSNs to senders outside every tenant. */
  route: string;
}

export const OUTBOUND_ROUTE = '_outbound';

export type ScanResult = { outcome: 'rejected'; reply: string } | { outcome: 'accepted' };

/** Redis commands of the ingress fail after this instead of waiting: the client gets 451 and retries later. */
const ENQUEUE_TIMEOUT_MS = 5_000;
/** How long the in-session claim key lives; far longer than any verdictWaitMs. */
const SESSION_CLAIM_TTL_MS = 10 * 60_000;

export function scanJobId(mid: string): string {
  return `scan-${mid}`;
}

export function deliverJobId(mid: string, route: string): string {
  return `deliver-${mid}-${route}`;
}

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
  readonly scan: Queue<ScanJobData, ScanResult>;
  readonly deliver: Queue<DeliverJobData>;
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #queueCfg: Config['queue'];
  #events: QueueEvents | undefined;
  readonly #url: string;

  constructor(redisUrl: string, prefix: string, queueCfg: Config['queue']) {
    this.#url = redisUrl;
    this.#prefix = prefix;
    this.#queueCfg = queueCfg;
    this.#redis = new Redis(redisOptions(redisUrl, false) as RedisOptions);
    this.#redis.on('error', () => undefined); // surfaced as command errors → 451
    const opts = { connection: this.#redis, prefix };
    this.scan = new Queue<ScanJobData, ScanResult>('scan', opts);
    this.deliver = new Queue<DeliverJobData>('deliver', opts);
    this.scan.on('error', () => undefined);
    this.deliver.on('error', () => undefined);
  }

  get prefix(): string {
    return this.#prefix;
  }

  get redisUrl(): string {
    return this.#url;
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

  async enqueueScan(mid: string, sessionDeadline = 0, delayMs = 0): Promise<Job<ScanJobData, ScanResult>> {
    return this.scan.add('scan', { mid, sessionDeadline }, this.#jobOptions(scanJobId(mid), delayMs));
  }

  async enqueueDeliver(mid: string, route: string, delayMs = 0): Promise<void> {
    await this.deliver.add('deliver', { mid, route }, this.#jobOptions(deliverJobId(mid, route), delayMs));
  }

  /** A `deliver` job for every route that has recipients still open, due at the earliest of their next attempts. */
  async enqueueOpenRoutes(mid: string, recipients: readonly RecipientRecord[]): Promise<void> {
    const due = new Map<string, number>();
    for (const r of recipients.filter(isOpenRecipient)) {
      due.set(r.tenantId, Math.min(due.get(r.tenantId) ?? Infinity, r.nextAttemptAt ?? 0));
    }
    for (const [route, at] of due) await this.enqueueDeliver(mid, route, at - Date.now());
  }

  /**
   * Whether the message's scan job is still in Redis and not given up (waiting, active, delayed): then it owns
   * the message, its first delivery attempt included, and nothing else may start a delivery of it.
   */
  async scanPending(mid: string): Promise<boolean> {
    const state = await this.scan.getJobState(scanJobId(mid));
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
    await this.scan.waitUntilReady();
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
      this.#events = new QueueEvents('scan', { connection: redisOptions(this.#url, true), prefix: this.#prefix });
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

  async counts(): Promise<Record<Stage, Record<string, number>>> {
    const states = ['waiting', 'active', 'delayed', 'failed', 'prioritized', 'waiting-children'] as const;
    return {
      scan: await this.scan.getJobCounts(...states),
      deliver: await this.deliver.getJobCounts(...states),
    };
  }

  async close(): Promise<void> {
    await this.#events?.close();
    await this.scan.close();
    await this.deliver.close();
    this.#redis.disconnect();
  }
}
