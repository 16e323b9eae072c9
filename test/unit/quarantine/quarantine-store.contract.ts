/**
 * The QuarantineStore contract: every driver's test file calls describeQuarantineStoreContract with a factory for
 * a fresh, empty store on the clock `now`. Covers idempotent holds, tenant-scoped listing and counting, paging
 * order, and expiry (only live records past their deadline, each once).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NewQuarantineRecord, QuarantineStore } from '../../../src/quarantine/quarantine-store.ts';

export interface QuarantineStoreFixture {
  store: QuarantineStore;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2026, 11, 1, 0, 0, 0);
const DAY = 24 * 3_600_000;

export function record(over: Partial<NewQuarantineRecord> = {}): NewQuarantineRecord {
  return {
    messageId: 'm1',
    tenantId: 'city-a',
    kind: 'original',
    recipients: ['a@city-a.example.lg.jp'],
    mailFrom: 'sender@example.com',
    subject: '=?ISO-2022-JP?B?GyRCSnM5cD1xGyhC?=',
    symbols: ['ARCHIVE_ENCRYPTED'],
    reasons: ['tenant city-a sanitizes every message'],
    createdAt: T0,
    expiresAt: T0 + 14 * DAY,
    ...over,
  };
}

export function describeQuarantineStoreContract(name: string, make: (opts: { now: () => number }) => Promise<QuarantineStoreFixture>): void {
  describe(`QuarantineStore contract: ${name}`, () => {
    let fx: QuarantineStoreFixture;
    let store: QuarantineStore;
    let clock: number;
    beforeEach(async () => {
      clock = T0 + 1_000;
      fx = await make({ now: () => clock });
      store = fx.store;
    });
    afterEach(async () => {
      await store.close();
      await fx.cleanup();
    });

    it('holds a record and reads it back whole, in state held', async () => {
      await store.hold(record());
      expect(await store.get('m1', 'city-a')).toEqual({ ...record(), state: 'held', updatedAt: clock });
      expect(await store.get('m1', 'town-b')).toBeUndefined();
    });

    it('a second hold of the same message and tenant keeps the first record (retried jobs)', async () => {
      await store.hold(record());
      await store.hold(record({ expiresAt: T0 + 99 * DAY, reasons: ['again'] }));
      const r = await store.get('m1', 'city-a');
      expect(r?.expiresAt).toBe(T0 + 14 * DAY);
      expect(r?.reasons).toEqual(['tenant city-a sanitizes every message']);
    });

    it('keeps one record per tenant of a message', async () => {
      await store.hold(record());
      await store.hold(record({ tenantId: 'town-b', kind: 'held' }));
      expect((await store.ofMessage('m1')).map((r) => [r.tenantId, r.kind])).toEqual([
        ['city-a', 'original'],
        ['town-b', 'held'],
      ]);
    });

    it('lists newest first, per tenant and state, with paging', async () => {
      for (let i = 0; i < 5; i++) await store.hold(record({ messageId: `m${i}`, createdAt: T0 + i, tenantId: i % 2 ? 'town-b' : 'city-a' }));
      expect((await store.list()).map((r) => r.messageId)).toEqual(['m4', 'm3', 'm2', 'm1', 'm0']);
      expect((await store.list({ tenantId: 'city-a' })).map((r) => r.messageId)).toEqual(['m4', 'm2', 'm0']);
      expect((await store.list({ limit: 2, offset: 1 })).map((r) => r.messageId)).toEqual(['m3', 'm2']);
      expect(await store.list({ state: 'expired' })).toEqual([]);
    });

    it('counts by state, for all tenants or one', async () => {
      await store.hold(record());
      await store.hold(record({ messageId: 'm2', tenantId: 'town-b' }));
      expect((await store.countByState()).held).toBe(2);
      expect(await store.countByState('town-b')).toMatchObject({ held: 1, expired: 0 });
    });

    it('expires only live records past their deadline, each once', async () => {
      await store.hold(record({ messageId: 'old', expiresAt: T0 + DAY }));
      await store.hold(record({ messageId: 'new', expiresAt: T0 + 30 * DAY }));
      expect(await store.expireDue(T0 + DAY - 1, 10)).toEqual([]);
      clock = T0 + 2 * DAY;
      const gone = await store.expireDue(T0 + 2 * DAY, 10);
      expect(gone.map((r) => [r.messageId, r.state])).toEqual([['old', 'expired']]);
      expect((await store.get('old', 'city-a'))?.state).toBe('expired');
      expect((await store.get('new', 'city-a'))?.state).toBe('held');
      expect(await store.expireDue(T0 + 2 * DAY, 10)).toEqual([]);
    });

    it('expires in batches of the limit given', async () => {
      for (let i = 0; i < 5; i++) await store.hold(record({ messageId: `m${i}`, expiresAt: T0 + i }));
      expect(await store.expireDue(T0 + DAY, 2)).toHaveLength(2);
      expect(await store.expireDue(T0 + DAY, 10)).toHaveLength(3);
    });
  });
}
