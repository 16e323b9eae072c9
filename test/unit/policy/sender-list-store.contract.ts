/**
 * The SenderListStore contract: every driver's test file calls describeSenderListStoreContract with a factory for
 * a fresh, empty store on the clock `now`. Covers normal forms and refused patterns, one entry per sender,
 * removal, tenant-scoped listing, the per-list limit, and a version() that moves with every change and only then.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SekishoError } from '../../../src/errors.ts';
import { MAX_LIST_ENTRIES, type NewSenderListEntry, type SenderListStore } from '../../../src/policy/sender-list-store.ts';

export interface SenderListStoreFixture {
  store: SenderListStore;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2026, 11, 1, 0, 0, 0);

export function entry(over: Partial<NewSenderListEntry> = {}): NewSenderListEntry {
  return { tenantId: 'city-a', list: 'block', pattern: 'spammer.example', addedBy: 'admin-a', reason: '架空請求', at: T0, ...over };
}

export function describeSenderListStoreContract(name: string, make: (opts: { now: () => number }) => Promise<SenderListStoreFixture>): void {
  describe(`SenderListStore contract: ${name}`, () => {
    let fx: SenderListStoreFixture;
    let store: SenderListStore;
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

    it('adds an entry and lists it back whole, the pattern in normal form', async () => {
      const added = await store.add(entry({ pattern: '  Spammer.EXAMPLE ' }));
      expect(added).toEqual({ id: added.id, tenantId: 'city-a', list: 'block', pattern: 'spammer.example', addedBy: 'admin-a', reason: '架空請求', createdAt: T0 });
      expect(added.id).toMatch(/.+/);
      expect(await store.list()).toEqual([added]);
    });

    it('keeps every accepted form; a domain written with a leading @ is that domain', async () => {
      const forms = ['User@Example.co.jp', '@example.net', '*.Example.org', '203.0.113.7', '198.51.100.0/24', '2001:DB8::/32'];
      const got = [];
      for (const pattern of forms) got.push((await store.add(entry({ pattern }))).pattern);
      expect(got).toEqual(['user@example.co.jp', 'example.net', '*.example.org', '203.0.113.7', '198.51.100.0/24', '2001:db8::/32']);
    });

    it('refuses what is not a sender pattern with SEKISHO_ERR_LIST_PATTERN, and stores nothing', async () => {
      for (const pattern of ['', 'not a domain', 'evil@', '*.', '203.0.113.0/33', 'x'.repeat(400) + '.example', `${'a'.repeat(310)}@example.com`]) {
        await expect(store.add(entry({ pattern }))).rejects.toMatchObject({ name: 'SekishoError', code: 'SEKISHO_ERR_LIST_PATTERN' });
      }
      expect(await store.list()).toEqual([]);
      expect(await store.version()).toBe(await store.version());
    });

    it('a second add of the same sender to the same list returns the first entry (whatever its case)', async () => {
      const first = await store.add(entry());
      const v = await store.version();
      const again = await store.add(entry({ pattern: 'SPAMMER.example', addedBy: 'admin-b', reason: null, at: T0 + 5 }));
      expect(again).toEqual(first);
      expect(await store.version()).toBe(v);
      expect(await store.list()).toHaveLength(1);
    });

    it('the same sender may be on another list or another tenant\'s list', async () => {
      await store.add(entry());
      await store.add(entry({ list: 'allow' }));
      await store.add(entry({ tenantId: 'town-b' }));
      expect((await store.list()).map((e) => [e.tenantId, e.list])).toEqual([
        ['city-a', 'allow'],
        ['city-a', 'block'],
        ['town-b', 'block'],
      ]);
    });

    it('removes an entry once; a removed sender can be added again, as a new entry', async () => {
      const e = await store.add(entry());
      expect(await store.remove(e.id, 'admin-b')).toBe(true);
      expect(await store.remove(e.id, 'admin-b')).toBe(false);
      expect(await store.remove('no-such-id', 'admin-b')).toBe(false);
      expect(await store.list()).toEqual([]);
      const back = await store.add(entry({ at: T0 + 10 }));
      expect(back.id).not.toBe(e.id);
      expect(await store.list()).toEqual([back]);
    });

    it('lists by tenants and list, oldest first within a list; an empty tenant scope sees nothing', async () => {
      await store.add(entry({ pattern: 'b.example', at: T0 + 2 }));
      await store.add(entry({ pattern: 'a.example', at: T0 + 1 }));
      await store.add(entry({ pattern: 'ok.example', list: 'allow' }));
      await store.add(entry({ tenantId: 'town-b', pattern: 'c.example' }));
      await store.add(entry({ tenantId: 'village-c', pattern: 'd.example' }));
      expect((await store.list({ tenantIds: ['city-a'], list: 'block' })).map((e) => e.pattern)).toEqual(['a.example', 'b.example']);
      expect((await store.list({ tenantIds: ['town-b', 'village-c'] })).map((e) => e.pattern)).toEqual(['c.example', 'd.example']);
      expect((await store.list({ list: 'allow' })).map((e) => e.pattern)).toEqual(['ok.example']);
      expect(await store.list({ tenantIds: [] })).toEqual([]);
      expect(await store.list()).toHaveLength(5);
    });

    it('version() changes with every add and remove, and only then', async () => {
      const v0 = await store.version();
      expect(await store.version()).toBe(v0);
      const e = await store.add(entry());
      const v1 = await store.version();
      expect(v1).not.toBe(v0);
      await store.list();
      await store.remove('no-such-id', 'admin-b');
      expect(await store.version()).toBe(v1);
      await store.remove(e.id, 'admin-b');
      const v2 = await store.version();
      expect([v0, v1]).not.toContain(v2);
    });

    it(`refuses entry ${MAX_LIST_ENTRIES + 1} of one tenant's list with SEKISHO_ERR_LIST_FULL; other lists are not affected`, async () => {
      for (let i = 0; i < MAX_LIST_ENTRIES; i++) await store.add(entry({ pattern: `s${i}.example` }));
      const err = await store.add(entry({ pattern: 'one-more.example' })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SekishoError);
      expect(err).toMatchObject({ code: 'SEKISHO_ERR_LIST_FULL' });
      // One already there is still found, and the other list and tenant take entries.
      expect((await store.add(entry({ pattern: 's7.example' }))).pattern).toBe('s7.example');
      await store.add(entry({ list: 'allow', pattern: 'one-more.example' }));
      await store.add(entry({ tenantId: 'town-b', pattern: 'one-more.example' }));
      const removed = (await store.list({ tenantIds: ['city-a'], list: 'block' }))[0]!;
      await store.remove(removed.id, 'admin-a');
      expect((await store.add(entry({ pattern: 'one-more.example' }))).pattern).toBe('one-more.example');
    });
  });
}
