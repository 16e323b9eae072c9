/**
 * The QuarantineStore contract: every driver's test file calls describeQuarantineStoreContract with a factory for
 * a fresh, empty store on the clock `now`. Covers idempotent holds, tenant-scoped listing and counting, paging
 * order, expiry (only live records past their deadline, each once), the console's search (each filter, tenant
 * scope, exact totals, keyset and offset paging) and the release workflow's compare-and-set transitions.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NewQuarantineRecord, QuarantineRecord, QuarantineSearch, QuarantineStore } from '../../../src/quarantine/quarantine-store.ts';

export interface QuarantineStoreFixture {
  store: QuarantineStore;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2026, 11, 1, 0, 0, 0);
const DAY = 24 * 3_600_000;

const WORKFLOW_NULLS = {
  requestedBy: null,
  requestReason: null,
  decidedBy: null,
  decisionReason: null,
  releasedAt: null,
  releaseMessageId: null,
  overrideReason: null,
};

/** 請求書のご送付 in ISO-2022-JP, as the ingress stores a Japanese Subject (raw header value). */
const SUBJECT_JA = '=?ISO-2022-JP?B?GyRCQEE1YT1xJE4kNEF3SVUbKEI=?=';

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
      expect(await store.get('m1', 'city-a')).toEqual({ ...record(), state: 'held', updatedAt: clock, ...WORKFLOW_NULLS });
      expect(await store.get('m1', 'town-b')).toBeUndefined();
    });

    it('keeps one preview per message, from its first hold; none for a record held without one', async () => {
      const preview = { headers: [{ name: 'subject', value: '請求書' }], text: '本文', textTruncated: false, parts: [], morePartCount: 0 };
      await store.hold(record({ preview }));
      await store.hold(record({ tenantId: 'town-b', preview: { ...preview, text: 'other' } }));
      expect(await store.preview('m1')).toEqual(preview);
      await store.hold(record({ messageId: 'm2' }));
      expect(await store.preview('m2')).toBeNull();
      expect(await store.get('m1', 'city-a')).not.toHaveProperty('preview');
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

    describe('search', () => {
      const ids = async (q: QuarantineSearch) => (await store.search(q)).records.map((r) => `${r.messageId}/${r.tenantId}`);

      beforeEach(async () => {
        await store.hold(record({ messageId: 'inv', subject: SUBJECT_JA, recipients: ['Taro@City-A.example.lg.jp', 'hanako@city-a.example.lg.jp'] }));
        await store.hold(
          record({
            messageId: 'vir',
            tenantId: 'town-b',
            kind: 'held',
            recipients: ['taro@town-b.example.lg.jp'],
            mailFrom: 'Billing@Evil.example',
            subject: 'Your ＩＮＶＯＩＣＥ 100%_paid',
            symbols: ['CLAMAV_VIRUS', 'SPF_FAIL'],
            reasons: ['CLAMAV_VIRUS(Eicar) forces reject'],
            createdAt: T0 + 10,
          }),
        );
        await store.hold(record({ messageId: 'old', subject: null, symbols: [], recipients: ['ataro@city-a.example.lg.jp'], createdAt: T0 - DAY }));
      });

      it('without filters: every record, newest first, with the total', async () => {
        const r = await store.search({});
        expect(r.records.map((x) => x.messageId)).toEqual(['vir', 'inv', 'old']);
        expect(r.total).toBe(3);
        expect(r.nextCursor).toBeNull();
        expect(r.records[0]).toEqual(await store.get('vir', 'town-b'));
      });

      it('filters by recipient: a whole address exactly (any case), anything else as a substring', async () => {
        expect(await ids({ recipient: 'TARO@city-a.example.lg.jp' })).toEqual(['inv/city-a']);
        expect(await ids({ recipient: 'taro@' })).toEqual(['vir/town-b', 'inv/city-a', 'old/city-a']);
        expect(await ids({ recipient: 'town-b.example' })).toEqual(['vir/town-b']);
        expect(await ids({ recipient: 'nobody@city-a.example.lg.jp' })).toEqual([]);
      });

      it('filters by sender, subject (decoded, NFKC, any case) and reason substrings', async () => {
        expect(await ids({ sender: 'billing@evil' })).toEqual(['vir/town-b']);
        expect(await ids({ subject: '請求書' })).toEqual(['inv/city-a']);
        expect(await ids({ subject: '請求' })).toEqual(['inv/city-a']);
        expect(await ids({ subject: 'invoice' })).toEqual(['vir/town-b']);
        expect(await ids({ subject: '100%_' })).toEqual(['vir/town-b']);
        expect(await ids({ subject: '%' })).toEqual(['vir/town-b']);
        expect(await ids({ reason: 'eicar' })).toEqual(['vir/town-b']);
        expect(await ids({ reason: 'sanitizes every' })).toEqual(['inv/city-a', 'old/city-a']);
        await store.hold(record({ messageId: 'glob', subject: 'a*b?[c] 見積', createdAt: T0 - 2 * DAY }));
        expect(await ids({ subject: '*b?[c]' })).toEqual(['glob/city-a']);
        expect(await ids({ subject: 'b?[' })).toEqual(['glob/city-a']);
        expect(await ids({ subject: 'a?b' })).toEqual([]);
        expect(await ids({ subject: '見積' })).toEqual(['glob/city-a']);
      });

      it('filters by symbol (exact name), state, kind and creation time', async () => {
        expect(await ids({ symbol: 'SPF_FAIL' })).toEqual(['vir/town-b']);
        expect(await ids({ symbol: 'SPF' })).toEqual([]);
        expect(await ids({ symbol: 'ARCHIVE_ENCRYPTED', recipient: 'hanako@city-a.example.lg.jp' })).toEqual(['inv/city-a']);
        expect(await ids({ kind: 'held' })).toEqual(['vir/town-b']);
        expect(await ids({ from: T0, to: T0 + 10 })).toEqual(['inv/city-a']);
        expect(await ids({ from: T0 })).toEqual(['vir/town-b', 'inv/city-a']);
        await store.transition('inv', 'city-a', { from: ['held'], to: 'deleted', by: 'admin', reason: null, at: clock });
        expect(await ids({ state: 'deleted' })).toEqual(['inv/city-a']);
        expect(await ids({ state: ['held', 'deleted'], to: T0 + 5 })).toEqual(['inv/city-a', 'old/city-a']);
        expect(await ids({ state: [] })).toEqual([]);
      });

      it("scopes by tenant: another tenant's records are never returned nor counted; [] sees nothing", async () => {
        const a = await store.search({ tenantIds: ['city-a'] });
        expect(a.records.map((r) => r.tenantId)).toEqual(['city-a', 'city-a']);
        expect(a.total).toBe(2);
        for (const q of [{ symbol: 'CLAMAV_VIRUS' }, { recipient: 'taro@town-b.example.lg.jp' }, { sender: 'evil' }, { subject: 'invoice' }]) {
          expect(await store.search({ ...q, tenantIds: ['city-a'] })).toEqual({ records: [], total: 0, nextCursor: null });
        }
        expect(await store.search({ tenantIds: [] })).toEqual({ records: [], total: 0, nextCursor: null });
        expect(await store.search({ tenantIds: [], symbol: 'SPF_FAIL' })).toEqual({ records: [], total: 0, nextCursor: null });
        expect(await store.search({ tenantIds: [], subject: 'invoice' })).toEqual({ records: [], total: 0, nextCursor: null });
        expect(await ids({ tenantIds: ['town-b'], subject: 'invoice', sender: 'billing' })).toEqual(['vir/town-b']);
        expect((await store.search({ tenantIds: ['city-a', 'town-b'] })).total).toBe(3);
        expect(await store.countByState(['city-a'])).toMatchObject({ held: 2 });
        expect(await store.countByState([])).toMatchObject({ held: 0 });
        expect(await store.countsOverTime({ tenantIds: ['town-b'], from: T0 - DAY, to: T0 + DAY, bucketMs: DAY })).toEqual([
          { bucket: T0, tenantId: 'town-b', kind: 'held', n: 1 },
        ]);
        expect(await store.countsOverTime({ tenantIds: [], from: T0 - DAY, to: T0 + DAY, bucketMs: DAY })).toEqual([]);
      });

      it('counts exactly past the page, and rejects a cursor it did not issue', async () => {
        const r = await store.search({ limit: 1 });
        expect(r.records).toHaveLength(1);
        expect(r.total).toBe(3);
        expect(r.nextCursor).not.toBeNull();
        expect((await store.search({ limit: 0 })).total).toBe(3);
        await expect(store.search({ cursor: 'not a cursor' })).rejects.toMatchObject({ code: 'SEKISHO_ERR_QUARANTINE_QUERY' });
        await expect(store.search({ state: 'bogus' as never })).rejects.toMatchObject({ code: 'SEKISHO_ERR_QUARANTINE_QUERY' });
      });

      it('counts per time bucket, tenant and kind', async () => {
        expect(await store.countsOverTime({ from: T0 - DAY, to: T0 + DAY, bucketMs: DAY })).toEqual([
          { bucket: T0 - DAY, tenantId: 'city-a', kind: 'original', n: 1 },
          { bucket: T0, tenantId: 'city-a', kind: 'original', n: 1 },
          { bucket: T0, tenantId: 'town-b', kind: 'held', n: 1 },
        ]);
      });
    });

    describe('paging', () => {
      /** 30 records on 4 distinct createdAt values, the same message ids in two tenants: ties everywhere. */
      beforeEach(async () => {
        for (let i = 0; i < 15; i++) {
          for (const tenantId of ['city-a', 'town-b']) {
            await store.hold(record({ messageId: `m${i % 5}x${Math.floor(i / 5)}`, tenantId, createdAt: T0 + (i % 4), symbols: ['SPF_FAIL'] }));
          }
        }
      });

      async function walk(q: QuarantineSearch): Promise<QuarantineRecord[]> {
        const seen: QuarantineRecord[] = [];
        let cursor: string | undefined;
        for (let pages = 0; pages < 100; pages++) {
          const page = await store.search({ ...q, limit: 4, ...(cursor === undefined ? {} : { cursor }) });
          seen.push(...page.records);
          if (page.nextCursor === null) return seen;
          cursor = page.nextCursor;
        }
        throw new Error('the cursor never ended');
      }

      for (const q of [{}, { tenantIds: ['town-b'] }, { symbol: 'SPF_FAIL' }, { symbol: 'SPF_FAIL', tenantIds: ['city-a'] }, { recipient: 'a@city-a.example.lg.jp' }]) {
        it(`the cursor visits every record exactly once, in the order offset paging gives: ${JSON.stringify(q)}`, async () => {
          const key = (r: QuarantineRecord) => `${r.messageId}/${r.tenantId}`;
          const all = await store.search({ ...q, limit: 500 });
          const byCursor = (await walk(q)).map(key);
          expect(new Set(byCursor).size).toBe(byCursor.length);
          expect(byCursor).toEqual(all.records.map(key));
          expect(byCursor).toHaveLength(all.total);
          const byOffset: string[] = [];
          for (let offset = 0; offset < all.total; offset += 4) byOffset.push(...(await store.search({ ...q, limit: 4, offset })).records.map(key));
          expect(byOffset).toEqual(byCursor);
        });
      }
    });

    describe('transition', () => {
      beforeEach(async () => {
        await store.hold(record());
      });

      it('walks the release workflow, recording who and why at each step', async () => {
        const requested = await store.transition('m1', 'city-a', { from: ['held'], to: 'release-requested', by: 'taro', reason: 'need it', at: T0 + 5 });
        expect(requested).toMatchObject({ state: 'release-requested', requestedBy: 'taro', requestReason: 'need it', decidedBy: null, updatedAt: T0 + 5 });
        const approved = await store.transition('m1', 'city-a', { from: ['release-requested'], to: 'approved', by: 'boss', reason: 'ok', at: T0 + 6 });
        expect(approved).toMatchObject({ state: 'approved', requestedBy: 'taro', decidedBy: 'boss', decisionReason: 'ok', releasedAt: null });
        const released = await store.transition('m1', 'city-a', {
          from: ['approved'],
          to: 'released',
          by: 'pref-admin',
          reason: null,
          at: T0 + 7,
          releaseMessageId: 'rel1',
          overrideReason: 'false positive',
        });
        expect(released).toEqual({
          ...record(),
          state: 'released',
          updatedAt: T0 + 7,
          requestedBy: 'taro',
          requestReason: 'need it',
          decidedBy: 'pref-admin',
          decisionReason: null,
          releasedAt: T0 + 7,
          releaseMessageId: 'rel1',
          overrideReason: 'false positive',
        });
        expect(await store.get('m1', 'city-a')).toEqual(released);
      });

      it('returns null and changes nothing from a state not in `from`, or for no such record', async () => {
        expect(await store.transition('m1', 'city-a', { from: ['approved'], to: 'released', by: 'x', reason: null, at: T0 + 5 })).toBeNull();
        expect(await store.transition('m1', 'town-b', { from: ['held'], to: 'deleted', by: 'x', reason: null, at: T0 + 5 })).toBeNull();
        expect(await store.transition('m1', 'city-a', { from: [], to: 'deleted', by: 'x', reason: null, at: T0 + 5 })).toBeNull();
        expect(await store.get('m1', 'city-a')).toMatchObject({ state: 'held', decidedBy: null, updatedAt: clock });
      });

      it('of two racing approvers from approved to released, exactly one gets the record', async () => {
        await store.transition('m1', 'city-a', { from: ['held'], to: 'approved', by: 'boss', reason: null, at: T0 + 5 });
        const results = await Promise.all(
          ['admin-1', 'admin-2'].map((by) => store.transition('m1', 'city-a', { from: ['approved'], to: 'released', by, reason: null, at: T0 + 6, releaseMessageId: by })),
        );
        const winners = results.filter((r) => r !== null);
        expect(winners).toHaveLength(1);
        expect((await store.get('m1', 'city-a'))?.releaseMessageId).toBe(winners[0]?.decidedBy);
      });
    });
  });
}
