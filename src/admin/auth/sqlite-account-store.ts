/**
 * The default AccountStore: tables `account`, `session` and `api_token` of `dataDir/admin.sqlite` (admin-db.ts),
 * shared by the admin app and the `sekisho user` command. Every read-modify-write (lockout counter, TOTP step,
 * session expiry) is one statement or one IMMEDIATE transaction, so two processes never lose each other's update.
 */
import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { SekishoError } from '../../errors.ts';
import { openAdminDatabase } from '../admin-db.ts';
import {
  API_TOKEN_PREFIX,
  checkAccountFields,
  MAX_TOKEN_NAME_CHARS,
  secretDigest,
  type Account,
  type AccountPatch,
  type AccountStore,
  type ApiToken,
  type LockoutPolicy,
  type NewAccount,
  type NewApiToken,
  type NewSession,
  type Session,
} from './account-store.ts';
import type { Role } from './roles.ts';

/** Random bytes in a session or API token (256 bits: guessing one is not an attack). */
const TOKEN_BYTES = 32;
/** Random bytes in a CSRF token. */
const CSRF_BYTES = 32;
/** Longest User-Agent kept with a session, characters: enough to recognise a browser; the rest is the client's to waste. */
const MAX_USER_AGENT_CHARS = 512;
/** An API token's lastUsedAt is written at most this often, ms: a busy script does not turn every request into a write. */
const TOKEN_LAST_USED_RESOLUTION_MS = 60_000;

interface AccountRow {
  id: number;
  username: string;
  display_name: string;
  role: string;
  tenant_id: string | null;
  email: string | null;
  locale: string;
  password_hash: string;
  totp_secret: string | null;
  totp_last_step: number | null;
  disabled: number;
  failed_logins: number;
  locked_until: number | null;
  last_login_at: number | null;
  created_at: number;
  updated_at: number;
}

interface SessionRow {
  id: string;
  account_id: number;
  csrf_token: string;
  ip: string | null;
  user_agent: string | null;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  absolute_expires_at: number;
  second_factor_pending: number;
}

interface TokenRow {
  id: number;
  account_id: number;
  name: string;
  created_at: number;
  expires_at: number | null;
  last_used_at: number | null;
  revoked_at: number | null;
}

