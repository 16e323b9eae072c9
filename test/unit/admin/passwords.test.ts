/** Password hashing and policy: the stored format, verification, malformed hashes, the minimum length and the user-name rule. */
import { describe, expect, it } from 'vitest';
import { hashPassword, MIN_PASSWORD_CHARS, passwordNeedsRehash, validateNewPassword, verifyAgainstDummy, verifyPassword } from '../../../src/admin/auth/passwords.ts';

describe('passwords', () => {
  it('hashes to scrypt$N$r$p$salt$hash with a fresh salt, and verifies only the same password', async () => {
    const pw = '関所のパスワード-2026';
    const h1 = await hashPassword(pw);
    const h2 = await hashPassword(pw);
    expect(h1).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
    expect(h1).not.toBe(h2);
    expect(await verifyPassword(pw, h1)).toBe(true);
    expect(await verifyPassword(pw, h2)).toBe(true);
    expect(await verifyPassword(`${pw} `, h1)).toBe(false);
    expect(passwordNeedsRehash(h1)).toBe(false);
  });

  it('verifies a password typed in another Unicode normalisation form (NFD vs NFC)', async () => {
    const nfc = 'パスワードがぎっしり詰まった';
    const h = await hashPassword(nfc);
    expect(await verifyPassword(nfc.normalize('NFD'), h)).toBe(true);
  });

  it('a malformed or out-of-bounds stored hash is a mismatch, not an exception', async () => {
    for (const bad of ['', 'plain', 'scrypt$32768$8$1$$', 'scrypt$1000$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==', `scrypt$${2 ** 24}$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==`, 'bcrypt$x']) {
      expect(await verifyPassword('whatever-password', bad)).toBe(false);
      expect(passwordNeedsRehash(bad)).toBe(true);
    }
    expect(await verifyAgainstDummy('whatever-password')).toBe(false);
  });

  it(`refuses passwords shorter than ${MIN_PASSWORD_CHARS} characters or equal to the user name`, () => {
    expect(() => validateNewPassword('short-pass1', 'sato')).toThrow(expect.objectContaining({ code: 'SEKISHO_ERR_AUTH_INVALID' }));
    // Counted in characters, not bytes: 11 kanji are 33 bytes of UTF-8 and still too short.
    expect(() => validateNewPassword('関所関所関所関所関所関', 'sato')).toThrow(/at least 12/);
    expect(() => validateNewPassword('関所関所関所関所関所関所', 'sato')).not.toThrow();
    expect(() => validateNewPassword('Sato.Hanako.2026', 'sato.hanako.2026')).toThrow(/user name/);
    expect(() => validateNewPassword('x'.repeat(2_000), 'sato')).toThrow(/at most/);
  });
});
