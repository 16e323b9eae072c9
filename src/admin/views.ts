/**
 * The data behind the console's pages and the JSON API, shaped once for both: a quarantine search from query
 * parameters (scoped to the caller's tenants, whatever the parameters say), a record's detail with its verdict
 * scored by the tenant's policy, and a message's tracking path. Pages render these; API routes return them.
 */
import type { Config } from '../config/schema.ts';
import type { TenantIndex } from '../config/tenants.ts';
import { parseJapanDate } from '../japan-time.ts';
import { effectivePolicy } from '../policy/decide.ts';
import { mayApprove, mayTake, stepFrom, visibleTenants, type Actor, type Step } from '../quarantine/release.ts';
import { MAX_SEARCH_PAGE, quarantineStates, type QuarantineRecord, type QuarantineSearch, type QuarantineState, type QuarantineStore } from '../quarantine/quarantine-store.ts';
import { decodeHeaderWords } from '../scan/checks/spoofing/mail-address.ts';
import { symbolInfo } from '../scan/symbols.ts';
import type { MessageRecord, MetaStore } from '../spool/meta-store.ts';
import type { StoredVerdict } from '../spool/stored-verdict.ts';
import type { MessagePreview } from '../quarantine/preview.ts';

/** Query parameters of the quarantine list (page and API alike); all optional strings. */
export interface QuarantineParams {
  recipient?: string;
  sender?: string;
  subject?: string;
  symbol?: string;
  reason?: string;
  state?: string;
  kind?: string;
  tenant?: string;
  from?: string;
  to?: string;
  limit?: string;
  offset?: string;
  cursor?: string;
}

/** A text parameter trimmed and cut to `maxChars`; undefined when empty. */
export function textParam(s: string | undefined, maxChars = 200): string | undefined {
  const v = s?.trim();
  return v ? v.slice(0, maxChars) : undefined;
}

/**
 * The store search for these parameters, as `actor` may run it: a tenant user's scope is their tenant whatever
 * `tenant` says (another tenant's id yields nothing, not an error that tells it exists).
 */
export function quarantineSearch(params: QuarantineParams, actor: Actor): QuarantineSearch {
  const scope = visibleTenants(actor);
  const wanted = textParam(params.tenant);
  const tenantIds = wanted ? (scope === undefined || scope.includes(wanted) ? [wanted] : []) : scope;
  const state = params.state && (quarantineStates as readonly string[]).includes(params.state) ? (params.state as QuarantineState) : undefined;
  const kind = params.kind === 'original' || params.kind === 'held' ? params.kind : undefined;
  const limit = Math.min(MAX_SEARCH_PAGE, Math.max(1, Number(params.limit ?? 50) || 50));
  return {
    tenantIds,
    recipient: textParam(params.recipient),
    sender: textParam(params.sender),
    subject: textParam(params.subject),
    symbol: textParam(params.symbol)?.toUpperCase(),
    reason: textParam(params.reason),
    state,
    kind,
    from: parseJapanDate(params.from, false),
    to: parseJapanDate(params.to, true),
    limit,
    offset: params.cursor ? undefined : Math.max(0, Number(params.offset ?? 0) || 0),
    cursor: textParam(params.cursor),
  };
}

export interface VerdictRow {
  name: string;
  score: number;
  group: string;
  description: string;
  details: string[];
}

/** The verdict's symbols with the scores the tenant's policy gives them, highest first. */
export function verdictRows(verdict: StoredVerdict | null, config: Config, tenants: TenantIndex, tenantId: string): VerdictRow[] {
  if (!verdict) return [];
  const tenant = tenants.byId(tenantId);
  const scores = tenant ? effectivePolicy(config.policy, tenant).scores : config.policy.scores;
  return [...verdict.symbols, ...verdict.unlistedSymbols]
    .map((s) => {
      const info = symbolInfo(s.name);
      return { name: s.name, score: scores[s.name] ?? info?.score ?? 0, group: info?.group ?? 'rules', description: info?.description ?? '', details: s.details ?? [] };
    })
    .sort((a, b) => b.score - a.score || a.name.localeCompare(b.name));
}

/** A stored subject (the raw header value) as people read it: RFC 2047 words decoded, whitespace folded. */
export function displaySubject(raw: string | null | undefined): string {
  return raw ? decodeHeaderWords(raw).replace(/\s+/g, ' ').trim() : '';
}

/** Whether the verdict holds malware, a symbol of the antivirus group (the console warns that only a prefecture admin can release it). */
export function hasMalware(rec: Pick<QuarantineRecord, 'symbols'>): boolean {
  return rec.symbols.some((s) => symbolInfo(s)?.group === 'antivirus');
}

export interface QuarantineDetail {
  record: QuarantineRecord;
  message: Pick<MessageRecord, 'id' | 'receivedAt' | 'clientIp' | 'helo' | 'tls' | 'size' | 'headerMessageId'> | null;
  verdict: VerdictRow[];
  decision: { action: string; score: number; reasons: string[] } | null;
  /** The workflow steps this caller may take on this record now. */
  steps: Step[];
  /** Whether the original's bytes are still kept (download, release). */
  originalKept: boolean;
  /** Headers, parts and a text preview made in the worker when the message was held; null for older records. */
  preview: MessagePreview | null;
}

export function stepsFor(actor: Actor, rec: QuarantineRecord): Step[] {
  return (Object.keys(stepFrom) as Exclude<Step, 'view'>[]).filter((s) => {
    if (!mayTake(actor, s, rec.tenantId) || !stepFrom[s].includes(rec.state)) return false;
    if (s === 'redeliver') return rec.kind === 'original';
    if (s === 'approve') return mayApprove(actor, rec);
    return true;
  });
}

export async function quarantineDetail(
  d: { meta: MetaStore; config: Config; tenants: TenantIndex; store: { exists(id: string): Promise<boolean> }; quarantine: Pick<QuarantineStore, 'preview'> },
  actor: Actor,
  record: QuarantineRecord,
): Promise<QuarantineDetail> {
  const msg = await d.meta.getMessage(record.messageId);
  const decision = msg?.verdict?.decisions[record.tenantId];
  return {
    record,
    message: msg
      ? { id: msg.id, receivedAt: msg.receivedAt, clientIp: msg.clientIp, helo: msg.helo, tls: msg.tls, size: msg.size, headerMessageId: msg.headerMessageId }
      : null,
    verdict: verdictRows(msg?.verdict ?? null, d.config, d.tenants, record.tenantId),
    decision: decision ? { action: decision.action, score: decision.score, reasons: decision.reasons } : null,
    steps: stepsFor(actor, record),
    originalKept: await d.store.exists(record.messageId),
    preview: await d.quarantine.preview(record.messageId),
  };
}

/** The release requests `actor` may approve: in their scope, and (but for a prefecture admin) not their own. */
export async function approvalsFor(quarantine: Pick<QuarantineStore, 'search'>, actor: Actor): Promise<QuarantineRecord[]> {
  const { records } = await quarantine.search({ tenantIds: visibleTenants(actor), state: 'release-requested', limit: MAX_SEARCH_PAGE });
  return records.filter((r) => mayApprove(actor, r));
}
