/**
 * Password hashing (scrypt from node:crypto, no native dependency) and the password policy.
 * Stored form: `scrypt$<N>$<r>$<p>$<salt b64>$<hash b64>`. Never compare hashes with `===`: verification goes
 * through timingSafeEqual, and a malformed or out-of-bounds stored hash verifies as false, never throws.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { SekishoError } from '../../errors.ts';

/** Shortest acceptable password, in characters (code points): NIST SP 800-63B's floor for single-factor use is 8; 12 resists offline guessing of a leaked hash. */
export const MIN_PASSWORD_CHARS = 12;
/** Longest accepted password, in characters: bounds the work one login form can ask of scrypt's HMAC; passphrases stay far below. */
export const MAX_PASSWORD_CHARS = 1_024;

/** scrypt cost N (2^15): about 50–100 ms and 32 MiB per hash on one core, the OWASP-recommended minimum. */
const SCRYPT_N = 2 ** 15;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
/** Largest N accepted from a stored hash (2^20 = 1 GiB with r=8): a tampered row cannot make a login eat the host's memory. */
const MAX_SCRYPT_N = 2 ** 20;
const MAX_SCRYPT_R = 32;
const MAX_SCRYPT_P = 16;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

function scryptAsync(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

/** Memory scrypt needs for (N, r) is 128·N·r bytes; give it twice that so Node's maxmem check never refuses. */
function maxmemFor(n: number, r: number): number {
  return 2 * 128 * n * r;
}

/** The password as hashed: NFC, so that the same characters typed on another keyboard or IME verify the same. */
function normalized(password: string): string {
  return password.normalize('NFC');
}

/** Throws SEKISHO_ERR_AUTH_INVALID when `password` may not be set for `username` (too short, too long, equal to the user name). */
export function validateNewPassword(password: string, username: string): void {
  const chars = [...normalized(password)].length;
  if (chars < MIN_PASSWORD_CHARS) throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', `password: at least ${MIN_PASSWORD_CHARS} characters are required`);
  if (chars > MAX_PASSWORD_CHARS) throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', `password: at most ${MAX_PASSWORD_CHARS} characters are allowed`);
  if (normalized(password).toLowerCase() === username.normalize('NFC').toLowerCase()) {
    throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', 'password: must not be the user name');
  }
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(normalized(password), salt, KEY_BYTES, { N: SCRYPT_N, r: SCRYPT_R, p: SCRYPT_P, maxmem: maxmemFor(SCRYPT_N, SCRYPT_R) });
  return ['scrypt', SCRYPT_N, SCRYPT_R, SCRYPT_P, salt.toString('base64'), key.toString('base64')].join('$');
}

interface Parsed {
  n: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

function parse(stored: string): Parsed | undefined {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [n, r, p] = parts.slice(1, 4).map((s) => (/^[0-9]{1,8}$/.test(s) ? Number(s) : NaN)) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64');
  const key = Buffer.from(parts[5]!, 'base64');
  const powerOfTwo = Number.isInteger(n) && n > 1 && (n & (n - 1)) === 0;
  if (!powerOfTwo || n > MAX_SCRYPT_N || !(r >= 1 && r <= MAX_SCRYPT_R) || !(p >= 1 && p <= MAX_SCRYPT_P)) return undefined;
  if (salt.length === 0 || key.length < 16) return undefined;
  return { n, r, p, salt, key };
}

/** True when `password` matches the stored hash. A malformed stored hash is a mismatch. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const h = parse(stored);
  if (!h || [...password].length > MAX_PASSWORD_CHARS) return false;
  const key = await scryptAsync(normalized(password), h.salt, h.key.length, { N: h.n, r: h.r, p: h.p, maxmem: maxmemFor(h.n, h.r) });
  return timingSafeEqual(key, h.key);
}

/** True when the stored hash was made with other parameters than today's: rehash it after a successful login. */
export function passwordNeedsRehash(stored: string): boolean {
  const h = parse(stored);
  return !h || h.n !== SCRYPT_N || h.r !== SCRYPT_R || h.p !== SCRYPT_P || h.key.length !== KEY_BYTES;
}

let dummy: Promise<string> | undefined;

/**
 * Spends the time of one verification and returns false: call it when the user name is unknown (or the account
 * disabled) so that the response time does not tell which user names exist.
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
  dummy ??= hashPassword(randomBytes(18).toString('base64'));
  await verifyPassword(password, await dummy);
  return false;
}
