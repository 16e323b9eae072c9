/**
 * One BullMQ worker per entry of the pipeline's list of stages: it runs the stage's process() and enqueues its
 * hand-offs before the job completes. And the poison-message rule: a job that crashed queue.maxAttempts times
 * (not a deferral — those are delays, not failures) moves its message to the `failed` hold, visible to operators
 * (GET /api/messages?state=failed, sekisho_messages_failed_total) instead of looping.
 */
import { Worker, type Job } from 'bullmq';
import { redisOptions } from './pipeline.ts';
import type { AnyStage } from './stage.ts';
import type { WorkerDeps } from './worker-deps.ts';

/** How often BullMQ looks for jobs whose worker died (their lock expired); a fraction of the lock time. */
const STALLED_CHECKS_PER_LOCK = 2;

/** How long close() waits for active jobs (a delivery's SMTP transaction, a sanitization) before closing forcibly. */
const CLOSE_GRACE_MS = 20_000;

export class StageWorkers {
  readonly #workers: Worker[];
  readonly #deps: WorkerDeps;

  constructor(deps: WorkerDeps) {
    this.#deps = deps;
    const { config, pipeline } = deps;
    const base = {
      connection: redisOptions(pipeline.redisUrl, true),
      prefix: pipeline.prefix,
      lockDuration: config.queue.lockDurationMs,
      stalledInterval: Math.max(1_000, Math.floor(config.queue.lockDurationMs / STALLED_CHECKS_PER_LOCK)),
      maxStalledCount: config.queue.maxAttempts,
      autorun: false,
    };
    this.#workers = pipeline.stages.map(
      (stage) => new Worker(stage.name, (job, token) => this.#run(stage, job, token), { ...base, concurrency: stage.concurrency(config) }),
    );
    // Every stage's latency series exists from the start, at zero, whether or not a job has run yet.
    for (const stage of pipeline.stages) deps.metrics.stageSeconds.zero({ stage: stage.name });
    for (const w of this.#workers) {
      w.on('failed', (job, err) => void this.#onFailed(job, err));
      w.on('error', (err) => deps.log.error({ err, queue: w.name }, 'worker error'));
    }
  }

  async #run(stage: AnyStage, job: Job, token: string | undefined): Promise<unknown> {
    const out = await stage.process(job, this.#deps, token);
    // Before the job completes: a crash in between runs the job again, which hands off again (same job ids).
    for (const h of out.handOffs) await this.#deps.pipeline.enqueue(h);
    return out.result;
  }

  async #onFailed(job: Job<{ mid: string }> | undefined, err: Error): Promise<void> {
    if (!job) return;
    const { log, meta, metrics, config } = this.#deps;
    const mid = job.data.mid;
    const final = job.attemptsMade >= (job.opts.attempts ?? 1);
    log.error({ err, mid, stage: job.queueName, attempt: job.attemptsMade, final }, 'job failed');
    try {
      await meta.updateMessage(mid, {
        lastError: `${job.queueName}: ${err.message}`,
        countAttempt: true,
        ...(final ? { state: 'failed' as const } : {}),
      });
      if (final) {
        metrics.failedHold.inc();
        log.error({ mid, attempts: config.queue.maxAttempts }, 'message moved to the failed hold');
      }
    } catch (e) {
      log.error({ err: e, mid }, 'could not record the failure');
    }
  }

  start(): void {
    for (const w of this.#workers) void w.run();
  }

  /** Stops taking jobs and waits for the active ones to finish. */
  /**
   * Lets active jobs finish, then closes. BullMQ 6.7's Worker.close() never returns when Redis went away while it
   * waited (taskforcesh/bullmq#4656): past CLOSE_GRACE_MS the workers are closed forcibly — their active jobs are
   * then retried by the next worker, and delivery's per-recipient states keep that from sending anything twice.
   */
  async close(): Promise<void> {
    const graceful = Promise.all(this.#workers.map((w) => w.close())).then(() => true);
    const timedOut = new Promise<false>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS, false).unref());
    if (!(await Promise.race([graceful, timedOut]))) await Promise.all(this.#workers.map((w) => w.close(true)));
  }
}
