/**
 * The auth check against a real DNS server on loopback: messages signed in the test with a test RSA key whose
 * public half the server publishes, SPF and DMARC records for each outcome, and DNS failures (dropped queries,
 * SERVFAIL) that must come out as _TEMPERROR — never as a pass, never as "no record".
 */
import { generateKeyPairSync } from 'node:crypto';
import { dkimSign, sealMessage } from 'mailauth';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Envelope, SymbolHit } from '../../../../../src/scan/check.ts';
import { authConfigSchema, authenticationResultsHeader, createAuthCheck } from '../../../../../src/scan/checks/auth/index.ts';
import { MAX_KEY_LOOKUPS_PER_MESSAGE } from '../../../../../src/scan/checks/auth/mailauth-resolver.ts';
import { createDnsResolver } from '../../../../../src/scan/dns/resolver.ts';
import { checkContext } from '../../../../helpers/check-context.ts';
import { TEST_DNS_TIMEOUT_MS, TestDnsServer, type TestRecord } from '../../../../helpers/dns-server.ts';

const HOSTNAME = 'mx.pref.example.lg.jp';
const CLIENT_IP = '192.0.2.1';
const OTHER_IP = '198.51.100.7';

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PRIVATE_PEM = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const PUBLIC_B64 = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const dkimKey = (name: string): TestRecord => ({ name, type: 'TXT', data: `v=DKIM1; k=rsa; p=${PUBLIC_B64}` });

/** Eleven `a:` mechanisms, each resolving: one lookup over RFC 7208's limit of ten. */
const MANY_LOOKUPS = Array.from({ length: 11 }, (_, i) => `a:h${i}.many.test`).join(' ');

const ZONE: TestRecord[] = [
  { name: 'sender.test', type: 'TXT', data: `v=spf1 ip4:${CLIENT_IP} -all` },
  dkimKey('sel._domainkey.sender.test'),
  { name: '_dmarc.sender.test', type: 'TXT', data: 'v=DMARC1; p=reject' },
  { name: 'other.test', type: 'TXT', data: `v=spf1 ip4:${CLIENT_IP} -all` },
  dkimKey('sel._domainkey.other.test'),
  { name: 'softfail.test', type: 'TXT', data: 'v=spf1 ~all' },
  { name: 'neutral.test', type: 'TXT', data: 'v=spf1 ?all' },
  { name: 'nospf.test', type: 'A', data: CLIENT_IP },
  { name: 'syntax.test', type: 'TXT', data: 'v=spf1 ip4:999.1.1.1 -all' },
  { name: 'many.test', type: 'TXT', data: `v=spf1 ${MANY_LOOKUPS} -all` },
  ...Array.from({ length: 11 }, (_, i): TestRecord => ({ name: `h${i}.many.test`, type: 'A', data: `203.0.113.${i + 1}` })),
  { name: 'include.test', type: 'TXT', data: 'v=spf1 include:dropped.test -all' },
  { name: 'dropped.test', type: 'TXT', data: `v=spf1 ip4:${CLIENT_IP} -all` },
  { name: 'quarantine.test', type: 'TXT', data: 'v=spf1 -all' },
  { name: '_dmarc.quarantine.test', type: 'TXT', data: 'v=DMARC1; p=quarantine' },
  { name: 'monitor.test', type: 'TXT', data: 'v=spf1 -all' },
  { name: '_dmarc.monitor.test', type: 'TXT', data: 'v=DMARC1; p=none' },
  { name: 'mail.helo.test', type: 'TXT', data: `v=spf1 ip4:${CLIENT_IP} -all` },
  dkimKey('arc._domainkey.forwarder.test'),
];

let server: TestDnsServer;
let check: ReturnType<typeof createAuthCheck>;

beforeAll(async () => {
  server = await TestDnsServer.start(ZONE);
  check = createAuthCheck({ config: authConfigSchema.parse({}), resolver: createDnsResolver({ servers: [server.address], timeoutMs: TEST_DNS_TIMEOUT_MS }), hostname: HOSTNAME });
});
afterAll(() => server.close());
beforeEach(() => server.heal());

