/**
 * parseMessage on real hostile mail (fixtures/mails/mime-*.eml, hdr-*.eml) and on generated worst cases: decoded
 * leaves with their decoded names, attached messages descended into, structure defects noted, and every limit
 * (parts, depth, header size) holding by result.
 */
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MAX_DEPTH, MAX_EMBEDDED_DEPTH, MAX_HEAD_BYTES, MAX_PARTS, parseMessage, type ParsedMessage } from '../../../src/scan/mime-parts.ts';
import { FIXTURES_DIR, fixture } from '../../helpers/check-context.ts';

const HEAD = [
  'From: sender@example.com',
  'To: staff@city.example.lg.jp',
  'Subject: generated',
  'Date: Tue, 24 Nov 2026 09:15:00 +0900',
  'Message-ID: <generated@example.com>',
  'MIME-Version: 1.0',
].join('\r\n');

const iso2022jp = new TextDecoder('iso-2022-jp');

function kinds(p: ParsedMessage): string[] {
  return p.notes.map((n) => n.kind);
}

/** `levels` multiparts nested in one another, a text leaf at the bottom. */
function nestedMultiparts(levels: number): Buffer {
  let body = 'Content-Type: text/plain\r\n\r\nbottom\r\n';
  for (let i = levels; i >= 1; i--) body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}--b${i}--\r\n`;
  return Buffer.from(`${HEAD}\r\n${body}`);
}

/** `levels` messages attached (Content-Disposition: attachment) in one another, an .exe in the innermost. */
function attachedMessages(levels: number): Buffer {
  let msg = `${HEAD}\r\nContent-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\nContent-Type: application/octet-stream; name="deep.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--in--\r\n`;
  for (let i = 1; i <= levels; i++) {
    msg = `${HEAD}\r\nContent-Type: multipart/mixed; boundary="o${i}"\r\n\r\n--o${i}\r\nContent-Type: text/plain\r\n\r\nlevel ${i}\r\n--o${i}\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename="fwd${i}.eml"\r\n\r\n${msg}\r\n--o${i}--\r\n`;
  }
  return Buffer.from(msg);
}

function manyParts(n: number): Buffer {
  const parts = Array.from({ length: n }, (_, i) => `--m\r\nContent-Type: text/plain\r\n\r\npart ${i}\r\n`);
  return Buffer.from(`${HEAD}\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n${parts.join('')}--m--\r\n`);
}

describe('headers', () => {
  it('are the top-level headers, lower-case keys, unfolded raw values, in order, duplicates kept', async () => {
    const p = await parseMessage(fixture('hdr-duplicate-from-subject.eml'));
    expect(p.headers.map((h) => h.key)).toEqual(['from', 'from', 'to', 'subject', 'subject', 'date', 'message-id', 'mime-version', 'content-type']);
    expect(p.headers[0]!.value).toBe('"City Hall IT" <it-support@city-a.example.lg.jp>');
    expect(p.headers[1]!.value).toBe('attacker@evil.example');
  });

  it('keep RFC 2047 words undecoded (checks see what was sent)', async () => {
    const p = await parseMessage(fixture('mime-iso-2022-jp-encodings.eml'));
    expect(p.headers.find((h) => h.key === 'subject')!.value).toMatch(/^=\?ISO-2022-JP\?B\?.*\?=$/);
  });

  it('are those of the outer message only, not of an attached one', async () => {
    const p = await parseMessage(fixture('mime-exe-in-attached-eml.eml'));
    expect(p.headers.filter((h) => h.key === 'message-id').map((h) => h.value)).toEqual(['<mime-exe-in-attached-eml@example.com>']);
  });
});

