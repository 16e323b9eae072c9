/**
 * The `scan` stage: runs the registered checks on one message, lets policy choose an action per tenant, records
 * the verdict and the per-recipient actions, and makes the first delivery attempt to each tenant itself (no
 * separate job: most mail is delivered by the job that scanned it). What that attempt defers, a route that has
 * been deferring lately (RouteHealth), and every delivery while an SMTP session waits for the verdict go to the
 * `deliver` stage, which owns the retries.
 *
 * Fail closed: when a check failed (`<CHECK>_FAIL`), the whole message waits (the job is delayed by
 * scan.failRetryDelayMs) and is scanned again; after scan.failQuarantineAfterMs it is quarantined. No recipient
 * is ever handed to delivery on an incomplete verdict.
 */
import { DelayedError, type Job } from 'bullmq';
import type { Action } from '../config/schema.ts';
import { decide, type Decision } from '../policy/decide.ts';
import { runChecks } from '../scan/runner.ts';
import type { Logger } from 'pino';
import type { MessageRecord, RecipientPatch, RecipientRecord, RecipientState } from '../spool/meta-store.ts';
import { attemptRoute, openRecipients } from './deliver-stage.ts';
import type { ScanJobData, ScanResult } from './pipeline.ts';
import type { WorkerDeps } from './worker-deps.ts';
import { finalizeIfDone } from './finalize.ts';

/** SMTP reply lines stay far below RFC 5321's 512 octets. */
const MAX_REPLY_REASON_CHARS = 300;

/** What each action means for a recipient once the SMTP session is over. */
function stateFor(action: Action): { state: RecipientState; deliver: boolean; why?: string } {
  switch (action) {
    case 'deliver':
    case 'deliver-tagged':
      return { state: 'pending', deliver: true };
    case 'quarantine':
      return { state: 'quarantined', deliver: false };
    case 'reject':
      // After the 250 a reject cannot reach the sender without backscatter: hold the message instead.
      return { state: 'quarantined', deliver: false, why: 'rejected by policy after acceptance' };
    case 'sanitize':
      // The sanitizer (メール無害化) is not part of this build; mail for a sanitizing tenant is held, never
      // delivered unsanitized.
      return { state: 'quarantined', deliver: false, why: 'sanitizer not available' };
    case 'tempfail':
      return { state: 'pending', deliver: false };
  }
}

/**
 * Hands the deliverable recipients to delivery: with `inline`, the first attempt to each route that answered
 * lately (RouteHealth) is made at once, all routes side by side; a route that deferred, or was not tried, gets a
 * `deliver` job (due at the retry time). Every route settles before this returns, so that no `deliver` job can
 * overlap an attempt still running here; then the message is finalized if nothing is left.
 */
async function startDelivery(
  deps: WorkerDeps,
  msg: MessageRecord,
  recipients: readonly RecipientRecord[],
  routes: ReadonlySet<string>,
  inline: boolean,
  log: Logger,
  raw: Buffer,
): Promise<void> {
  const later: { route: string; delayMs: number }[] = [];
  const settled = await Promise.allSettled(
    [...routes].map(async (route) => {
      const mine = openRecipients(recipients, route);
      if (!mine.length) return;
      if (!inline || !deps.routeHealth.answering(route)) {
        later.push({ route, delayMs: 0 });
        return;
      }
      const { nextAt } = await attemptRoute(deps, msg, route, mine, log.child({ stage: 'deliver', route }), raw);
      if (nextAt !== Infinity) later.push({ route, delayMs: nextAt - Date.now() });
    }),
  );
  for (const { route, delayMs } of later) await deps.pipeline.enqueueDeliver(msg.id, route, delayMs);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  // The job fails and runs again; the re-run finds the message `delivering` and leaves it to the deliver stage.
  if (failed) throw failed.reason;
  await finalizeIfDone(deps, msg.id, log);
}

export function createScanProcessor(deps: WorkerDeps) {
  const { meta, pipeline } = deps;

  return async function processScan(job: Job<ScanJobData, ScanResult>, token?: string): Promise<ScanResult> {
    const { mid } = job.data;
    const log = deps.log.child({ mid, stage: 'scan' });
    const msg = await meta.getMessage(mid);
    if (!msg) return { outcome: 'accepted' };
    if (msg.state === 'delivering') {
      // A re-run after the worker died during the first delivery attempt: the deliver stage takes it from here.
      await pipeline.enqueueOpenRoutes(mid, await meta.getRecipients(mid));
      return { outcome: 'accepted' };
    }
    if (msg.state !== 'received') return { outcome: 'accepted' }; // done already (idempotent re-run)
    const recipients = await meta.getRecipients(mid);
    // The message and its decoded parts stay in memory until the job ends (the first delivery attempt sends
    // them from memory): its size is held against the process's budget for that long.
    const release = await deps.scanMemory.acquire(msg.size);
    try {
      return await scanAndDecide(deps, job, token, msg, recipients, log);
    } finally {
      release();
    }
  };
}

