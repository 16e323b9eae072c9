/**
 * The injected resolver against a real DNS server on loopback: answers, "no record" as an empty list, and every
 * failure (timeout, SERVFAIL, REFUSED, no server listening, abort) as a DnsTempError — never as "no record".
 */
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDnsResolver, DnsTempError, type DnsResolver } from '../../../../src/scan/dns/resolver.ts';
import { TEST_DNS_TIMEOUT_MS, TestDnsServer } from '../../../helpers/dns-server.ts';

let server: TestDnsServer;
let dns: DnsResolver;

beforeAll(async () => {
  server = await TestDnsServer.start([
    { name: 'host.example.test', type: 'A', ttl: 123, data: '192.0.2.10' },
    { name: 'host.example.test', type: 'AAAA', ttl: 60, data: '2001:db8::10' },
    { name: 'example.test', type: 'MX', data: { preference: 10, exchange: 'mx.example.test' } },
    { name: 'example.test', type: 'TXT', data: ['v=spf1 ', '-all'] },
    { name: 'alias.example.test', type: 'CNAME', data: 'host.example.test' },
    { name: '10.2.0.192.in-addr.arpa', type: 'PTR', data: 'host.example.test' },
    // Larger than any UDP answer: served over TCP after a truncated UDP answer.
    { name: 'big.example.test', type: 'TXT', data: 'x'.repeat(4000) },
    { name: 'down.example.test', type: 'A', data: '192.0.2.99' },
  ]);
  dns = createDnsResolver({ servers: [server.address], timeoutMs: TEST_DNS_TIMEOUT_MS });
});
afterAll(() => server.close());

describe('createDnsResolver', () => {
  it('answers A with TTLs, AAAA, MX, TXT, PTR, and follows a CNAME', async () => {
    expect(await dns.a('host.example.test')).toEqual([{ address: '192.0.2.10', ttlSeconds: 123 }]);
    expect(await dns.aaaa('host.example.test')).toEqual([{ address: '2001:db8::10', ttlSeconds: 60 }]);
    expect(await dns.mx('example.test')).toEqual([{ exchange: 'mx.example.test', priority: 10 }]);
    expect(await dns.txt('example.test')).toEqual([['v=spf1 ', '-all']]);
    expect(await dns.ptr('10.2.0.192.in-addr.arpa')).toEqual(['host.example.test']);
    expect((await dns.a('alias.example.test')).map((r) => r.address)).toEqual(['192.0.2.10']);
  });

  it('reads an answer too large for UDP over TCP', async () => {
    const txt = await dns.txt('big.example.test');
    expect(txt[0]?.join('')).toBe('x'.repeat(4000));
    expect(server.queries.some((q) => q.name === 'big.example.test' && q.transport === 'tcp')).toBe(true);
  });

  it('NXDOMAIN and NODATA are empty answers', async () => {
    expect(await dns.a('nothing.example.test')).toEqual([]);
    expect(await dns.txt('host.example.test')).toEqual([]);
  });

  it('a name DNS cannot carry is an empty answer (no record can exist), not a temporary error', async () => {
    expect(await dns.txt('bad selector._domainkey.example.test')).toEqual([]);
    expect(await dns.a(`${'a'.repeat(70)}.example.test`)).toEqual([]);
  });

  it('a dropped query is a DnsTempError (ETIMEOUT), not an empty answer', async () => {
    server.drop('down.example.test');
    try {
      const err = await dns.a('down.example.test').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DnsTempError);
      expect((err as DnsTempError).code).toBe('ETIMEOUT');
    } finally {
      server.heal();
    }
  });

  it('SERVFAIL and REFUSED are DnsTempErrors', async () => {
    server.servfail('host.example.test');
    await expect(dns.a('host.example.test')).rejects.toMatchObject({ name: 'DnsTempError', code: 'ESERVFAIL' });
    server.heal();
    server.refuse('host.example.test');
    await expect(dns.a('host.example.test')).rejects.toMatchObject({ name: 'DnsTempError', code: 'EREFUSED' });
    server.heal();
    expect(await dns.a('host.example.test')).toHaveLength(1);
  });

  it('no server listening is a DnsTempError', async () => {
    // A port that was just free: nothing answers there.
    const sock = createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const port = sock.address().port;
    await new Promise<void>((r) => sock.close(() => r()));
    const nowhere = createDnsResolver({ servers: [`127.0.0.1:${port}`], timeoutMs: 200 });
    await expect(nowhere.a('host.example.test')).rejects.toBeInstanceOf(DnsTempError);
  });

  it('an aborted signal fails the lookup with EABORTED', async () => {
    server.drop('down.example.test');
    try {
      const slow = createDnsResolver({ servers: [server.address], timeoutMs: 10_000 });
      const ac = new AbortController();
      const pending = slow.a('down.example.test', ac.signal);
      ac.abort(new Error('check deadline'));
      await expect(pending).rejects.toMatchObject({ name: 'DnsTempError', code: 'EABORTED' });
      await expect(slow.a('host.example.test', ac.signal)).rejects.toMatchObject({ code: 'EABORTED' });
    } finally {
      server.heal();
    }
  });

  it('refuses to start without a server (never falls back to the system resolver)', () => {
    expect(() => createDnsResolver({ servers: [], timeoutMs: 100 })).toThrow(/at least one server/);
  });
});