describe('decoding', () => {
  it('base64 ISO-2022-JP text, quoted-printable UTF-8 text and an RFC 2047 ISO-2022-JP file name', async () => {
    const p = await parseMessage(fixture('mime-iso-2022-jp-encodings.eml'));
    expect(p.notes).toEqual([]);
    const [jis, qp, att] = p.parts;
    expect(p.parts).toHaveLength(3);
    expect(jis).toMatchObject({ path: '1', contentType: 'text/plain', charset: 'ISO-2022-JP', transferEncoding: 'base64', filename: null, embeddedDepth: 0 });
    expect(iso2022jp.decode(jis!.content)).toBe('お世話になっております。\r\n会議資料を送付いたします。\r\n');
    expect(qp).toMatchObject({ path: '2', charset: 'UTF-8', transferEncoding: 'quoted-printable' });
    // The soft line break (=\r\n) joins the two halves; the multibyte =XX sequences become UTF-8 again.
    expect(qp!.content.toString('utf8')).toBe('会議は午後3時からです。よろしくお願いします。');
    expect(att).toMatchObject({ path: '3', filename: '会議資料.txt', disposition: 'attachment', transferEncoding: 'base64' });
    expect(att!.content.toString('utf8')).toBe('議題: 予算\r\n日時: 午後3時\r\n');
  });

  it('an RFC 2231 UTF-8 file name (filename*=UTF-8\'\'…) is decoded', async () => {
    const p = await parseMessage(fixture('mime-rfc2231-double-extension.eml'));
    const exe = p.parts.find((x) => x.filename !== null)!;
    expect(exe.filename).toBe('請求書.pdf.exe');
    expect(exe.content.subarray(0, 2).toString('latin1')).toBe('MZ');
    expect(exe.content.toString('latin1')).toContain('This program cannot be run in DOS mode.');
  });

  it('7bit ISO-2022-JP is passed through byte for byte', async () => {
    const p = await parseMessage(fixture('mime-clean-japanese.eml'));
    expect(iso2022jp.decode(p.parts[0]!.content)).toMatch(/^総務課 御中\r\n\r\n来週の打ち合わせの資料をお送りします。/);
    expect(p.parts[1]).toMatchObject({ contentType: 'application/pdf', filename: '打ち合わせ資料.pdf' });
    expect(p.parts[1]!.content.subarray(0, 8).toString('latin1')).toBe('%PDF-1.4');
  });

  it.each([
    ...readdirSync(FIXTURES_DIR).filter((f) => f.endsWith('.eml')),
    'generated: LF line ends, 8bit, binary with NUL and lone CR, no final newline',
  ])('without a transfer encoding a part is a run of the raw message\'s bytes, unchanged: %s', async (name) => {
    const raw = name.startsWith('generated')
      ? Buffer.concat([
          Buffer.from(`${HEAD.replace(/\r\n/g, '\n')}\nContent-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n日本語\n\n--b\nContent-Type: text/plain\nContent-Transfer-Encoding: binary\n\n`),
          Buffer.from([0x61, 0x00, 0x0d, 0x62, 0xff, 0x0a, 0x0d]),
          Buffer.from('\n--b\nContent-Type: text/html\n\n<p>last</p>\n--b--'),
        ])
      : fixture(name);
    const p = await parseMessage(raw);
    // The clamav check sends such inline text to clamd only inside the raw message (isCoveredByRaw), so this
    // must hold for every part it would skip.
    const verbatim = p.parts.filter((x) => x.embeddedDepth === 0 && ['', '7bit', '8bit', 'binary'].includes(x.transferEncoding));
    for (const part of verbatim) expect(raw.includes(part.content), `part ${part.path}`).toBe(true);
    if (name.startsWith('generated')) expect(verbatim.map((x) => x.content.length)).toEqual([10, 6, 11]);
  });

  it('a single-part message is one leaf', async () => {
    const p = await parseMessage(fixture('hdr-missing-date-from-message-id.eml'));
    expect(p.parts).toHaveLength(1);
    expect(p.parts[0]!.content.toString()).toBe('This message has no From, no Date and no Message-ID header.\r\n');
  });

  it('an unknown transfer encoding is noted and its bytes kept as they are', async () => {
    const p = await parseMessage(fixture('mime-bad-transfer-encoding-uuencode.eml'));
    expect(p.notes).toEqual([{ kind: 'bad-transfer-encoding', detail: 'application/octet-stream: x-uuencode' }]);
    const uu = p.parts.find((x) => x.filename === 'report.txt')!;
    expect(uu.transferEncoding).toBe('x-uuencode');
    expect(uu.content.toString('latin1')).toMatch(/^begin 644 report\.txt\r\n/);
  });
});

