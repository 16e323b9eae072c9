/** TOTP codes against RFC 6238's published SHA-1 test vectors (6-digit truncation), and the enrolment URI. */
import { describe, expect, it } from 'vitest';
import { newTotpSecret, totpCode, totpStep, totpUri } from '../../../src/admin/auth/totp.ts';

/** RFC 6238 appendix B's SHA-1 key, "12345678901234567890", in base32. */
const RFC_SECRET = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

describe('totp', () => {
  it('matches RFC 6238 appendix B (SHA-1, last 6 of the 8 digits)', () => {
    expect(totpCode(RFC_SECRET, 59_000)).toBe('287082');
    expect(totpCode(RFC_SECRET, 1_111_111_109_000)).toBe('081804');
    expect(totpCode(RFC_SECRET, 2_000_000_000_000)).toBe('279037');
  });

  it('finds the step of a code within ±1 step, tolerating spaces, and nothing beyond', () => {
    const now = 1_111_111_109_000;
    const step = Math.floor(now / 30_000);
    expect(totpStep(RFC_SECRET, '081 804', now)).toBe(step);
    expect(totpStep(RFC_SECRET, totpCode(RFC_SECRET, now - 30_000), now)).toBe(step - 1);
    expect(totpStep(RFC_SECRET, totpCode(RFC_SECRET, now + 30_000), now)).toBe(step + 1);
    expect(totpStep(RFC_SECRET, totpCode(RFC_SECRET, now + 60_000), now)).toBeUndefined();
    expect(totpStep(RFC_SECRET, '08180', now)).toBeUndefined();
    expect(totpStep(RFC_SECRET, '0818045', now)).toBeUndefined();
  });

  it('makes 160-bit secrets and an otpauth:// URI with issuer, SHA1, 6 digits, 30 s', () => {
    const s = newTotpSecret();
    expect(s).toMatch(/^[A-Z2-7]{32}$/);
    expect(newTotpSecret()).not.toBe(s);
    const uri = new URL(totpUri(s, 'sato@mx.pref.example.lg.jp'));
    expect(uri.protocol).toBe('otpauth:');
    expect(uri.host).toBe('totp');
    expect(Object.fromEntries(uri.searchParams)).toEqual({ issuer: 'Sekisho', secret: s, algorithm: 'SHA1', digits: '6', period: '30' });
  });
});
