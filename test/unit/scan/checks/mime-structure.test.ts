/**
 * The mime-structure check on real hostile mail (fixtures/mails/mime-*.eml, hdr-*.eml): each defect becomes its
 * symbol with useful details, and a clean Japanese mail yields nothing.
 */
import { describe, expect, it } from 'vitest';
import type { SymbolHit } from '../../../../src/scan/check.ts';
import { createMimeStructureCheck } from '../../../../src/scan/checks/mime-structure.ts';
import { MAX_HEAD_BYTES, MAX_PARTS } from '../../../../src/scan/mime-parts.ts';
import { symbolInfo } from '../../../../src/scan/symbols.ts';
import { checkContext, fixture } from '../../../helpers/check-context.ts';

const HEAD = 'From: a@example.com\r\nTo: b@city.example.lg.jp\r\nSubject: x\r\nDate: Tue, 24 Nov 2026 09:15:00 +0900\r\nMessage-ID: <x@example.com>\r\nMIME-Version: 1.0\r\n';

async function scan(raw: Buffer): Promise<SymbolHit[]> {
  const hits = await createMimeStructureCheck().run(checkContext(raw));
  for (const h of hits) expect(symbolInfo(h.name), `${h.name} is in the catalogue`).toBeDefined();
  return [...hits].sort((a, b) => a.name.localeCompare(b.name));
}

const names = (hits: SymbolHit[]) => hits.map((h) => h.name);

function withAttachment(filename: string): Buffer {
  return Buffer.from(
    `${HEAD}Content-Type: multipart/mixed; boundary="a"\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n` +
      `--a\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="${filename}"\r\n\r\nAAAA\r\n--a--\r\n`,
  );
}

