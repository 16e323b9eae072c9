/**
 * The `deliver` stage: one job per (message, route). Sends the spooled bytes — the message as received, or the
 * tenant's sanitized copy when the plan says so (deliveryBody), with the plan's header fields in front — to the
 * tenant's server for every recipient of that tenant not yet in a final state, records each recipient's
 * outcome, and reschedules itself for the deferred ones with exponential backoff (delivery.retryInitialDelayMs doubling to retryMaxDelayMs)
 * until delivery.giveUpAfterMs, when they bounce. Recipients already `delivered` are never sent again, so a
 * retried, duplicated or recovered job cannot deliver twice.
 */
import { DelayedError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import type { DeliveryOutcome, RecipientOutcome } from '../../delivery/delivery.ts';
import { statusFromReply, type DsnRecipient } from '../../delivery/dsn.ts';
import { effectiveDueAt, retryDelayMs } from '../../delivery/retry-delay.ts';
import { encodeHeader } from '../../mime/compose.ts';
import { tagSubject } from '../../delivery/subject-tag.ts';
import { authenticationResultsHeader, stripForgedAuthResults } from '../../scan/checks/auth/authentication-results.ts';
import { effectivePolicy } from '../../policy/decide.ts';
import { deliveryBody, headerChanges, subjectTagFor } from '../../policy/plan.ts';
import type { MessageKind } from '../../spool/message-store.ts';
import { prefixedStream } from '../../spool/prefixed-stream.ts';
import { isOpenRecipient, type MessageRecord, type NewAttempt, type RecipientPatch, type RecipientRecord } from '../../spool/meta-store.ts';
import { finalizeIfDone } from '../finalize.ts';
import { notifySender } from '../notify-sender.ts';
import { OUTBOUND_ROUTE, routeHandOff, type RouteJobData } from '../pipeline.ts';
import type { HandOff, Stage } from '../stage.ts';
import type { WorkerDeps } from '../worker-deps.ts';

/** A recovered job that runs this much before a recipient's next attempt is due goes back to sleep. */
const EARLY_TOLERANCE_MS = 1_000;

function enhancedOf(response: string): string | null {
  return /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})\b/.exec(response)?.[1] ?? null;
}

function dsnRecipient(o: RecipientOutcome, action: 'failed' | 'delayed', remote: string | null, permanent: boolean): DsnRecipient {
  return {
    address: o.address,
    action,
    status: statusFromReply(o.code, enhancedOf(o.response), permanent),
    diagnostic: o.response,
    remoteMta: remote,
    lastAttemptAt: Date.now(),
  };
}

/**
 * What delivery sends to a route: which stored bytes, the header fields the plan adds in front of them, and the
 * subject tag (which needs the bytes in memory). Sekisho's own DSNs (the outbound route) get none of the marks.
 */
function bodyOf(
  deps: WorkerDeps,
  msg: MessageRecord,
  route: string,
  mine: readonly RecipientRecord[],
): { kind: MessageKind; prefix: Buffer; subjectTag: string | null } {
  // One decision per tenant: every open recipient of a route has the same action.
  const action = mine[0]?.action ?? null;
  const body = deliveryBody(action);
  if (body === null) throw new Error(`recipients of route ${route} have action ${String(action)}: nothing may be delivered to them`);
  const tenant = deps.tenants.byId(route);
  const policy = tenant ? effectivePolicy(deps.config.policy, tenant) : null;
  const fields = policy ? headerChanges(action, route, msg.verdict, policy) : [];
  const prefix = Buffer.from(authResultsLine(deps.config.hostname, msg) + fields.map(encodeHeader).join(''), 'utf8');
  return { kind: body === 'raw' ? 'raw' : { sanitized: route }, prefix, subjectTag: policy ? subjectTagFor(action, policy) : null };
}

