/**
 * The default QuarantineStore: a SQLite file of its own (`dataDir/quarantine.sqlite`, better-sqlite3), shared by
 * the worker processes that hold messages and the admin process that lists and releases them.
 *
 * Writes are rare next to the message metadata (one per held message, one per release step), so they run on the
 * calling thread with `synchronous = FULL`: a hold is durable before the sanitized copy leaves. WAL lets readers run
 * beside the writer, `busy_timeout` makes a second process wait for the lock. Schema versioned through
 * `PRAGMA user_version` as in sqlite-meta-store.ts; keep the SQL portable.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  liveQuarantineStates,
  quarantineStates,
  type NewQuarantineRecord,
  type QuarantineQuery,
  type QuarantineRecord,
  type QuarantineState,
  type QuarantineStore,
} from './quarantine-store.ts';

/** A write waits this long for another process's lock; only a stuck process or disk gets there. */
const BUSY_TIMEOUT_MS = 10_000;
/** A list page never returns more than this many records, whatever the caller asks. */
const MAX_PAGE = 1_000;

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE quarantine (
    message_id  TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    recipients  TEXT NOT NULL CHECK (json_valid(recipients)),
    mail_from   TEXT NOT NULL,
    subject     TEXT,
    symbols     TEXT NOT NULL CHECK (json_valid(symbols)),
    reasons     TEXT NOT NULL CHECK (json_valid(reasons)),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, tenant_id)
  ) STRICT;
  CREATE INDEX quarantine_tenant_created ON quarantine (tenant_id, created_at);
  CREATE INDEX quarantine_created ON quarantine (created_at);
  CREATE INDEX quarantine_state_expires ON quarantine (state, expires_at);
  `,
];

interface Row {
  message_id: string;
  tenant_id: string;
  kind: string;
  state: string;
  recipients: string;
  mail_from: string;
  subject: string | null;
  symbols: string;
  reasons: string;
  created_at: number;
  expires_at: number;
  updated_at: number;
}

function fromRow(r: Row): QuarantineRecord {
  return {
    messageId: r.message_id,
    tenantId: r.tenant_id,
    kind: r.kind === 'original' ? 'original' : 'held',
    state: (quarantineStates as readonly string[]).includes(r.state) ? (r.state as QuarantineState) : 'held',
    recipients: JSON.parse(r.recipients) as string[],
    mailFrom: r.mail_from,
    subject: r.subject,
    symbols: JSON.parse(r.symbols) as string[],
    reasons: JSON.parse(r.reasons) as string[],
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    updatedAt: r.updated_at,
  };
}

const LIVE = liveQuarantineStates.map((s) => `'${s}'`).join(', ');

export class SqliteQuarantineStore implements QuarantineStore {
  readonly #db: Database.Database;
  readonly #now: () => number;

  constructor(file: string, opts: { now?: () => number } = {}) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.#now = opts.now ?? Date.now;
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = FULL');
    this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    this.#migrate();
  }

  #migrate(): void {
    this.#db
      .transaction(() => {
        const version = this.#db.pragma('user_version', { simple: true }) as number;
        for (let v = version; v < MIGRATIONS.length; v++) this.#db.exec(MIGRATIONS[v]!);
        if (version < MIGRATIONS.length) this.#db.pragma(`user_version = ${MIGRATIONS.length}`);
      })
      .immediate();
  }

  async hold(rec: NewQuarantineRecord): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO quarantine (message_id, tenant_id, kind, state, recipients, mail_from, subject, symbols, reasons,
                                 created_at, expires_at, updated_at)
         VALUES (?, ?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (message_id, tenant_id) DO NOTHING`,
      )
      .run(
        rec.messageId,
        rec.tenantId,
        rec.kind,
        JSON.stringify(rec.recipients),
        rec.mailFrom,
        rec.subject,
        JSON.stringify(rec.symbols),
        JSON.stringify(rec.reasons),
        rec.createdAt,
        rec.expiresAt,
        this.#now(),
      );
  }

  async get(messageId: string, tenantId: string): Promise<QuarantineRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM quarantine WHERE message_id = ? AND tenant_id = ?').get(messageId, tenantId) as Row | undefined;
    return r && fromRow(r);
  }

  async ofMessage(messageId: string): Promise<QuarantineRecord[]> {
    return (this.#db.prepare('SELECT * FROM quarantine WHERE message_id = ? ORDER BY tenant_id').all(messageId) as Row[]).map(fromRow);
  }

  async list(q: QuarantineQuery = {}): Promise<QuarantineRecord[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.tenantId !== undefined) {
      where.push('tenant_id = ?');
      args.push(q.tenantId);
    }
    if (q.state !== undefined) {
      where.push('state = ?');
      args.push(q.state);
    }
    const limit = Math.min(Math.max(0, q.limit ?? 100), MAX_PAGE);
    const sql = `SELECT * FROM quarantine ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY created_at DESC, message_id DESC LIMIT ? OFFSET ?`;
    return (this.#db.prepare(sql).all(...args, limit, Math.max(0, q.offset ?? 0)) as Row[]).map(fromRow);
  }

  async expireDue(now: number, limit: number): Promise<QuarantineRecord[]> {
    return this.#db
      .transaction(() => {
        const due = this.#db
          .prepare(`SELECT * FROM quarantine WHERE state IN (${LIVE}) AND expires_at <= ? ORDER BY expires_at LIMIT ?`)
          .all(now, limit) as Row[];
        const mark = this.#db.prepare(`UPDATE quarantine SET state = 'expired', updated_at = ? WHERE message_id = ? AND tenant_id = ?`);
        for (const r of due) mark.run(this.#now(), r.message_id, r.tenant_id);
        return due.map((r) => ({ ...fromRow(r), state: 'expired' as const }));
      })
      .immediate();
  }

  async countByState(tenantId?: string): Promise<Record<QuarantineState, number>> {
    const rows = (
      tenantId === undefined
        ? this.#db.prepare('SELECT state, COUNT(*) AS n FROM quarantine GROUP BY state').all()
        : this.#db.prepare('SELECT state, COUNT(*) AS n FROM quarantine WHERE tenant_id = ? GROUP BY state').all(tenantId)
    ) as { state: string; n: number }[];
    const out = Object.fromEntries(quarantineStates.map((s) => [s, 0])) as Record<QuarantineState, number>;
    for (const r of rows) if (r.state in out) out[r.state as QuarantineState] = r.n;
    return out;
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
