/**
 * Sender authentication through the pipeline, against a real DNS server on loopback: the delivered message carries
 * our Authentication-Results and none that came from outside claiming our name (RFC 8601 §5); with DNS down the
 * message waits (SPF/DKIM/DMARC _TEMPERROR are checks that could not run) instead of being delivered as clean.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { authConfigSchema, createAuthCheck } from '../../src/scan/checks/auth/index.ts';
import { createMimeStructureCheck } from '../../src/scan/checks/mime-structure.ts';
import { createDnsResolver } from '../../src/scan/dns/resolver.ts';
import { TEST_DNS_TIMEOUT_MS, TestDnsServer } from '../helpers/dns-server.ts';
import { Harness, queuedId } from '../helpers/harness.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

const HOST = 'mx.pref.test.lg.jp';
let dns: TestDnsServer;
let h: Harness | undefined;

beforeAll(async () => {
  dns = await TestDnsServer.start([
    { name: 'sender.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' },
    { name: '_dmarc.sender.test', type: 'TXT', data: 'v=DMARC1; p=reject' },
  ]);
});
afterAll(() => dns.close());
afterEach(async () => {
  await h?.stop();
  h = undefined;
  dns.heal();
});

function checks() {
  const resolver = createDnsResolver({ servers: [dns.address], timeoutMs: TEST_DNS_TIMEOUT_MS });
  return [createMimeStructureCheck(), createAuthCheck({ config: authConfigSchema.parse({}), resolver, hostname: HOST })];
}

describe('sender authentication in the pipeline', () => {
  it('adds our Authentication-Results and removes a forged one claiming our name', async () => {
    h = await Harness.start({ checks: checks() });
    const msg = simpleMessage({
      from: 'boss@sender.test',
      extraHeaders: [`Authentication-Results: ${HOST}; spf=pass smtp.mailfrom=ceo@city-a.example.lg.jp; dmarc=pass`, 'Authentication-Results: other.example; spf=none'],
    });
    const mid = queuedId(await sendRaw(h.port, 'boss@sender.test', ['u@city-a.example.lg.jp'], msg));
    const [got] = await h.sinks.a.waitFor(1);
    const head = got!.raw.toString('latin1').split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
    const results = head.split('\r\n').filter((l) => /^Authentication-Results:/i.test(l));
    expect(results[0]).toMatch(new RegExp(`^Authentication-Results: ${HOST.replace(/\./g, '\\.')}; spf=pass smtp\\.mailfrom=boss@sender\\.test;.*dmarc=pass`));
    expect(results.filter((l) => l.includes(HOST))).toHaveLength(1);
    expect(results).toContain('Authentication-Results: other.example; spf=none');
    const v = (await h.stores.meta.getMessage(mid))!.verdict!;
    expect(v.symbols.map((s) => s.name)).toEqual(expect.arrayContaining(['SPF_PASS', 'DMARC_PASS', 'AUTH_RESULTS_FORGED']));
  });

  it('with DNS down, delivers nothing as if it had been authenticated: the message waits', async () => {
    h = await Harness.start({ checks: checks(), config: { scan: { failRetryDelayMs: 60_000, failQuarantineAfterMs: 3_600_000 } } });
    dns.dropAll();
    const mid = queuedId(await sendRaw(h.port, 'boss@sender.test', ['u@city-a.example.lg.jp'], simpleMessage({ from: 'boss@sender.test' })));
    await h.waitForState(mid, (_s, m) => m === 'received', 20_000);
    for (let i = 0; i < 100; i++) {
      const v = (await h.stores.meta.getMessage(mid))?.verdict;
      if (v) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const msg = await h.stores.meta.getMessage(mid);
    expect(msg?.verdict?.symbols.map((s) => s.name)).toEqual(expect.arrayContaining(['SPF_TEMPERROR']));
    expect(msg?.state).toBe('received');
    expect(h.sinks.a.messages).toHaveLength(0);
  });
});