/** Our Authentication-Results header (RFC 8601), when the auth check ran: rebuilt from the stored verdict. */
function authResultsLine(hostname: string, msg: MessageRecord): string {
  const symbols = msg.verdict ? [...msg.verdict.symbols, ...msg.verdict.unlistedSymbols] : [];
  if (!symbols.some((s) => /^(SPF|DKIM|DMARC|ARC|AUTH)_/.test(s.name))) return '';
  return `Authentication-Results: ${authenticationResultsHeader(hostname, symbols)}\r\n`;
}

/** Whether the original carries Authentication-Results claiming to be ours (RFC 8601 §5): they must go. */
function hasForgedAuthResults(msg: MessageRecord): boolean {
  return msg.verdict?.symbols.some((s) => s.name === 'AUTH_RESULTS_FORGED') ?? false;
}

/** What every recipient's attempt record of one delivery attempt shares. */
type AttemptBase = Omit<NewAttempt, 'outcome' | 'response'>;

/**
 * Records the recipients the server accepted, through the store's immediate path (MetaStore.markDelivered), and
 * observes the window from the server's reply to the commit. One reply covers every recipient of the transaction.
 */
async function markDelivered(deps: WorkerDeps, mid: string, outcome: DeliveryOutcome, tried: AttemptBase): Promise<number | undefined> {
  const response = outcome.delivered[0]?.response ?? null;
  const attempt = { ...tried, outcome: 'delivered' as const, response: response ?? '' };
  const addresses = outcome.delivered.map((o) => o.address);
  const committedAt = await deps.meta.markDelivered(mid, addresses, { response, nextAttemptAt: null, countAttempt: true, attempt });
  if (outcome.repliedAt === undefined) return undefined;
  const windowMs = Math.max(0, committedAt - outcome.repliedAt);
  deps.metrics.deliveredMarkSeconds.observe(windowMs / 1000);
  return windowMs;
}

/** What one delivery attempt to one route left to do: when to try the deferred recipients again (Infinity: none). */
export interface RouteAttempt {
  nextAt: number;
}

/**
 * One delivery attempt of one message to one route, for the recipients given (not yet final): sends the spooled
 * bytes, records each recipient's outcome, bounces what failed for good (or too long), schedules the rest with
 * exponential backoff and sends a delay notice when due. Used by the `deliver` stage and, for the first attempt,
 * by the scan stage itself (scan-stage.ts). The caller finalizes the message and schedules the retry.
 */
