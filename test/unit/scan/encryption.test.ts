/**
 * findEncryption on real and hand-built files: a ZipCrypto zip that unzip really opens with its password, a WinZip
 * AES zip, 7z and RAR headers built byte by byte from their specifications, OLE2 files built with cfb, and PDFs
 * encrypted by MuPDF itself, whose own needsPassword() is the oracle for the empty-password rule.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import CFB from 'cfb';
import * as mupdf from 'mupdf';
import { PDFDocument } from 'pdf-lib';
import { describe, expect, it } from 'vitest';
import { findEncryption, pdfEncryption } from '../../../src/scan/encryption.ts';
import { aesMember, buildZip, deflateMember, zipCryptoMember } from '../../helpers/zip-writer.ts';

// ---- 7z (7zFormat.txt) ---------------------------------------------------------------------------------------

const AES_CODER = [0x24, 0x06, 0xf1, 0x07, 0x01, 0x02, 0x13, 0x00]; // id size 4 + properties (2 bytes)
const LZMA_CODER = [0x23, 0x03, 0x01, 0x01, 0x05, 0x5d, 0x00, 0x00, 0x01, 0x00];
const COPY_CODER = [0x01, 0x00];

/** StreamsInfo with one pack stream and one folder of the given coders (chained by bind pairs). */
function streamsInfo(coders: number[][]): number[] {
  const bindPairs = coders.slice(1).flatMap((_, i) => [i + 1, i]);
  const unpackSizes = coders.map(() => 50);
  return [0x06, 0, 1, 0x09, 32, 0x00, 0x07, 0x0b, 1, 0, coders.length, ...coders.flat(), ...bindPairs, 0x0c, ...unpackSizes, 0x00, 0x00];
}

function sevenZip(header: number[]): Buffer {
  const packed = Buffer.alloc(32, 0x11);
  const head = Buffer.from(header);
  const start = Buffer.alloc(32);
  Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0, 4]).copy(start);
  start.writeBigUInt64LE(BigInt(packed.length), 12);
  start.writeBigUInt64LE(BigInt(head.length), 20);
  start.writeUInt32LE(zlib.crc32(head), 28);
  start.writeUInt32LE(zlib.crc32(start.subarray(12, 32)), 8);
  return Buffer.concat([start, packed, head]);
}

// ---- RAR 4 (technote.txt) and RAR 5 (rarfile.htm) -----------------------------------------------------------

function rar4(opts: { headersEncrypted?: boolean; fileEncrypted?: boolean }): Buffer {
  const main = Buffer.alloc(13);
  main[2] = 0x73;
  main.writeUInt16LE(opts.headersEncrypted ? 0x0080 : 0, 3);
  main.writeUInt16LE(13, 5);
  const name = Buffer.from('見積書.xlsx');
  const data = Buffer.alloc(40, 0x77);
  const file = Buffer.alloc(32);
  file[2] = 0x74;
  file.writeUInt16LE(0x8000 | (opts.fileEncrypted ? 0x0004 : 0), 3);
  file.writeUInt16LE(32 + name.length, 5);
  file.writeUInt32LE(data.length, 7);
  file.writeUInt32LE(data.length, 11);
  file[25] = 0x30;
  file.writeUInt16LE(name.length, 26);
  const end = Buffer.from([0, 0, 0x7b, 0, 0x40, 7, 0]);
  return Buffer.concat([Buffer.from('Rar!\x1a\x07\x00', 'latin1'), main, file, name, data, end]);
}

