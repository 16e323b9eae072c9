/**
 * SenderListStore: the tenants' allow and block list entries added at run time (from the console), next to the
 * ones in the config (tenants[].allow / tenants[].block). The worker's TenantLists merges both. Drivers:
 * sqlite-sender-list-store (default). Every driver passes test/unit/policy/sender-list-store.contract.ts.
 *
 * Rule: a stored pattern is always one that parseSenderPattern accepts, in its normal form (normalSenderPattern),
 * so that one sender is one entry and the worker never meets an entry it cannot read.
 */
import { SekishoError } from '../errors.ts';
import { parseSenderPattern } from './sender-lists.ts';

export const senderListKinds = ['allow', 'block'] as const;
export type SenderListKind = (typeof senderListKinds)[number];

/**
 * Longest pattern accepted, in characters: an address of RFC 5321's longest local part (64) and domain (255) with
 * its `@`. Bounds what one entry costs to store and to match.
 */
export const MAX_PATTERN_CHARS = 320;
/**
 * Entries a tenant's allow or block list may hold from the console: every message of the tenant is matched
 * against each of them. A municipality blocks senders one by one, a few a week; this is years of that.
 */
export const MAX_LIST_ENTRIES = 2_000;

export interface NewSenderListEntry {
  tenantId: string;
  list: SenderListKind;
  /** user@domain, domain, *.domain, an IP address or a CIDR block (see sender-lists.ts). */
  pattern: string;
  /** Who added it (an account's user name). */
  addedBy: string;
  reason: string | null;
  /** When (epoch ms). */
  at: number;
}

export interface SenderListEntry {
  id: string;
  tenantId: string;
  list: SenderListKind;
  /** In normal form: trimmed, lower case, a domain without a leading `@`. */
  pattern: string;
  addedBy: string;
  reason: string | null;
  createdAt: number;
}

export interface SenderListQuery {
  /** undefined = every tenant; [] = none; otherwise these tenants only (as the quarantine's TenantScope). */
  tenantIds?: readonly string[];
  list?: SenderListKind;
}

export interface SenderListStore {
  /**
   * Adds an entry and returns it; an entry already there for the same tenant, list and (normal) pattern is
   * returned as it is. Throws SEKISHO_ERR_LIST_PATTERN for a pattern parseSenderPattern refuses (or longer than
   * MAX_PATTERN_CHARS), SEKISHO_ERR_LIST_FULL when the tenant's list holds MAX_LIST_ENTRIES already.
   */
  add(e: NewSenderListEntry): Promise<SenderListEntry>;
  /** Removes an entry, recording who did; false when no entry has that id (or it was removed already). */
  remove(id: string, by: string): Promise<boolean>;
  /** The entries in force, by tenant, list, then oldest first. */
  list(q?: SenderListQuery): Promise<SenderListEntry[]>;
  /** A number that changes whenever an entry is added or removed, in any process: cheap, for polling. */
  version(): Promise<number>;
  close(): Promise<void>;
}

/** The pattern in normal form, or SEKISHO_ERR_LIST_PATTERN when it is none of the accepted forms. */
export function normalSenderPattern(raw: string): string {
  const s = raw.trim().toLowerCase();
  if (s.length > MAX_PATTERN_CHARS || parseSenderPattern(s) === null) {
    throw new SekishoError(
      'SEKISHO_ERR_LIST_PATTERN',
      `"${s.slice(0, MAX_PATTERN_CHARS)}" is not user@domain, domain, *.domain, an IP address or a CIDR block (e.g. 203.0.113.0/24)`,
    );
  }
  return s.startsWith('@') ? s.slice(1) : s;
}
