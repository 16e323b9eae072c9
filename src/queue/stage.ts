/**
 * The Stage interface: one BullMQ queue, one worker and one recovery rule per stage, all taken from the list in
 * stages.ts. A stage processes one job and answers with hand-offs (the next stage's jobs); the worker enqueues
 * them before the job completes, so a crash in between re-runs the job rather than losing the hand-off. Job ids
 * derive from the message (+ route), so every enqueue — a hand-off, a re-run, the reconciler — is idempotent.
 *
 * Job lifecycle: waiting → active → completed (removed at once: the MetaStore keeps the history) | delayed (a
 * deferred delivery or a scan waiting for a failed engine) | failed (after queue.maxAttempts crashes; the
 * message is then held in the `failed` state for operators).
 */
import type { Job } from 'bullmq';
import type { Config } from '../config/schema.ts';
import type { MessageRecord, RecipientRecord } from '../spool/meta-store.ts';
import type { WorkerDeps } from './worker-deps.ts';

/** What every job carries: ids only, never message bytes. */
export interface StageJobData {
  mid: string;
}

/** A job of the stage named `stage`, due in `delayMs` (0: now). */
export interface HandOff {
  stage: string;
  data: StageJobData;
  delayMs: number;
}

export interface StageOutput<R = unknown> {
  handOffs: HandOff[];
  /** The job's return value (what a QueueEvents waiter sees, e.g. the scan's in-session verdict). */
  result?: R;
}

/** What recovery finds for one unfinished message in one stage. */
export interface Recovery {
  handOffs: HandOff[];
  /** This stage's own job still holds the message: the stages after it leave the message alone this pass. */
  owned?: boolean;
}

/** What recovery may use: no worker-only parts (no checks, deliverer, sanitizer). */
export type RecoveryDeps = Pick<WorkerDeps, 'meta' | 'store' | 'pipeline' | 'config'>;

export interface Stage<D extends StageJobData = StageJobData, R = unknown> {
  /** The queue's name and the stage's name in logs and metrics. */
  readonly name: string;
  /** Jobs at once per worker process. */
  concurrency(config: Config): number;
  /** The job id: the same work always gets the same id. */
  jobId(data: D): string;
  /** Runs one job. May throw DelayedError after moving the job to delayed (a retry of the same job). */
  process(job: Job<D, R>, deps: WorkerDeps, token?: string): Promise<StageOutput<R>>;
  /** The jobs this stage needs for an unfinished message whose jobs Redis may have lost (the reconciler asks). */
  recover(msg: MessageRecord, recipients: readonly RecipientRecord[], deps: RecoveryDeps): Promise<Recovery>;
}

/** A stage of any job type, as the list holds them. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyStage = Stage<any, any>;
