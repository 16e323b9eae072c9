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
}

export interface QuarantineRecord extends NewQuarantineRecord {
  state: QuarantineState;
  updatedAt: number;
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
  /** Every record of one message (one per tenant). */
  ofMessage(messageId: string): Promise<QuarantineRecord[]>;
  /** Newest first. */
  list(q?: QuarantineQuery): Promise<QuarantineRecord[]>;
  /**
   * Moves up to `limit` live records whose deadline is at or before `now` to `expired`, and returns them: the
   * caller removes the bytes of each message that no live record holds any longer.
   */
  expireDue(now: number, limit: number): Promise<QuarantineRecord[]>;
  countByState(tenantId?: string): Promise<Record<QuarantineState, number>>;
  close(): Promise<void>;
}