/** Scans a message held in memory, records the verdict and each tenant's action, and starts its delivery. */
async function scanAndDecide(
  deps: WorkerDeps,
  job: Job<ScanJobData, ScanResult>,
  token: string | undefined,
  msg: MessageRecord,
  recipients: RecipientRecord[],
  log: Logger,
): Promise<ScanResult> {
  const { config, meta, store, tenants, pipeline, checks, metrics } = deps;
  const { mid, sessionDeadline } = job.data;
  const started = performance.now();
  const raw = await store.read(mid);
  const verdict = await runChecks(
    checks,
    {
      messageId: mid,
      raw,
      log,
      envelope: {
        mailFrom: msg.mailFrom,
        recipients: recipients.map((r) => ({ address: r.address, tenantId: r.tenantId })),
        clientIp: msg.clientIp,
        helo: msg.helo,
        tls: msg.tls,
      },
    },
    {
      checkTimeoutMs: config.scan.checkTimeoutMs,
      onCheckDone: (check, outcome, ms) => metrics.checkSeconds.observe({ check, outcome }, ms / 1000),
    },
  );
  metrics.stageSeconds.observe({ stage: 'scan' }, (performance.now() - started) / 1000);

  const ageMs = Date.now() - msg.receivedAt;
  const decisions = new Map<string, Decision>();
  for (const tenantId of new Set(recipients.map((r) => r.tenantId))) {
    const tenant = tenants.byId(tenantId);
    if (!tenant) {
      // The tenant was removed from the config after the message arrived: hold it for an operator.
      decisions.set(tenantId, { action: 'quarantine', score: 0, reasons: [`tenant "${tenantId}" is no longer configured`] });
      continue;
    }
    decisions.set(tenantId, decide(verdict, tenant, config.policy, { ageMs, scan: config.scan }));
  }
  const record = {
    ...verdict,
    decisions: Object.fromEntries([...decisions].map(([t, d]) => [t, d])),
    scannedAt: Date.now(),
  };

  if ([...decisions.values()].some((d) => d.action === 'tempfail')) {
    await meta.updateMessage(mid, { verdict: record, lastError: verdict.failedChecks.map((c) => `${c} failed`).join('; ') });
    log.warn({ failedChecks: verdict.failedChecks, retryInMs: config.scan.failRetryDelayMs }, 'check failed; scan again later');
    await job.moveToDelayed(Date.now() + config.scan.failRetryDelayMs, token);
    throw new DelayedError();
  }

  const actions = [...decisions.values()].map((d) => d.action);
  if (actions.every((a) => a === 'reject') && sessionDeadline > Date.now() && (await pipeline.claimSession(mid, 'worker'))) {
    // The finding that forced the reject (e.g. the virus name) leads the reply; score lines follow.
    const reasons = [...new Set([...decisions.values()].flatMap((d) => d.reasons))];
    const reply = [...reasons.filter((r) => r.endsWith('forces reject')), ...reasons.filter((r) => !r.endsWith('forces reject'))]
      .join('; ')
      .slice(0, MAX_REPLY_REASON_CHARS);
    // One durable change before the spool file goes (see MessageChange.durable).
    await meta.update(mid, {
      recipients: [{ patch: { state: 'rejected', action: 'reject', response: `550 5.7.1 ${reply}` } }],
      message: { state: 'rejected', verdict: record, lastError: null },
      durable: true,
    });
    await store.delete(mid);
    for (const [tenant] of decisions) metrics.actions.inc({ action: 'reject', tenant });
    log.info({ symbols: verdict.symbols, reply }, 'rejected in session');
    return { outcome: 'rejected', reply };
  }

  const deliverTo = new Set<string>();
  const patches: { addresses: string[]; patch: RecipientPatch }[] = [];
  const after = new Map<string, RecipientRecord>();
  for (const [tenantId, d] of decisions) {
    const s = stateFor(d.action);
    const mine = recipients.filter((r) => r.tenantId === tenantId);
    const response = s.state === 'quarantined' ? `quarantined: ${[s.why, ...d.reasons].filter(Boolean).join('; ')}` : null;
    const patch = { action: d.action, state: s.state, response };
    patches.push({ addresses: mine.map((r) => r.address), patch });
    for (const r of mine) after.set(r.address, { ...r, ...patch });
    metrics.actions.inc({ action: d.action, tenant: tenantId });
    if (s.state === 'quarantined') metrics.deliveries.inc({ outcome: 'quarantined', tenant: tenantId }, mine.length);
    if (s.deliver) deliverTo.add(tenantId);
  }
  await meta.update(mid, { recipients: patches, message: { state: 'delivering', verdict: record, lastError: null } });
  log.info(
    { symbols: verdict.symbols.map((s) => s.name), actions: Object.fromEntries([...decisions].map(([t, d]) => [t, d.action])) },
    'scanned',
  );
  // While an SMTP session waits for this verdict, the job ends here and delivery is a job of its own; otherwise
  // the first attempt is made right here, which spares a job per message.
  const inline = sessionDeadline <= Date.now();
  await startDelivery(deps, { ...msg, state: 'delivering', verdict: record }, [...after.values()], deliverTo, inline, log, raw);
  return { outcome: 'accepted' };
}
