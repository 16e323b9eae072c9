/**
 * Opening one of Sekisho's small SQLite databases (quarantine, admin, sender lists): WAL so readers run beside the
 * writer, `synchronous = FULL` so a write is durable when it returns, a busy timeout so a second process waits for
 * the lock, and the schema brought up to date. Migrations are an append-only list: entry i upgrades schema version
 * i to i + 1 (`PRAGMA user_version`), all of them in one immediate transaction. Never edit one that shipped.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

/** SQL, or code for what SQL cannot do (e.g. a backfill that decodes MIME). */
export type Migration = string | ((db: Database.Database) => void);

/**
 * A write waits this long for another process's lock (the CLI beside the admin app, a worker beside it); only a
 * stuck process or disk gets there.
 */
export const BUSY_TIMEOUT_MS = 10_000;

export function openSqlite(file: string, migrations: readonly Migration[], opts: { foreignKeys?: boolean } = {}): Database.Database {
  mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (opts.foreignKeys) db.pragma('foreign_keys = ON');
    db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number;
      for (let v = version; v < migrations.length; v++) {
        const step = migrations[v]!;
        if (typeof step === 'string') db.exec(step);
        else step(db);
      }
      if (version < migrations.length) db.pragma(`user_version = ${migrations.length}`);
    }).immediate();
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