describe('attached messages (message/rfc822)', () => {
  // Regression: mailsplit only descends into *inline* message/rfc822; an attached one (the usual way to forward)
  // was skipped altogether, so the .exe inside was invisible to every check reading parts.
  it('are descended into: the inner .exe is a part with embeddedDepth 1', async () => {
    const p = await parseMessage(fixture('mime-exe-in-attached-eml.eml'));
    expect(p.notes).toEqual([]);
    expect(p.parts.map((x) => [x.path, x.filename, x.embeddedDepth])).toEqual([
      ['1', null, 0],
      ['2.1', null, 1],
      ['2.2', 'setup.exe', 1],
    ]);
    expect(p.parts[1]!.content.toString()).toBe('Invoice attached.');
    expect(p.parts[2]!.content.subarray(0, 2).toString('latin1')).toBe('MZ');
  });

  it('the EICAR fixture forwarded as an attachment exposes its inner attachment too', async () => {
    const p = await parseMessage(fixture('av-eicar-in-attached-eml.eml'));
    const inner = p.parts.find((x) => x.filename === 'tool.com')!;
    expect(inner.embeddedDepth).toBe(1);
    expect(inner.content.toString('latin1')).toMatch(/^X5O!P%@AP\[4\\PZX54\(P\^\)7CC\)7\}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H\+H\*$/);
  });

  it('inline and attached are read alike, and a base64-encoded attached message is decoded first', async () => {
    const inner = `${HEAD}\r\nContent-Type: application/octet-stream; name="x.exe"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAA==\r\n`;
    const wrap = (headers: string, body: string) =>
      Buffer.from(`${HEAD}\r\nContent-Type: multipart/mixed; boundary="w"\r\n\r\n--w\r\n${headers}\r\n\r\n${body}\r\n--w--\r\n`);
    const variants = [
      wrap('Content-Type: message/rfc822\r\nContent-Disposition: inline', inner),
      wrap('Content-Type: message/rfc822\r\nContent-Disposition: attachment', inner),
      wrap('Content-Type: message/rfc822', inner),
      wrap('Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64', Buffer.from(inner).toString('base64').replace(/.{76}/g, '$&\r\n')),
    ];
    for (const raw of variants) {
      const p = await parseMessage(raw);
      expect(p.parts.map((x) => [x.filename, x.embeddedDepth, x.content.toString('base64')])).toEqual([['x.exe', 1, 'TVqQAA==']]);
    }
  });

  it(`are followed ${MAX_EMBEDDED_DEPTH} levels deep`, async () => {
    const p = await parseMessage(attachedMessages(MAX_EMBEDDED_DEPTH));
    expect(p.notes).toEqual([]);
    const exe = p.parts.find((x) => x.filename === 'deep.exe')!;
    expect(exe.embeddedDepth).toBe(MAX_EMBEDDED_DEPTH);
    expect(p.parts.map((x) => x.embeddedDepth)).toEqual([0, 1, 2, 3]);
  });

  it('deeper ones are noted too-deep and kept whole as one part (their bytes stay visible)', async () => {
    const raw = attachedMessages(MAX_EMBEDDED_DEPTH + 3);
    const p = await parseMessage(raw);
    expect(kinds(p)).toEqual(['too-deep']);
    const opaque = p.parts.find((x) => x.contentType === 'message/rfc822')!;
    expect(opaque.embeddedDepth).toBe(MAX_EMBEDDED_DEPTH);
    expect(opaque.content.toString('latin1')).toContain('name="deep.exe"');
    expect(p.parts.some((x) => x.filename === 'deep.exe')).toBe(false);
  });
});

