/**
 * QuarantineStore: one record per held message and tenant (DESIGN §7) — the original of a sanitized message, or a
 * message policy held (virus, spam, unscannable content, a check failing past its limit). The bytes stay in the
 * MessageStore under the message id; the record says who they belong to, why they are held and until when.
 * Drivers: sqlite-quarantine-store (default). Every driver passes test/unit/quarantine/quarantine-store.contract.ts.
 *
 * Record lifecycle (`QuarantineState`, the console's release workflow adds the middle states):
 *   held ─▶ release-requested ─▶ approved ─▶ released
 *     │            └──────────────▶ rejected
 *     └─ retention deadline passed ─▶ expired (bytes removed, record kept)     · deleted (by staff)
 */
import type { MessagePreview } from './preview.ts';

export const quarantineStates = ['held', 'release-requested', 'approved', 'released', 'rejected', 'expired', 'deleted'] as const;
export type QuarantineState = (typeof quarantineStates)[number];
/** States whose record still needs the original's bytes. */
export const liveQuarantineStates: readonly QuarantineState[] = ['held', 'release-requested', 'approved', 'rejected'];

/** original: the untouched original of a message delivered sanitized; held: a message policy kept from delivery. */
export type QuarantineKind = 'original' | 'held';

export interface NewQuarantineRecord {
  messageId: string;
  tenantId: string;
  kind: QuarantineKind;
  /** The tenant's recipients of the message. */
  recipients: string[];
  mailFrom: string;
  subject: string | null;
  /** Symbol names of the verdict (the console shows their scores and descriptions). */
  symbols: string[];
  /** Why it is held, readable ("tenant city-b sanitizes every message", "CLAMAV_VIRUS(Eicar) forces reject"). */
  reasons: string[];
  createdAt: number;
  /** Retention deadline (epoch ms): past it the bytes are removed and the record becomes `expired`. */
  expiresAt: number;
  /** What the console shows of the message (made in the worker); one per message, kept by the first hold. */
  preview?: MessagePreview | null;
}

export interface QuarantineRecord extends NewQuarantineRecord {
  state: QuarantineState;
  updatedAt: number;
  /** Who asked for the release (to `release-requested`), and why; null before. */
  requestedBy: string | null;
  requestReason: string | null;
  /** Who took the last decision (approved, rejected, released, deleted), and why; null before. */
  decidedBy: string | null;
  decisionReason: string | null;
  /** When the original was sent to the release target, and the message id of that copy; null until released. */
  releasedAt: number | null;
  releaseMessageId: string | null;
  /** A prefecture admin's reason for releasing what the rescan still detects; null without an override. */
  overrideReason: string | null;
}

/** Who may see what: undefined = every tenant (prefecture roles); [] = nothing; otherwise these tenants only. */
export type TenantScope = readonly string[] | undefined;

/**
 * The console's search. Every filter narrows (AND); string filters are case-insensitive and compared after
 * Unicode NFKC (全角 ＡＢＣ finds abc, ｾｷｼｮ finds セキショ); subjects are compared decoded (RFC 2047).
 */
export interface QuarantineSearch {
  tenantIds?: TenantScope;
  /**
   * A whole address (`local@domain`) matches that recipient exactly — an address scope never reaches another
   * mailbox; anything else ("city-a.example", "taro@") is a substring of any recipient address.
   */
  recipient?: string;
  /** Substring of the envelope sender. */
  sender?: string;
  /** Substring of the decoded subject. */
  subject?: string;
  /** One symbol name, exactly (CLAMAV_VIRUS). */
  symbol?: string;
  /** Substring of any of the reasons. */
  reason?: string;
  state?: QuarantineState | readonly QuarantineState[];
  kind?: QuarantineKind;
  /** createdAt range, epoch ms: from inclusive, to exclusive. */
  from?: number;
  to?: number;
  /** Page size, at most MAX_SEARCH_PAGE (default 50). */
  limit?: number;
  /** Rows skipped (offset paging); ignored with a cursor. */
  offset?: number;
  /** The `nextCursor` of the previous page, with the same filters (keyset paging: as fast on page 500 as page 1). */
  cursor?: string;
}

