/**
 * The default AuditLog: table `audit` of `dataDir/admin.sqlite` (admin-db.ts) plus an anchor file.
 * - Append-only inside SQLite: triggers abort every UPDATE and DELETE of `audit`.
 * - One chain across processes: an append reads the last row and inserts the next inside BEGIN IMMEDIATE, so two
 *   writers (the admin app, the `sekisho` command) take turns and never fork it. synchronous = FULL: durable on resolve.
 * - The anchor `audit-anchor.json` (next to the database; {seq, hash} of the newest record) catches what the chain
 *   alone cannot: rows removed at the tail. It is written (tmp file, fsync, rename, fsync of the directory) while the
 *   append still holds the write lock, so it never goes backwards; if the commit then fails, it is put back.
 *   A plain `DELETE FROM audit` (even with the triggers dropped) cannot reach it; whoever can also rewrite that file
 *   can truncate undetected — which is why exports go to the SOC.
 */
import type Database from 'better-sqlite3';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { SekishoError } from '../../errors.ts';
import { openAdminDatabase } from '../admin-db.ts';
import {
  AuditChainChecker,
  auditHash,
  auditOutcomes,
  canonicalJson,
  entryOf,
  GENESIS_HASH,
  writeLine,
  type AuditEntry,
  type AuditLog,
  type AuditOutcome,
  type AuditProblem,
  type AuditQuery,
  type AuditRecord,
  type AuditVerification,
} from './audit-log.ts';

/** A list page never returns more than this many records, whatever the caller asks. */
const MAX_PAGE = 1_000;
const DEFAULT_PAGE = 100;
/** Rows read per step by verify and exportJsonl; between steps the event loop runs (and appends may go in). */
const SCAN_BATCH_ROWS = 1_000;
/** Largest details object, bytes of JSON: audit rows describe actions, they do not carry messages. */
const MAX_DETAILS_BYTES = 64 * 1024;
/** Longest actor, action, target or reason, characters; longer values are refused rather than cut (they would be a bug). */
const MAX_FIELD_CHARS = 2_000;

export const AUDIT_ANCHOR_FILE = 'audit-anchor.json';

interface Row {
  seq: number;
  at: number;
  actor: string;
  role: string | null;
  tenant_id: string | null;
  ip: string | null;
  action: string;
  target: string | null;
  reason: string | null;
  outcome: string;
  details: string;
  prev_hash: string;
  hash: string;
}

interface Anchor {
  seq: number;
  hash: string;
}

