/**
 * The clamav check against a real clamd (managed, project signatures only), on the fixtures of fixtures/mails.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CheckFailedError, type Check, type SymbolHit } from '../../src/scan/check.ts';
import { createClamavCheck } from '../../src/scan/checks/clamav.ts';
import type { ArchiveLimits } from '../../src/scan/archive/inspect-archive.ts';
import { captureLog, checkContext, EICAR, fixture } from '../helpers/check-context.ts';
import { startClamdProxy } from '../helpers/clamd-proxy.ts';
import { startTestClamd, type TestClamd } from '../helpers/clamd.ts';
import { nestedZipBomb } from '../helpers/zip-writer.ts';

const archive: ArchiveLimits = { maxDepth: 5, maxExpandedBytes: 200 * 1024 * 1024, maxRatio: 100, maxEntries: 10_000 };

let t: TestClamd;
let check: Check;

beforeAll(async () => {
  t = await startTestClamd();
  check = createClamavCheck({ clamd: t.clamd.endpoint, timeoutMs: 30_000, archive });
});
afterAll(async () => {
  await check?.close?.();
  await t?.cleanup();
});

/** Runs the check and returns its symbols and the labels of what clamd was given. */
async function scan(raw: Buffer): Promise<{ hits: SymbolHit[]; scanned: string[]; alerts: string[] }> {
  const cap = captureLog();
  const hits = await check.run(checkContext(raw, { log: cap.log }));
  const scanned = cap.records.filter((r) => r.msg === 'clamd scanned').map((r) => String(r.part));
  const alerts = cap.records.filter((r) => r.msg === 'clamd alert').map((r) => String(r.part));
  return { hits, scanned, alerts };
}

