/**
 * Japanese charsets, byte for byte: the same sentences (with NEC row 13 ①㈱№, NEC-selected IBM 髙﨑纊德ⅰ￤, ～ and
 * －) written as ISO-2022-JP the way Windows mailers write it (CP50221), Shift_JIS/CP932, EUC-JP, UTF-8, under
 * right, wrong, missing and unknown labels, decode to the same string — alone (decodeText) and as the plain and
 * HTML bodies of raw mails read by parseMessage and sanitizeBody. File names in RFC 2047 words and RFC 2231
 * parameters decode the same through parseMessage (mailsplit/libmime).
 */
import iconv from 'iconv-lite';
import { describe, expect, it } from 'vitest';
import { decodeText, sanitizeBody } from '../../../src/sanitize/body.ts';
import { parseMessage } from '../../../src/scan/mime-parts.ts';

const SENTENCES = [
  'お世話になっております。㈱髙橋商事の﨑山です。',
  '会議は10時～12時、第Ⅲ会議室（内線－1234）で行います。',
  '議題：①予算②人事③その他 ∵≒￢ ⅰ纊德￤№℡ ｶﾀｶﾅ',
];
const TEXT = SENTENCES.join('\r\n');

/** JIS X 0208 row/cell bytes of a Shift_JIS double-byte code. */
function sjisToJis(s1: number, s2: number): [number, number] {
  const row = (s1 - (s1 <= 0x9f ? 0x70 : 0xb0)) * 2;
  return s2 < 0x9f ? [row - 1, s2 - (s2 >= 0x80 ? 0x20 : 0x1f)] : [row, s2 - 0x7e];
}

/** IBM extension characters (0xFA–0xFC) → their NEC-selected twins (0xED–0xEE), as CP50221 does before JIS. */
const NEC_SELECTED = new Map<string, Buffer>();
for (const lead of [0xed, 0xee]) {
  for (let trail = 0x40; trail <= 0xfc; trail++) {
    const code = Buffer.from([lead, trail]);
    const ch = iconv.decode(code, 'cp932');
    if (ch !== '\ufffd') NEC_SELECTED.set(ch, code);
  }
}

/** ISO-2022-JP as Outlook writes it: CP932 mapped to JIS, half-width kana in ESC ( I, ASCII before each line end. */
function iso2022jp(text: string): Buffer {
  const out: number[] = [];
  let set = 'ascii';
  const designate = (s: string, esc: string) => {
    if (set !== s) out.push(...Buffer.from(esc, 'latin1'));
    set = s;
  };
  for (const ch of text) {
    const sjis = NEC_SELECTED.get(ch) ?? iconv.encode(ch, 'cp932');
    if (ch.charCodeAt(0) < 0x80) {
      designate('ascii', '\x1b(B');
      out.push(ch.charCodeAt(0));
    } else if (sjis.length === 1) {
      designate('kana', '\x1b(I');
      out.push(sjis[0]! - 0x80);
    } else {
      designate('jis', '\x1b$B');
      out.push(...sjisToJis(sjis[0]!, sjis[1]!));
    }
  }
  designate('ascii', '\x1b(B');
  return Buffer.from(out);
}

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** The bytes of TEXT in each charset a Japanese mail comes in. */
const ENCODED: Record<string, Buffer> = {
  'ISO-2022-JP': iso2022jp(TEXT),
  Shift_JIS: iconv.encode(TEXT, 'cp932'),
  'EUC-JP': iconv.encode(TEXT, 'euc-jp'),
  'UTF-8': Buffer.from(TEXT, 'utf8'),
};

function lines(s: string): string[] {
  return s.split(/\r?\n/);
}

