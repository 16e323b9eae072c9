/**
 * TenantLists over a real SqliteSenderListStore: the config's entries first, then the console's; reloaded when the
 * store's version moves; a store that cannot be read keeps the last good lists (and says so in the log). And
 * decide() matching against the lists it is given rather than the tenant's config.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load.ts';
import type { Config } from '../../../src/config/schema.ts';
import { decide } from '../../../src/policy/decide.ts';
import { SqliteSenderListStore } from '../../../src/policy/sqlite-sender-list-store.ts';
import { TenantLists } from '../../../src/policy/tenant-lists.ts';
import { captureLog } from '../../helpers/check-context.ts';
import { entry } from './sender-list-store.contract.ts';

function config(): Config {
  const r = validateConfig({
    hostname: 'mx.pref.example.lg.jp',
    tenants: [
      { id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: 'smtp://10.1.2.3', allow: ['partner.example'], block: ['bad.example'] },
      { id: 'town-b', name: '乙町', domains: ['town-b.example.lg.jp'], deliverTo: 'smtp://10.1.2.4' },
    ],
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

describe('TenantLists', () => {
  let dir: string;
  let store: SqliteSenderListStore;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sekisho-tl-'));
    store = new SqliteSenderListStore(path.join(dir, 'sender-lists.sqlite'));
  });
  afterEach(async () => {
    await store.close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("has the config's lists before the first refresh, and empty lists for a tenant with none", () => {
    const lists = new TenantLists({ tenants: config().tenants, store, log: captureLog().log });
    expect(lists.of('city-a')).toEqual({ allow: ['partner.example'], block: ['bad.example'] });
    expect(lists.of('town-b')).toEqual({ allow: [], block: [] });
    expect(lists.blockOf('no-such-tenant')).toEqual([]);
  });

  it("adds the console's entries after the config's, once each, and follows additions and removals on refresh", async () => {
    const lists = new TenantLists({ tenants: config().tenants, store, log: captureLog().log });
    const spam = await store.add(entry({ pattern: 'spammer.example' }));
    await store.add(entry({ pattern: 'bad.example' }));
    await store.add(entry({ tenantId: 'town-b', list: 'allow', pattern: '203.0.113.0/24' }));
    expect(lists.blockOf('city-a')).toEqual(['bad.example']);
    await lists.refresh();
    expect(lists.blockOf('city-a')).toEqual(['bad.example', 'spammer.example']);
    expect(lists.allowOf('city-a')).toEqual(['partner.example']);
    expect(lists.of('town-b')).toEqual({ allow: ['203.0.113.0/24'], block: [] });
    await store.remove(spam.id, 'admin-a');
    await lists.refresh();
    expect(lists.blockOf('city-a')).toEqual(['bad.example']);
  });

  it('keeps the last good lists when the store cannot be read, and logs it', async () => {
    const log = captureLog();
    const lists = new TenantLists({ tenants: config().tenants, store, log: log.log });
    await store.add(entry());
    await lists.refresh();
    await store.close();
    await lists.refresh();
    expect(lists.blockOf('city-a')).toEqual(['bad.example', 'spammer.example']);
    expect(log.records.some((l) => l.level === 50 && l.msg.includes('keeping the last good lists'))).toBe(true);
  });
});

describe('decide() with lists', () => {
  it('matches the lists it is given instead of the tenant config', () => {
    const c = config();
    const tenant = c.tenants[0]!;
    const sender = { mailFrom: 'x@spammer.example', headerFrom: null, clientIp: '192.0.2.1' };
    const v = { symbols: [], failedChecks: [], durationsMs: {} };
    expect(decide(v, tenant, c.policy, { ageMs: 0, scan: c.scan, sender }).action).toBe('deliver');
    const d = decide(v, tenant, c.policy, { ageMs: 0, scan: c.scan, sender, lists: { allow: [], block: ['bad.example', 'spammer.example'] } });
    expect(d).toMatchObject({ action: 'reject', reasons: ['sender matches spammer.example on the block list of city-a'] });
  });
});