function multipart(parts: { name: string; type: string; data: Buffer }[]): Buffer {
  const b = 'sekisho-test-boundary';
  const body = parts
    .map((p) => `--${b}\r\nContent-Type: ${p.type}; name="${p.name}"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="${p.name}"\r\n\r\n${p.data.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`)
    .join('');
  return Buffer.from(
    `From: a@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
      `--${b}\r\nContent-Type: text/plain\r\n\r\nsee attachments\r\n${body}--${b}--\r\n`,
  );
}

/** A message of one or more MIME parts given with their headers, e.g. `['Content-Type: text/plain', 'body']`. */
function mail(...parts: [headers: string, body: string][]): Buffer {
  const head = 'From: a@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: t\r\nMIME-Version: 1.0\r\n';
  if (parts.length === 1) {
    const [[headers, body]] = parts as [[string, string]];
    return Buffer.from(`${head}${headers}\r\n\r\n${body}\r\n`);
  }
  const b = 'sekisho-test-boundary';
  const bodies = parts.map(([headers, body]) => `--${b}\r\n${headers}\r\n\r\n${body}\r\n`).join('');
  return Buffer.from(`${head}Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n${bodies}--${b}--\r\n`);
}

/** Every byte as =XX: the raw message does not hold the EICAR string, only our decoded part does. */
function quotedPrintable(data: Buffer): string {
  return [...data].map((c) => `=${c.toString(16).toUpperCase().padStart(2, '0')}`).join('').replace(/.{72}/g, '$&=\r\n');
}

const base64 = (data: Buffer) => data.toString('base64').replace(/.{76}/g, '$&\r\n');

describe('clamav check with a real clamd', () => {
  it.each([
    ['av-eicar-attachment.eml', 'part 2 (invoice.com)'],
    ['av-eicar-in-zip.eml', 'part 2 (documents.zip)'],
    ['av-eicar-zip-in-zip.eml', 'part 2 (archive.zip)'],
    ['av-eicar-in-attached-eml.eml', 'part 2.2 (tool.com)'],
    ['av-eicar-iso-2022-jp.eml', 'part 2 (請求書.com)'],
  ])('%s: CLAMAV_VIRUS, found both in the raw message and in the decoded part', async (file, part) => {
    const { hits, alerts } = await scan(fixture(file));
    expect(hits).toEqual([{ name: 'CLAMAV_VIRUS', details: [expect.stringMatching(/^Sekisho\.Test\.EICAR/)] }]);
    expect(alerts).toEqual(expect.arrayContaining(['raw message', part]));
  });

  it('a clean Japanese mail with a zip of documents: no symbol, every part scanned', async () => {
    const { hits, scanned } = await scan(fixture('av-clean-japanese-zip.eml'));
    expect(hits).toEqual([]);
    expect(scanned.sort()).toEqual(['part 1', 'part 2 (shiryo.zip)', 'raw message']);
  });

  it('an encrypted zip (PPAP): ARCHIVE_ENCRYPTED from the inspection and from clamd, no virus', async () => {
    const { hits } = await scan(fixture('av-ppap-encrypted-zip.eml'));
    expect(hits.map((h) => h.name)).toEqual(['ARCHIVE_ENCRYPTED']);
    expect(hits[0]?.details).toEqual(expect.arrayContaining(['mitsumori.zip: 見積書.txt', expect.stringMatching(/Heuristics\.Encrypted\.Zip/)]));
  });

  it('the 42.zip-style bomb fixture: ARCHIVE_LIMIT_EXCEEDED, and neither the bomb nor the raw message reach clamd', async () => {
    const { hits, scanned } = await scan(fixture('av-zip-bomb-42.eml'));
    expect(hits).toEqual([{ name: 'ARCHIVE_LIMIT_EXCEEDED', details: [expect.stringMatching(/^(maxRatio|maxExpandedBytes): backup\.zip\//)] }]);
    expect(scanned).toEqual(['part 1']);
  });

  it('a bomb next to EICAR: the bomb is withheld, the other attachment is still scanned', async () => {
    const raw = multipart([
      { name: 'bomb.zip', type: 'application/zip', data: nestedZipBomb(4, 16, 16 * 1024 * 1024) },
      { name: 'eicar.com', type: 'application/octet-stream', data: EICAR },
    ]);
    const { hits, scanned } = await scan(raw);
    expect(hits.map((h) => h.name).sort()).toEqual(['ARCHIVE_LIMIT_EXCEEDED', 'CLAMAV_VIRUS']);
    expect(scanned.sort()).toEqual(['part 1', 'part 3 (eicar.com)']);
  });

  it('an empty attachment is fine (clamscan 2.4 sent a malformed INSTREAM for it)', async () => {
    const { hits } = await scan(multipart([{ name: 'empty.txt', type: 'text/plain', data: Buffer.alloc(0) }]));
    expect(hits).toEqual([]);
  });

  it('EICAR in a plain 7bit text body: found by the raw message\'s scan; the body is not sent again', async () => {
    const { hits, scanned, alerts } = await scan(mail(['Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit', `hello\r\n${EICAR}`]));
    expect(hits).toEqual([{ name: 'CLAMAV_VIRUS', details: [expect.stringMatching(/^Sekisho\.Test\.EICAR/)] }]);
    expect(scanned).toEqual(['raw message']);
    expect(alerts).toEqual(['raw message']);
  });

  it('EICAR in an inline 8bit text part next to a clean attachment: found by the raw scan; only the attachment is sent on its own', async () => {
    const { hits, scanned, alerts } = await scan(
      mail(
        ['Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit', `見積書です\r\n${EICAR}`],
        ['Content-Type: application/octet-stream; name="data.bin"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="data.bin"', base64(Buffer.from('clean data'))],
      ),
    );
    expect(hits.map((h) => h.name)).toEqual(['CLAMAV_VIRUS']);
    expect(scanned.sort()).toEqual(['part 2 (data.bin)', 'raw message']);
    expect(alerts).toEqual(['raw message']);
  });

  it('EICAR in a quoted-printable text part: decoded and scanned on its own', async () => {
    const { hits, scanned, alerts } = await scan(mail(['Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: quoted-printable', quotedPrintable(EICAR)]));
    expect(hits).toEqual([{ name: 'CLAMAV_VIRUS', details: [expect.stringMatching(/^Sekisho\.Test\.EICAR/)] }]);
    expect(scanned.sort()).toEqual(['part TEXT', 'raw message']);
    expect(alerts).toContain('part TEXT');
  });

  it.each([
    ['a 7bit text attachment', 'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="eicar.txt"', 'part 2 (eicar.txt)'],
    ['an inline 7bit text part with a file name', 'Content-Type: text/plain; name="eicar.txt"', 'part 2 (eicar.txt)'],
    ['an inline 7bit part that is not text', 'Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: 7bit', 'part 2'],
    ['a base64 inline text part', 'Content-Type: text/plain\r\nContent-Transfer-Encoding: base64', 'part 2'],
  ])('%s is still scanned on its own', async (_what, headers, label) => {
    const body = headers.includes('base64') ? base64(EICAR) : EICAR.toString();
    const { hits, scanned } = await scan(mail(['Content-Type: text/plain', 'hello'], [headers, body]));
    expect(hits.map((h) => h.name)).toEqual(['CLAMAV_VIRUS']);
    expect(scanned.sort()).toEqual([label, 'raw message']);
  });

  it('the inline text of an attached message is still scanned on its own', async () => {
    const inner = `From: b@example.com\r\nSubject: fwd\r\nContent-Type: text/plain\r\n\r\n${EICAR}\r\n`;
    const { hits, scanned } = await scan(mail(['Content-Type: text/plain', 'see the forwarded mail'], ['Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename="fwd.eml"', inner]));
    expect(hits.map((h) => h.name)).toEqual(['CLAMAV_VIRUS']);
    expect(scanned.sort()).toEqual(['part 2.TEXT', 'raw message']);
  });

  it('nothing is skipped when our parse found the structure damaged (where clamd\'s parse may differ)', async () => {
    const { hits, scanned } = await scan(fixture('mime-unterminated-multipart.eml'));
    expect(hits).toEqual([]);
    expect(scanned.sort()).toEqual(['part 1', 'part 2', 'raw message']);
  });

  it('messages share persistent clamd sessions; close() ends them', async () => {
    const proxy = await startClamdProxy(t.clamd.socket);
    const viaProxy = createClamavCheck({ clamd: proxy.endpoint, timeoutMs: 30_000, archive });
    try {
      for (let i = 0; i < 10; i++) expect((await viaProxy.run(checkContext(fixture('av-eicar-attachment.eml')))).map((h) => h.name)).toEqual(['CLAMAV_VIRUS']);
      // the raw message, then its one attachment: one INSTREAM at a time, so one session for all 20
      expect(proxy.connections).toBe(1);
      await viaProxy.close?.();
      await vi.waitFor(() => expect(proxy.open).toBe(0));
    } finally {
      await proxy.close();
    }
  });

  it('an aborted signal fails the check instead of passing the message', async () => {
    const ac = new AbortController();
    ac.abort(new Error('deadline'));
    await expect(check.run(checkContext(fixture('av-eicar-attachment.eml'), { signal: ac.signal }))).rejects.toBeInstanceOf(CheckFailedError);
  });
});
