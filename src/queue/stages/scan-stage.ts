/**
 * The `scan` stage: runs the registered checks on one message, lets policy choose an action per tenant, records
 * the verdict and applies the delivery plan (src/policy/plan.ts) to the recipients. It makes the first delivery
 * attempt to each tenant itself (no separate job: most mail is delivered by the job that scanned it). What that
 * attempt defers, a route that has been deferring lately (RouteHealth), and every delivery while an SMTP session
 * waits for the verdict go to the `deliver` stage, which owns the retries; mail the plan sanitizes goes to the
 * `sanitize` stage.
 *
 * Fail closed: when a check failed (`<CHECK>_FAIL`), the whole message waits (the job is delayed by
 * scan.failRetryDelayMs) and is scanned again; after scan.failQuarantineAfterMs it is quarantined. No recipient
 * is ever handed to delivery on an incomplete verdict.
 */
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { decide } from '../../policy/decide.ts';
import type { Sender } from '../../policy/sender-lists.ts';
import type { SenderListsOf } from '../../policy/tenant-lists.ts';
import { headerFromAddress } from '../../scan/header-from.ts';
import type { SymbolInfo } from '../../scan/symbols.ts';
import { mustRescan, planDelivery, sessionRejectReply, type TenantPlan } from '../../policy/plan.ts';
import { runChecks, type Verdict } from '../../scan/runner.ts';
import type { MessageRecord, RecipientPatch, RecipientRecord } from '../../spool/meta-store.ts';
import { storedSymbols, type StoredDecision, type StoredVerdict } from '../../spool/stored-verdict.ts';
import { finalizeIfDone } from '../finalize.ts';
import { routeHandOff, type ScanJobData, type ScanResult } from '../pipeline.ts';
import type { HandOff, Recovery, Stage, StageOutput } from '../stage.ts';
import type { WorkerDeps } from '../worker-deps.ts';
import { attemptRoute, openRecipients } from './deliver-stage.ts';

const accepted = (handOffs: HandOff[] = []): StageOutput<ScanResult> => ({ handOffs, result: { outcome: 'accepted' } });

/**
 * Hands the plan's recipients on: those for `sanitize` to that stage; those for `deliver` — with `inline`, the
 * first attempt to each route that answered lately (RouteHealth) is made at once, all routes side by side; a
 * route that deferred, or was not tried, gets a `deliver` job (due at the retry time). Every route settles
 * before this returns, so that no `deliver` job can overlap an attempt still running here; then the message is
 * finalized if nothing is left.
 */
async function startDelivery(
  deps: WorkerDeps,
  msg: MessageRecord,
  recipients: readonly RecipientRecord[],
  plans: readonly TenantPlan[],
  inline: boolean,
  log: Logger,
  raw: Buffer,
): Promise<HandOff[]> {
  const handOffs: HandOff[] = [];
  const settled = await Promise.allSettled(
    plans.map(async ({ tenantId: route, next }) => {
      if (next === 'sanitize') {
        handOffs.push(routeHandOff('sanitize', msg.id, route));
        return;
      }
      if (next !== 'deliver') return;
      const mine = openRecipients(recipients, route);
      if (!mine.length) return;
      if (!inline || !deps.routeHealth.answering(route)) {
        handOffs.push(routeHandOff('deliver', msg.id, route));
        return;
      }
      const { nextAt } = await attemptRoute(deps, msg, route, mine, log.child({ stage: 'deliver', route }), raw);
      if (nextAt !== Infinity) handOffs.push(routeHandOff('deliver', msg.id, route, nextAt - Date.now()));
    }),
  );
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  // The job fails and runs again; the re-run finds the message `delivering` and hands every open route on.
  if (failed) throw failed.reason;
  await finalizeIfDone(deps, msg.id, log);
  return handOffs;
}

