/**
 * The reputation check against a real DNS server on loopback serving test blocklist zones: listed and unlisted
 * IPs (IPv4 and IPv6), return codes mapped by config, refusals and hijacked answers as errors, URL domains found
 * in Japanese-encoded bodies, the TTL cache (counted at the server), and DNS failures as _TEMPERROR.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope, SymbolHit } from '../../../../../src/scan/check.ts';
import { createReputationCheck, reputationConfigSchema, reverseIp } from '../../../../../src/scan/checks/reputation/index.ts';
import { createDnsResolver, type DnsResolver } from '../../../../../src/scan/dns/resolver.ts';
import { checkContext } from '../../../../helpers/check-context.ts';
import { TEST_DNS_TIMEOUT_MS, TestDnsServer, type TestRecord } from '../../../../helpers/dns-server.ts';
import { buildMail } from '../../../../helpers/mail-builder.ts';

const ZONES = {
  ipZones: [{ zone: 'rbl.test', returnCodes: { '127.0.0.2': 'RBL_LISTED', '127.0.0.10': 'RBL_POLICY' } }],
  domainZones: [{ zone: 'dbl.test', returnCodes: { '127.0.1.2': 'DBL_LISTED' } }],
};

const ZONE: TestRecord[] = [
  { name: '1.2.0.192.rbl.test', type: 'A', ttl: 600, data: '127.0.0.2' },
  { name: '2.2.0.192.rbl.test', type: 'A', data: '127.0.0.10' },
  { name: '3.2.0.192.rbl.test', type: 'A', data: '127.0.0.99' },
  { name: '4.2.0.192.rbl.test', type: 'A', data: '127.255.255.254' },
  { name: '5.2.0.192.rbl.test', type: 'A', data: '198.51.100.1' },
  { name: `${reverseIp('2001:db8::25')}.rbl.test`, type: 'A', data: '127.0.0.2' },
  { name: 'evil-parcel.com.dbl.test', type: 'A', ttl: 120, data: '127.0.1.2' },
  { name: 'phish-bank.co.jp.dbl.test', type: 'A', data: '127.0.1.2' },
];

let server: TestDnsServer;
let dns: DnsResolver;
let now = 1_700_000_000_000;
const clock = () => now;

beforeAll(async () => {
  server = await TestDnsServer.start(ZONE);
  dns = createDnsResolver({ servers: [server.address], timeoutMs: TEST_DNS_TIMEOUT_MS });
});
afterAll(() => server.close());
beforeEach(() => {
  server.heal();
  server.queries.length = 0;
});

function newCheck(config: object = ZONES) {
  return createReputationCheck({ config: reputationConfigSchema.parse(config), resolver: dns, now: clock });
}

const PLAIN = buildMail({ text: { body: 'こんにちは。会議は十時からです。', charset: 'iso-2022-jp' } });

async function run(check: ReturnType<typeof newCheck>, raw: Buffer, env: Partial<Envelope> = {}): Promise<SymbolHit[]> {
  const base = checkContext(raw);
  return check.run({ ...base, envelope: { ...base.envelope, ...env } });
}

describe('reputation: DNSBL for the connecting IP', () => {
  it('a listed IP is RBL_LISTED with zone, IP and code; an unlisted one is nothing', async () => {
    const check = newCheck();
    expect(await run(check, PLAIN, { clientIp: '192.0.2.1' })).toEqual([{ name: 'RBL_LISTED', details: ['rbl.test: 192.0.2.1 (127.0.0.2)'] }]);
    expect(await run(check, PLAIN, { clientIp: '192.0.2.200' })).toEqual([]);
    expect(server.count('200.2.0.192.rbl.test', 'A')).toBe(1);
  });

  it('return codes mean what config says; a code config does not name is ignored', async () => {
    const check = newCheck();
    expect(await run(check, PLAIN, { clientIp: '192.0.2.2' })).toEqual([{ name: 'RBL_POLICY', details: ['rbl.test: 192.0.2.2 (127.0.0.10)'] }]);
    expect(await run(check, PLAIN, { clientIp: '192.0.2.3' })).toEqual([]);
  });

  it('127.255.255.x (query refused) is RBL_TEMPERROR, never a listing', async () => {
    const hits = await run(newCheck(), PLAIN, { clientIp: '192.0.2.4' });
    expect(hits).toEqual([{ name: 'RBL_TEMPERROR', details: ['rbl.test: 192.0.2.4: query refused (127.255.255.254)'] }]);
  });

  it('an answer outside 127/8 (a resolver rewriting NXDOMAIN) is RBL_TEMPERROR', async () => {
    const hits = await run(newCheck(), PLAIN, { clientIp: '192.0.2.5' });
    expect(hits.map((h) => h.name)).toEqual(['RBL_TEMPERROR']);
    expect(hits[0]?.details?.[0]).toMatch(/198\.51\.100\.1/);
  });

  it('IPv6 is looked up by its nibbles; IPv4-mapped IPv6 as IPv4', async () => {
    const check = newCheck();
    expect((await run(check, PLAIN, { clientIp: '2001:db8::25' })).map((h) => h.name)).toEqual(['RBL_LISTED']);
    expect((await run(check, PLAIN, { clientIp: '2001:db8::26' })).map((h) => h.name)).toEqual([]);
    expect((await run(check, PLAIN, { clientIp: '::ffff:192.0.2.1' })).map((h) => h.name)).toEqual(['RBL_LISTED']);
  });

  it('a dropped query is RBL_TEMPERROR, SERVFAIL too, and neither is cached', async () => {
    const check = newCheck();
    server.drop('1.2.0.192.rbl.test');
    expect(await run(check, PLAIN, { clientIp: '192.0.2.1' })).toEqual([{ name: 'RBL_TEMPERROR', details: ['rbl.test: 192.0.2.1: ETIMEOUT'] }]);
    server.heal();
    server.servfail('1.2.0.192.rbl.test');
    expect(await run(check, PLAIN, { clientIp: '192.0.2.1' })).toEqual([{ name: 'RBL_TEMPERROR', details: ['rbl.test: 192.0.2.1: ESERVFAIL'] }]);
    server.heal();
    expect((await run(check, PLAIN, { clientIp: '192.0.2.1' })).map((h) => h.name)).toEqual(['RBL_LISTED']);
  });
});

describe('reputation: URIBL/DBL for the body’s URL domains', () => {
  const html = [
    '<html><body><p>お荷物をお届けにあがりましたが不在のため持ち帰りました。</p>',
    '<p><a href="&#104;ttps://redelivery.evil-parcel.com/ja/login?id=1">再配達のお手続き</a></p>',
    '<p>ご確認は<a href="https://www.good-news.com/">こちら</a>。</p>',
    '</body></html>',
  ].join('\r\n');

  it('a listed domain behind an entity-encoded href in an ISO-2022-JP HTML body is DBL_LISTED; others are not', async () => {
    const raw = buildMail({ html: { body: html, charset: 'iso-2022-jp' } });
    const hits = await run(newCheck(), raw, { clientIp: '192.0.2.200' });
    expect(hits).toEqual([{ name: 'DBL_LISTED', details: ['dbl.test: evil-parcel.com (127.0.1.2)'] }]);
    expect(server.count('good-news.com.dbl.test')).toBe(1);
    expect(server.count('redelivery.evil-parcel.com.dbl.test')).toBe(0); // the registrable domain is asked, once
  });

  it('a full-width URL running into Japanese text in a Shift_JIS body is found', async () => {
    const raw = buildMail({ text: { body: '至急ご確認ください：ｈｔｔｐｓ：／／ｗｗｗ．ｐｈｉｓｈ－ｂａｎｋ．ｃｏ．ｊｐログイン', charset: 'shift_jis' } });
    expect(await run(newCheck(), raw, { clientIp: '192.0.2.200' })).toEqual([{ name: 'DBL_LISTED', details: ['dbl.test: phish-bank.co.jp (127.0.1.2)'] }]);
  });

  it('a look-alike text that is not a URL (an e-mail address, a file name) is not looked up', async () => {
    const raw = buildMail({ text: { body: 'Contact info@evil-parcel.com or open evil-parcel.com.pdf', charset: 'utf-8' } });
    expect(await run(newCheck(), raw, { clientIp: '192.0.2.200' })).toEqual([]);
    expect(server.queries.filter((q) => q.name.endsWith('.dbl.test'))).toEqual([]);
  });

  it('looks up at most maxUrlDomains domains per message', async () => {
    const body = Array.from({ length: 30 }, (_, i) => `https://site${i}.example.com/`).join('\n');
    const raw = buildMail({ text: { body, charset: 'utf-8' } });
    await run(newCheck({ ...ZONES, ipZones: [], maxUrlDomains: 5 }), raw);
    expect(server.queries.map((q) => q.name)).toEqual(['example.com.dbl.test']); // one registrable domain
    const many = buildMail({ text: { body: Array.from({ length: 30 }, (_, i) => `https://site${i}.com/`).join('\n'), charset: 'utf-8' } });
    server.queries.length = 0;
    await run(newCheck({ ...ZONES, ipZones: [], maxUrlDomains: 5 }), many);
    expect(server.queries.map((q) => q.name).sort()).toEqual(['site0.com', 'site1.com', 'site2.com', 'site3.com', 'site4.com'].map((d) => `${d}.dbl.test`));
  });

  it('a dropped domain query is URIBL_TEMPERROR', async () => {
    server.drop('evil-parcel.com.dbl.test');
    const raw = buildMail({ text: { body: 'https://evil-parcel.com/', charset: 'utf-8' } });
    expect(await run(newCheck(), raw, { clientIp: '192.0.2.200' })).toEqual([{ name: 'URIBL_TEMPERROR', details: ['dbl.test: evil-parcel.com: ETIMEOUT'] }]);
  });
});

describe('reputation: cache', () => {
  it('a second lookup within the TTL is served from the cache; after it, DNS is asked again', async () => {
    const check = newCheck();
    for (let i = 0; i < 3; i++) expect((await run(check, PLAIN, { clientIp: '192.0.2.1' })).map((h) => h.name)).toEqual(['RBL_LISTED']);
    expect(server.count('1.2.0.192.rbl.test')).toBe(1);
    now += 599_000;
    await run(check, PLAIN, { clientIp: '192.0.2.1' });
    expect(server.count('1.2.0.192.rbl.test')).toBe(1);
    now += 2_000; // past the record's TTL of 600 s
    expect((await run(check, PLAIN, { clientIp: '192.0.2.1' })).map((h) => h.name)).toEqual(['RBL_LISTED']);
    expect(server.count('1.2.0.192.rbl.test')).toBe(2);
  });

  it('"not listed" is cached for negativeCacheTtlSeconds; concurrent messages share one lookup', async () => {
    const check = newCheck({ ...ZONES, negativeCacheTtlSeconds: 60 });
    await Promise.all([1, 2, 3].map(() => run(check, PLAIN, { clientIp: '192.0.2.77' })));
    expect(server.count('77.2.0.192.rbl.test')).toBe(1);
    now += 59_000;
    await run(check, PLAIN, { clientIp: '192.0.2.77' });
    expect(server.count('77.2.0.192.rbl.test')).toBe(1);
    now += 2_000;
    await run(check, PLAIN, { clientIp: '192.0.2.77' });
    expect(server.count('77.2.0.192.rbl.test')).toBe(2);
  });
});

describe('reputation: defaults and config', () => {
  it('the default config has no zones: no query is made, nothing is emitted', async () => {
    const raw = buildMail({ text: { body: 'https://evil-parcel.com/', charset: 'utf-8' } });
    expect(await run(newCheck({}), raw, { clientIp: '192.0.2.1' })).toEqual([]);
    expect(server.queries).toEqual([]);
  });

  it('rejects return codes outside 127/8 and any mapping of 127.255.255.x', () => {
    const bad = (code: string) => reputationConfigSchema.safeParse({ ipZones: [{ zone: 'rbl.test', returnCodes: { [code]: 'RBL_LISTED' } }] }).success;
    expect(bad('127.0.0.2')).toBe(true);
    expect(bad('127.255.255.254')).toBe(false);
    expect(bad('10.0.0.2')).toBe(false);
    expect(reputationConfigSchema.safeParse({ ipZones: [{ zone: 'rbl.test', returnCodes: { '127.0.0.2': 'DBL_LISTED' } }] }).success).toBe(false);
  });

  it('reverseIp', () => {
    expect(reverseIp('192.0.2.1')).toBe('1.2.0.192');
    expect(reverseIp('2001:db8::1')).toBe('1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2');
    expect(reverseIp('::ffff:198.51.100.7')).toBe('7.100.51.198');
    expect(reverseIp('64:ff9b::192.0.2.1')).toBe('1.0.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0');
    expect(reverseIp('not-an-ip')).toBeUndefined();
  });
});
