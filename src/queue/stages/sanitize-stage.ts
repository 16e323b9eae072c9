/**
 * The `sanitize` stage (メール無害化): one job per (message, tenant). Rebuilds the message with the injected
 * Sanitizer for that tenant, stores the result as the tenant's sanitized copy (durable before the hand-off),
 * has the original recorded as kept (WorkerDeps.quarantine) and hands the route to `deliver`, which sends the
 * copy. A copy already in the spool (a re-run after a crash) is not made again.
 *
 * Never the raw bytes: a sanitizer that throws fails the job (BullMQ retries it; after queue.maxAttempts the
 * message is held as `failed`), and a worker without a sanitizer holds the tenant's recipients in quarantine.
 */
import { Readable } from 'node:stream';
import type { Job } from 'bullmq';
import type { Logger } from 'pino';
import { encodeHeader } from '../../mime/compose.ts';
import { deliveryBody, planDelivery } from '../../policy/plan.ts';
import type { MessageKind } from '../../spool/message-store.ts';
import { isOpenRecipient, type MessageRecord, type RecipientRecord } from '../../spool/meta-store.ts';
import { finalizeIfDone } from '../finalize.ts';
import { routeHandOff, type RouteJobData } from '../pipeline.ts';
import type { HandOff, Stage, StageOutput } from '../stage.ts';
import type { WorkerDeps } from '../worker-deps.ts';
import { openRecipients, openRouteWork } from './deliver-stage.ts';

/** Applies the plan of a worker without a sanitizer to the route's open recipients (held) and closes the message if done. */
async function hold(deps: WorkerDeps, msg: MessageRecord, route: string, mine: readonly RecipientRecord[], log: Logger): Promise<StageOutput> {
  const mid = msg.id;
  const decision = msg.verdict?.decisions[route] ?? { action: 'sanitize' as const, score: 0, reasons: [] };
  const [plan] = planDelivery(new Map([[route, decision]]), mine, { sanitizer: false });
  if (!plan || plan.state !== 'quarantined') throw new Error(`the plan for ${route} without a sanitizer does not hold the message`);
  await deps.quarantine?.keep(msg, route, 'held', [plan.response ?? 'sanitizer not available']);
  await deps.meta.updateRecipients(
    mid,
    mine.map((r) => r.address),
    { state: plan.state, response: plan.response, nextAttemptAt: null },
  );
  deps.metrics.deliveries.inc({ outcome: 'quarantined', tenant: route }, mine.length);
  log.warn({ recipients: mine.map((r) => r.address) }, 'no sanitizer in this worker: held');
  await finalizeIfDone(deps, mid, log);
  return { handOffs: [] };
}

/** Sanitizes the raw message for `route` and stores the copy (fsync'd) under that tenant's key; returns the raw bytes read. */
async function makeCopy(deps: WorkerDeps, msg: MessageRecord, route: string, mine: readonly RecipientRecord[], kind: MessageKind, log: Logger): Promise<Buffer> {
  const { config, store, tenants, metrics } = deps;
  const sanitizer = deps.sanitizer;
  const tenant = tenants.byId(route);
  // Without these the job fails and is retried, then held as `failed`: an operator looks at it.
  if (!sanitizer) throw new Error('makeCopy needs a sanitizer');
  if (!tenant) throw new Error(`tenant "${route}" is no longer configured: cannot sanitize for it`);
  if (!msg.verdict) throw new Error(`message ${msg.id} has no verdict: it was not scanned`);
  const release = await deps.scanMemory.acquire(msg.size);
  try {
    const started = performance.now();
    const raw = await store.read(msg.id);
    const result = await sanitizer.sanitize({
      mid: msg.id,
      raw,
      tenant,
      recipients: mine.map((r) => r.address),
      verdict: msg.verdict,
      signal: AbortSignal.timeout(config.sanitize.messageTimeoutMs),
      log,
    });
    const header = Buffer.from(encodeHeader({ name: 'X-Sekisho-Sanitized', value: result.header }), 'utf8');
    await store.write(msg.id, Readable.from([header, result.message]), { kind });
    metrics.stageSeconds.observe({ stage: 'sanitize' }, (performance.now() - started) / 1000);
    for (const p of result.parts) metrics.sanitizedParts.inc({ tenant: route, outcome: p.outcome, reason: p.reason ?? '' });
    log.info({ parts: result.summary, size: result.message.length }, 'sanitized copy stored');
    return raw;
  } finally {
    release();
  }
}

async function processSanitize(job: Job<RouteJobData>, deps: WorkerDeps): Promise<StageOutput> {
  const { store } = deps;
  const { mid, route } = job.data;
  const log = deps.log.child({ mid, stage: 'sanitize', route });
  const work = await openRouteWork(deps, mid, route, log);
  if (!work) return { handOffs: [] };
  const { msg, mine } = work;
  if (!deps.sanitizer) return hold(deps, msg, route, mine, log);
  const kind: MessageKind = { sanitized: route };
  const raw = (await store.exists(mid, kind)) ? undefined : await makeCopy(deps, msg, route, mine, kind, log);
  // Again on a re-run: the hook is idempotent, and a crash may have come between the copy and the hook.
  await deps.quarantine?.keep({ ...msg, raw }, route, 'original', msg.verdict?.decisions[route]?.reasons ?? []);
  const due = Math.min(...mine.map((r) => r.nextAttemptAt ?? 0));
  return { handOffs: [routeHandOff('deliver', mid, route, due - Date.now())] };
}

export const sanitizeStage: Stage<RouteJobData> = {
  name: 'sanitize',
  // A job mostly waits for the converter processes: more jobs than converters would only queue there.
  concurrency: (config) => config.sanitize.converterProcesses,
  jobId: ({ mid, route }) => `sanitize-${mid}-${route}`,
  process: processSanitize,
  async recover(msg, recipients, deps) {
    if (msg.state !== 'delivering') return { handOffs: [] };
    const handOffs: HandOff[] = [];
    for (const route of new Set(recipients.filter(isOpenRecipient).map((r) => r.tenantId))) {
      const action = openRecipients(recipients, route)[0]?.action ?? null;
      if (deliveryBody(action) !== 'sanitized' || (await deps.store.exists(msg.id, { sanitized: route }))) continue;
      handOffs.push(routeHandOff('sanitize', msg.id, route));
    }
    return { handOffs };
  },
};