describe('decodeText', () => {
  it('the ISO-2022-JP under test is real: 7-bit, NEC-selected rows, and the WHATWG decoder reads it line by line', () => {
    const jis = ENCODED['ISO-2022-JP']!;
    expect(jis.every((b) => b < 0x80)).toBe(true);
    expect(iso2022jp('髙')).toEqual(Buffer.from('\x1b$B|b\x1b(B', 'latin1')); // row 92, not IBM's 0xFBFC
    const whatwg = new TextDecoder('iso-2022-jp');
    expect(lines(jis.toString('latin1')).map((l) => whatwg.decode(Buffer.from(l, 'latin1')))).toEqual(SENTENCES);
  });

  for (const [charset, bytes] of Object.entries(ENCODED)) {
    it(`${charset}, labelled: the same sentences`, () => {
      expect(lines(decodeText(bytes, charset))).toEqual(SENTENCES);
    });
    it(`${charset}, no label: detected, the same sentences`, () => {
      expect(lines(decodeText(bytes, null))).toEqual(SENTENCES);
    });
    it(`${charset}, unknown label "x-unknown": detected, the same sentences`, () => {
      expect(lines(decodeText(bytes, 'x-unknown'))).toEqual(SENTENCES);
    });
  }

  it('other spellings of the labels (cp932, windows-31j, x-sjis, csISO2022JP, eucJP-ms, utf8)', () => {
    expect(lines(decodeText(ENCODED.Shift_JIS!, 'cp932'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED.Shift_JIS!, 'Windows-31J'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED.Shift_JIS!, '"x-sjis"'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED['ISO-2022-JP']!, 'csISO2022JP'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED['EUC-JP']!, 'eucJP-ms'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED['UTF-8']!, 'utf8'))).toEqual(SENTENCES);
  });

  it('UTF-8 with a byte-order mark, and UTF-16 with one: the mark decides and is dropped', () => {
    expect(lines(decodeText(Buffer.concat([UTF8_BOM, ENCODED['UTF-8']!]), 'Shift_JIS'))).toEqual(SENTENCES);
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(TEXT, 'utf16le')]);
    expect(lines(decodeText(utf16, null))).toEqual(SENTENCES);
  });

  it('a lying label loses to the bytes: Shift_JIS labelled UTF-8 or ISO-2022-JP, UTF-8 labelled Shift_JIS, EUC-JP labelled ISO-2022-JP', () => {
    expect(lines(decodeText(ENCODED.Shift_JIS!, 'UTF-8'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED.Shift_JIS!, 'ISO-2022-JP'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED['UTF-8']!, 'Shift_JIS'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED['EUC-JP']!, 'ISO-2022-JP'))).toEqual(SENTENCES);
  });

  it('ISO-2022-JP escapes win over any ASCII-compatible label (UTF-8, us-ascii)', () => {
    expect(lines(decodeText(ENCODED['ISO-2022-JP']!, 'UTF-8'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED['ISO-2022-JP']!, 'us-ascii'))).toEqual(SENTENCES);
  });

  it('Latin labels are weak: UTF-8 and Japanese text under them read right, Western text stays Western', () => {
    expect(lines(decodeText(ENCODED['UTF-8']!, 'iso-8859-1'))).toEqual(SENTENCES);
    expect(lines(decodeText(ENCODED.Shift_JIS!, 'us-ascii'))).toEqual(SENTENCES);
    const western = Buffer.from('Café Müller, détail: fête à 10h', 'latin1');
    expect(decodeText(western, 'iso-8859-1')).toBe('Café Müller, détail: fête à 10h');
    expect(decodeText(western, null)).toBe('Café Müller, détail: fête à 10h');
  });

  it('EUC-JP as eucJP-ms writes ～ and － (A1C1, A1DD) reads as CP932 does', () => {
    expect(decodeText(Buffer.from([0xa1, 0xc1, 0xa1, 0xdd]), 'EUC-JP')).toBe('～－');
    expect(decodeText(Buffer.from([0x81, 0x60, 0x81, 0x7c]), 'Shift_JIS')).toBe('～－');
  });

  it('sloppy ISO-2022-JP: no return to ASCII before a line end, redundant escapes, SO/SI kana, JIS X 0212', () => {
    const jis = (s: string) => Buffer.from(s, 'latin1');
    expect(decodeText(jis('\x1b$B$"\r\n$$\x1b(B'), 'ISO-2022-JP')).toBe('あ\r\nい');
    expect(decodeText(jis('a\x1b$B\x1b(B\x1b(Bb\x1b$B\x1b$B$"\x1b(B'), 'ISO-2022-JP')).toBe('abあ');
    expect(decodeText(jis('\x0e12\x0f3'), 'ISO-2022-JP')).toBe('ｱｲ3');
    expect(decodeText(jis('\x1b$(D0!\x1b(B'), 'ISO-2022-JP')).toBe('丂');
  });

  it('HTML with no MIME charset: <meta charset> and <meta http-equiv> decide; a valid MIME label wins over meta', () => {
    const html = (meta: string, body: Buffer) => Buffer.concat([Buffer.from(`<html><head>${meta}</head><body><p>`), body, Buffer.from('</p></body></html>')]);
    const sjis = html('<meta charset=shift_jis>', ENCODED.Shift_JIS!);
    expect(decodeText(sjis, null, { html: true })).toContain(SENTENCES[0]);
    const httpEquiv = html('<meta http-equiv="Content-Type" content="text/html; charset=EUC-JP">', ENCODED['EUC-JP']!);
    expect(decodeText(httpEquiv, null, { html: true })).toContain(SENTENCES[1]);
    const lyingMeta = html('<meta charset="euc-jp">', ENCODED.Shift_JIS!);
    expect(decodeText(lyingMeta, 'Shift_JIS', { html: true })).toContain(SENTENCES[2]);
  });
});

