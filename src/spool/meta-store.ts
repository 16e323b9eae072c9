/**
 * MetaStore: message states, per-recipient delivery status and verdicts (DESIGN §5). Drivers:
 * sqlite-meta-store (default, better-sqlite3 major 12). Every driver passes test/unit/spool/meta-store.contract.ts.
 *
 * Message lifecycle (`MessageState`):
 *   received ─scan─▶ delivering ─all recipients final─▶ done
 *       │  └─ scan failed N times ─▶ failed (held for operators)
 *       └─ rejected in-session ─▶ rejected
 * Recipient lifecycle (`RecipientState`):
 *   pending ─▶ delivered | bounced | quarantined | rejected   (final)
 *      └──▶ deferred ─▶ … (retried until delivery.giveUpAfterMs)
 */
import type { Action } from '../config/schema.ts';
import { SekishoError } from '../errors.ts';
import type { StoredVerdict } from './stored-verdict.ts';

export const messageStates = ['received', 'delivering', 'done', 'failed', 'rejected'] as const;
export type MessageState = (typeof messageStates)[number];
export const finalMessageStates: readonly MessageState[] = ['done', 'failed', 'rejected'];

export const recipientStates = ['pending', 'deferred', 'delivered', 'bounced', 'quarantined', 'rejected'] as const;
export type RecipientState = (typeof recipientStates)[number];
export const finalRecipientStates: readonly RecipientState[] = ['delivered', 'bounced', 'quarantined', 'rejected'];

/** A recipient still waiting for delivery (pending or deferred): not in one of finalRecipientStates. */
export function isOpenRecipient(r: { state: RecipientState }): boolean {
  return !finalRecipientStates.includes(r.state);
}

/** smtp: received from the internet; dsn: a delivery status notification Sekisho generated itself; release: a copy of a
 * quarantined message (or of its sanitized version) that staff released (src/quarantine/release.ts). */
export type MessageOrigin = 'smtp' | 'dsn' | 'release';

export interface NewMessage {
  id: string;
  origin: MessageOrigin;
  receivedAt: number; // epoch ms
  /** Envelope sender; '' for the null sender <>. */
  mailFrom: string;
  clientIp: string;
  helo: string;
  /** TLS cipher name when the session was encrypted, else null. */
  tls: string | null;
  size: number;
  sha256: string;
  /** Header Message-ID (for operators' searches), null when absent. */
  headerMessageId: string | null;
  subject: string | null;
  recipients: { address: string; tenantId: string }[];
}

export interface MessageRecord extends Omit<NewMessage, 'recipients'> {
  state: MessageState;
  /** The last verdict (symbols, failed checks, decision per tenant), null before the scan. */
  verdict: StoredVerdict | null;
  /** Failed processing attempts (crashes, not downstream deferrals). */
  attempts: number;
  lastError: string | null;
  updatedAt: number;
}

export interface RecipientRecord {
  messageId: string;
  address: string;
  tenantId: string;
  state: RecipientState;
  /** What policy chose for this recipient's tenant, null before the scan. */
  action: Action | null;
  attempts: number;
  /** Last downstream reply or reason, e.g. "250 2.0.0 Ok" or "451 4.3.0 try later". */
  response: string | null;
  /** When the next delivery attempt is due (epoch ms), for deferred recipients. */
  nextAttemptAt: number | null;
  /** Set once a delay notice went to the sender, so only one is sent. */
  delayNoticeSent: boolean;
  updatedAt: number;
}

export const attemptOutcomes = ['delivered', 'deferred', 'bounced'] as const;
/** What one delivery attempt did for one recipient. */
export type AttemptOutcome = (typeof attemptOutcomes)[number];

/** One delivery attempt, as the deliver stage reports it (RecipientPatch.attempt). */
export interface NewAttempt {
  at: number; // epoch ms, when the attempt started
  outcome: AttemptOutcome;
  /** The downstream reply or Sekisho's reason, e.g. "250 2.0.0 Ok" or "451 4.4.0 tenant is not configured". */
  response: string;
  /** The downstream host:port, '' when no connection was made. */
  remote: string;
  /** How long the attempt took; stored in whole ms. */
  durationMs?: number;
}