/** What the stages after the scan recover for a message this job finds `delivering` (its first run died). */
async function handOnDelivering(deps: WorkerDeps, msg: MessageRecord): Promise<HandOff[]> {
  const recipients = await deps.meta.getRecipients(msg.id);
  const handOffs: HandOff[] = [];
  for (const stage of deps.pipeline.stages) {
    if (stage.name !== scanStage.name) handOffs.push(...(await stage.recover(msg, recipients, deps)).handOffs);
  }
  return handOffs;
}

async function processScan(job: Job<ScanJobData, ScanResult>, deps: WorkerDeps, token?: string): Promise<StageOutput<ScanResult>> {
  const { meta } = deps;
  const { mid } = job.data;
  const log = deps.log.child({ mid, stage: 'scan' });
  const msg = await meta.getMessage(mid);
  if (!msg) return accepted();
  // A re-run after the worker died during the first delivery attempt: the later stages take it from here.
  if (msg.state === 'delivering') return accepted(await handOnDelivering(deps, msg));
  if (msg.state !== 'received') return accepted(); // done already (idempotent re-run)
  const recipients = await meta.getRecipients(mid);
  // The message and its decoded parts stay in memory until the job ends (the first delivery attempt sends
  // them from memory): its size is held against the process's budget for that long.
  const release = await deps.scanMemory.acquire(msg.size);
  try {
    return await scanAndDecide(deps, job, token, msg, recipients, log);
  } finally {
    release();
  }
}