const HEAD = ['From: sender@example.jp', 'To: staff@city.example.lg.jp', 'Subject: test', 'Date: Tue, 24 Nov 2026 09:15:00 +0900', 'MIME-Version: 1.0'].join('\r\n');

/** A raw one-part mail: `body` bytes sent as `cte` under `Content-Type: <type>[; charset=…]`. */
function mail(type: string, charset: string | null, body: Buffer, cte: 'base64' | 'quoted-printable' | '7bit' | '8bit'): Buffer {
  const ct = `Content-Type: ${type}${charset ? `; charset="${charset}"` : ''}`;
  const encoded =
    cte === 'base64'
      ? (body.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n')
      : cte === 'quoted-printable'
        ? [...body].map((b) => (b === 0x0d || b === 0x0a || (b >= 0x20 && b < 0x7f && b !== 0x3d) ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('')
        : body.toString('latin1');
  return Buffer.concat([Buffer.from(`${HEAD}\r\n${ct}\r\nContent-Transfer-Encoding: ${cte}\r\n\r\n`), Buffer.from(encoded, 'latin1'), Buffer.from('\r\n')]);
}

/** An HTML body with one paragraph per sentence, in `charset`, which only the MIME header names. */
function htmlBody(charset: string): Buffer {
  const paragraphs = SENTENCES.map((s) => encode(charset, s)).map((b) => Buffer.concat([Buffer.from('<p>'), b, Buffer.from('</p>\r\n')]));
  return Buffer.concat([Buffer.from('<html><head><meta http-equiv="Content-Type" content="text/html"></head><body>\r\n'), ...paragraphs, Buffer.from('</body></html>\r\n')]);
}

function encode(charset: string, s: string): Buffer {
  if (charset === 'ISO-2022-JP') return iso2022jp(s);
  if (charset === 'UTF-8') return Buffer.from(s, 'utf8');
  return iconv.encode(s, charset === 'Shift_JIS' ? 'cp932' : 'euc-jp');
}

async function bodyOf(raw: Buffer): Promise<string> {
  const parsed = await parseMessage(raw);
  expect(parsed.notes).toEqual([]);
  return sanitizeBody(parsed.parts).text;
}

describe('mail bodies in every charset give the same sentences', () => {
  const ctes = { 'ISO-2022-JP': '7bit', Shift_JIS: 'base64', 'EUC-JP': 'quoted-printable', 'UTF-8': '8bit' } as const;
  for (const [charset, bytes] of Object.entries(ENCODED)) {
    const cte = ctes[charset as keyof typeof ctes];
    it(`text/plain in ${charset} (${cte})`, async () => {
      expect(lines(await bodyOf(mail('text/plain', charset, bytes, cte)))).toEqual(SENTENCES);
    });
    it(`text/plain in ${charset} without a charset parameter (detected)`, async () => {
      expect(lines(await bodyOf(mail('text/plain', null, bytes, 'base64')))).toEqual(SENTENCES);
    });
    it(`text/html in ${charset} (${cte})`, async () => {
      expect(lines(await bodyOf(mail('text/html', charset, htmlBody(charset), cte)))).toEqual(SENTENCES.flatMap((s, i) => (i ? ['', s] : [s])));
    });
  }

  it('UTF-8 with a byte-order mark, plain and HTML', async () => {
    expect(lines(await bodyOf(mail('text/plain', 'UTF-8', Buffer.concat([UTF8_BOM, ENCODED['UTF-8']!]), 'base64')))).toEqual(SENTENCES);
    const html = Buffer.concat([UTF8_BOM, htmlBody('UTF-8')]);
    expect(await bodyOf(mail('text/html', null, html, 'base64'))).toContain(SENTENCES[2]);
  });

  it('a wrong label (Shift_JIS bytes labelled ISO-2022-JP, EUC-JP labelled UTF-8)', async () => {
    expect(lines(await bodyOf(mail('text/plain', 'ISO-2022-JP', ENCODED.Shift_JIS!, '8bit')))).toEqual(SENTENCES);
    expect(lines(await bodyOf(mail('text/plain', 'UTF-8', ENCODED['EUC-JP']!, 'base64')))).toEqual(SENTENCES);
  });

  it('HTML with <meta charset=shift_jis> and no MIME charset', async () => {
    const html = Buffer.concat([Buffer.from('<html><head><meta charset=shift_jis></head><body>'), ...SENTENCES.map((s) => Buffer.concat([iconv.encode(s, 'cp932'), Buffer.from('<br>')])), Buffer.from('</body></html>')]);
    expect(lines(await bodyOf(mail('text/html', null, html, 'base64')))).toEqual(SENTENCES);
  });
});

describe('file names through parseMessage (RFC 2047 / RFC 2231, decoded by mailsplit + libmime)', () => {
  const NAME = '①会議資料㈱髙橋～－﨑.txt';
  const b64 = (b: Buffer) => b.toString('base64');
  const pct = (b: Buffer) => [...b].map((x) => `%${x.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  const jis = iso2022jp(NAME);
  const sjis = iconv.encode(NAME, 'cp932');
  const utf8 = Buffer.from(NAME, 'utf8');

  async function filenameOf(headers: string): Promise<string | null> {
    const raw = `${HEAD}\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n${headers}\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n`;
    const parsed = await parseMessage(Buffer.from(raw, 'latin1'));
    return parsed.parts[1]?.filename ?? null;
  }

  const cases: Record<string, string> = {
    '=?ISO-2022-JP?B?…?=': `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="=?ISO-2022-JP?B?${b64(jis)}?="`,
    '=?ISO-2022-JP?B?…?= split mid-character over two words': `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="=?ISO-2022-JP?B?${b64(jis.subarray(0, 6))}?=\r\n =?ISO-2022-JP?B?${b64(jis.subarray(6))}?="`,
    '=?Shift_JIS?B?…?=': `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="=?Shift_JIS?B?${b64(sjis)}?="`,
    '=?Shift_JIS?B?…?= split mid-character': `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="=?Shift_JIS?B?${b64(sjis.subarray(0, 3))}?=\r\n =?Shift_JIS?B?${b64(sjis.subarray(3))}?="`,
    '=?CP932?B?…?=': `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="=?CP932?B?${b64(sjis)}?="`,
    'Content-Type name= with =?ISO-2022-JP?B?…?=': `Content-Type: application/octet-stream; name="=?ISO-2022-JP?B?${b64(jis)}?="`,
    "filename*=ISO-2022-JP''…": `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=ISO-2022-JP''${pct(jis)}`,
    "filename*0*=ISO-2022-JP''…; filename*1*=…": `Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*0*=ISO-2022-JP''${pct(jis.subarray(0, 9))};\r\n filename*1*=${pct(jis.subarray(9))}`,
    "filename*0*=UTF-8''…; filename*1*=… split mid-character": `Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*0*=UTF-8''${pct(utf8.subarray(0, 4))};\r\n filename*1*=${pct(utf8.subarray(4))}`,
    "filename*=Shift_JIS''…": `Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename*=Shift_JIS''${pct(sjis)}`,
  };
  for (const [name, headers] of Object.entries(cases)) {
    it(name, async () => {
      expect(await filenameOf(headers)).toBe(NAME);
    });
  }
});