/**
 * Milliseconds on the process-wide monotonic clock (CLOCK_MONOTONIC, the same in every thread, unlike
 * performance.now()): MetaStore.markDelivered's commit time and DeliveryOutcome.repliedAt use it.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** A recorded delivery attempt (MetaStore.getAttempts). */
export interface DeliveryAttempt extends Omit<NewAttempt, 'durationMs'> {
  messageId: string;
  address: string;
  tenantId: string;
  durationMs: number | null;
}

export interface RecipientPatch {
  state?: RecipientState;
  action?: Action | null;
  response?: string | null;
  nextAttemptAt?: number | null;
  delayNoticeSent?: boolean;
  /** Adds one to attempts. */
  countAttempt?: boolean;
  /** Records this attempt for every recipient the patch applies to, in the same transaction as the patch. */
  attempt?: NewAttempt;
}

export interface MessagePatch {
  state?: MessageState;
  verdict?: StoredVerdict | null;
  lastError?: string | null;
  /** Adds one to attempts. */
  countAttempt?: boolean;
}

/** Several patches of one message, applied together (MetaStore.update). */
export interface MessageChange {
  message?: MessagePatch;
  /** Applied in order; `addresses` undefined means every recipient of the message. */
  recipients?: readonly { addresses?: readonly string[]; patch: RecipientPatch }[];
  /**
   * Resolve only once this change (and every write before it) would survive a power cut, even in a store whose
   * commits are not each made durable (SqliteMetaStoreOptions.synchronous 'normal'). For a change after which the
   * caller removes the message's bytes from the spool: the record must not come back from a power cut older than
   * the spool (a `delivering` message whose file is gone).
   */
  durable?: boolean;
}

export interface ListOptions {
  limit?: number;
  offset?: number;
}

/** The page size of findMessages when the query gives none. */
export const DEFAULT_FIND_LIMIT = 50;
/** The largest page findMessages returns (a larger `limit` is taken as this): one console page, not an export. */
export const MAX_FIND_LIMIT = 200;
/**
 * The most buckets countActions accepts ((to - from) / bucketMs): a year of days or a week of 5-minute buckets
 * fits; it bounds the rows of one answer (buckets × tenants × actions), not the rows scanned.
 */
export const MAX_ACTION_BUCKETS = 5_000;

/**
 * A message search of the console's tracking page. Every filter given must hold. Times are receivedAt, `from`
 * inclusive, `to` exclusive. id, headerMessageId and recipient are index lookups; otherwise the cost grows with the
 * messages of the time range (the total counts them all), so the console should always give one.
 */
export interface MessageQuery {
  /** The Sekisho message id. */
  id?: string;
  /** The header Message-ID, with or without its angle brackets; exact, case-sensitive. */
  headerMessageId?: string;
  /** A case-insensitive substring of the envelope sender (not indexed: give a time range with it). */
  mailFrom?: string;
  /** A recipient address, exact but case-insensitive (ASCII); within `tenantIds` when a scope is given. */
  recipient?: string;
  /** Only messages with at least one recipient of these tenants; [] matches nothing, undefined every tenant. */
  tenantIds?: readonly string[];
  from?: number;
  to?: number;
  /** At most MAX_FIND_LIMIT; DEFAULT_FIND_LIMIT when absent. */
  limit?: number;
  offset?: number;
}

export interface MessagePage {
  /** Newest first (receivedAt, then id, descending). */
  messages: MessageRecord[];
  /** How many messages match the query, on every page. */
  total: number;
}

/** Recipients counted by tenant, action and time bucket of their message's receivedAt, in [from, to). */
export interface ActionCountQuery {
  /** As MessageQuery.tenantIds, but only these tenants' recipients are counted. */
  tenantIds?: readonly string[];
  from: number;
  to: number;
  /** Bucket width; buckets start at from, from + bucketMs, …. */
  bucketMs: number;
}

export interface ActionCount {
  /** The start of the bucket (epoch ms). */
  bucket: number;
  tenantId: string;
  /** null: not scanned yet. */
  action: Action | null;
  /** Recipients. */
  n: number;
}