describe('mime-structure check', () => {
  it('is named "mime" and fails as MIME_FAIL', () => {
    const c = createMimeStructureCheck();
    expect([c.name, c.failSymbol]).toEqual(['mime', 'MIME_FAIL']);
  });

  it('a clean Japanese mail (ISO-2022-JP, RFC 2047 subject, RFC 2231 PDF name) → no symbols', async () => {
    expect(await scan(fixture('mime-clean-japanese.eml'))).toEqual([]);
    expect(await scan(fixture('iso-2022-jp-plain.eml'))).toEqual([]);
    expect(await scan(fixture('mime-iso-2022-jp-encodings.eml'))).toEqual([]);
  });

  it('missing Date, From and Message-ID', async () => {
    expect(await scan(fixture('hdr-missing-date-from-message-id.eml'))).toEqual([
      { name: 'HEADER_MISSING_DATE' },
      { name: 'HEADER_MISSING_FROM' },
      { name: 'HEADER_MISSING_MESSAGE_ID' },
    ]);
  });

  it('duplicate From and Subject → one HEADER_DUPLICATE naming both', async () => {
    expect(await scan(fixture('hdr-duplicate-from-subject.eml'))).toEqual([{ name: 'HEADER_DUPLICATE', details: ['from', 'subject'] }]);
  });

  it('headers that may repeat (Received, X-*) are not duplicates', async () => {
    const raw = Buffer.from(`Received: from a\r\nReceived: from b\r\nX-Tag: 1\r\nX-Tag: 2\r\n${HEAD}\r\nbody\r\n`);
    expect(await scan(raw)).toEqual([]);
  });

  it('raw 8-bit Shift_JIS bytes in Subject → HEADER_8BIT_UNENCODED', async () => {
    const raw = fixture('hdr-8bit-shift-jis-subject.eml');
    expect(raw.subarray(0, raw.indexOf('\r\n\r\n')).some((b) => b >= 0x80)).toBe(true);
    expect(await scan(raw)).toEqual([{ name: 'HEADER_8BIT_UNENCODED' }]);
  });

  it('8-bit bytes in the body only are fine', async () => {
    const raw = Buffer.concat([Buffer.from(`${HEAD}Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n`), Buffer.from('本文は UTF-8 です。\r\n')]);
    expect(await scan(raw)).toEqual([]);
  });

  it('multipart without boundary → MIME_BOUNDARY_MISSING', async () => {
    expect(await scan(fixture('mime-boundary-missing.eml'))).toEqual([{ name: 'MIME_BOUNDARY_MISSING', details: ['multipart/mixed without boundary'] }]);
  });

  it('unterminated multipart → MIME_UNTERMINATED_MULTIPART', async () => {
    expect(await scan(fixture('mime-unterminated-multipart.eml'))).toEqual([
      { name: 'MIME_UNTERMINATED_MULTIPART', details: ['multipart/mixed boundary never closed'] },
    ]);
  });

  it('x-uuencode → MIME_BAD_TRANSFER_ENCODING', async () => {
    expect(await scan(fixture('mime-bad-transfer-encoding-uuencode.eml'))).toEqual([
      { name: 'MIME_BAD_TRANSFER_ENCODING', details: ['application/octet-stream: x-uuencode'] },
    ]);
  });

  it('nesting 30 levels deep → MIME_TOO_DEEP', async () => {
    let body = 'Content-Type: text/plain\r\n\r\nbottom\r\n';
    for (let i = 30; i >= 1; i--) body = `Content-Type: multipart/mixed; boundary="n${i}"\r\n\r\n--n${i}\r\n${body}--n${i}--\r\n`;
    expect(await scan(Buffer.from(HEAD + body))).toEqual([{ name: 'MIME_TOO_DEEP', details: ['nesting deeper than 20'] }]);
  });

  it('5,000 parts → MIME_MALFORMED, bounded', async () => {
    const parts = Array.from({ length: 5_000 }, (_, i) => `--m\r\nContent-Type: text/plain\r\n\r\n${i}\r\n`).join('');
    const raw = Buffer.from(`${HEAD}Content-Type: multipart/mixed; boundary="m"\r\n\r\n${parts}--m--\r\n`);
    const ctx = checkContext(raw);
    const hits = await createMimeStructureCheck().run(ctx);
    expect(hits).toEqual([{ name: 'MIME_MALFORMED', details: [`more than ${MAX_PARTS} parts`] }]);
    expect((await ctx.parsed()).parts).toHaveLength(MAX_PARTS);
  });

  // Regression: the splitter's header-size error came out as MIME_MALFORMED; HEADER_OVERSIZED was never emitted.
  it('a header block over the parser limit → HEADER_OVERSIZED', async () => {
    const raw = Buffer.from(`${HEAD}X-Padding: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\nbody\r\n`);
    expect(names(await scan(raw))).toEqual(['HEADER_OVERSIZED']);
  });

  it('請求書.pdf.exe as an RFC 2231 UTF-8 name → MIME_DOUBLE_EXTENSION + MIME_EXECUTABLE_ATTACHMENT, decoded name in details', async () => {
    expect(await scan(fixture('mime-rfc2231-double-extension.eml'))).toEqual([
      { name: 'MIME_DOUBLE_EXTENSION', details: ['請求書.pdf.exe'] },
      { name: 'MIME_EXECUTABLE_ATTACHMENT', details: ['請求書.pdf.exe'] },
    ]);
  });

  it('.lnk, .iso and .one attachments → MIME_EXECUTABLE_ATTACHMENT naming each', async () => {
    expect(await scan(fixture('mime-lnk-iso-one.eml'))).toEqual([{ name: 'MIME_EXECUTABLE_ATTACHMENT', details: ['Document.lnk', 'scan.iso', 'notes.one'] }]);
  });

  // Regression: an attached (Content-Disposition: attachment) message/rfc822 was never looked into.
  it('an .exe inside an attached message → MIME_EXECUTABLE_ATTACHMENT', async () => {
    expect(await scan(fixture('mime-exe-in-attached-eml.eml'))).toEqual([{ name: 'MIME_EXECUTABLE_ATTACHMENT', details: ['setup.exe'] }]);
    expect(await scan(fixture('av-eicar-in-attached-eml.eml'))).toEqual([{ name: 'MIME_EXECUTABLE_ATTACHMENT', details: ['tool.com'] }]);
  });

  it.each([
    ['INVOICE.PDF.EXE', ['MIME_DOUBLE_EXTENSION', 'MIME_EXECUTABLE_ATTACHMENT']],
    ['report.docx.js', ['MIME_DOUBLE_EXTENSION', 'MIME_EXECUTABLE_ATTACHMENT']],
    ['invoice.pdf.exe.', ['MIME_DOUBLE_EXTENSION', 'MIME_EXECUTABLE_ATTACHMENT']], // Windows drops trailing dots
    ['invoice.pdf.exe   ', ['MIME_DOUBLE_EXTENSION', 'MIME_EXECUTABLE_ATTACHMENT']], // … and trailing spaces
    ['setup.exe', ['MIME_EXECUTABLE_ATTACHMENT']],
    ['.hta', ['MIME_EXECUTABLE_ATTACHMENT']],
    ['archive.tar.gz', []],
    ['report.v2.pdf', []],
    ['exe', []],
    ['見積書.xlsx', []],
  ])('attachment named %j → %j', async (filename, expected) => {
    expect(names(await scan(withAttachment(filename)))).toEqual(expected);
  });

  it('several defects at once are all reported', async () => {
    const raw = Buffer.concat([
      Buffer.from('To: b@city.example.lg.jp\r\nSubject: a\r\nSubject: '),
      Buffer.from([0x90, 0xbf, 0x8b, 0x81]), // 請求 in Shift_JIS
      Buffer.from('\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="z"\r\n\r\n'),
      Buffer.from('--z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\nContent-Disposition: attachment; filename="a.pdf.scr"\r\n\r\nbegin 644 a\r\n'),
    ]);
    expect(names(await scan(raw))).toEqual([
      'HEADER_8BIT_UNENCODED',
      'HEADER_DUPLICATE',
      'HEADER_MISSING_DATE',
      'HEADER_MISSING_FROM',
      'HEADER_MISSING_MESSAGE_ID',
      'MIME_BAD_TRANSFER_ENCODING',
      'MIME_DOUBLE_EXTENSION',
      'MIME_EXECUTABLE_ATTACHMENT',
      'MIME_UNTERMINATED_MULTIPART',
    ]);
  });
});
