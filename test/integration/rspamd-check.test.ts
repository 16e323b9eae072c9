/**
 * The rspamd check against a real Rspamd (Debian's package, private configuration, nothing leaves the machine):
 * GTUBE is RSPAMD_REJECT with RSPAMD_GTUBE, a plain message is RSPAMD_NO_ACTION, the envelope reaches Rspamd,
 * and an Rspamd that is down, slow or not Rspamd is RSPAMD_FAIL through the runner (fail closed).
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Check, CheckContext, Envelope, SymbolHit } from '../../src/scan/check.ts';
import { createRspamdCheck, rspamdConfigSchema, rspamdSymbolName } from '../../src/scan/checks/rspamd/index.ts';
import { runChecks } from '../../src/scan/runner.ts';
import { isFailSymbol, symbolInfo } from '../../src/scan/symbols.ts';
import { checkContext } from '../helpers/check-context.ts';
import { rspamdSkipReason, startTestRspamd, type TestRspamd } from '../helpers/rspamd.ts';

const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

const envelope: Envelope = {
  mailFrom: 'tanaka@example.co.jp',
  recipients: [{ address: 'soumu@city-a.example.lg.jp', tenantId: 'city-a' }],
  clientIp: '192.0.2.25',
  helo: 'mail.example.co.jp',
  tls: null,
};

function mail(body: string, opts: { to?: string } = {}): Buffer {
  return Buffer.from(
    [
      'From: Tanaka <tanaka@example.co.jp>',
      `To: ${opts.to ?? 'soumu@city-a.example.lg.jp'}`,
      'Subject: meeting on Thursday',
      'Date: Thu, 03 Dec 2026 10:00:00 +0900',
      'Message-ID: <20261203100000.1234@example.co.jp>',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=us-ascii',
      '',
      body,
      '',
    ].join('\r\n'),
  );
}

const HAM = mail('Hello,\r\n\r\nThe meeting on Thursday starts at 10:00 in room 3. Please bring the budget figures.\r\n\r\nTanaka');

function ctx(raw: Buffer, env: Envelope = envelope): CheckContext {
  return { ...checkContext(raw), envelope: env };
}

function names(hits: readonly SymbolHit[]): string[] {
  return hits.map((h) => h.name);
}

function hit(hits: readonly SymbolHit[], name: string): SymbolHit | undefined {
  return hits.find((h) => h.name === name);
}

const runInput = (raw: Buffer) => ({ messageId: 'test-message', envelope, raw, log: pino({ level: 'silent' }) });

describe('rspamdSymbolName and the config', () => {
  it('prefixes, upper-cases and replaces what is not [A-Z0-9_]', () => {
    expect(rspamdSymbolName('GTUBE')).toBe('RSPAMD_GTUBE');
    expect(rspamdSymbolName('r_spf_allow')).toBe('RSPAMD_R_SPF_ALLOW');
    expect(rspamdSymbolName('my.rule-1 x')).toBe('RSPAMD_MY_RULE_1_X');
    expect(rspamdSymbolName('A'.repeat(500))).toBe(`RSPAMD_${'A'.repeat(64)}`);
  });

  it('never makes a catalogue name or a fail symbol out of an Rspamd symbol', () => {
    expect(rspamdSymbolName('REJECT')).toBe('RSPAMD_REJECT_HIT');
    expect(rspamdSymbolName('FAIL')).toBe('RSPAMD_FAIL_HIT');
    expect(rspamdSymbolName('R_SPF_FAIL')).toBe('RSPAMD_R_SPF_FAIL_HIT');
    expect(rspamdSymbolName('DMARC_TEMPERROR')).toBe('RSPAMD_DMARC_TEMPERROR_HIT');
    for (const n of ['REJECT', 'FAIL', 'R_SPF_FAIL', 'DMARC_TEMPERROR']) {
      expect(isFailSymbol(rspamdSymbolName(n))).toBe(false);
      expect(symbolInfo(rspamdSymbolName(n))).toBeUndefined();
    }
  });

  it('gives relayed symbols the group rspamd and score 0, and nothing else', () => {
    const check = createRspamdCheck({ config: { url: 'http://127.0.0.1:1', timeoutMs: 1_000 } });
    expect(check.symbolInfo?.('RSPAMD_GTUBE')).toMatchObject({ group: 'rspamd', score: 0 });
    expect(check.symbolInfo?.('RSPAMD_REJECT')).toBeUndefined(); // a catalogue symbol: the catalogue answers
    expect(check.symbolInfo?.('RULE_GTUBE')).toBeUndefined();
    expect(check.symbolInfo?.('RSPAMD_gtube')).toBeUndefined();
  });

  it('accepts http(s)://host:port only, defaults the timeout, and is strict', () => {
    expect(rspamdConfigSchema.parse({})).toEqual({ timeoutMs: 10_000 });
    expect(rspamdConfigSchema.parse({ url: 'http://127.0.0.1:11333/' }).url).toBe('http://127.0.0.1:11333');
    expect(rspamdConfigSchema.parse({ url: 'https://rspamd.internal:11334', password: 'p' })).toMatchObject({ url: 'https://rspamd.internal:11334', password: 'p' });
    for (const url of ['127.0.0.1:11333', 'ftp://h:1', 'http://h:1/checkv2', 'http://h:1?x=1']) expect(rspamdConfigSchema.safeParse({ url }).success).toBe(false);
    expect(rspamdConfigSchema.safeParse({ url: 'http://h:1', timeoutMS: 5 }).success).toBe(false);
  });
});

const skipReason = rspamdSkipReason();
if (skipReason) console.warn(`rspamd-check.test.ts: Rspamd tests skipped: ${skipReason}`);

describe.skipIf(skipReason !== undefined)('the rspamd check on a real Rspamd', () => {
  let rspamd: TestRspamd;
  let check: Check;

  beforeAll(async () => {
    rspamd = await startTestRspamd();
    check = createRspamdCheck({ config: { url: rspamd.url, timeoutMs: 10_000 } });
  });
  afterAll(async () => {
    await rspamd?.cleanup();
  });

  it('GTUBE: RSPAMD_REJECT with Rspamd score and threshold, and RSPAMD_GTUBE', async () => {
    const hits = await check.run(ctx(mail(`This is the GTUBE test.\r\n\r\n${GTUBE}\r\n`)));
    expect(hit(hits, 'RSPAMD_REJECT')?.details?.[0]).toMatch(/^score=\d+(\.\d+)? required=\d+(\.\d+)?$/);
    expect(names(hits)).toContain('RSPAMD_GTUBE');
    expect(names(hits)).not.toContain('RSPAMD_NO_ACTION');
    expect(check.symbolInfo?.('RSPAMD_GTUBE')).toMatchObject({ group: 'rspamd', score: 0 });
  });

  it('a GTUBE look-alike (one character changed) is not rejected', async () => {
    const hits = await check.run(ctx(mail(`This is not the GTUBE test.\r\n\r\n${GTUBE.replace('GTUBE-STANDARD', 'GTUBE-STANDART')}\r\n`)));
    expect(names(hits)).not.toContain('RSPAMD_REJECT');
    expect(names(hits)).not.toContain('RSPAMD_GTUBE');
  });

  it('a plain message: RSPAMD_NO_ACTION, one action symbol, Rspamd symbols relayed with their score', async () => {
    const hits = await check.run(ctx(HAM));
    expect(hit(hits, 'RSPAMD_NO_ACTION')?.details?.[0]).toMatch(/^score=-?\d+(\.\d+)? required=\d+(\.\d+)?$/);
    expect(names(hits).filter((n) => symbolInfo(n))).toEqual(['RSPAMD_NO_ACTION']);
    const relayed = hits.filter((h) => !symbolInfo(h.name));
    expect(relayed.length).toBeGreaterThan(0);
    for (const h of relayed) {
      expect(h.name).toMatch(/^RSPAMD_[A-Z0-9_]+$/);
      expect(h.details?.[0]).toMatch(/^score=-?\d+(\.\d+)?$/);
    }
    // Rspamd saw the text part: its MIME_GOOD names the content type as an option.
    expect(hit(hits, 'RSPAMD_MIME_GOOD')?.details).toContain('text/plain');
    // Its lookups (the client's reverse DNS) went to the test's loopback socket, which never answers.
    expect(rspamd.dnsQueries()).toBeGreaterThan(0);
    expect(names(hits)).toContain('RSPAMD_RDNS_NONE');
  });

  it('sends the envelope: MAIL FROM and every RCPT TO reach Rspamd', async () => {
    const env: Envelope = { ...envelope, recipients: [{ address: 'kikaku@city-b.example.lg.jp', tenantId: 'city-b' }, { address: 'zaisei@city-c.example.lg.jp', tenantId: 'city-c' }] };
    const hits = await check.run(ctx(HAM, env));
    // The To header is in city-a, the envelope's two recipients in other domains: Rspamd lists those as s:…
    expect(hit(hits, 'RSPAMD_FORGED_RECIPIENTS')?.details).toEqual(expect.arrayContaining(['s:kikaku@city-b.example.lg.jp', 's:zaisei@city-c.example.lg.jp']));
    const forgedSender = await check.run(ctx(HAM, { ...envelope, mailFrom: 'bounce@lists.example.net' }));
    expect(hit(forgedSender, 'RSPAMD_FORGED_SENDER')?.details).toContain('bounce@lists.example.net');
    // The look-alike: envelope and headers agree, nothing forged.
    const agreeing = await check.run(ctx(HAM));
    expect(names(agreeing)).not.toContain('RSPAMD_FORGED_RECIPIENTS');
    expect(names(agreeing)).not.toContain('RSPAMD_FORGED_SENDER');
  });

  it('through the runner: GTUBE is RSPAMD_REJECT; Rspamd stopped is RSPAMD_FAIL, never a clean verdict', async () => {
    const up = await runChecks([check], runInput(mail(GTUBE)), { checkTimeoutMs: 20_000 });
    expect(up.failedChecks).toEqual([]);
    expect(names(up.symbols)).toContain('RSPAMD_REJECT');

    await rspamd.stop();
    const down = await runChecks([check], runInput(HAM), { checkTimeoutMs: 20_000 });
    expect(down.failedChecks).toEqual(['rspamd']);
    expect(names(down.symbols)).toEqual(['RSPAMD_FAIL']);
    expect(down.symbols[0]?.details?.[0]).toMatch(/could not be reached/);
    await expect(check.run(ctx(HAM))).rejects.toThrow(/could not be reached/);
  });
});

describe('the rspamd check against answers that are not Rspamd', () => {
  let server: Server;
  let url: string;
  let answer: (res: ServerResponse) => void = () => {};
  const seen: Record<string, string | string[] | undefined>[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ ...req.headers, path: req.url });
      req.resume();
      req.on('end', () => answer(res));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const run = (timeoutMs = 5_000, password?: string) => runChecks([createRspamdCheck({ config: { url, timeoutMs, password } })], runInput(HAM), { checkTimeoutMs: 20_000 });

  it('posts to /checkv2 with the envelope headers and the Password', async () => {
    answer = (res) => res.setHeader('Content-Type', 'application/json').end(JSON.stringify({ action: 'add header', score: 6.5, required_score: 15, symbols: { 'BAYES.SPAM': { score: 5.1, options: ['99.9%'] } } }));
    const v = await run(5_000, 'secret');
    expect(v.symbols).toEqual([
      { name: 'RSPAMD_ADD_HEADER', details: ['score=6.5 required=15'] },
      { name: 'RSPAMD_BAYES_SPAM', details: ['99.9%', 'score=5.1'] },
    ]);
    expect(seen.at(-1)).toMatchObject({ path: '/checkv2', ip: '192.0.2.25', helo: 'mail.example.co.jp', from: 'tanaka@example.co.jp', rcpt: 'soumu@city-a.example.lg.jp', 'queue-id': 'test-message', password: 'secret' });
    await run();
    expect(seen.at(-1)?.password).toBeUndefined();
  });

  it('an HTTP error, a non-JSON answer, JSON that is not Rspamd’s, an unknown action: RSPAMD_FAIL', async () => {
    const bad: [(res: ServerResponse) => void, RegExp][] = [
      [(res) => res.writeHead(500).end('{"error":"internal"}'), /HTTP 500/],
      [(res) => res.end('<html>proxy error</html>'), /not JSON/],
      [(res) => res.end('{"status":"ok"}'), /without action/],
      [(res) => res.end(JSON.stringify({ action: 'discard', score: 1, required_score: 15, symbols: {} })), /action Sekisho does not know/],
    ];
    for (const [respond, reason] of bad) {
      answer = respond;
      const v = await run();
      expect(v.failedChecks).toEqual(['rspamd']);
      expect(names(v.symbols)).toEqual(['RSPAMD_FAIL']);
      expect(v.symbols[0]?.details?.[0]).toMatch(reason);
    }
  });

  it('no answer within timeoutMs: RSPAMD_FAIL', async () => {
    answer = () => {}; // never answers
    const v = await run(300);
    expect(v.failedChecks).toEqual(['rspamd']);
    expect(v.symbols[0]?.details?.[0]).toMatch(/did not answer within 300 ms/);
  });
});
