/**
 * The auth and reputation checks through the scan runner while DNS is down: the verdict carries a _TEMPERROR for
 * every method that could not be evaluated and no pass, and neither check is reported as clean.
 */
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign } from 'mailauth';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { authConfigSchema, createAuthCheck } from '../../../../../src/scan/checks/auth/index.ts';
import { createReputationCheck, reputationConfigSchema } from '../../../../../src/scan/checks/reputation/index.ts';
import { createDnsResolver } from '../../../../../src/scan/dns/resolver.ts';
import { runChecks } from '../../../../../src/scan/runner.ts';
import { TEST_DNS_TIMEOUT_MS, TestDnsServer } from '../../../../helpers/dns-server.ts';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
let server: TestDnsServer;

beforeAll(async () => {
  server = await TestDnsServer.start([
    { name: 'sender.test', type: 'TXT', data: 'v=spf1 ip4:192.0.2.1 -all' },
    { name: 'sel._domainkey.sender.test', type: 'TXT', data: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` },
    { name: '_dmarc.sender.test', type: 'TXT', data: 'v=DMARC1; p=reject' },
    { name: '1.2.0.192.rbl.test', type: 'A', data: '127.0.0.2' },
  ]);
});
afterAll(() => server.close());

it('DNS down: every auth method and the DNSBL are _TEMPERROR, nothing passes, nothing is "not listed"', async () => {
  const resolver = createDnsResolver({ servers: [server.address], timeoutMs: TEST_DNS_TIMEOUT_MS });
  // A new set per run: the reputation check's cache would otherwise answer the second run from the first.
  const checks = () => [
    createAuthCheck({ config: authConfigSchema.parse({}), resolver, hostname: 'mx.pref.example.lg.jp' }),
    createReputationCheck({
      config: reputationConfigSchema.parse({ ipZones: [{ zone: 'rbl.test', returnCodes: { '127.0.0.2': 'RBL_LISTED' } }], domainZones: [{ zone: 'dbl.test', returnCodes: { '127.0.1.2': 'DBL_LISTED' } }] }),
      resolver,
    }),
  ];
  const msg = 'From: boss@sender.test\r\nTo: staff@city-a.example.lg.jp\r\nSubject: x\r\n\r\nhttps://login.evil-parcel.com/\r\n';
  const { signatures } = await dkimSign(msg, {
    signatureData: [{ signingDomain: 'sender.test', selector: 'sel', privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }],
  } as Parameters<typeof dkimSign>[1]);
  const input = {
    messageId: 'm1',
    envelope: { mailFrom: 'info@sender.test', recipients: [{ address: 'staff@city-a.example.lg.jp', tenantId: 'city-a' }], clientIp: '192.0.2.1', helo: 'mail.sender.test', tls: null },
    raw: Buffer.from(signatures + msg),
    log: pino({ level: 'silent' }),
  };

  const up = await runChecks(checks(), input, { checkTimeoutMs: 10_000 });
  expect(up.symbols.map((s) => s.name)).toEqual(['ARC_NONE', 'DKIM_PASS', 'DMARC_PASS', 'RBL_LISTED', 'SPF_PASS']);

  server.dropAll();
  try {
    const down = await runChecks(checks(), input, { checkTimeoutMs: 10_000 });
    expect(down.failedChecks).toEqual([]);
    expect(down.symbols.map((s) => s.name)).toEqual(['ARC_NONE', 'DKIM_TEMPERROR', 'DMARC_TEMPERROR', 'RBL_TEMPERROR', 'SPF_TEMPERROR', 'URIBL_TEMPERROR']);
  } finally {
    server.heal();
  }
});