/** Runs the checks on the spooled bytes. */
async function scan(deps: WorkerDeps, msg: MessageRecord, recipients: readonly RecipientRecord[], raw: Buffer, log: Logger): Promise<Verdict> {
  const { config, checks, metrics } = deps;
  const started = performance.now();
  const verdict = await runChecks(
    checks,
    {
      messageId: msg.id,
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
  return verdict;
}

/** Policy's decision for each tenant of the message. */
function decideAll(deps: WorkerDeps, msg: MessageRecord, recipients: readonly RecipientRecord[], verdict: Verdict, raw: Buffer): Map<string, StoredDecision> {
  const { config, tenants } = deps;
  const ageMs = Date.now() - msg.receivedAt;
  // The header From is read only for a tenant with allow or block lists: most have none.
  let sender: Sender | undefined;
  const senderFor = (l: SenderListsOf) =>
    l.allow.length || l.block.length ? (sender ??= { mailFrom: msg.mailFrom, headerFrom: headerFromAddress(raw), clientIp: msg.clientIp }) : undefined;
  const describe = (name: string) => deps.checks.reduce<SymbolInfo | undefined>((found, c) => found ?? c.symbolInfo?.(name), undefined);
  const decisions = new Map<string, StoredDecision>();
  for (const tenantId of new Set(recipients.map((r) => r.tenantId))) {
    const tenant = tenants.byId(tenantId);
    if (!tenant) {
      // The tenant was removed from the config after the message arrived: hold it for an operator.
      decisions.set(tenantId, { action: 'quarantine', score: 0, reasons: [`tenant "${tenantId}" is no longer configured`] });
      continue;
    }
    const lists = deps.senderLists?.of(tenantId) ?? tenant;
    decisions.set(tenantId, decide(verdict, tenant, config.policy, { ageMs, scan: config.scan, sender: senderFor(lists), lists, describe }));
  }
  return decisions;
}

/** Scans a message held in memory, records the verdict and each tenant's plan, and starts its delivery. */
async function scanAndDecide(
  deps: WorkerDeps,
  job: Job<ScanJobData, ScanResult>,
  token: string | undefined,
  msg: MessageRecord,
  recipients: RecipientRecord[],
  log: Logger,
): Promise<StageOutput<ScanResult>> {
  const { config, meta, store, pipeline, metrics } = deps;
  const { mid, sessionDeadline } = job.data;
  const raw = await store.read(mid);
  const verdict = await scan(deps, msg, recipients, raw, log);
  const decisions = decideAll(deps, msg, recipients, verdict, raw);
  const record: StoredVerdict = {
    ...storedSymbols(verdict.symbols),
    failedChecks: verdict.failedChecks,
    durationsMs: verdict.durationsMs,
    decisions: Object.fromEntries(decisions),
    scannedAt: Date.now(),
  };

  if (mustRescan(decisions)) {
    await meta.updateMessage(mid, { verdict: record, lastError: verdict.failedChecks.map((c) => `${c} failed`).join('; ') });
    log.warn({ failedChecks: verdict.failedChecks, retryInMs: config.scan.failRetryDelayMs }, 'check failed; scan again later');
    await job.moveToDelayed(Date.now() + config.scan.failRetryDelayMs, token);
    throw new DelayedError();
  }

  const reply = sessionRejectReply(decisions);
  if (reply !== null && sessionDeadline > Date.now() && (await pipeline.claimSession(mid, 'worker'))) {
    // One durable change before the spool file goes (see MessageChange.durable).
    await meta.update(mid, {
      recipients: [{ patch: { state: 'rejected', action: 'reject', response: `550 5.7.1 ${reply}` } }],
      message: { state: 'rejected', verdict: record, lastError: null },
      durable: true,
    });
    await store.delete(mid);
    for (const [tenant] of decisions) metrics.actions.inc({ action: 'reject', tenant });
    log.info({ symbols: verdict.symbols, reply }, 'rejected in session');
    return { handOffs: [], result: { outcome: 'rejected', reply } };
  }

  const plans = planDelivery(decisions, recipients, { sanitizer: deps.sanitizer !== undefined });
  const patches: { addresses: string[]; patch: RecipientPatch }[] = [];
  const after = new Map<string, RecipientRecord>();
  for (const p of plans) {
    const patch = { action: p.action, state: p.state, response: p.response };
    patches.push({ addresses: p.recipients, patch });
    for (const r of recipients) if (r.tenantId === p.tenantId) after.set(r.address, { ...r, ...patch });
    metrics.actions.inc({ action: p.action, tenant: p.tenantId });
    if (p.state === 'quarantined') metrics.deliveries.inc({ outcome: 'quarantined', tenant: p.tenantId }, p.recipients.length);
  }
  // The quarantine records first: a crash before the update below scans again and records the same hold again
  // (idempotent); the other order could leave held bytes that no record knows of.
  for (const p of plans.filter((p) => p.state === 'quarantined')) {
    await deps.quarantine?.keep({ ...msg, verdict: record, raw }, p.tenantId, 'held', p.response ? [p.response] : []);
  }
  await meta.update(mid, { recipients: patches, message: { state: 'delivering', verdict: record, lastError: null } });
  log.info({ symbols: verdict.symbols.map((s) => s.name), actions: Object.fromEntries(plans.map((p) => [p.tenantId, p.action])) }, 'scanned');
  // While an SMTP session waits for this verdict, the job ends here and delivery is a job of its own; otherwise
  // the first attempt is made right here, which spares a job per message.
  const inline = sessionDeadline <= Date.now();
  const delivering = { ...msg, state: 'delivering' as const, verdict: record };
  return accepted(await startDelivery(deps, delivering, [...after.values()], plans, inline, log, raw));
}

export const scanStage: Stage<ScanJobData, ScanResult> = {
  name: 'scan',
  concurrency: (config) => config.queue.scanConcurrency,
  jobId: ({ mid }) => `scan-${mid}`,
  process: processScan,
  async recover(msg, _recipients, deps): Promise<Recovery> {
    if (msg.state === 'received') {
      const data: ScanJobData = { mid: msg.id, sessionDeadline: 0 };
      return { handOffs: [{ stage: 'scan', data, delayMs: 0 }], owned: true };
    }
    // While its scan job lives, that job may be making the first delivery attempt: it hands over itself.
    if (msg.state === 'delivering' && (await deps.pipeline.pending('scan', { mid: msg.id }))) return { handOffs: [], owned: true };
    return { handOffs: [] };
  },
};
