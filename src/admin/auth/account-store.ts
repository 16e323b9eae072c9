/**
 * AccountStore: console accounts, their login sessions and their API tokens. Drivers pass
 * test/unit/admin/account-store.contract.ts.
 * Rule: session and API tokens exist in clear only in the return value that hands them out; the store keeps their
 * SHA-256, so a copy of the database logs nobody in.
 */
import { createHash } from 'node:crypto';
import { SekishoError } from '../../errors.ts';
import { isRole, roleNeedsTenant, type Role } from './roles.ts';

export type Locale = 'ja' | 'en';
export const locales: readonly Locale[] = ['ja', 'en'];

export interface Account {
  id: number;
  /** Unique, compared case-insensitively; ASCII letters, digits and `._@-` (USERNAME_PATTERN). */
  username: string;
  displayName: string;
  role: Role;
  /** Set exactly when roleNeedsTenant(role). */
  tenantId: string | null;
  email: string | null;
  locale: Locale;
  /** passwords.ts format (`scrypt$…`). */
  passwordHash: string;
  /** Base32 TOTP secret; null = no second factor enrolled. */
  totpSecret: string | null;
  /** Time step (unix seconds / 30) of the last TOTP code accepted: a code of this step or an earlier one is refused. */
  totpLastStep: number | null;
  disabled: boolean;
  failedLogins: number;
  /** Unix ms until which logins are refused after too many failures; null or past = not locked. */
  lockedUntil: number | null;
  lastLoginAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface NewAccount {
  username: string;
  /** Default: the user name. */
  displayName?: string;
  role: Role;
  tenantId?: string | null;
  email?: string | null;
  /** Default: 'ja'. */
  locale?: Locale;
  passwordHash: string;
}

export type AccountPatch = Partial<
  Pick<Account, 'displayName' | 'role' | 'tenantId' | 'email' | 'locale' | 'passwordHash' | 'totpSecret' | 'totpLastStep' | 'disabled'>
>;

export interface LockoutPolicy {
  /** Consecutive failures that lock the account. */
  maxFailures: number;
  /** How long a lock lasts, ms. */
  lockMs: number;
}

export interface Session {
  /** SHA-256 (hex) of the session token; the token itself is never stored. */
  id: string;
  accountId: number;
  /** Random, in clear: the admin app puts it in forms and compares it on every state-changing request. */
  csrfToken: string;
  ip: string | null;
  userAgent: string | null;
  createdAt: number;
  lastSeenAt: number;
  /** Idle deadline (unix ms), moved forward by touchSession, never past absoluteExpiresAt. */
  expiresAt: number;
  absoluteExpiresAt: number;
  /** True until completeSecondFactor: the session may only submit a TOTP code. */
  secondFactorPending: boolean;
}

export interface NewSession {
  accountId: number;
  ip: string | null;
  userAgent: string | null;
  now: number;
  idleMs: number;
  absoluteMs: number;
  /** Default: true when the account has a TOTP secret. */
  secondFactorPending?: boolean;
}

export interface ApiToken {
  id: number;
  accountId: number;
  name: string;
  createdAt: number;
  /** Unix ms; null = does not expire. */
  expiresAt: number | null;
  lastUsedAt: number | null;
  /** Unix ms of the revocation; null = live. */
  revokedAt: number | null;
}

export interface NewApiToken {
  accountId: number;
  name: string;
  now: number;
  expiresAt: number | null;
}

/** Prefix of every API token: makes a leaked one recognisable to secret scanners and to us. */
export const API_TOKEN_PREFIX = 'skt_';

export interface AccountStore {
  /** SEKISHO_ERR_AUTH_DUPLICATE if the user name exists (any case); SEKISHO_ERR_AUTH_INVALID for a bad field or role/tenant mismatch. */
  create(a: NewAccount): Promise<Account>;
  get(id: number): Promise<Account | undefined>;
  /** Case-insensitive. */
  byUsername(username: string): Promise<Account | undefined>;
  /** Every account, by user name. */
  list(): Promise<Account[]>;
  /**
   * SEKISHO_ERR_AUTH_NOT_FOUND / SEKISHO_ERR_AUTH_INVALID (the patched role/tenant pair is checked as a whole).
   * Disabling an account also deletes its sessions; a new totpSecret resets totpLastStep unless the patch sets it.
   */
  update(id: number, patch: AccountPatch): Promise<Account>;
  /** Atomic: failedLogins + 1; on reaching policy.maxFailures, lockedUntil = now + lockMs and failedLogins = 0. */
  recordLoginFailure(id: number, now: number, policy: LockoutPolicy): Promise<Account>;
  /** failedLogins = 0, lastLoginAt = now. */
  recordLoginSuccess(id: number, now: number): Promise<void>;
  /**
   * Atomic compare-and-set behind TOTP replay protection: records `step` as the account's last used TOTP step and
   * returns true only if no code of this step or a later one was accepted before (and a secret is enrolled).
   */
  claimTotpStep(id: number, step: number): Promise<boolean>;