export interface QuarantineSearchResult {
  /** Newest first (createdAt, then messageId and tenantId descending: a total order, so pages never overlap). */
  records: QuarantineRecord[];
  /** Every record matching the filters, not only this page. */
  total: number;
  /** Where the next page starts; null on the last page. */
  nextCursor: string | null;
}

/** A search page never holds more than this many records: bounds the memory and the JSON of one API answer. */
export const MAX_SEARCH_PAGE = 500;

/** One compare-and-set step of the release workflow. */
export interface QuarantineTransition {
  /** The states the record must be in; otherwise nothing changes and transition() returns null. */
  from: readonly QuarantineState[];
  to: QuarantineState;
  /** The acting user (account name or id), written to requestedBy or decidedBy. */
  by: string;
  reason: string | null;
  at: number;
  /** For to = released: the message id of the copy sent to the release target. */
  releaseMessageId?: string;
  overrideReason?: string;
}

export interface QuarantineCountsQuery {
  tenantIds?: TenantScope;
  /** createdAt range, epoch ms: from inclusive, to exclusive. */
  from: number;
  to: number;
  /** Bucket width (an hour, a day); buckets start at multiples of it since the epoch (UTC). */
  bucketMs: number;
}

export interface QuarantineCount {
  /** Start of the bucket, epoch ms. */
  bucket: number;
  tenantId: string;
  kind: QuarantineKind;
  n: number;
}

export interface QuarantineQuery {
  tenantId?: string;
  state?: QuarantineState;
  limit?: number;
  offset?: number;
}

export interface QuarantineStore {
  /**
   * Records a hold; idempotent per (messageId, tenantId): a retried job that holds again keeps the first record
   * (and its deadline). Durable when it resolves.
   */
  hold(rec: NewQuarantineRecord): Promise<void>;
  get(messageId: string, tenantId: string): Promise<QuarantineRecord | undefined>;
  /** The message's preview (headers, parts, text), null when none was kept (records older than previews). */
  preview(messageId: string): Promise<MessagePreview | null>;
  /** Every record of one message (one per tenant). */
  ofMessage(messageId: string): Promise<QuarantineRecord[]>;
  /** Newest first. */
  list(q?: QuarantineQuery): Promise<QuarantineRecord[]>;
  /**
   * Moves up to `limit` live records whose deadline is at or before `now` to `expired`, and returns them: the
   * caller removes the bytes of each message that no live record holds any longer.
   */
  expireDue(now: number, limit: number): Promise<QuarantineRecord[]>;
  /** With a string: that tenant only; with an array: a TenantScope. */
  countByState(tenantId?: string | readonly string[]): Promise<Record<QuarantineState, number>>;
  /** One page of the console's search, with the exact number of matches. Throws SEKISHO_ERR_QUARANTINE_QUERY. */
  search(q: QuarantineSearch): Promise<QuarantineSearchResult>;
  /**
   * Moves one record along the release workflow if, and only if, it is in one of `step.from` — atomically, also
   * against other processes: of two approvers racing, exactly one gets the record back, the other null (also
   * null when no such record exists). Sets requestedBy/requestReason on to = release-requested, decidedBy and
   * decisionReason on approved/rejected/released/deleted, releasedAt and releaseMessageId on released, and
   * overrideReason when given.
   */
  transition(messageId: string, tenantId: string, step: QuarantineTransition): Promise<QuarantineRecord | null>;
  /** Records held per time bucket, tenant and kind (the console's overview chart); empty buckets are left out. */
  countsOverTime(q: QuarantineCountsQuery): Promise<QuarantineCount[]>;
  close(): Promise<void>;
}
