/**
 * The AccountStore contract: every driver's test file calls describeAccountStoreContract with a factory for a
 * fresh, empty store on the clock `now`. Covers accounts (uniqueness, role/tenant rules, lockout), sessions (idle
 * and absolute expiry, second factor), API tokens (revocation, expiry, disabled accounts) and TOTP replay.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isLocked, secretDigest, type AccountStore, type NewAccount } from '../../../src/admin/auth/account-store.ts';
import { newTotpSecret, totpCode, TOTP_PERIOD_S, verifyTotp } from '../../../src/admin/auth/totp.ts';

export interface AccountStoreFixture {
  store: AccountStore;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2026, 11, 1, 9, 0, 0);
const MIN = 60_000;
/** Shape of a hashPassword result; the store only keeps it (hashing is tested in passwords.test.ts). */
const HASH = 'scrypt$32768$8$1$c2FsdHNhbHRzYWx0c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=';

function staff(over: Partial<NewAccount> = {}): NewAccount {
  return { username: 'sato.hanako', displayName: '佐藤 花子', role: 'tenant-staff', tenantId: 'city-a', email: 'sato@city-a.example.lg.jp', passwordHash: HASH, ...over };
}

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  await expect(p).rejects.toMatchObject({ code });
}

export function describeAccountStoreContract(name: string, make: (opts: { now: () => number }) => Promise<AccountStoreFixture>): void {
  describe(`AccountStore contract: ${name}`, () => {
    let fx: AccountStoreFixture;
    let store: AccountStore;
    let clock: number;
    beforeEach(async () => {
      clock = T0;
      fx = await make({ now: () => clock });
      store = fx.store;
    });
    afterEach(async () => {
      await store.close();
      await fx.cleanup();
    });

    describe('accounts', () => {
      it('creates an account and reads it back by id and by user name in any case', async () => {
        const a = await store.create(staff());
        expect(a).toEqual({
          id: a.id,
          username: 'sato.hanako',
          displayName: '佐藤 花子',
          role: 'tenant-staff',
          tenantId: 'city-a',
          email: 'sato@city-a.example.lg.jp',
          locale: 'ja',
          passwordHash: HASH,
          totpSecret: null,
          totpLastStep: null,
          disabled: false,
          failedLogins: 0,
          lockedUntil: null,
          lastLoginAt: null,
          createdAt: T0,
          updatedAt: T0,
        });
        expect(await store.get(a.id)).toEqual(a);
        expect(await store.byUsername('SATO.Hanako')).toEqual(a);
        expect(await store.byUsername('nobody')).toBeUndefined();
        expect(await store.get(a.id + 1000)).toBeUndefined();
      });

      it('defaults the display name to the user name and lists accounts by user name', async () => {
        await store.create({ username: 'zeta', role: 'operator', passwordHash: HASH, locale: 'en' });
        await store.create({ username: 'alpha', role: 'admin', passwordHash: HASH });
        const list = await store.list();
        expect(list.map((a) => [a.username, a.displayName, a.locale, a.tenantId])).toEqual([
          ['alpha', 'alpha', 'ja', null],
          ['zeta', 'zeta', 'en', null],
        ]);
      });

      it('refuses a second account with the same user name in another case (SEKISHO_ERR_AUTH_DUPLICATE)', async () => {
        await store.create(staff());
        await rejects(store.create(staff({ username: 'Sato.Hanako', tenantId: 'town-b' })), 'SEKISHO_ERR_AUTH_DUPLICATE');
        expect(await store.list()).toHaveLength(1);
      });

      it('refuses a role/tenant mismatch, an unknown role and malformed fields (SEKISHO_ERR_AUTH_INVALID)', async () => {
        await rejects(store.create(staff({ tenantId: null })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ role: 'tenant-admin', tenantId: undefined })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ role: 'admin' })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ role: 'root' as never })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ username: 'has space' })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ username: '' })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ email: 'not-an-address' })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ locale: 'fr' as never })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ passwordHash: 'plain text' })), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.create(staff({ displayName: 'a\u0000b' })), 'SEKISHO_ERR_AUTH_INVALID');
        expect(await store.list()).toEqual([]);
      });

      it('updates fields, checks the patched role/tenant pair as a whole, and ignores undefined values', async () => {
        const a = await store.create(staff());
        clock += MIN;
        const b = await store.update(a.id, { displayName: '佐藤 花子（課長）', role: 'tenant-admin', email: undefined, locale: 'en' });
        expect(b).toMatchObject({ displayName: '佐藤 花子（課長）', role: 'tenant-admin', tenantId: 'city-a', email: a.email, locale: 'en', updatedAt: T0 + MIN });
        expect(await store.get(a.id)).toEqual(b);
        await rejects(store.update(a.id, { role: 'admin' }), 'SEKISHO_ERR_AUTH_INVALID');
        expect(await store.update(a.id, { role: 'admin', tenantId: null })).toMatchObject({ role: 'admin', tenantId: null });
        await rejects(store.update(a.id, { role: 'tenant-staff' }), 'SEKISHO_ERR_AUTH_INVALID');
        await rejects(store.update(a.id + 1000, { displayName: 'x' }), 'SEKISHO_ERR_AUTH_NOT_FOUND');
      });

      it('a new TOTP secret starts with no used step', async () => {
        const a = await store.create(staff());
        await store.update(a.id, { totpSecret: 'JBSWY3DPEHPK3PXP', totpLastStep: 5 });
        expect(await store.update(a.id, { totpSecret: 'KRSXG5CTMVRXEZLU' })).toMatchObject({ totpSecret: 'KRSXG5CTMVRXEZLU', totpLastStep: null });
      });

      it('locks an account after maxFailures consecutive failures, for lockMs, and resets the counter', async () => {
        const a = await store.create(staff());
        const policy = { maxFailures: 3, lockMs: 15 * MIN };
        expect(await store.recordLoginFailure(a.id, T0, policy)).toMatchObject({ failedLogins: 1, lockedUntil: null });
        const second = await store.recordLoginFailure(a.id, T0 + 1, policy);
        expect(second).toMatchObject({ failedLogins: 2, lockedUntil: null });
        expect(isLocked(second, T0 + 1)).toBe(false);
        const third = await store.recordLoginFailure(a.id, T0 + 2, policy);
        expect(third).toMatchObject({ failedLogins: 0, lockedUntil: T0 + 2 + 15 * MIN });
        expect(isLocked(third, T0 + 3)).toBe(true);
        expect(isLocked(third, T0 + 2 + 15 * MIN)).toBe(false);
        expect((await store.get(a.id))?.lockedUntil).toBe(T0 + 2 + 15 * MIN);
        await rejects(store.recordLoginFailure(a.id + 1000, T0, policy), 'SEKISHO_ERR_AUTH_NOT_FOUND');
      });

      it('a successful login resets the failure counter and records the time', async () => {
        const a = await store.create(staff());
        const policy = { maxFailures: 5, lockMs: MIN };
        await store.recordLoginFailure(a.id, T0, policy);
        await store.recordLoginFailure(a.id, T0, policy);
        await store.recordLoginSuccess(a.id, T0 + 5);
        expect(await store.get(a.id)).toMatchObject({ failedLogins: 0, lastLoginAt: T0 + 5 });
        expect(await store.recordLoginFailure(a.id, T0 + 6, policy)).toMatchObject({ failedLogins: 1 });
      });
    });

    describe('sessions', () => {
      const idleMs = 30 * MIN;
      const absoluteMs = 8 * 60 * MIN;

      it('hands out a random token once and stores only its SHA-256', async () => {
        const a = await store.create(staff());
        const { token, session } = await store.createSession({ accountId: a.id, ip: '192.0.2.7', userAgent: 'Mozilla/5.0', now: T0, idleMs, absoluteMs });
        expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
        expect(session).toEqual({
          id: secretDigest(token),
          accountId: a.id,
          csrfToken: session.csrfToken,
          ip: '192.0.2.7',
          userAgent: 'Mozilla/5.0',
          createdAt: T0,
          lastSeenAt: T0,
          expiresAt: T0 + idleMs,
          absoluteExpiresAt: T0 + absoluteMs,
          secondFactorPending: false,
        });
        expect(session.csrfToken.length).toBeGreaterThanOrEqual(32);
        expect(session.id).not.toContain(token);
        expect(await store.getSession(token, T0 + 1)).toEqual(session);
        expect(await store.getSession(session.id, T0 + 1)).toBeUndefined();
        const other = await store.createSession({ accountId: a.id, ip: null, userAgent: null, now: T0, idleMs, absoluteMs });
        expect(other.token).not.toBe(token);
        expect(other.session.csrfToken).not.toBe(session.csrfToken);
      });

      it('expires an idle session, deletes it, and touch moves the idle deadline', async () => {
        const a = await store.create(staff());
        const { token } = await store.createSession({ accountId: a.id, ip: null, userAgent: null, now: T0, idleMs, absoluteMs });
        await store.touchSession(token, T0 + 20 * MIN, idleMs);
        expect(await store.getSession(token, T0 + 45 * MIN)).toMatchObject({ lastSeenAt: T0 + 20 * MIN, expiresAt: T0 + 50 * MIN });
        expect(await store.getSession(token, T0 + 50 * MIN)).toBeUndefined();
        // Deleted, not merely hidden: asking again with an earlier clock finds nothing either.
        expect(await store.getSession(token, T0 + 21 * MIN)).toBeUndefined();
      });

      it('never lets touch carry a session past its absolute deadline', async () => {
        const a = await store.create(staff());
        const { token } = await store.createSession({ accountId: a.id, ip: null, userAgent: null, now: T0, idleMs, absoluteMs });
        for (let t = T0; t < T0 + absoluteMs; t += 20 * MIN) await store.touchSession(token, t, idleMs);
        expect((await store.getSession(token, T0 + absoluteMs - 1))?.expiresAt).toBe(T0 + absoluteMs);
        expect(await store.getSession(token, T0 + absoluteMs)).toBeUndefined();
        await store.touchSession(token, T0 + absoluteMs + 1, idleMs);
        expect(await store.getSession(token, T0 + 1)).toBeUndefined();
      });

      it('a session of an account with TOTP waits for the second factor', async () => {
        const a = await store.create(staff());
        await store.update(a.id, { totpSecret: newTotpSecret() });
        const { token, session } = await store.createSession({ accountId: a.id, ip: null, userAgent: null, now: T0, idleMs, absoluteMs });
        expect(session.secondFactorPending).toBe(true);
        await store.completeSecondFactor(token);
        expect((await store.getSession(token, T0 + 1))?.secondFactorPending).toBe(false);
        await rejects(store.completeSecondFactor('unknown'), 'SEKISHO_ERR_AUTH_NOT_FOUND');
        await rejects(store.createSession({ accountId: a.id + 1000, ip: null, userAgent: null, now: T0, idleMs, absoluteMs }), 'SEKISHO_ERR_AUTH_NOT_FOUND');
      });

      it('logout deletes one session; deleteSessionsOf and disabling the account delete them all', async () => {
        const a = await store.create(staff());
        const b = await store.create(staff({ username: 'suzuki' }));
        const open = () => store.createSession({ accountId: a.id, ip: null, userAgent: null, now: T0, idleMs, absoluteMs });
        const s1 = await open();
        const s2 = await open();
        const s3 = await open();
        const sb = await store.createSession({ accountId: b.id, ip: null, userAgent: null, now: T0, idleMs, absoluteMs });
        await store.deleteSession(s1.token);
        expect(await store.getSession(s1.token, T0)).toBeUndefined();
        expect(await store.deleteSessionsOf(a.id)).toBe(2);
        expect(await store.getSession(s2.token, T0)).toBeUndefined();
        const s4 = await open();
        await store.update(a.id, { disabled: true });
        expect(await store.getSession(s4.token, T0)).toBeUndefined();
        expect(await store.getSession(s3.token, T0)).toBeUndefined();
        expect(await store.getSession(sb.token, T0)).toBeDefined();
      });

      it('deleteExpiredSessions removes only sessions past a deadline', async () => {
        const a = await store.create(staff());
        await store.createSession({ accountId: a.id, ip: null, userAgent: null, now: T0, idleMs, absoluteMs });
        const live = await store.createSession({ accountId: a.id, ip: null, userAgent: null, now: T0 + 20 * MIN, idleMs, absoluteMs });
        expect(await store.deleteExpiredSessions(T0 + 30 * MIN)).toBe(1);
        expect(await store.getSession(live.token, T0 + 30 * MIN)).toBeDefined();
      });
    });

    describe('API tokens', () => {
      it('shows a token once (skt_…), verifies it to its account, and lists it without the secret', async () => {
        const a = await store.create(staff());
        const { token, record } = await store.createToken({ accountId: a.id, name: 'SOC export', now: T0, expiresAt: null });
        expect(token).toMatch(/^skt_[A-Za-z0-9_-]{43}$/);
        expect(record).toEqual({ id: record.id, accountId: a.id, name: 'SOC export', createdAt: T0, expiresAt: null, lastUsedAt: null, revokedAt: null });
        const v = await store.verifyToken(token, T0 + MIN);
        expect(v).toEqual({ account: expect.objectContaining({ id: a.id, username: 'sato.hanako' }), tokenId: record.id });
        expect(await store.listTokens(a.id)).toEqual([{ ...record, lastUsedAt: T0 + MIN }]);
        expect(JSON.stringify(await store.listTokens(a.id))).not.toContain(token.slice(4));
        expect(await store.verifyToken(`${token}x`, T0)).toBeUndefined();
        expect(await store.verifyToken(token.slice(4), T0)).toBeUndefined();
        await rejects(store.createToken({ accountId: a.id + 1000, name: 'x', now: T0, expiresAt: null }), 'SEKISHO_ERR_AUTH_NOT_FOUND');
        await rejects(store.createToken({ accountId: a.id, name: ' ', now: T0, expiresAt: null }), 'SEKISHO_ERR_AUTH_INVALID');
      });

      it('a revoked token no longer verifies and keeps its first revocation time', async () => {
        const a = await store.create(staff());
        const { token, record } = await store.createToken({ accountId: a.id, name: 'script', now: T0, expiresAt: null });
        const other = await store.createToken({ accountId: a.id, name: 'other', now: T0, expiresAt: null });
        clock = T0 + MIN;
        await store.revokeToken(record.id);
        clock = T0 + 2 * MIN;
        await store.revokeToken(record.id);
        expect(await store.verifyToken(token, T0 + 3 * MIN)).toBeUndefined();
        expect(await store.verifyToken(other.token, T0 + 3 * MIN)).toBeDefined();
        const listed = await store.listTokens(a.id);
        expect(listed.map((t) => [t.name, t.revokedAt])).toEqual([
          ['other', null],
          ['script', T0 + MIN],
        ]);
        await rejects(store.revokeToken(record.id + 1000), 'SEKISHO_ERR_AUTH_NOT_FOUND');
      });

      it('an expired token and a token of a disabled account do not verify', async () => {
        const a = await store.create(staff());
        const { token } = await store.createToken({ accountId: a.id, name: 'short', now: T0, expiresAt: T0 + MIN });
        expect(await store.verifyToken(token, T0 + MIN - 1)).toBeDefined();
        expect(await store.verifyToken(token, T0 + MIN)).toBeUndefined();
        const forever = await store.createToken({ accountId: a.id, name: 'forever', now: T0, expiresAt: null });
        await store.update(a.id, { disabled: true });
        expect(await store.verifyToken(forever.token, T0)).toBeUndefined();
        await store.update(a.id, { disabled: false });
        expect(await store.verifyToken(forever.token, T0)).toBeDefined();
      });
    });

    describe('TOTP', () => {
      it('accepts a valid code once: the same code, or one of an earlier step, is refused (replay)', async () => {
        const secret = newTotpSecret();
        const a = await store.update((await store.create(staff())).id, { totpSecret: secret });
        const now = T0 + 10_000;
        const step = TOTP_PERIOD_S * 1000;
        expect(await verifyTotp(store, a, totpCode(secret, now), now)).toBe(true);
        expect(await verifyTotp(store, a, totpCode(secret, now), now + 1_000)).toBe(false);
        // The previous step's code is still inside the ±1 window, but older than the one used.
        expect(await verifyTotp(store, a, totpCode(secret, now - step), now)).toBe(false);
        expect(await verifyTotp(store, a, totpCode(secret, now + step), now + step)).toBe(true);
        expect((await store.get(a.id))?.totpLastStep).toBe(Math.floor((now + step) / step));
      });

      it('refuses a wrong code, a code outside the window, and any code for an account without TOTP', async () => {
        const secret = newTotpSecret();
        const a = await store.update((await store.create(staff())).id, { totpSecret: secret });
        const now = T0 + 10_000;
        const good = totpCode(secret, now);
        const wrong = String((Number(good) + 1) % 1_000_000).padStart(6, '0');
        expect(await verifyTotp(store, a, wrong, now)).toBe(false);
        expect(await verifyTotp(store, a, totpCode(secret, now - 3 * TOTP_PERIOD_S * 1000), now)).toBe(false);
        const plain = await store.create(staff({ username: 'no-totp' }));
        expect(await verifyTotp(store, plain, good, now)).toBe(false);
        expect(await store.claimTotpStep(plain.id, 1)).toBe(false);
        // The failed attempts used no step: the good code still works.
        expect(await verifyTotp(store, a, good, now)).toBe(true);
      });
    });
  });
}
