/**
 * TOTP second factor (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, ±1 step of clock drift) through `otpauth`.
 * Rule: a code is accepted only through verifyTotp, which claims its time step in the store atomically — a code
 * (or an older one still inside the window) that was already used by the account is refused: no replay.
 */
import { Secret, TOTP } from 'otpauth';
import type { Account, AccountStore } from './account-store.ts';

/** Digits per code: what every authenticator app shows by default. */
export const TOTP_DIGITS = 6;
/** Seconds per time step (RFC 6238's recommended value, the apps' default). */
export const TOTP_PERIOD_S = 30;
/** Steps accepted either side of the current one: ±30 s of phone clock drift and typing time. */
export const TOTP_WINDOW_STEPS = 1;
/** Secret size, bytes: 160 bits, the HMAC-SHA1 block RFC 4226 recommends. */
const TOTP_SECRET_BYTES = 20;
const ISSUER = 'Sekisho';

function totp(secret: string, label = ''): TOTP {
  return new TOTP({ issuer: ISSUER, label, algorithm: 'SHA1', digits: TOTP_DIGITS, period: TOTP_PERIOD_S, secret: Secret.fromBase32(secret) });
}

/** A new random secret, base32 (what authenticator apps accept typed in). */
export function newTotpSecret(): string {
  return new Secret({ size: TOTP_SECRET_BYTES }).base32;
}

/** The otpauth:// URI an authenticator app enrols from (shown as a QR code or pasted). `label`: the user name, usually with the host. */
export function totpUri(secret: string, label: string): string {
  return totp(secret, label).toString();
}

/** The code for `now` (unix ms): for tests and for a console that confirms enrolment. */
export function totpCode(secret: string, now: number): string {
  return totp(secret).generate({ timestamp: now });
}

/** The time step a code belongs to if it is valid for `secret` at `now` (±TOTP_WINDOW_STEPS), else undefined. Does not check replay. */
export function totpStep(secret: string, code: string, now: number): number | undefined {
  const token = code.replace(/\s+/g, '');
  if (!new RegExp(`^[0-9]{${TOTP_DIGITS}}$`).test(token)) return undefined;
  const t = totp(secret);
  const delta = t.validate({ token, timestamp: now, window: TOTP_WINDOW_STEPS });
  return delta === null ? undefined : t.counter({ timestamp: now }) + delta;
}

/**
 * True when `code` is the account's valid TOTP code at `now` and its time step was not used before; the step is
 * then recorded, so the same code (or an earlier one) is refused next time. False for an account without TOTP.
 */
export async function verifyTotp(accounts: AccountStore, account: Pick<Account, 'id' | 'totpSecret'>, code: string, now: number): Promise<boolean> {
  if (account.totpSecret === null) return false;
  const step = totpStep(account.totpSecret, code, now);
  if (step === undefined) return false;
  return accounts.claimTotpStep(account.id, step);
}
