/** SqliteAccountStore: the AccountStore contract, and that accounts and sessions are shared through the file (admin app + CLI). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteAccountStore } from '../../../src/admin/auth/sqlite-account-store.ts';
import { describeAccountStoreContract } from './account-store.contract.ts';

const HASH = 'scrypt$32768$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=';

describeAccountStoreContract('sqlite', async ({ now }) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-acct-'));
  return { store: new SqliteAccountStore(path.join(dir, 'admin.sqlite'), { now }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('SqliteAccountStore', () => {
  it('a second connection to the file sees accounts, sessions and the lockout counter of the first', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-acct-'));
    try {
      const file = path.join(dir, 'nested', 'admin.sqlite');
      const a = new SqliteAccountStore(file);
      const b = new SqliteAccountStore(file);
      const acct = await a.create({ username: 'admin', role: 'admin', passwordHash: HASH });
      const { token } = await a.createSession({ accountId: acct.id, ip: null, userAgent: null, now: 1_000, idleMs: 60_000, absoluteMs: 600_000 });
      expect((await b.getSession(token, 2_000))?.accountId).toBe(acct.id);
      const policy = { maxFailures: 2, lockMs: 60_000 };
      await a.recordLoginFailure(acct.id, 1_000, policy);
      expect((await b.recordLoginFailure(acct.id, 1_001, policy)).lockedUntil).toBe(61_001);
      await a.close();
      await b.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