function fromRow(r: Row): AuditRecord {
  return {
    seq: r.seq,
    at: r.at,
    actor: r.actor,
    role: r.role,
    tenantId: r.tenant_id,
    ip: r.ip,
    action: r.action,
    target: r.target,
    reason: r.reason,
    outcome: r.outcome as AuditOutcome,
    details: JSON.parse(r.details) as Record<string, unknown>,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

function writeError(message: string, cause?: unknown): SekishoError {
  return new SekishoError('SEKISHO_ERR_AUDIT_WRITE', message, { cause });
}

function checkEntry(e: AuditEntry, detailsJson: string): void {
  if (!Number.isSafeInteger(e.at) || e.at < 0) throw writeError('audit entry: at must be unix ms');
  if (!e.actor || !e.action) throw writeError('audit entry: actor and action are required');
  if (!auditOutcomes.includes(e.outcome)) throw writeError(`audit entry: outcome "${String(e.outcome)}" is not one of ${auditOutcomes.join(', ')}`);
  for (const v of [e.actor, e.action, e.target, e.reason, e.role, e.tenantId, e.ip]) {
    if (v !== null && v.length > MAX_FIELD_CHARS) throw writeError(`audit entry: a field is longer than ${MAX_FIELD_CHARS} characters`);
  }
  if (Buffer.byteLength(detailsJson) > MAX_DETAILS_BYTES) throw writeError(`audit entry: details are larger than ${MAX_DETAILS_BYTES} bytes`);
}

/** Writes `data` to `file` so that a crash leaves the old or the new content, never a mix: tmp, fsync, rename, fsync dir. */
function writeFileAtomic(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const dir = openSync(path.dirname(file), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function where(q: AuditQuery): { sql: string; args: (string | number)[] } {
  const clauses: string[] = [];
  const args: (string | number)[] = [];
  const add = (clause: string, v: string | number | undefined) => {
    if (v === undefined) return;
    clauses.push(clause);
    args.push(v);
  };
  add('at >= ?', q.from);
  add('at < ?', q.to);
  add('actor = ?', q.actor);
  add('action = ?', q.action);
  add('tenant_id = ?', q.tenantId);
  return { sql: clauses.join(' AND '), args };
}

export class SqliteAuditLog implements AuditLog {
  readonly #db: Database.Database;
  readonly #anchorFile: string;

  /** `anchorFile` defaults to audit-anchor.json beside the database file. */
  constructor(file: string, opts: { anchorFile?: string } = {}) {
    this.#db = openAdminDatabase(file);
    this.#anchorFile = opts.anchorFile ?? path.join(path.dirname(file), AUDIT_ANCHOR_FILE);
  }

  async append(e: AuditEntry): Promise<AuditRecord> {
    const entry = entryOf(e);
    const details = JSON.stringify(entry.details);
    checkEntry(entry, details);
    let restoreAnchor: Anchor | undefined;
    try {
      return this.#db
        .transaction(() => {
          const last = this.#db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as Anchor | undefined;
          const prev = last ?? { seq: 0, hash: GENESIS_HASH };
          const seq = prev.seq + 1;
          const hash = auditHash(prev.hash, seq, entry);
          this.#db
            .prepare(
              `INSERT INTO audit (seq, at, actor, role, tenant_id, ip, action, target, reason, outcome, details, prev_hash, hash)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
            )
            .run(seq, entry.at, entry.actor, entry.role, entry.tenantId, entry.ip, entry.action, entry.target, entry.reason, entry.outcome, details, prev.hash, hash);
          restoreAnchor = prev;
          writeFileAtomic(this.#anchorFile, JSON.stringify({ seq, hash } satisfies Anchor));
          return { ...entry, seq, prevHash: prev.hash, hash };
        })
        .immediate();
    } catch (err) {
      // The anchor went ahead of a commit that failed: put it back, or verify would report the row as removed.
      if (restoreAnchor) {
        try {
          writeFileAtomic(this.#anchorFile, JSON.stringify(restoreAnchor));
        } catch {
          // verify will report the anchor/row mismatch; the append itself is reported as failed below.
        }
      }
      throw writeError(`the audit log could not be appended to: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }

  async list(q: AuditQuery = {}): Promise<{ records: AuditRecord[]; total: number }> {
    const w = where(q);
    const whereSql = w.sql ? `WHERE ${w.sql}` : '';
    const total = (this.#db.prepare(`SELECT COUNT(*) AS n FROM audit ${whereSql}`).get(...w.args) as { n: number }).n;
    const limit = Math.min(Math.max(0, q.limit ?? DEFAULT_PAGE), MAX_PAGE);
    const rows = this.#db.prepare(`SELECT * FROM audit ${whereSql} ORDER BY seq DESC LIMIT ? OFFSET ?`).all(...w.args, limit, Math.max(0, q.offset ?? 0)) as Row[];
    return { records: rows.map(fromRow), total };
  }

  /** Rows oldest first, SCAN_BATCH_ROWS at a time (keyset paging: no statement stays open across an await). */
  async *#scan(q: AuditQuery = {}): AsyncGenerator<AuditRecord> {
    const w = where(q);
    const stmt = this.#db.prepare(`SELECT * FROM audit WHERE seq > ? ${w.sql ? `AND ${w.sql}` : ''} ORDER BY seq LIMIT ?`);
    let after = 0;
    for (;;) {
      const rows = stmt.all(after, ...w.args, SCAN_BATCH_ROWS) as Row[];
      for (const r of rows) yield fromRow(r);
      if (rows.length < SCAN_BATCH_ROWS) return;
      after = rows[rows.length - 1]!.seq;
      await yieldToLoop();
    }
  }

  async verify(): Promise<AuditVerification> {
    const problems: AuditProblem[] = [...this.#checkAnchor()];
    const chain = new AuditChainChecker();
    for await (const r of this.#scan()) chain.push(r);
    problems.push(...chain.problems);
    problems.sort((a, b) => a.seq - b.seq);
    return { ok: problems.length === 0, checked: chain.checked, problems };
  }

  /** The anchor against the table, under the write lock (so no append sits between its anchor write and its commit). */
  #checkAnchor(): AuditProblem[] {
    return this.#db
      .transaction((): AuditProblem[] => {
        const last = this.#db.prepare('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as Anchor | undefined;
        let anchor: Anchor;
        try {
          anchor = JSON.parse(readFileSync(this.#anchorFile, 'utf8')) as Anchor;
          if (!Number.isSafeInteger(anchor.seq) || typeof anchor.hash !== 'string') throw new Error('not {seq, hash}');
        } catch (err) {
          if (!last && err instanceof Error && 'code' in err && err.code === 'ENOENT') return [];
          return [{ seq: last?.seq ?? 0, problem: `the anchor file ${this.#anchorFile} is missing or unreadable (${err instanceof Error ? err.message : String(err)})` }];
        }
        const lastSeq = last?.seq ?? 0;
        if (anchor.seq > lastSeq) {
          return [{ seq: anchor.seq, problem: `rows removed at the tail: the anchor names record ${anchor.seq} but the log ends at ${lastSeq}` }];
        }
        if (anchor.seq === 0) return [];
        const row = this.#db.prepare('SELECT hash FROM audit WHERE seq = ?').get(anchor.seq) as { hash: string } | undefined;
        if (row?.hash !== anchor.hash) return [{ seq: anchor.seq, problem: 'the record named by the anchor file has another hash (rewritten log)' }];
        return [];
      })
      .immediate();
  }

  async exportJsonl(out: NodeJS.WritableStream, q: AuditQuery = {}): Promise<number> {
    let n = 0;
    for await (const r of this.#scan({ ...q, limit: undefined, offset: undefined })) {
      await writeLine(out, canonicalJson(r));
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