function message(from: string, opts: { subject?: string; body?: string } = {}): string {
  return [
    `From: ${from}`,
    'To: staff@city-a.example.lg.jp',
    `Subject: ${opts.subject ?? 'meeting'}`,
    'Date: Thu, 03 Dec 2026 10:00:00 +0900',
    `Message-ID: <${Math.random().toString(36).slice(2)}@test>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    opts.body ?? 'See you at ten.',
    '',
  ].join('\r\n');
}

async function sign(raw: string, domain: string, selector = 'sel'): Promise<string> {
  const { signatures, errors } = await dkimSign(raw, {
    canonicalization: 'relaxed/relaxed',
    signatureData: [{ signingDomain: domain, selector, privateKey: PRIVATE_PEM }],
  } as Parameters<typeof dkimSign>[1]);
  expect(errors).toEqual([]);
  expect(signatures).toMatch(/^DKIM-Signature:/);
  return signatures + raw;
}

async function run(raw: string | Buffer, env: Partial<Envelope> = {}): Promise<SymbolHit[]> {
  const base = checkContext(Buffer.isBuffer(raw) ? raw : Buffer.from(raw));
  return check.run({ ...base, envelope: { ...base.envelope, clientIp: CLIENT_IP, helo: 'mail.sender.test', mailFrom: 'info@sender.test', ...env } });
}

const names = (hits: SymbolHit[]) => hits.map((h) => h.name).sort();
const find = (hits: SymbolHit[], name: string) => hits.find((h) => h.name === name);

describe('auth: SPF', () => {
  it.each([
    ['info@sender.test', CLIENT_IP, 'SPF_PASS'],
    ['info@sender.test', OTHER_IP, 'SPF_HARDFAIL'],
    ['info@softfail.test', CLIENT_IP, 'SPF_SOFTFAIL'],
    ['info@neutral.test', CLIENT_IP, 'SPF_NEUTRAL'],
    ['info@nospf.test', CLIENT_IP, 'SPF_NONE'],
    ['info@unknown-domain.test', CLIENT_IP, 'SPF_NONE'],
    ['info@syntax.test', CLIENT_IP, 'SPF_PERMERROR'],
    ['info@many.test', CLIENT_IP, 'SPF_PERMERROR'],
  ])('MAIL FROM %s from %s → %s', async (mailFrom, clientIp, expected) => {
    const hits = await run(message(mailFrom), { mailFrom, clientIp });
    expect(names(hits).filter((n) => n.startsWith('SPF_'))).toEqual([expected]);
    expect(find(hits, expected)?.details?.[0]).toMatch(new RegExp(`^smtp\\.mailfrom=${mailFrom.replace('.', '\\.')}`));
  });

  it('too many DNS lookups is named in the details', async () => {
    const hits = await run(message('info@many.test'), { mailFrom: 'info@many.test' });
    expect(find(hits, 'SPF_PERMERROR')?.details?.[0]).toMatch(/Too many DNS requests/);
  });

  it('MAIL FROM <> is checked against the HELO name', async () => {
    const pass = await run(message('mailer-daemon@helo.test'), { mailFrom: '', helo: 'mail.helo.test' });
    expect(find(pass, 'SPF_PASS')?.details).toEqual(['smtp.helo=mail.helo.test']);
    const fail = await run(message('mailer-daemon@helo.test'), { mailFrom: '', helo: 'mail.helo.test', clientIp: OTHER_IP });
    expect(names(fail)).toContain('SPF_HARDFAIL');
  });

  it('a dropped SPF query is SPF_TEMPERROR, not none', async () => {
    server.drop('dropped.test');
    const hits = await run(message('info@dropped.test'), { mailFrom: 'info@dropped.test' });
    expect(names(hits).filter((n) => n.startsWith('SPF_'))).toEqual(['SPF_TEMPERROR']);
  });

  it('a dropped include: is SPF_TEMPERROR, not a fail of the including record', async () => {
    server.drop('dropped.test');
    const hits = await run(message('info@include.test'), { mailFrom: 'info@include.test' });
    expect(names(hits).filter((n) => n.startsWith('SPF_'))).toEqual(['SPF_TEMPERROR']);
    server.heal();
    expect(names(await run(message('info@include.test'), { mailFrom: 'info@include.test' }))).toContain('SPF_PASS');
  });

  it('SERVFAIL is SPF_TEMPERROR', async () => {
    server.servfail('sender.test');
    const hits = await run(message('info@sender.test'));
    expect(names(hits)).toContain('SPF_TEMPERROR');
    expect(names(hits)).not.toContain('SPF_PASS');
  });
});

describe('auth: DKIM', () => {
  it('a valid signature is DKIM_PASS with its domain and selector', async () => {
    const hits = await run(await sign(message('boss@sender.test'), 'sender.test'));
    expect(find(hits, 'DKIM_PASS')?.details).toEqual(['header.d=sender.test header.s=sel']);
  });

  it('every signature is reported', async () => {
    const raw = await sign(await sign(message('boss@sender.test'), 'sender.test'), 'other.test');
    const hits = await run(raw);
    expect(hits.filter((h) => h.name === 'DKIM_PASS')).toHaveLength(1);
    expect(find(hits, 'DKIM_PASS')?.details?.sort()).toEqual(['header.d=other.test header.s=sel', 'header.d=sender.test header.s=sel']);
  });

  it('an unsigned message is DKIM_NONE', async () => {
    expect(names(await run(message('boss@sender.test')))).toContain('DKIM_NONE');
  });

  it('a body changed after signing is DKIM_INVALID', async () => {
    const raw = (await sign(message('boss@sender.test', { body: 'Pay invoice 1.' }), 'sender.test')).replace('invoice 1.', 'invoice 2.');
    const hits = await run(raw);
    expect(names(hits)).toContain('DKIM_INVALID');
    expect(names(hits)).not.toContain('DKIM_PASS');
  });

  it('a signed header changed after signing is DKIM_INVALID', async () => {
    const raw = (await sign(message('boss@sender.test', { subject: 'lunch' }), 'sender.test')).replace('Subject: lunch', 'Subject: wire money');
    expect(names(await run(raw))).toContain('DKIM_INVALID');
  });

  it('a selector without a key in DNS is DKIM_PERMERROR', async () => {
    const hits = await run(await sign(message('boss@sender.test'), 'sender.test', 'nokey'));
    expect(find(hits, 'DKIM_PERMERROR')?.details?.[0]).toMatch(/^header\.d=sender\.test header\.s=nokey \(no key\)/);
  });

  it(`a message with many signatures causes at most ${MAX_KEY_LOOKUPS_PER_MESSAGE} key lookups; the rest are DKIM_PERMERROR`, async () => {
    let raw = message('boss@sender.test');
    for (let i = 0; i < MAX_KEY_LOOKUPS_PER_MESSAGE + 5; i++) raw = await sign(raw, 'sender.test');
    server.queries.length = 0;
    const hits = await run(raw);
    expect(server.count('sel._domainkey.sender.test')).toBe(MAX_KEY_LOOKUPS_PER_MESSAGE);
    expect(find(hits, 'DKIM_PASS')?.details).toHaveLength(MAX_KEY_LOOKUPS_PER_MESSAGE);
    expect(find(hits, 'DKIM_PERMERROR')?.details).toHaveLength(5);
  });

  it('a dropped key query is DKIM_TEMPERROR', async () => {
    server.drop('sel._domainkey.sender.test');
    const hits = await run(await sign(message('boss@sender.test'), 'sender.test'));
    expect(names(hits)).toContain('DKIM_TEMPERROR');
    expect(names(hits)).not.toContain('DKIM_PASS');
  });
});

describe('auth: DMARC', () => {
  it('an aligned DKIM signature passes DMARC even when SPF fails', async () => {
    const hits = await run(await sign(message('boss@sender.test'), 'sender.test'), { clientIp: OTHER_IP });
    expect(names(hits)).toEqual(expect.arrayContaining(['SPF_HARDFAIL', 'DKIM_PASS', 'DMARC_PASS']));
    expect(find(hits, 'DMARC_PASS')?.details).toEqual(['header.from=sender.test']);
  });

  it('aligned SPF passes DMARC', async () => {
    expect(names(await run(message('boss@sender.test')))).toContain('DMARC_PASS');
  });

  it('From sender.test with only another domain authenticated is DMARC_POLICY_REJECT (p=reject)', async () => {
    const hits = await run(await sign(message('boss@sender.test'), 'other.test'), { mailFrom: 'bounce@other.test' });
    expect(names(hits)).toEqual(expect.arrayContaining(['SPF_PASS', 'DKIM_PASS']));
    expect(find(hits, 'DMARC_POLICY_REJECT')?.details).toEqual(['header.from=sender.test (p=reject)']);
    expect(names(hits)).not.toContain('DMARC_PASS');
  });

  it('p=quarantine and p=none fail to their own symbols', async () => {
    const q = await run(message('boss@quarantine.test'), { mailFrom: 'info@other.test' });
    expect(find(q, 'DMARC_POLICY_QUARANTINE')?.details).toEqual(['header.from=quarantine.test (p=quarantine)']);
    const n = await run(message('boss@monitor.test'), { mailFrom: 'info@other.test' });
    expect(names(n)).toContain('DMARC_POLICY_NONE');
  });

  it('a From domain without a DMARC record is DMARC_NONE', async () => {
    expect(names(await run(message('boss@other.test'), { mailFrom: 'info@other.test' }))).toContain('DMARC_NONE');
  });

  it('a From with two addresses is DMARC_PERMERROR, not a pass for the first one', async () => {
    const hits = await run(message('boss@sender.test, evil@other.test'));
    expect(names(hits)).toContain('DMARC_PERMERROR');
    expect(names(hits)).not.toContain('DMARC_PASS');
  });

  it('a dropped DMARC query is DMARC_TEMPERROR', async () => {
    server.drop('_dmarc.sender.test');
    const hits = await run(message('boss@sender.test'), { mailFrom: 'info@other.test' });
    expect(names(hits)).toContain('DMARC_TEMPERROR');
  });

  it('a DMARC failure that an unanswered SPF lookup may have caused is DMARC_TEMPERROR, not a reject', async () => {
    server.drop('sender.test');
    const hits = await run(message('boss@sender.test'));
    expect(names(hits)).toEqual(expect.arrayContaining(['SPF_TEMPERROR', 'DMARC_TEMPERROR']));
    expect(names(hits)).not.toContain('DMARC_POLICY_REJECT');
  });
});

describe('auth: ARC', () => {
  async function sealed(raw: string): Promise<string> {
    const headers = await sealMessage(Buffer.from(raw), {
      signingDomain: 'forwarder.test',
      selector: 'arc',
      privateKey: PRIVATE_PEM,
      authResults: 'forwarder.test; spf=pass smtp.mailfrom=info@sender.test',
      cv: 'none',
    } as Parameters<typeof sealMessage>[1] & { authResults: string; cv: string });
    return headers.toString() + raw;
  }

  it('no chain is ARC_NONE; a valid chain ARC_PASS; a message changed after sealing ARC_INVALID', async () => {
    expect(names(await run(message('boss@sender.test')))).toContain('ARC_NONE');
    const raw = await sealed(message('boss@sender.test', { body: 'forwarded' }));
    expect(find(await run(raw), 'ARC_PASS')?.details).toEqual(['(i=1)']);
    const hits = await run(raw.replace('forwarded', 'tampered'));
    expect(names(hits)).toContain('ARC_INVALID');
    expect(names(hits)).not.toContain('ARC_PASS');
  });

  it('an unanswered ARC key lookup is ARC_TEMPERROR', async () => {
    const raw = await sealed(message('boss@sender.test'));
    server.drop('arc._domainkey.forwarder.test');
    expect(names(await run(raw))).toContain('ARC_TEMPERROR');
  });
});

describe('auth: DNS down', () => {
  it('every method is a _TEMPERROR and nothing passes', async () => {
    const raw = await sign(message('boss@sender.test'), 'sender.test');
    expect(names(await run(raw))).toEqual(expect.arrayContaining(['SPF_PASS', 'DKIM_PASS', 'DMARC_PASS']));
    server.dropAll();
    const hits = await run(raw);
    expect(names(hits)).toEqual(['ARC_NONE', 'DKIM_TEMPERROR', 'DMARC_TEMPERROR', 'SPF_TEMPERROR']);
    expect(hits.filter((h) => h.name.endsWith('_PASS'))).toEqual([]);
  });
});

describe('auth: the Authentication-Results header from the symbols', () => {
  it('lists spf, dkim, dmarc and arc with their properties', async () => {
    const hits = await run(await sign(message('boss@sender.test'), 'sender.test'));
    expect(authenticationResultsHeader(HOSTNAME, hits)).toBe(
      `${HOSTNAME};\r\n spf=pass smtp.mailfrom=info@sender.test;\r\n dkim=pass header.d=sender.test header.s=sel;\r\n dmarc=pass header.from=sender.test;\r\n arc=none`,
    );
  });

  it('a hostile MAIL FROM cannot add a result of its own', async () => {
    const mailFrom = '"x;dmarc=pass"@sender.test';
    const hits = await run(message('boss@other.test'), { mailFrom, clientIp: OTHER_IP });
    const header = authenticationResultsHeader(HOSTNAME, hits);
    // The address is one quoted value: no `;` that would start a result of the sender's choosing.
    expect(header.split(';').length).toBe(5); // authserv-id + four results
    expect(header).toMatch(/^ spf=fail smtp\.mailfrom="(?:[^"\\]|\\.)*";\r$/m);
    expect(header).toMatch(/^ dmarc=none header\.from=other\.test;\r$/m);
  });
});