function accountFromRow(r: AccountRow): Account {
  return {
    id: r.id,
    username: r.username,
    displayName: r.display_name,
    role: r.role as Role,
    tenantId: r.tenant_id,
    email: r.email,
    locale: r.locale === 'en' ? 'en' : 'ja',
    passwordHash: r.password_hash,
    totpSecret: r.totp_secret,
    totpLastStep: r.totp_last_step,
    disabled: r.disabled !== 0,
    failedLogins: r.failed_logins,
    lockedUntil: r.locked_until,
    lastLoginAt: r.last_login_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function sessionFromRow(r: SessionRow): Session {
  return {
    id: r.id,
    accountId: r.account_id,
    csrfToken: r.csrf_token,
    ip: r.ip,
    userAgent: r.user_agent,
    createdAt: r.created_at,
    lastSeenAt: r.last_seen_at,
    expiresAt: r.expires_at,
    absoluteExpiresAt: r.absolute_expires_at,
    secondFactorPending: r.second_factor_pending !== 0,
  };
}

function tokenFromRow(r: TokenRow): ApiToken {
  return {
    id: r.id,
    accountId: r.account_id,
    name: r.name,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at,
  };
}

function notFound(what: string): SekishoError {
  return new SekishoError('SEKISHO_ERR_AUTH_NOT_FOUND', what);
}

function isUniqueViolation(err: unknown): boolean {
  return err instanceof Error && 'code' in err && err.code === 'SQLITE_CONSTRAINT_UNIQUE';
}

export class SqliteAccountStore implements AccountStore {
  readonly #db: Database.Database;
  readonly #now: () => number;

  /** `now` stamps createdAt/updatedAt and revocations; methods that take a `now` use that one. */
  constructor(file: string, opts: { now?: () => number } = {}) {
    this.#db = openAdminDatabase(file);
    this.#now = opts.now ?? Date.now;
  }

  #account(id: number): Account | undefined {
    const r = this.#db.prepare('SELECT * FROM account WHERE id = ?').get(id) as AccountRow | undefined;
    return r && accountFromRow(r);
  }

  async create(a: NewAccount): Promise<Account> {
    const now = this.#now();
    const rec = {
      username: a.username,
      displayName: a.displayName ?? a.username,
      role: a.role,
      tenantId: a.tenantId ?? null,
      email: a.email ?? null,
      locale: a.locale ?? 'ja',
      passwordHash: a.passwordHash,
    };
    checkAccountFields(rec);
    try {
      const { lastInsertRowid } = this.#db
        .prepare(
          `INSERT INTO account (username, display_name, role, tenant_id, email, locale, password_hash, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(rec.username, rec.displayName, rec.role, rec.tenantId, rec.email, rec.locale, rec.passwordHash, now, now);
      return this.#account(Number(lastInsertRowid))!;
    } catch (err) {
      if (isUniqueViolation(err)) throw new SekishoError('SEKISHO_ERR_AUTH_DUPLICATE', `an account named "${a.username}" already exists`, { cause: err });
      throw err;
    }
  }

  async get(id: number): Promise<Account | undefined> {
    return this.#account(id);
  }

  async byUsername(username: string): Promise<Account | undefined> {
    const r = this.#db.prepare('SELECT * FROM account WHERE username = ?').get(username) as AccountRow | undefined;
    return r && accountFromRow(r);
  }

  async list(): Promise<Account[]> {
    return (this.#db.prepare('SELECT * FROM account ORDER BY username, id').all() as AccountRow[]).map(accountFromRow);
  }

  async update(id: number, patch: AccountPatch): Promise<Account> {
    return this.#db
      .transaction(() => {
        const before = this.#account(id);
        if (!before) throw notFound(`no account with id ${id}`);
        const after: Account = { ...before, ...definedOnly(patch), updatedAt: this.#now() };
        if (patch.totpSecret !== undefined && patch.totpLastStep === undefined && patch.totpSecret !== before.totpSecret) after.totpLastStep = null;
        checkAccountFields(after);
        this.#db
          .prepare(
            `UPDATE account SET display_name = ?, role = ?, tenant_id = ?, email = ?, locale = ?, password_hash = ?,
                                totp_secret = ?, totp_last_step = ?, disabled = ?, updated_at = ?
             WHERE id = ?`,
          )
          .run(
            after.displayName,
            after.role,
            after.tenantId,
            after.email,
            after.locale,
            after.passwordHash,
            after.totpSecret,
            after.totpLastStep,
            after.disabled ? 1 : 0,
            after.updatedAt,
            id,
          );
        if (after.disabled) this.#db.prepare('DELETE FROM session WHERE account_id = ?').run(id);
        return after;
      })
      .immediate();
  }

  async recordLoginFailure(id: number, now: number, policy: LockoutPolicy): Promise<Account> {
    const r = this.#db
      .prepare(
        `UPDATE account SET
           locked_until  = CASE WHEN failed_logins + 1 >= @max THEN @now + @lockMs ELSE locked_until END,
           failed_logins = CASE WHEN failed_logins + 1 >= @max THEN 0 ELSE failed_logins + 1 END
         WHERE id = @id RETURNING *`,
      )
      .get({ id, now, max: policy.maxFailures, lockMs: policy.lockMs }) as AccountRow | undefined;
    if (!r) throw notFound(`no account with id ${id}`);
    return accountFromRow(r);
  }

  async recordLoginSuccess(id: number, now: number): Promise<void> {
    const { changes } = this.#db.prepare('UPDATE account SET failed_logins = 0, last_login_at = ? WHERE id = ?').run(now, id);
    if (changes === 0) throw notFound(`no account with id ${id}`);
  }

  async claimTotpStep(id: number, step: number): Promise<boolean> {
    const { changes } = this.#db
      .prepare(
        `UPDATE account SET totp_last_step = ?
         WHERE id = ? AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < ?)`,
      )
      .run(step, id, step);
    return changes === 1;
  }

  async createSession(s: NewSession): Promise<{ token: string; session: Session }> {
    const account = this.#account(s.accountId);
    if (!account) throw notFound(`no account with id ${s.accountId}`);
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const absoluteExpiresAt = s.now + s.absoluteMs;
    const session: Session = {
      id: secretDigest(token),
      accountId: s.accountId,
      csrfToken: randomBytes(CSRF_BYTES).toString('base64url'),
      ip: s.ip,
      userAgent: s.userAgent === null ? null : s.userAgent.slice(0, MAX_USER_AGENT_CHARS),
      createdAt: s.now,
      lastSeenAt: s.now,
      expiresAt: Math.min(s.now + s.idleMs, absoluteExpiresAt),
      absoluteExpiresAt,
      secondFactorPending: s.secondFactorPending ?? account.totpSecret !== null,
    };
    this.#db
      .prepare(
        `INSERT INTO session (id, account_id, csrf_token, ip, user_agent, created_at, last_seen_at, expires_at,
                              absolute_expires_at, second_factor_pending)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        session.id,
        session.accountId,
        session.csrfToken,
        session.ip,
        session.userAgent,
        session.createdAt,
        session.lastSeenAt,
        session.expiresAt,
        session.absoluteExpiresAt,
        session.secondFactorPending ? 1 : 0,
      );
    return { token, session };
  }

  async getSession(token: string, now: number): Promise<Session | undefined> {
    const id = secretDigest(token);
    const r = this.#db.prepare('SELECT * FROM session WHERE id = ?').get(id) as SessionRow | undefined;
    if (!r) return undefined;
    if (r.expires_at <= now || r.absolute_expires_at <= now) {
      this.#db.prepare('DELETE FROM session WHERE id = ?').run(id);
      return undefined;
    }
    return sessionFromRow(r);
  }

  async touchSession(token: string, now: number, idleMs: number): Promise<void> {
    this.#db
      .prepare(
        `UPDATE session SET last_seen_at = @now, expires_at = MIN(@now + @idleMs, absolute_expires_at)
         WHERE id = @id AND expires_at > @now AND absolute_expires_at > @now`,
      )
      .run({ id: secretDigest(token), now, idleMs });
  }

  async completeSecondFactor(token: string): Promise<void> {
    const { changes } = this.#db.prepare('UPDATE session SET second_factor_pending = 0 WHERE id = ?').run(secretDigest(token));
    if (changes === 0) throw notFound('no such session');
  }

  async deleteSession(token: string): Promise<void> {
    this.#db.prepare('DELETE FROM session WHERE id = ?').run(secretDigest(token));
  }

  async deleteSessionsOf(accountId: number): Promise<number> {
    return this.#db.prepare('DELETE FROM session WHERE account_id = ?').run(accountId).changes;
  }

  async deleteExpiredSessions(now: number): Promise<number> {
    return this.#db.prepare('DELETE FROM session WHERE expires_at <= ? OR absolute_expires_at <= ?').run(now, now).changes;
  }

  async createToken(t: NewApiToken): Promise<{ token: string; record: ApiToken }> {
    const name = t.name.trim();
    if (name === '' || [...name].length > MAX_TOKEN_NAME_CHARS) {
      throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', `token name: 1 to ${MAX_TOKEN_NAME_CHARS} characters`);
    }
    if (!this.#account(t.accountId)) throw notFound(`no account with id ${t.accountId}`);
    const token = API_TOKEN_PREFIX + randomBytes(TOKEN_BYTES).toString('base64url');
    const r = this.#db
      .prepare(
        `INSERT INTO api_token (account_id, name, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?)
         RETURNING id, account_id, name, created_at, expires_at, last_used_at, revoked_at`,
      )
      .get(t.accountId, name, secretDigest(token), t.now, t.expiresAt) as TokenRow;
    return { token, record: tokenFromRow(r) };
  }

  async verifyToken(token: string, now: number): Promise<{ account: Account; tokenId: number } | undefined> {
    if (!token.startsWith(API_TOKEN_PREFIX)) return undefined;
    const r = this.#db
      .prepare(
        `SELECT t.id AS token_id, t.last_used_at AS token_last_used_at, a.* FROM api_token t JOIN account a ON a.id = t.account_id
         WHERE t.token_hash = ? AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?) AND a.disabled = 0`,
      )
      .get(secretDigest(token), now) as (AccountRow & { token_id: number; token_last_used_at: number | null }) | undefined;
    if (!r) return undefined;
    if (r.token_last_used_at === null || now - r.token_last_used_at >= TOKEN_LAST_USED_RESOLUTION_MS) {
      this.#db.prepare('UPDATE api_token SET last_used_at = ? WHERE id = ?').run(now, r.token_id);
    }
    return { account: accountFromRow(r), tokenId: r.token_id };
  }

  async listTokens(accountId: number): Promise<ApiToken[]> {
    return (
      this.#db
        .prepare('SELECT id, account_id, name, created_at, expires_at, last_used_at, revoked_at FROM api_token WHERE account_id = ? ORDER BY id DESC')
        .all(accountId) as TokenRow[]
    ).map(tokenFromRow);
  }

  async revokeToken(id: number): Promise<void> {
    const r = this.#db.prepare('UPDATE api_token SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?').run(this.#now(), id);
    if (r.changes === 0) throw notFound(`no API token with id ${id}`);
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}

/** The patch without keys whose value is undefined (an explicit `undefined` must not blank a field). */
function definedOnly(patch: AccountPatch): AccountPatch {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as AccountPatch;
}