export async function attemptRoute(
  deps: WorkerDeps,
  msg: MessageRecord,
  route: string,
  mine: readonly RecipientRecord[],
  log: Logger,
  /** The spooled bytes when the caller has them in memory already (the scan stage); else they are streamed. */
  raw?: Buffer,
): Promise<RouteAttempt> {
  const { config, meta, store, tenants, deliverer, metrics } = deps;
  const mid = msg.id;

  const bounce = async (outcomes: RecipientOutcome[], tried: AttemptBase) => {
    if (!outcomes.length) return;
    // DSN first, then the state: a crash in between repeats the DSN rather than losing it.
    await notifySender(deps, msg, outcomes.map((o) => dsnRecipient(o, 'failed', tried.remote || null, true)), log);
    await meta.update(mid, {
      recipients: outcomes.map((o) => ({
        addresses: [o.address],
        patch: {
          state: 'bounced' as const,
          response: o.response,
          nextAttemptAt: null,
          countAttempt: true,
          attempt: { ...tried, outcome: 'bounced' as const, response: o.response },
        },
      })),
    });
    metrics.deliveries.inc({ outcome: 'bounced', tenant: route }, outcomes.length);
    log.warn({ recipients: outcomes.map((o) => `${o.address}: ${o.response}`) }, 'bounced');
  };

  const url = route === OUTBOUND_ROUTE ? config.delivery.outboundRelay : tenants.byId(route)?.deliverTo;
  const addresses = mine.map((r) => r.address);
  const startedAt = Date.now();
  const started = performance.now();
  let outcome: DeliveryOutcome;
  if (!url) {
    const response =
      route === OUTBOUND_ROUTE ? '451 4.4.0 no outbound route: set delivery.outboundRelay' : `451 4.4.0 tenant "${route}" is not configured`;
    outcome = { delivered: [], bounced: [], remote: '', deferred: addresses.map((address) => ({ address, response, code: 451 })) };
  } else {
    const { kind, prefix, subjectTag } = bodyOf(deps, msg, route, mine);
    if (kind !== 'raw' && !(await store.exists(mid, kind))) {
      // Never the raw bytes instead: the job fails and, after queue.maxAttempts, the message is held as failed.
      throw new Error(`no sanitized copy of ${mid} for ${route} in the spool`);
    }
    const forged = kind === 'raw' && hasForgedAuthResults(msg);
    if (subjectTag || forged) {
      // Rare: the bytes are read whole so that header lines can be changed (the subject tag, forged results removed).
      let bytes = raw && kind === 'raw' ? raw : await store.read(mid, kind);
      if (forged) bytes = stripForgedAuthResults(bytes, config.hostname);
      if (subjectTag) bytes = tagSubject(bytes, subjectTag);
      outcome = await deliverer.send({ route: url, from: msg.mailFrom, to: addresses, body: Buffer.concat([prefix, bytes]) });
    } else if (raw && kind === 'raw') {
      const body = prefix.length ? Buffer.concat([prefix, raw]) : raw;
      outcome = await deliverer.send({ route: url, from: msg.mailFrom, to: addresses, body });
    } else {
      const file = store.createReadStream(mid, kind);
      const body = prefix.length ? prefixedStream(prefix, file) : file;
      try {
        outcome = await deliverer.send({ route: url, from: msg.mailFrom, to: addresses, body });
      } finally {
        body.destroy();
        file.destroy();
      }
    }
  }
  const durationMs = performance.now() - started;
  const tried: AttemptBase = { at: startedAt, remote: outcome.remote, durationMs };
  // The delivered mark before anything else: until it commits, a process death means delivering again.
  const markMs = outcome.delivered.length ? await markDelivered(deps, mid, outcome, tried) : undefined;
  metrics.stageSeconds.observe({ stage: 'deliver' }, durationMs / 1000);
  deps.routeHealth.record(route, outcome.deferred.length === 0);

  if (outcome.delivered.length) {
    for (let i = 0; i < outcome.delivered.length; i++) metrics.endToEndSeconds.observe((Date.now() - msg.receivedAt) / 1000);
    metrics.deliveries.inc({ outcome: 'delivered', tenant: route }, outcome.delivered.length);
    const recipients = outcome.delivered.map((o) => o.address);
    log.info({ recipients, remote: outcome.remote, response: outcome.delivered[0]?.response, markMs }, 'delivered');
  }
  await bounce(outcome.bounced, tried);

  let nextAt = Infinity;
  if (outcome.deferred.length) {
    const now = Date.now();
    const age = now - msg.receivedAt;
    if (age >= config.delivery.giveUpAfterMs) {
      const expired = outcome.deferred.map((o) => ({ ...o, response: `${o.response} (gave up after ${Math.round(age / 3_600_000)} h)` }));
      await bounce(expired, tried);
    } else {
      const byAddress = new Map(mine.map((r) => [r.address, r]));
      const notice: DsnRecipient[] = [];
      const patches: { addresses: string[]; patch: RecipientPatch }[] = [];
      for (const o of outcome.deferred) {
        const r = byAddress.get(o.address);
        const attempt = (r?.attempts ?? 0) + 1;
        const at = now + retryDelayMs(attempt, config.delivery);
        nextAt = Math.min(nextAt, at);
        const noticeDue = config.delivery.delayNoticeAfterMs > 0 && age >= config.delivery.delayNoticeAfterMs && !r?.delayNoticeSent;
        if (noticeDue) notice.push(dsnRecipient(o, 'delayed', outcome.remote || null, false));
        patches.push({
          addresses: [o.address],
          patch: {
            state: 'deferred',
            response: o.response,
            nextAttemptAt: at,
            countAttempt: true,
            attempt: { ...tried, outcome: 'deferred', response: o.response },
            ...(noticeDue ? { delayNoticeSent: true } : {}),
          },
        });
      }
      if (notice.length) await notifySender(deps, msg, notice, log);
      await meta.update(mid, { recipients: patches });
      metrics.deliveries.inc({ outcome: 'deferred', tenant: route }, outcome.deferred.length);
      log.warn(
        { recipients: outcome.deferred.map((o) => `${o.address}: ${o.response}`), retryAt: new Date(nextAt).toISOString() },
        'deferred',
      );
    }
  }
  return { nextAt };
}

