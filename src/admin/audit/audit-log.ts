/**
 * AuditLog: who did what, when, to which record and why — append-only and hash-chained. Drivers pass
 * test/unit/admin/audit-log.contract.ts.
 * Rule: the hash format is a contract with whoever verifies an export (the SOC): record n's hash is
 * sha256hex(prevHash + '\n' + canonicalJson({ seq, ...entry })), prevHash of seq 1 is GENESIS_HASH. Changing a
 * field or the canonical form breaks every chain already exported.
 */
import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';

export type AuditOutcome = 'ok' | 'denied' | 'failed';
export const auditOutcomes: readonly AuditOutcome[] = ['ok', 'denied', 'failed'];

export interface AuditEntry {
  /** Unix ms. */
  at: number;
  /** A user name, `cli:<os user>` for the sekisho command, or `system`. */
  actor: string;
  role: string | null;
  tenantId: string | null;
  ip: string | null;
  /**
   * `login`, `login-failed`, `logout`, `quarantine.request|approve|reject|release|release-override|redeliver|delete|download`,
   * `list.add|remove`, `account.create|update|disable|enable|password|totp`, `token.create|revoke`, …
   */
  action: string;
  /** What was acted on: a message id, a user name, a list entry. */
  target: string | null;
  /** Why, as the actor gave it (required by the console for overrides and rejections). */
  reason: string | null;
  outcome: AuditOutcome;
  /** JSON-serialisable; stored and hashed in its JSON round-tripped form. */
  details: Record<string, unknown>;
}

export type AuditRecord = AuditEntry & { seq: number; prevHash: string; hash: string };

export interface AuditQuery {
  /** Unix ms, inclusive. */
  from?: number;
  /** Unix ms, exclusive. */
  to?: number;
  actor?: string;
  action?: string;
  tenantId?: string;
  limit?: number;
  offset?: number;
}

export interface AuditProblem {
  seq: number;
  problem: string;
}

export interface AuditVerification {
  ok: boolean;
  checked: number;
  problems: AuditProblem[];
}

export interface AuditLog {
  /** Durable before it resolves; SEKISHO_ERR_AUDIT_WRITE if it cannot be (the caller must then refuse the action). */
  append(e: AuditEntry): Promise<AuditRecord>;
  /** Newest first; total counts every match, ignoring limit/offset. */
  list(q?: AuditQuery): Promise<{ records: AuditRecord[]; total: number }>;
  /** Recomputes the whole chain: edited, inserted or removed rows, and rows removed at the tail. */
  verify(): Promise<AuditVerification>;
  /** Oldest first, one canonical JSON record per line (seq, prevHash, hash included); resolves to the count. */
  exportJsonl(out: NodeJS.WritableStream, q?: AuditQuery): Promise<number>;
  close(): Promise<void>;
}

/** prevHash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** JSON with object keys sorted at every depth; no whitespace. Input must be JSON-serialisable (round-tripped). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** The entry fields alone, details in their stored (JSON round-tripped) form: what is hashed. */
export function entryOf(e: AuditEntry): AuditEntry {
  return {
    at: e.at,
    actor: e.actor,
    role: e.role,
    tenantId: e.tenantId,
    ip: e.ip,
    action: e.action,
    target: e.target,
    reason: e.reason,
    outcome: e.outcome,
    details: JSON.parse(JSON.stringify(e.details ?? {})) as Record<string, unknown>,
  };
}

export function auditHash(prevHash: string, seq: number, e: AuditEntry): string {
  return createHash('sha256')
    .update(`${prevHash}\n${canonicalJson({ seq, ...entryOf(e) })}`, 'utf8')
    .digest('hex');
}

/**
 * Checks a chain fed oldest first, one record at a time (constant memory): each hash recomputed, seq consecutive
 * from 1, each prevHash equal to the previous hash. Usable on an export as well as on the store.
 */
export class AuditChainChecker {
  checked = 0;
  readonly problems: AuditProblem[] = [];
  #lastSeq = 0;
  #lastHash = GENESIS_HASH;

  push(r: AuditRecord): void {
    this.checked++;
    if (r.seq !== this.#lastSeq + 1) {
      const missing = r.seq > this.#lastSeq + 1 ? `records ${this.#lastSeq + 1}..${r.seq - 1} are missing` : `out of order after ${this.#lastSeq}`;
      this.problems.push({ seq: r.seq, problem: `seq gap: ${missing} (removed rows)` });
    }
    if (r.prevHash !== this.#lastHash) {
      this.problems.push({ seq: r.seq, problem: `prevHash does not match the hash of the record before it (a row was removed or inserted)` });
    }
    if (auditHash(r.prevHash, r.seq, r) !== r.hash) {
      this.problems.push({ seq: r.seq, problem: 'hash mismatch: the row was edited after it was written' });
    }
    this.#lastSeq = r.seq;
    this.#lastHash = r.hash;
  }

  /** The last record seen: {seq: 0, hash: GENESIS_HASH} before any. */
  get last(): { seq: number; hash: string } {
    return { seq: this.#lastSeq, hash: this.#lastHash };
  }
}

/** Writes a line, waiting for 'drain' when the stream asks to; throws once the stream is closed (a reader went away). */
export async function writeLine(out: NodeJS.WritableStream | Writable, line: string): Promise<void> {
  if ((out as Writable).destroyed) throw new Error('the output stream was closed');
  if (out.write(`${line}\n`)) return;
  await new Promise<void>((resolve, reject) => {
    const onDrain = () => {
      out.removeListener('error', onError);
      resolve();
    };
    const onError = (err: Error) => {
      out.removeListener('drain', onDrain);
      reject(err);
    };
    out.once('drain', onDrain);
    out.once('error', onError);
  });
}