  /** token: 32 random bytes, base64url; only its SHA-256 is stored (Session.id). */
  createSession(s: NewSession): Promise<{ token: string; session: Session }>;
  /** undefined for an unknown token; an expired session (idle or absolute) is deleted and undefined. */
  getSession(token: string, now: number): Promise<Session | undefined>;
  /** Moves the idle deadline to now + idleMs (capped at the absolute one); no effect on an unknown or expired session. */
  touchSession(token: string, now: number, idleMs: number): Promise<void>;
  /** SEKISHO_ERR_AUTH_NOT_FOUND for an unknown token. */
  completeSecondFactor(token: string): Promise<void>;
  deleteSession(token: string): Promise<void>;
  /** Logs an account out everywhere; returns how many sessions went. */
  deleteSessionsOf(accountId: number): Promise<number>;
  /** Housekeeping: deletes every session past a deadline; returns how many. */
  deleteExpiredSessions(now: number): Promise<number>;

  /** token: `skt_` + 32 random bytes base64url, shown once; SEKISHO_ERR_AUTH_NOT_FOUND for an unknown account. */
  createToken(t: NewApiToken): Promise<{ token: string; record: ApiToken }>;
  /** undefined for an unknown, revoked or expired token, or a disabled account. */
  verifyToken(token: string, now: number): Promise<{ account: Account; tokenId: number } | undefined>;
  /** The account's tokens, revoked ones included (revokedAt set), newest first. */
  listTokens(accountId: number): Promise<ApiToken[]>;
  /** SEKISHO_ERR_AUTH_NOT_FOUND for an unknown id; revoking twice keeps the first revocation time. */
  revokeToken(id: number): Promise<void>;

  close(): Promise<void>;
}

/** The stored form of a session or API token: SHA-256, hex. */
export function secretDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** True while the account's lockout lasts. */
export function isLocked(a: Pick<Account, 'lockedUntil'>, now: number): boolean {
  return a.lockedUntil !== null && a.lockedUntil > now;
}

/** User names: ASCII, so that case-insensitive uniqueness means the same in every driver (SQLite NOCASE folds ASCII only). */
export const USERNAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@-]*$/;
/** Longest user name, characters: an e-mail address used as a user name fits. */
export const MAX_USERNAME_CHARS = 64;
/** Longest display name, characters: a Japanese full name with a department fits many times over. */
export const MAX_DISPLAY_NAME_CHARS = 100;
/** Longest e-mail address, characters (RFC 5321's path limit). */
export const MAX_EMAIL_CHARS = 254;
/** Longest API token name, characters: a label, not a document. */
export const MAX_TOKEN_NAME_CHARS = 100;

function invalid(message: string): SekishoError {
  return new SekishoError('SEKISHO_ERR_AUTH_INVALID', message);
}

/** The account fields every driver checks on create and update (the whole record after the patch). SEKISHO_ERR_AUTH_INVALID. */
export function checkAccountFields(a: Pick<Account, 'username' | 'displayName' | 'role' | 'tenantId' | 'email' | 'locale' | 'passwordHash'>): void {
  if (a.username.length > MAX_USERNAME_CHARS || !USERNAME_PATTERN.test(a.username)) {
    throw invalid(`username: 1 to ${MAX_USERNAME_CHARS} ASCII letters, digits or ._@- (starting with a letter or digit)`);
  }
  // eslint-disable-next-line no-control-regex
  if (a.displayName.trim() === '' || [...a.displayName].length > MAX_DISPLAY_NAME_CHARS || /[\u0000-\u001f\u007f]/.test(a.displayName)) {
    throw invalid(`displayName: 1 to ${MAX_DISPLAY_NAME_CHARS} characters, no control characters`);
  }
  if (!isRole(a.role)) throw invalid(`role: "${String(a.role)}" is not a role`);
  if (roleNeedsTenant(a.role) && (a.tenantId === null || a.tenantId === '')) throw invalid(`tenantId: role ${a.role} needs a tenant`);
  if (!roleNeedsTenant(a.role) && a.tenantId !== null) throw invalid(`tenantId: role ${a.role} is prefecture-wide and has no tenant`);
  if (a.email !== null && (a.email.length > MAX_EMAIL_CHARS || !/^[^\s@]+@[^\s@]+$/.test(a.email))) throw invalid('email: not an e-mail address');
  if (!locales.includes(a.locale)) throw invalid(`locale: one of ${locales.join(', ')}`);
  if (!a.passwordHash.startsWith('scrypt$')) throw invalid('passwordHash: not a hash made by hashPassword');
}