describe('structure defects', () => {
  it('multipart without boundary: noted, and its body kept as one part', async () => {
    const p = await parseMessage(fixture('mime-boundary-missing.eml'));
    expect(p.notes).toEqual([{ kind: 'boundary-missing', detail: 'multipart/mixed without boundary' }]);
    // Regression: the body of a boundary-less multipart was dropped, so per-part checks never saw its bytes.
    expect(p.parts).toHaveLength(1);
    expect(p.parts[0]!.contentType).toBe('multipart/mixed');
    expect(p.parts[0]!.content.toString('latin1')).toContain('TVqQAAMAAAAEAAAA');
  });

  it('multipart without its closing boundary: noted, parts read to the end', async () => {
    const p = await parseMessage(fixture('mime-unterminated-multipart.eml'));
    expect(p.notes).toEqual([{ kind: 'unterminated-multipart', detail: 'multipart/mixed boundary never closed' }]);
    expect(p.parts.map((x) => x.content.toString().trimEnd())).toEqual(['First part.', 'Second part, and then the message just stops.']);
  });

  it(`nesting ${MAX_DEPTH} levels deep is fine`, async () => {
    const p = await parseMessage(nestedMultiparts(MAX_DEPTH));
    expect(p.notes).toEqual([]);
    expect(p.parts).toHaveLength(1);
    expect(p.parts[0]!.path.split('.')).toHaveLength(MAX_DEPTH);
  });

  it('nesting 30 levels deep is noted too-deep, once, and nothing below the limit is decoded', async () => {
    const p = await parseMessage(nestedMultiparts(30));
    expect(p.notes).toEqual([{ kind: 'too-deep', detail: `nesting deeper than ${MAX_DEPTH}` }]);
    expect(p.parts).toEqual([]);
  });

  it('nesting 5,000 levels deep stays bounded', async () => {
    const p = await parseMessage(nestedMultiparts(5_000));
    expect(kinds(p)).toContain('too-deep');
    expect(p.parts.length).toBeLessThanOrEqual(MAX_PARTS);
  });

  it(`${MAX_PARTS} parts are all decoded`, async () => {
    const p = await parseMessage(manyParts(MAX_PARTS));
    expect(p.notes).toEqual([]);
    expect(p.parts).toHaveLength(MAX_PARTS);
    expect(p.parts.at(-1)!.content.toString()).toBe(`part ${MAX_PARTS - 1}`);
  });

  // Regression: mailsplit's own node limit (1,000 nodes, root included) stopped a message of exactly MAX_PARTS
  // leaves with a parse error, and MAX_PARTS itself never applied.
  it('5,000 parts: bounded to MAX_PARTS and noted too-many-parts', async () => {
    const p = await parseMessage(manyParts(5_000));
    expect(p.parts).toHaveLength(MAX_PARTS);
    expect(p.notes).toEqual([{ kind: 'too-many-parts', detail: `more than ${MAX_PARTS} parts` }]);
  });

  it('MAX_PARTS counts across attached messages', async () => {
    const inner = manyParts(MAX_PARTS - 10).toString('latin1');
    const raw = Buffer.from(
      `${HEAD}\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n` +
        `--x\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n${inner}\r\n` +
        `--x\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n${inner}\r\n--x--\r\n`,
      'latin1',
    );
    const p = await parseMessage(raw);
    expect(p.parts).toHaveLength(MAX_PARTS);
    expect(kinds(p)).toEqual(['too-many-parts']);
  });

  it('a header block over MAX_HEAD_BYTES is noted header-oversized', async () => {
    const raw = Buffer.from(`${HEAD}\r\nX-Padding: ${'a'.repeat(MAX_HEAD_BYTES)}\r\n\r\nbody\r\n`);
    const p = await parseMessage(raw);
    expect(kinds(p)).toEqual(['header-oversized']);
  });

  it('an empty input and garbage do not throw', async () => {
    await expect(parseMessage(Buffer.alloc(0))).resolves.toMatchObject({ notes: [] });
    const garbage = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 7919) % 256));
    await expect(parseMessage(garbage)).resolves.toBeDefined();
  });

  it('a clean Japanese mail has no notes', async () => {
    expect((await parseMessage(fixture('mime-clean-japanese.eml'))).notes).toEqual([]);
  });
});
