/**
 * The MIME writer: what it writes is parsed back with mailparser and asserted on decoded content — Japanese
 * file names and subjects round-trip as the same strings — and on the transport rules: CRLF only, no line over
 * 998 octets, folded headers, 7bit where declared, boundaries that never occur in the content, and no value that
 * can add a header.
 */
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { composeMessage, encodeHeader, FOLD_LINE_CHARS, MAX_LINE_OCTETS, type MimeNode } from '../../../src/mime/compose.ts';

const text = (body: string, encoding?: 'base64' | 'quoted-printable' | '7bit' | '8bit'): MimeNode => ({
  kind: 'leaf',
  contentType: 'text/plain; charset=utf-8',
  body,
  ...(encoding ? { encoding } : {}),
});

function lines(buf: Buffer): string[] {
  return buf.toString('latin1').split('\r\n');
}

/** Transport invariants of any message this module writes. */
function expectWellFormed(buf: Buffer): void {
  const s = buf.toString('latin1');
  expect(s.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
  for (const l of lines(buf)) expect(Buffer.byteLength(l, 'latin1')).toBeLessThanOrEqual(MAX_LINE_OCTETS);
  expect(s.endsWith('\r\n')).toBe(true);
}

function headerSection(buf: Buffer): string {
  const s = buf.toString('latin1');
  return s.slice(0, s.indexOf('\r\n\r\n'));
}

describe('composeMessage', () => {
  it('round-trips Japanese file names (RFC 2231 and RFC 2047) and a Japanese subject through mailparser', async () => {
    const names = ['令和6年度 予算要求書（最終版）.pdf', '議事録_第３回.docx', 'ファイル名がとても長い添付ファイルの名前になっていますがそれでも同じ名前で読めること.xlsx', 'semi;colon "quoted".txt'];
    const subject = '【重要】会議のお知らせ — 来週の定例会議は第二会議室で行います';
    const msg = composeMessage([{ name: 'Subject', value: subject }], {
      kind: 'multipart',
      contentType: 'multipart/mixed',
      parts: [
        text('本文です。\n二行目。', 'quoted-printable'),
        ...names.map((filename, i): MimeNode => ({ kind: 'leaf', contentType: 'application/octet-stream', body: Buffer.from([i, 0xff, 0x00, 0x0d]), filename })),
      ],
    });
    expectWellFormed(msg);
    const mail = await simpleParser(msg);
    expect(mail.subject).toBe(subject);
    expect(mail.text?.trim()).toBe('本文です。\n二行目。');
    expect(mail.attachments.map((a) => a.filename)).toEqual(names);
    expect(mail.attachments.map((a) => [...a.content])).toEqual(names.map((_, i) => [i, 0xff, 0x00, 0x0d]));
    // Both forms are present: RFC 2231 for current clients, RFC 2047 in name= for older Japanese ones.
    expect(msg.toString('latin1')).toMatch(/filename\*0\*=utf-8''/);
    expect(msg.toString('latin1')).toMatch(/name="=\?UTF-8\?B\?/);
  });

  it('folds long headers at 78 characters where the words allow, and unfolding gives the value back', async () => {
    const long = Array.from({ length: 40 }, (_, i) => `word${i}`).join(' ');
    const jp = 'あ'.repeat(200);
    const msg = composeMessage(
      [
        { name: 'X-Long', value: long },
        { name: 'Subject', value: jp },
      ],
      text('x'),
    );
    for (const l of headerSection(msg).split('\r\n')) expect(l.length).toBeLessThanOrEqual(FOLD_LINE_CHARS);
    const mail = await simpleParser(msg);
    expect(mail.headers.get('x-long')).toBe(long);
    expect(mail.subject).toBe(jp);
  });

  it('never uses a boundary that occurs in the content, even in 7bit and 8bit parts', async () => {
    // A part that contains boundary-looking lines, including one with our own prefix.
    const tricky = '--=_sekisho-000000000000000000000000\n--=_sekisho-\n=_sekisho-';
    const msg = composeMessage([], {
      kind: 'multipart',
      contentType: 'multipart/mixed',
      parts: [text(tricky, '7bit'), { kind: 'multipart', contentType: 'multipart/alternative', parts: [text(tricky, '8bit'), text('日本語', '8bit')] }],
    });
    const boundaries = [...msg.toString('latin1').matchAll(/boundary="([^"]+)"/g)].map((m) => m[1]!);
    expect(boundaries).toHaveLength(2);
    expect(boundaries[0]).not.toBe(boundaries[1]);
    for (const b of boundaries) expect(tricky.includes(b)).toBe(false);
    const mail = await simpleParser(msg);
    expect(mail.text).toContain('=_sekisho-000000000000000000000000');
  });

  it('writes 7bit only when the body is 7bit, refuses a declared encoding the body does not fit, and picks base64 for 8-bit bytes', () => {
    expect(() => composeMessage([], text('日本語', '7bit'))).toThrow(/7bit body must not contain 8-bit octets/);
    expect(() => composeMessage([], text('a\0b', '8bit'))).toThrow(/NUL/);
    expect(() => composeMessage([], text('x'.repeat(MAX_LINE_OCTETS + 1), '8bit'))).toThrow(/line over 998/);
    const auto = composeMessage([], text('日本語'));
    expect(headerSection(auto)).toContain('Content-Transfer-Encoding: base64');
    expect(auto.every((b) => b < 0x80)).toBe(true);
    const ascii = composeMessage([], text('plain\nascii'));
    expect(headerSection(ascii)).toContain('Content-Transfer-Encoding: 7bit');
    expect(ascii.toString('latin1')).toContain('plain\r\nascii');
    const eight = composeMessage([], text('日本語\n', '8bit'));
    expect(eight.includes(Buffer.from('日本語\r\n'))).toBe(true);
  });

  it('keeps quoted-printable lines within 76 characters and decodes back to the same text', async () => {
    const body = `${'あいうえお'.repeat(40)}\n${'x'.repeat(300)} \n=trailing= `;
    const msg = composeMessage([], text(body, 'quoted-printable'));
    const bodyLines = msg.toString('latin1').split('\r\n\r\n')[1]!.split('\r\n');
    for (const l of bodyLines) expect(l.length).toBeLessThanOrEqual(76);
    // (The message's last line break is the end of the body, which mailparser keeps.)
    expect((await simpleParser(msg)).text).toBe(`${body}\n`);
  });

  it('turns controls in an encoded value into spaces: no value can add a header', async () => {
    const msg = composeMessage([{ name: 'Subject', value: 'hi\r\nBcc: victim@example.jp\r\n\r\nbody' }], text('x'));
    const mail = await simpleParser(msg);
    expect(mail.headers.has('bcc')).toBe(false);
    expect(mail.subject).toBe('hi  Bcc: victim@example.jp    body');
  });

  it('copies raw values as received, folded lines included, and refuses one that would start a new header', async () => {
    const msg = composeMessage([{ name: 'Subject', raw: ' =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n continued' }], text('x'));
    expect(headerSection(msg)).toContain('Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n continued');
    expect((await simpleParser(msg)).subject).toBe('こんにちは continued');
    expect(() => composeMessage([{ name: 'Subject', raw: ' hi\r\nBcc: x@example.jp' }], text('x'))).toThrow(/line break/);
    expect(() => composeMessage([{ name: 'Subject', raw: ' hi\nBcc: x@example.jp' }], text('x'))).toThrow(/line break/);
    expect(() => encodeHeader({ name: 'Bad Name', value: 'x' })).toThrow(/invalid header name/);
    expect(() => encodeHeader({ name: 'Bcc:x', value: 'x' })).toThrow(/invalid header name/);
  });

  it('writes MIME-Version and the MIME fields itself, and refuses them as given headers', () => {
    const msg = composeMessage([{ name: 'From', value: 'a@example.jp' }], text('x'));
    expect(headerSection(msg).split('\r\n')).toEqual([
      'From: a@example.jp',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: 7bit',
    ]);
    expect(() => composeMessage([{ name: 'content-type', value: 'text/html' }], text('x'))).toThrow(/written from the MIME tree/);
  });

  it('encodes a value that only looks like an encoded-word, so a decoder cannot misread it', async () => {
    const value = 'see =?UTF-8?B?5pel5pys?= here';
    const mail = await simpleParser(composeMessage([{ name: 'Subject', value }], text('x')));
    expect(mail.subject).toBe(value);
  });
});