/** Recipients of `route` that still wait for delivery. */
export function openRecipients(recipients: readonly RecipientRecord[], route: string): RecipientRecord[] {
  return recipients.filter((r) => r.tenantId === route && isOpenRecipient(r));
}

/** A `deliver` job for each route whose open recipients have their bytes ready, due at the earliest next attempt. */
async function recoverDeliveries(msg: MessageRecord, recipients: readonly RecipientRecord[], { store, config }: Pick<WorkerDeps, 'store' | 'config'>): Promise<HandOff[]> {
  const now = Date.now();
  const due = new Map<string, number>();
  for (const r of recipients.filter(isOpenRecipient)) {
    due.set(r.tenantId, Math.min(due.get(r.tenantId) ?? Infinity, effectiveDueAt(r, now, config.delivery)));
  }
  const handOffs: HandOff[] = [];
  for (const [route, at] of due) {
    // A route still waiting for its sanitized copy is the sanitize stage's to recover.
    if (deliveryBody(openRecipients(recipients, route)[0]?.action ?? null) === 'sanitized' && !(await store.exists(msg.id, { sanitized: route }))) continue;
    handOffs.push(routeHandOff('deliver', msg.id, route, at - now));
  }
  return handOffs;
}

/**
 * What a route job has to do: the message and the route's recipients still open; null when nothing is left (the
 * message is finished, or the route's recipients all are — then the message is finalized if it is done).
 */
export async function openRouteWork(
  deps: WorkerDeps,
  mid: string,
  route: string,
  log: Logger,
): Promise<{ msg: MessageRecord; mine: RecipientRecord[] } | null> {
  const msg = await deps.meta.getMessage(mid);
  if (!msg || msg.state !== 'delivering') return null;
  const mine = openRecipients(await deps.meta.getRecipients(mid), route);
  if (!mine.length) {
    await finalizeIfDone(deps, mid, log);
    return null;
  }
  return { msg, mine };
}

async function processDeliver(job: Job<RouteJobData>, deps: WorkerDeps, token?: string): Promise<{ handOffs: HandOff[] }> {
  const { mid, route } = job.data;
  const log = deps.log.child({ mid, stage: 'deliver', route });
  const work = await openRouteWork(deps, mid, route, log);
  if (!work) return { handOffs: [] };
  const { msg, mine } = work;
  const now = Date.now();
  const due = Math.min(...mine.map((r) => effectiveDueAt(r, now, deps.config.delivery)));
  if (due > now + EARLY_TOLERANCE_MS) {
    await job.moveToDelayed(due, token);
    throw new DelayedError();
  }

  const { nextAt } = await attemptRoute(deps, msg, route, mine, log);
  await finalizeIfDone(deps, mid, log);
  if (nextAt !== Infinity) {
    await job.moveToDelayed(nextAt, token);
    throw new DelayedError();
  }
  return { handOffs: [] };
}

export const deliverStage: Stage<RouteJobData> = {
  name: 'deliver',
  concurrency: (config) => config.queue.deliverConcurrency,
  jobId: ({ mid, route }) => `deliver-${mid}-${route}`,
  process: processDeliver,
  async recover(msg, recipients, deps) {
    if (msg.state !== 'delivering') return { handOffs: [] };
    return { handOffs: await recoverDeliveries(msg, recipients, deps) };
  },
};
