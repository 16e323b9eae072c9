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

/** smtp: received from the internet; dsn: a delivery status notification Sekisho generated itself. */
export type MessageOrigin = 'smtp' | 'dsn';

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

export interface RecipientPatch {
  state?: RecipientState;
  action?: Action | null;
  response?: string | null;
  nextAttemptAt?: number | null;
  delayNoticeSent?: boolean;
  /** Adds one to attempts. */
  countAttempt?: boolean;
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

export interface MetaStore {
  /** Inserts the message and its recipients atomically; rejects if the id exists. */
  insertMessage(msg: NewMessage): Promise<void>;
  getMessage(id: string): Promise<MessageRecord | undefined>;
  getRecipients(id: string): Promise<RecipientRecord[]>;
  updateMessage(id: string, patch: MessagePatch): Promise<void>;
  /** Applies the patch to the named recipients of one message (all of them when `addresses` is undefined). */
  updateRecipients(id: string, addresses: readonly string[] | undefined, patch: RecipientPatch): Promise<void>;
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
  deleteMessage(id: string): Promise<void>;
  close(): Promise<void>;
}