function vint(n: number): number[] {
  const out: number[] = [];
  do {
    out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return out;
}

function rar5Block(type: number, body: number[], extra: number[] = [], dataSize = 0): Buffer {
  const flags = (extra.length ? 1 : 0) | (dataSize ? 2 : 0);
  const header = [...vint(type), ...vint(flags), ...(extra.length ? vint(extra.length) : []), ...(dataSize ? vint(dataSize) : []), ...body, ...extra];
  const sized = Buffer.from([...vint(header.length), ...header]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(zlib.crc32(sized));
  return Buffer.concat([crc, sized, Buffer.alloc(dataSize, 0x66)]);
}

function rar5(opts: { headersEncrypted?: boolean; fileEncrypted?: boolean }): Buffer {
  const sig = Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1');
  if (opts.headersEncrypted) return Buffer.concat([sig, rar5Block(4, [0, 0, 15, ...Array(16).fill(0x42)]), Buffer.alloc(64, 0x99)]);
  const name = [...Buffer.from('仕様書.docx')];
  const encryptionRecord = [0x01, 0x00, 0x00, 15, ...Array(32).fill(0x42)]; // type 1: file encryption; version, flags, KDF count, salt, IV
  const extra = opts.fileEncrypted ? [...vint(encryptionRecord.length), ...encryptionRecord] : [];
  const file = rar5Block(2, [0, ...vint(40), 0x20, 0, 0, name.length, ...name], extra, 40);
  return Buffer.concat([sig, rar5Block(1, [0]), file, rar5Block(5, [0])]);
}

// ---- OLE2 -----------------------------------------------------------------------------------------------------

function cfbOf(streams: Record<string, Buffer>): Buffer {
  const c = CFB.utils.cfb_new();
  for (const [name, data] of Object.entries(streams)) CFB.utils.cfb_add(c, `/${name}`, data);
  return Buffer.from(CFB.write(c, { type: 'buffer' }) as Uint8Array);
}

/** A Word 97 FIB start: wIdent 0xA5EC, nFib, then the flags word at 0x0A. */
function wordStream(flags: number): Buffer {
  const b = Buffer.alloc(1024);
  b.writeUInt16LE(0xa5ec, 0);
  b.writeUInt16LE(0x00c1, 2);
  b.writeUInt16LE(flags, 0x0a);
  return b;
}

function biffRecord(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16LE(type, 0);
  h.writeUInt16LE(payload.length, 2);
  return Buffer.concat([h, payload]);
}

function workbook(filepass?: 'xor' | 'rc4'): Buffer {
  const bof = biffRecord(0x0809, Buffer.from([0x00, 0x06, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  const pass = filepass === 'xor' ? [biffRecord(0x002f, Buffer.from([0, 0, 0x12, 0x34, 0x56, 0x78]))] : filepass === 'rc4' ? [biffRecord(0x002f, Buffer.concat([Buffer.from([1, 0, 1, 0, 1, 0]), Buffer.alloc(48, 0x21)]))] : [];
  return Buffer.concat([bof, ...pass, biffRecord(0x0042, Buffer.from([0xe4, 0x04])), biffRecord(0x000a, Buffer.alloc(0)), Buffer.alloc(600)]);
}

function currentUser(encrypted: boolean): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt16LE(0x0ff6, 2);
  b.writeUInt32LE(56, 4);
  b.writeUInt32LE(0x14, 8);
  b.writeUInt32LE(encrypted ? 0xf3d1c4df : 0xe391c05f, 12);
  return b;
}

/** EncryptionInfo of agile encryption (version 4.4, then the XML descriptor). */
const AGILE_INFO = Buffer.concat([Buffer.from([4, 0, 4, 0, 0x40, 0, 0, 0]), Buffer.from('<?xml version="1.0"?><encryption xmlns="http://schemas.microsoft.com/office/2006/encryption"/>')]);

// ---- PDF ------------------------------------------------------------------------------------------------------

async function plainPdf(): Promise<Buffer> {
  const doc = await PDFDocument.create();
  doc.addPage([200, 200]).drawText('Reiwa 8', { x: 10, y: 100 });
  return Buffer.from(await doc.save({ useObjectStreams: false }));
}

/** MuPDF writes the encryption; its own needsPassword() says what a reader would do. */
function mupdfEncrypt(pdf: Buffer, options: string): { data: Buffer; needsPassword: boolean } {
  const doc = mupdf.PDFDocument.openDocument(pdf, 'application/pdf') as mupdf.PDFDocument;
  const data = Buffer.from(doc.saveToBuffer(options).asUint8Array());
  return { data, needsPassword: mupdf.Document.openDocument(data, 'application/pdf').needsPassword() };
}

describe('findEncryption: zip', () => {
  it('a real ZipCrypto zip (unzip opens it with the password) → archive-encrypted "ZipCrypto"', () => {
    const secret = Buffer.from('見積金額 1,234,000円\n');
    const zip = buildZip([zipCryptoMember('mitsumori.txt', secret, 'pass1234'), deflateMember('readme.txt', Buffer.from('password follows'))]);
    const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-zipcrypto-'));
    try {
      writeFileSync(path.join(dir, 'ppap.zip'), zip);
      execFileSync('unzip', ['-q', '-P', 'pass1234', 'ppap.zip', '-d', 'out'], { cwd: dir });
      expect(readFileSync(path.join(dir, 'out', 'mitsumori.txt'))).toEqual(secret);
      expect(() => execFileSync('unzip', ['-q', '-o', '-P', 'wrong', 'ppap.zip', '-d', 'bad'], { cwd: dir, stdio: 'ignore' })).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(findEncryption(zip, 'zip')).toEqual({ kind: 'archive-encrypted', detail: 'ZipCrypto (1 of 2 entries)' });
  });

  it('WinZip AES (method 99, extra 0x9901) → "AES"; both kinds together are both named', () => {
    expect(findEncryption(buildZip([aesMember('請求書.pdf', 500)]), 'zip')).toEqual({ kind: 'archive-encrypted', detail: 'AES (1 of 1 entries)' });
    const mixed = buildZip([aesMember('a.pdf', 10), zipCryptoMember('b.txt', Buffer.from('b'), 'x')]);
    expect(findEncryption(mixed, 'zip')?.detail).toBe('AES, ZipCrypto (2 of 2 entries)');
  });

  it('a plain zip → null; a truncated encrypted zip is still found from its first local header', () => {
    expect(findEncryption(buildZip([deflateMember('a.txt', Buffer.from('hello'))]), 'zip')).toBeNull();
    const zip = buildZip([zipCryptoMember('a.txt', Buffer.from('x'.repeat(100)), 'pw')]);
    expect(findEncryption(zip.subarray(0, 60), 'zip')).toEqual({ kind: 'archive-encrypted', detail: 'ZipCrypto' });
  });
});

describe('findEncryption: 7z', () => {
  it('an encoded header with an AES coder (7z -mhe=on: names hidden) → archive-encrypted', () => {
    const f = sevenZip([0x17, ...streamsInfo([AES_CODER, LZMA_CODER])]);
    expect(findEncryption(f, '7z')).toEqual({ kind: 'archive-encrypted', detail: '7z: AES-256, file names encrypted too' });
  });

  it('a plain header whose folder uses AES (7z -p without -mhe) → archive-encrypted', () => {
    const f = sevenZip([0x01, 0x04, ...streamsInfo([LZMA_CODER, AES_CODER]), 0x00]);
    expect(findEncryption(f, '7z')).toEqual({ kind: 'archive-encrypted', detail: '7z: AES-256' });
  });

  it('no AES coder (plain or LZMA-compressed header) → null; a header pointing past the end → null', () => {
    expect(findEncryption(sevenZip([0x01, 0x04, ...streamsInfo([COPY_CODER]), 0x00]), '7z')).toBeNull();
    expect(findEncryption(sevenZip([0x17, ...streamsInfo([LZMA_CODER])]), '7z')).toBeNull();
    const f = sevenZip([0x17, ...streamsInfo([AES_CODER])]);
    expect(findEncryption(f.subarray(0, f.length - 5), '7z')).toBeNull();
  });
});

describe('findEncryption: RAR', () => {
  it('RAR4 with encrypted files or encrypted headers → archive-encrypted', () => {
    expect(findEncryption(rar4({ fileEncrypted: true }), 'rar')).toEqual({ kind: 'archive-encrypted', detail: 'RAR4: encrypted files' });
    expect(findEncryption(rar4({ headersEncrypted: true }), 'rar')).toEqual({ kind: 'archive-encrypted', detail: 'RAR4: headers encrypted (file names hidden)' });
  });

  it('RAR5 with a file encryption record or an archive encryption header → archive-encrypted', () => {
    expect(findEncryption(rar5({ fileEncrypted: true }), 'rar')).toEqual({ kind: 'archive-encrypted', detail: 'RAR5: encrypted files' });
    expect(findEncryption(rar5({ headersEncrypted: true }), 'rar')).toEqual({ kind: 'archive-encrypted', detail: 'RAR5: headers encrypted (file names hidden)' });
  });

  it('an unencrypted RAR (4 or 5) is unopenable: Debian’s clamd has no unrar', () => {
    for (const f of [rar4({}), rar5({})]) expect(findEncryption(f, 'rar')?.kind).toBe('archive-unopenable');
  });

  it('LZH is unopenable; other unknown data is not', () => {
    const lzh = Buffer.concat([Buffer.from([0x20, 0x00]), Buffer.from('-lh5-'), Buffer.alloc(40)]);
    expect(findEncryption(lzh, 'lzh')).toEqual({ kind: 'archive-unopenable', detail: 'LZH: not unpacked by clamd, contents not scanned' });
    expect(findEncryption(Buffer.alloc(100, 7), 'unknown')).toBeNull();
  });
});

describe('findEncryption: Office', () => {
  it('an OLE2 file with EncryptionInfo + EncryptedPackage (a password-protected docx) → document-encrypted', () => {
    const f = cfbOf({ EncryptionInfo: AGILE_INFO, EncryptedPackage: Buffer.alloc(4096, 0xab) });
    expect(findEncryption(f, 'ooxml-encrypted')).toEqual({ kind: 'document-encrypted', detail: 'OOXML EncryptedPackage (agile, AES)' });
  });

  it('.doc: FIB fEncrypted → RC4, with fObfuscated → XOR; without → null', () => {
    expect(findEncryption(cfbOf({ WordDocument: wordStream(0x0100), '1Table': Buffer.alloc(600) }), 'doc')?.detail).toBe('Word 97-2003: RC4');
    expect(findEncryption(cfbOf({ WordDocument: wordStream(0x8100), '1Table': Buffer.alloc(600) }), 'doc')?.detail).toBe('Word 97-2003: XOR obfuscation');
    expect(findEncryption(cfbOf({ WordDocument: wordStream(0x0200), '1Table': Buffer.alloc(600) }), 'doc')).toBeNull();
  });

  it('.xls: a FILEPASS record after BOF → RC4 or XOR; without → null', () => {
    expect(findEncryption(cfbOf({ Workbook: workbook('rc4') }), 'xls')).toEqual({ kind: 'document-encrypted', detail: 'Excel 97-2003: RC4' });
    expect(findEncryption(cfbOf({ Workbook: workbook('xor') }), 'xls')?.detail).toBe('Excel 97-2003: XOR obfuscation');
    expect(findEncryption(cfbOf({ Workbook: workbook() }), 'xls')).toBeNull();
  });

  it('.ppt: the Current User token of an encrypted presentation → document-encrypted; the plain token → null', () => {
    const ppt = (enc: boolean) => cfbOf({ 'PowerPoint Document': Buffer.alloc(600, 1), 'Current User': currentUser(enc) });
    expect(findEncryption(ppt(true), 'ppt')?.kind).toBe('document-encrypted');
    expect(findEncryption(ppt(false), 'ppt')).toBeNull();
  });

  it('a broken OLE2 file → null, never a throw', () => {
    const f = cfbOf({ WordDocument: wordStream(0x0100) });
    expect(findEncryption(f.subarray(0, 700), 'doc')).toBeNull();
  });
});

describe('findEncryption: PDF', () => {
  it.each(['rc4-40', 'rc4-128', 'aes-128', 'aes-256'])('%s with a user password → pdf-encrypted, as MuPDF says', async (scheme) => {
    const { data, needsPassword } = mupdfEncrypt(await plainPdf(), `encrypt=${scheme},owner-password=owner,user-password=secret`);
    expect(needsPassword).toBe(true);
    expect(findEncryption(data, 'pdf')).toEqual({ kind: 'pdf-encrypted', detail: expect.stringMatching(/^standard handler R\d .*user password required$/) });
  });

  it.each(['rc4-40', 'rc4-128', 'aes-128', 'aes-256'])('%s with an empty user password opens like in MuPDF → null, and the detail says so', async (scheme) => {
    const { data, needsPassword } = mupdfEncrypt(await plainPdf(), `encrypt=${scheme},owner-password=owner,user-password=`);
    expect(needsPassword).toBe(false);
    expect(findEncryption(data, 'pdf')).toBeNull();
    expect(pdfEncryption(data)).toEqual({ needsPassword: false, detail: expect.stringMatching(/empty user password: opens without one$/) });
  });

  it('a PDF with a cross-reference stream (its /Encrypt in the xref stream dictionary) is read the same way', async () => {
    const pdf = await plainPdf();
    for (const user of ['', 'secret']) {
      const { data, needsPassword } = mupdfEncrypt(pdf, `encrypt=aes-128,owner-password=o,user-password=${user},compress,objstms=yes`);
      expect(data.includes('/XRef')).toBe(true);
      expect(findEncryption(data, 'pdf') !== null).toBe(needsPassword);
    }
  });

  it('a hand-written PDF with a certificate security handler → pdf-encrypted; a plain PDF → null', async () => {
    const body = '%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\n3 0 obj\n<< /Filter /Adobe.PubSec /SubFilter /adbe.pkcs7.s5 /V 4 /R 4 /Recipients [<3082>] >>\nendobj\n';
    const pdf = Buffer.from(`${body}xref\n0 4\ntrailer\n<< /Size 4 /Root 1 0 R /Encrypt 3 0 R /ID [<00112233445566778899aabbccddeeff> <00112233445566778899aabbccddeeff>] >>\nstartxref\n${body.length}\n%%EOF\n`, 'latin1');
    expect(findEncryption(pdf, 'pdf')).toEqual({ kind: 'pdf-encrypted', detail: 'security handler Adobe.PubSec (certificate or plug-in)' });
    expect(findEncryption(await plainPdf(), 'pdf')).toBeNull();
  });

  it('the words "/Encrypt" in an uncompressed content stream do not make a PDF encrypted', () => {
    const stream = 'BT /F1 12 Tf 10 10 Td (see /Encrypt in ISO 32000) Tj ET';
    const pdf = Buffer.from(`%PDF-1.4\n1 0 obj\n<< /Length ${stream.length} >>\nstream\n${stream}\nendstream\nendobj\ntrailer\n<< /Size 2 >>\n%%EOF\n`, 'latin1');
    expect(pdfEncryption(pdf)).toBeNull();
  });

  it('a damaged encryption dictionary counts as needing a password', () => {
    const pdf = Buffer.from('%PDF-1.4\ntrailer\n<< /Encrypt 9 0 R >>\n%%EOF\n', 'latin1');
    expect(findEncryption(pdf, 'pdf')).toEqual({ kind: 'pdf-encrypted', detail: expect.stringMatching(/^encryption dictionary unreadable/) });
  });
});
