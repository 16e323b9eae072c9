/**
 * The default SenderListStore: a SQLite file of its own (`dataDir/sender-lists.sqlite`, better-sqlite3), written by
 * the admin process and polled by the workers (version()).
 *
 * Rule: every change bumps the `changes` counter in the same transaction — that counter is what the workers poll,
 * so a change that skips it is never seen. Removed entries stay, with who removed them and when (list() skips
 * them). Opened by src/sqlite-database.ts (WAL, durable writes, migrations); keep the SQL
 * portable.
 */
import type Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { SekishoError } from '../errors.ts';
import { openSqlite } from '../sqlite-database.ts';
import {
  MAX_LIST_ENTRIES,
  normalSenderPattern,
  type NewSenderListEntry,
  type SenderListEntry,
  type SenderListQuery,
  type SenderListStore,
} from './sender-list-store.ts';

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE sender_list (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    list        TEXT NOT NULL CHECK (list IN ('allow', 'block')),
    pattern     TEXT NOT NULL,
    added_by    TEXT NOT NULL,
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    removed_by  TEXT,
    removed_at  INTEGER
  ) STRICT;
  CREATE UNIQUE INDEX sender_list_live ON sender_list (tenant_id, list, pattern) WHERE removed_at IS NULL;
  CREATE TABLE changes (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL) STRICT;
  INSERT INTO changes (one, version) VALUES (1, 0);
  `,
];

interface Row {
  id: string;
  tenant_id: string;
  list: string;
  pattern: string;
  added_by: string;
  reason: string | null;
  created_at: number;
}

function fromRow(r: Row): SenderListEntry {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    list: r.list === 'allow' ? 'allow' : 'block',
    pattern: r.pattern,
    addedBy: r.added_by,
    reason: r.reason,
    createdAt: r.created_at,
  };
}

export class SqliteSenderListStore implements SenderListStore {
  readonly #db: Database.Database;
  readonly #now: () => number;

  constructor(file: string, opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#db = openSqlite(file, MIGRATIONS);
  }

  #bump(): void {
    this.#db.prepare('UPDATE changes SET version = version + 1 WHERE one = 1').run();
  }

  async add(e: NewSenderListEntry): Promise<SenderListEntry> {
    const pattern = normalSenderPattern(e.pattern);
    return this.#db
      .transaction((): SenderListEntry => {
        const live = 'FROM sender_list WHERE tenant_id = ? AND list = ? AND removed_at IS NULL';
        const existing = this.#db.prepare(`SELECT * ${live} AND pattern = ?`).get(e.tenantId, e.list, pattern) as Row | undefined;
        if (existing) return fromRow(existing);
        const { n } = this.#db.prepare(`SELECT COUNT(*) AS n ${live}`).get(e.tenantId, e.list) as { n: number };
        if (n >= MAX_LIST_ENTRIES) {
          throw new SekishoError('SEKISHO_ERR_LIST_FULL', `the ${e.list} list of ${e.tenantId} already holds ${n} entries (at most ${MAX_LIST_ENTRIES})`);
        }
        const entry: SenderListEntry = { id: randomUUID(), tenantId: e.tenantId, list: e.list, pattern, addedBy: e.addedBy, reason: e.reason, createdAt: e.at };
        this.#db
          .prepare('INSERT INTO sender_list (id, tenant_id, list, pattern, added_by, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
          .run(entry.id, entry.tenantId, entry.list, entry.pattern, entry.addedBy, entry.reason, entry.createdAt);
        this.#bump();
        return entry;
      })
      .immediate();
  }

  async remove(id: string, by: string): Promise<boolean> {
    return this.#db
      .transaction((): boolean => {
        const done = this.#db.prepare('UPDATE sender_list SET removed_by = ?, removed_at = ? WHERE id = ? AND removed_at IS NULL').run(by, this.#now(), id);
        if (done.changes) this.#bump();
        return done.changes > 0;
      })
      .immediate();
  }

  async list(q: SenderListQuery = {}): Promise<SenderListEntry[]> {
    if (q.tenantIds?.length === 0) return [];
    const where = ['removed_at IS NULL'];
    const args: string[] = [];
    if (q.tenantIds !== undefined) {
      where.push(`tenant_id IN (${q.tenantIds.map(() => '?').join(', ')})`);
      args.push(...q.tenantIds);
    }
    if (q.list !== undefined) {
      where.push('list = ?');
      args.push(q.list);
    }
    const sql = `SELECT * FROM sender_list WHERE ${where.join(' AND ')} ORDER BY tenant_id, list, created_at, id`;
    return (this.#db.prepare(sql).all(...args) as Row[]).map(fromRow);
  }

  async version(): Promise<number> {
    return (this.#db.prepare('SELECT version FROM changes WHERE one = 1').get() as { version: number }).version;
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