/** The page a MessageQuery asks for; rejects with SEKISHO_ERR_META_QUERY a limit or offset that is no count. */
export function findPage(q: Pick<MessageQuery, 'limit' | 'offset'>): { limit: number; offset: number } {
  const limit = Math.min(q.limit ?? DEFAULT_FIND_LIMIT, MAX_FIND_LIMIT);
  const offset = q.offset ?? 0;
  if (!isCount(limit) || !isCount(offset)) {
    throw new SekishoError('SEKISHO_ERR_META_QUERY', `limit ${q.limit} and offset ${q.offset} must be integers >= 0`);
  }
  return { limit, offset };
}

/** Rejects with SEKISHO_ERR_META_QUERY a range that is not whole ms, empty, or of more than MAX_ACTION_BUCKETS. */
export function checkActionCountQuery(q: ActionCountQuery): void {
  const { from, to, bucketMs } = q;
  const whole = Number.isSafeInteger(from) && Number.isSafeInteger(to) && Number.isSafeInteger(bucketMs);
  if (!whole || bucketMs <= 0 || to <= from || Math.ceil((to - from) / bucketMs) > MAX_ACTION_BUCKETS) {
    throw new SekishoError(
      'SEKISHO_ERR_META_QUERY',
      `from ${from}, to ${to}, bucketMs ${bucketMs}: need whole ms, from < to and at most ${MAX_ACTION_BUCKETS} buckets`,
    );
  }
}

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

export interface MetaStore {
  /** Inserts the message and its recipients atomically; rejects if the id exists. */
  insertMessage(msg: NewMessage): Promise<void>;
  getMessage(id: string): Promise<MessageRecord | undefined>;
  getRecipients(id: string): Promise<RecipientRecord[]>;
  updateMessage(id: string, patch: MessagePatch): Promise<void>;
  /** Applies the patch to the named recipients of one message (all of them when `addresses` is undefined). */
  updateRecipients(id: string, addresses: readonly string[] | undefined, patch: RecipientPatch): Promise<void>;
  /**
   * Records that a downstream server accepted these recipients (state `delivered` plus the rest of `patch`), ahead
   * of every write queued before it: one small transaction of its own, committed at once. The time between the
   * downstream's reply and this commit is the only window in which a process death makes a duplicate delivery.
   * A mark may overtake earlier writes of the caller still in flight: await them first. Resolves with the commit
   * time on the monotonic clock of monotonicMs(); rejects as updateRecipients does.
   */
  markDelivered(id: string, addresses: readonly string[], patch: Omit<RecipientPatch, 'state'>): Promise<number>;
  /**
   * Applies the recipient patches and then the message patch in one transaction: all of them or none (an unknown
   * message or recipient rejects with SEKISHO_ERR_META_NOT_FOUND and changes nothing). One commit instead of one
   * per patch: the pipeline records a verdict or a delivery for several recipients and the message at once.
   */
  update(id: string, change: MessageChange): Promise<void>;
  /** Messages not in a final state, oldest first. */
  listUnfinished(opts?: ListOptions): Promise<MessageRecord[]>;
  /** Messages in one state, newest first (operators' views, e.g. the `failed` hold). */
  listByState(state: MessageState, opts?: ListOptions): Promise<MessageRecord[]>;
  countByState(): Promise<Record<MessageState, number>>;
  /** The delivery attempts of a message's recipients, oldest first ([] for an unknown id). */
  getAttempts(messageId: string): Promise<DeliveryAttempt[]>;
  /** The console's message tracking: see MessageQuery. Rejects a bad page with SEKISHO_ERR_META_QUERY. */
  findMessages(q: MessageQuery): Promise<MessagePage>;
  /**
   * The overview chart: recipients by bucket, tenant and action, ordered by bucket, tenant, then action (null
   * first); combinations with no recipient are absent. Rejects a bad range with SEKISHO_ERR_META_QUERY.
   */
  countActions(q: ActionCountQuery): Promise<ActionCount[]>;
  /** Deletes the message with its recipients and their attempts; no error when the id is unknown. */
  deleteMessage(id: string): Promise<void>;
  close(): Promise<void>;
}
