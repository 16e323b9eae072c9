/**
 * The delivery plan: what each tenant's action means for its recipients once the scan is over — their state,
 * the stage that takes them next, the reason recorded, the headers added on delivery, which bytes are sent and
 * whether the original must stay in the spool. decide.ts chooses the action; this file is the only place that
 * says what an action does. The stages apply the plan and never test an action themselves.
 */
import type { Action, PolicyConfig } from '../config/schema.ts';
import type { RecipientState } from '../spool/meta-store.ts';
import { symbolNames, type StoredDecision, type StoredVerdict } from '../spool/stored-verdict.ts';

/** The stage that takes a tenant's recipients after the scan; null: none (held, rejected, or waiting for a rescan). */
export type NextStage = 'sanitize' | 'deliver' | null;

/** A header field added in front of the message when it is delivered (encoded by src/mime/compose.ts). */
export interface HeaderField {
  name: string;
  value: string;
}

/** Which bytes delivery sends: the message as received, or the tenant's sanitized copy. */
export type DeliveryBody = 'raw' | 'sanitized';

/** SMTP reply lines stay far below RFC 5321's 512 octets. */
const MAX_REPLY_REASON_CHARS = 300;

interface Meaning {
  state: RecipientState;
  next: NextStage;
  /** Leads the reason recorded for held recipients. */
  why?: string;
}

/** What an action means for a recipient once the SMTP session is over (the 250 was given). */
function meaningOf(action: Action, sanitizer: boolean): Meaning {
  switch (action) {
    case 'deliver':
    case 'deliver-tagged':
      return { state: 'pending', next: 'deliver' };
    case 'quarantine':
      return { state: 'quarantined', next: null };
    case 'reject':
      // After the 250 a reject cannot reach the sender without backscatter: hold the message instead.
      return { state: 'quarantined', next: null, why: 'rejected by policy after acceptance' };
    case 'sanitize':
      // Without a sanitizer (メール無害化) mail for a sanitizing tenant is held, never delivered unsanitized.
      return sanitizer ? { state: 'pending', next: 'sanitize' } : { state: 'quarantined', next: null, why: 'sanitizer not available' };
    case 'tempfail':
      // The scan stage scans the whole message again later; nothing moves meanwhile.
      return { state: 'pending', next: null };
  }
}

/** The plan for one tenant's recipients of one message. */
export interface TenantPlan {
  tenantId: string;
  recipients: string[];
  action: Action;
  next: NextStage;
  state: RecipientState;
  /** Recorded as the recipients' response: why they are held; null when they go on. */
  response: string | null;
}

export interface PlanOptions {
  /** Whether a sanitizer is configured in this worker; without one `sanitize` holds the message. */
  sanitizer: boolean;
}

/** One TenantPlan per tenant that has recipients, in the order of `decisions`. */
export function planDelivery(
  decisions: ReadonlyMap<string, StoredDecision>,
  recipients: readonly { address: string; tenantId: string }[],
  opts: PlanOptions,
): TenantPlan[] {
  const plans: TenantPlan[] = [];
  for (const [tenantId, d] of decisions) {
    const mine = recipients.filter((r) => r.tenantId === tenantId).map((r) => r.address);
    if (!mine.length) continue;
    const m = meaningOf(d.action, opts.sanitizer);
    const response = m.state === 'quarantined' ? `quarantined: ${[m.why, ...d.reasons].filter(Boolean).join('; ')}` : null;
    plans.push({ tenantId, recipients: mine, action: d.action, next: m.next, state: m.state, response });
  }
  return plans;
}

/**
 * The reason text of a 550 when every tenant rejects the message, so it can still be refused in the SMTP
 * session; null otherwise. The finding that forced the reject (e.g. the virus name) leads; score lines follow.
 */
export function sessionRejectReply(decisions: ReadonlyMap<string, StoredDecision>): string | null {
  const all = [...decisions.values()];
  if (!all.length || !all.every((d) => d.action === 'reject')) return null;
  const reasons = [...new Set(all.flatMap((d) => d.reasons))];
  const forced = reasons.filter((r) => r.endsWith('forces reject'));
  return [...forced, ...reasons.filter((r) => !r.endsWith('forces reject'))].join('; ').slice(0, MAX_REPLY_REASON_CHARS);
}

/** Whether the scan must run again later before anything moves (a check failed and the message is still young). */
export function mustRescan(decisions: ReadonlyMap<string, StoredDecision>): boolean {
  return [...decisions.values()].some((d) => d.action === 'tempfail');
}

/** How the tenant's policy marks delivered mail: where the spam headers start, what the tag threshold is, the subject tag. */
export type MarkPolicy = Pick<PolicyConfig, 'thresholds' | 'subjectTag'>;

/**
 * The header fields delivery adds in front of the message for a recipient with this action: X-Spam-Score and
 * X-Spam-Status (SpamAssassin's form, which mail clients and downstream filters already read) from
 * policy.thresholds.headers on, and Sekisho's own verdict fields on tagged mail.
 */
export function headerChanges(action: Action | null, tenantId: string, verdict: StoredVerdict | null, policy: MarkPolicy): HeaderField[] {
  if (action !== 'deliver' && action !== 'deliver-tagged') return [];
  const score = verdict?.decisions[tenantId]?.score ?? 0;
  const names = verdict ? symbolNames(verdict).join(', ') : '';
  const tagged = action === 'deliver-tagged';
  const fields: HeaderField[] = [];
  if (score >= policy.thresholds.headers) {
    fields.push(
      { name: 'X-Spam-Score', value: String(score) },
      { name: 'X-Spam-Status', value: `${tagged ? 'Yes' : 'No'}, score=${score} required=${policy.thresholds.tag} tests=${names || 'none'}` },
    );
  }
  if (tagged) fields.push({ name: 'X-Sekisho-Verdict', value: `tagged; score=${score}` }, { name: 'X-Sekisho-Symbols', value: names || 'none' });
  return fields;
}

/** The text put in front of the Subject of mail delivered with this action; null: the subject stays as it is. */
export function subjectTagFor(action: Action | null, policy: MarkPolicy): string | null {
  return action === 'deliver-tagged' && policy.subjectTag ? policy.subjectTag : null;
}

/**
 * Which bytes delivery may send to a recipient with this action; null: none — delivery refuses (a held or
 * unscanned recipient never reaches a server). Sekisho's own DSNs are recorded with action `deliver`.
 */
export function deliveryBody(action: Action | null): DeliveryBody | null {
  switch (action) {
    case 'deliver':
    case 'deliver-tagged':
      return 'raw';
    case 'sanitize':
      return 'sanitized';
    default:
      return null;
  }
}

/**
 * Whether the message's original must stay in the spool when it is done: a recipient's copy is held in
 * quarantine, or a sanitized copy was delivered in its place (the original is what the quarantine keeps).
 */
export function keepsOriginal(recipients: readonly { action: Action | null; state: RecipientState }[]): boolean {
  return recipients.some((r) => r.state === 'quarantined' || (r.action === 'sanitize' && r.state !== 'rejected'));
}
