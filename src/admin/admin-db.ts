/**
 * The admin database `dataDir/admin.sqlite` (better-sqlite3): accounts, sessions, API tokens and the audit log.
 * SqliteAccountStore and SqliteAuditLog each open their own connection through openAdminDatabase, so both share
 * this one migration list (one `PRAGMA user_version` per file). Append migrations; never edit one that shipped.
 * The audit table's triggers are what make it append-only inside SQLite: no migration may drop them.
 */
import type Database from 'better-sqlite3';
import { openSqlite } from '../sqlite-database.ts';

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE account (
    id              INTEGER PRIMARY KEY,
    username        TEXT NOT NULL COLLATE NOCASE UNIQUE,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL,
    tenant_id       TEXT,
    email           TEXT,
    locale          TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    totp_secret     TEXT,
    totp_last_step  INTEGER,
    disabled        INTEGER NOT NULL DEFAULT 0,
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER,
    last_login_at   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
  ) STRICT;
  CREATE TABLE session (
    id                    TEXT PRIMARY KEY,
    account_id            INTEGER NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    csrf_token            TEXT NOT NULL,
    ip                    TEXT,
    user_agent            TEXT,
    created_at            INTEGER NOT NULL,
    last_seen_at          INTEGER NOT NULL,
    expires_at            INTEGER NOT NULL,
    absolute_expires_at   INTEGER NOT NULL,
    second_factor_pending INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX session_account ON session (account_id);
  CREATE INDEX session_expires ON session (expires_at);
  CREATE TABLE api_token (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES account (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER
  ) STRICT;
  CREATE INDEX api_token_account ON api_token (account_id);
  CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT,
    tenant_id  TEXT,
    ip         TEXT,
    action     TEXT NOT NULL,
    target     TEXT,
    reason     TEXT,
    outcome    TEXT NOT NULL,
    details    TEXT NOT NULL CHECK (json_valid(details)),
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
  ) STRICT;
  CREATE INDEX audit_at ON audit (at);
  CREATE INDEX audit_actor ON audit (actor, seq);
  CREATE INDEX audit_action ON audit (action, seq);
  CREATE INDEX audit_tenant ON audit (tenant_id, seq);
  CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
  `,
];

/** Opens (creating and migrating if needed) the admin database: WAL, synchronous = FULL, foreign keys on. */
export function openAdminDatabase(file: string): Database.Database {
  return openSqlite(file, MIGRATIONS, { foreignKeys: true });
}
