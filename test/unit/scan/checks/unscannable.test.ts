/**
 * The unscannable check on raw mails: encrypted Office files and PDFs, encrypted or unopenable archives are each
 * reported once, with the part's name (or archive/member path) and the reason, by true type whatever the name
 * says, inside zips too (zip → encrypted docx); clean documents and empty-password PDFs are not reported, and zip
 * encryption itself is left to the clamav check.
 */
import zlib from 'node:zlib';
import CFB from 'cfb';
import * as mupdf from 'mupdf';
import { PDFDocument } from 'pdf-lib';
import { describe, expect, it } from 'vitest';
import type { SymbolHit } from '../../../../src/scan/check.ts';
import type { ArchiveLimits } from '../../../../src/scan/archive/inspect-archive.ts';
import { createUnscannableCheck } from '../../../../src/scan/checks/unscannable.ts';
import { symbolInfo } from '../../../../src/scan/symbols.ts';
import { captureLog, checkContext } from '../../../helpers/check-context.ts';
import { aesMember, buildZip, deflateMember, zipCryptoMember, zipOf } from '../../../helpers/zip-writer.ts';

/** The defaults of clamav.archive in src/config/schema.ts. */
const limits: ArchiveLimits = { maxDepth: 5, maxExpandedBytes: 200 * 1024 * 1024, maxRatio: 100, maxEntries: 10_000 };

const HEAD = 'From: a@example.com\r\nTo: b@city.example.lg.jp\r\nSubject: =?UTF-8?B?6KaL56mN?=\r\nDate: Tue, 24 Nov 2026 09:15:00 +0900\r\nMessage-ID: <x@example.com>\r\nMIME-Version: 1.0\r\n';

interface Attachment {
  filename: string;
  data: Buffer;
  contentType?: string;
}

/** A multipart/mixed mail: a text body, then each attachment base64-encoded with an RFC 2231 UTF-8 file name. */
function mail(attachments: Attachment[]): Buffer {
  const parts = attachments.map(
    (a) =>
      `--b\r\nContent-Type: ${a.contentType ?? 'application/octet-stream'}\r\nContent-Transfer-Encoding: base64\r\n` +
      `Content-Disposition: attachment; filename*=UTF-8''${encodeURIComponent(a.filename)}\r\n\r\n${a.data.toString('base64').replace(/.{76}/g, '$&\r\n')}\r\n`,
  );
  return Buffer.from(`${HEAD}Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n添付をご確認ください。\r\n${parts.join('')}--b--\r\n`);
}

async function scan(raw: Buffer, opts: { limits?: ArchiveLimits; log?: ReturnType<typeof captureLog>['log'] } = {}): Promise<SymbolHit[]> {
  const hits = await createUnscannableCheck({ archive: opts.limits ?? limits }).run(checkContext(raw, { log: opts.log }));
  for (const h of hits) expect(symbolInfo(h.name), `${h.name} is in the catalogue`).toBeDefined();
  return [...hits].sort((a, b) => a.name.localeCompare(b.name));
}

function cfbOf(streams: Record<string, Buffer>): Buffer {
  const c = CFB.utils.cfb_new();
  for (const [name, data] of Object.entries(streams)) CFB.utils.cfb_add(c, `/${name}`, data);
  return Buffer.from(CFB.write(c, { type: 'buffer' }) as Uint8Array);
}

/** A password-protected docx: an OLE2 file with agile EncryptionInfo and an (opaque) EncryptedPackage. */
const ENCRYPTED_DOCX = cfbOf({
  EncryptionInfo: Buffer.concat([Buffer.from([4, 0, 4, 0, 0x40, 0, 0, 0]), Buffer.from('<?xml version="1.0"?><encryption/>')]),
  EncryptedPackage: Buffer.alloc(8192, 0xab),
});

/** An .xls whose workbook globals start with BOF then FILEPASS (RC4). */
function encryptedXls(): Buffer {
  const rec = (type: number, payload: Buffer) => {
    const h = Buffer.alloc(4);
    h.writeUInt16LE(type, 0);
    h.writeUInt16LE(payload.length, 2);
    return Buffer.concat([h, payload]);
  };
  return cfbOf({ Workbook: Buffer.concat([rec(0x0809, Buffer.alloc(16)), rec(0x002f, Buffer.concat([Buffer.from([1, 0, 1, 0, 1, 0]), Buffer.alloc(48)])), rec(0x000a, Buffer.alloc(0)), Buffer.alloc(600)]) });
}

/** A RAR 4 archive with one stored, unencrypted file. */
function plainRar(): Buffer {
  const main = Buffer.alloc(13);
  main[2] = 0x73;
  main.writeUInt16LE(13, 5);
  const name = Buffer.from('eicar.com');
  const file = Buffer.alloc(32);
  file[2] = 0x74;
  file.writeUInt16LE(0x8000, 3);
  file.writeUInt16LE(32 + name.length, 5);
  file.writeUInt32LE(20, 7);
  file.writeUInt16LE(name.length, 26);
  return Buffer.concat([Buffer.from('Rar!\x1a\x07\x00', 'latin1'), main, file, name, Buffer.alloc(20, 0x41)]);
}

/** A RAR 5 archive whose headers are encrypted (rar -hp): the encryption header follows the signature. */
function headerEncryptedRar5(): Buffer {
  const header = Buffer.from([4, 0, 0, 0, 15, ...Array(16).fill(0x42)]); // type 4, flags 0, version 0, flags 0, KDF count, salt
  const sized = Buffer.concat([Buffer.from([header.length]), header]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(zlib.crc32(sized));
  return Buffer.concat([Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1'), crc, sized, Buffer.alloc(64, 0x99)]);
}

/** A 7z archive whose encoded header is AES-encrypted (7z -p -mhe=on), built from 7zFormat.txt. */
function headerEncrypted7z(): Buffer {
  const aes = [0x24, 0x06, 0xf1, 0x07, 0x01, 0x02, 0x13, 0x00];
  const lzma = [0x23, 0x03, 0x01, 0x01, 0x05, 0x5d, 0x00, 0x00, 0x01, 0x00];
  const head = Buffer.from([0x17, 0x06, 0, 1, 0x09, 32, 0x00, 0x07, 0x0b, 1, 0, 2, ...aes, ...lzma, 1, 0, 0x0c, 50, 50, 0x00, 0x00]);
  const start = Buffer.alloc(32);
  Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c, 0, 4]).copy(start);
  start.writeBigUInt64LE(32n, 12);
  start.writeBigUInt64LE(BigInt(head.length), 20);
  return Buffer.concat([start, Buffer.alloc(32, 0x11), head]);
}

async function pdf(userPassword?: string): Promise<Buffer> {
  const doc = await PDFDocument.create();
  doc.addPage([200, 200]).drawText('Invoice', { x: 10, y: 100 });
  const plain = Buffer.from(await doc.save());
  if (userPassword === undefined) return plain;
  const m = mupdf.PDFDocument.openDocument(plain, 'application/pdf') as mupdf.PDFDocument;
  return Buffer.from(m.saveToBuffer(`encrypt=aes-256,owner-password=owner,user-password=${userPassword}`).asUint8Array());
}

describe('unscannable check', () => {
  it('is named "unscannable" and fails as UNSCANNABLE_FAIL', () => {
    const c = createUnscannableCheck({ archive: limits });
    expect([c.name, c.failSymbol]).toEqual(['unscannable', 'UNSCANNABLE_FAIL']);
    expect(symbolInfo('UNSCANNABLE_FAIL')?.group).toBe('system');
  });

  it('clean documents, a plain zip and a PDF encrypted with an empty user password → nothing', async () => {
    const log = captureLog();
    const raw = mail([
      { filename: '資料.pdf', data: await pdf() },
      { filename: '閲覧のみ.pdf', data: await pdf('') },
      { filename: '議事録.zip', data: buildZip([deflateMember('議事録.pdf', await pdf()), deflateMember('memo.txt', Buffer.from('メモ'))]) },
      { filename: '予算.xls', data: cfbOf({ Workbook: Buffer.alloc(600) }) },
    ]);
    expect(await scan(raw, { log: log.log })).toEqual([]);
    expect(log.records.find((r) => r.part === '閲覧のみ.pdf')).toMatchObject({ msg: expect.stringMatching(/empty user password/), encryption: expect.stringMatching(/R6 \(AES-256\)/) });
  });

  it('an encrypted docx, an encrypted xls and a password-protected PDF → DOC_ENCRYPTED and PDF_ENCRYPTED with names and reasons', async () => {
    const raw = mail([
      { filename: '見積書.docx', data: ENCRYPTED_DOCX },
      { filename: '予算.xls', data: encryptedXls() },
      { filename: '請求書.pdf', data: await pdf('secret') },
    ]);
    expect(await scan(raw)).toEqual([
      { name: 'DOC_ENCRYPTED', details: ['予算.xls: Excel 97-2003: RC4', '見積書.docx: OOXML EncryptedPackage (agile, AES)'] },
      { name: 'PDF_ENCRYPTED', details: ['請求書.pdf: standard handler R6 (AES-256), user password required'] },
    ]);
  });

  it('zip → encrypted docx, and zip → zip → encrypted xls, are found with their paths', async () => {
    const raw = mail([
      { filename: '請求書.zip', data: buildZip([deflateMember('見積書.docx', ENCRYPTED_DOCX), deflateMember('readme.txt', Buffer.from('パスワードは別送'))]) },
      { filename: 'nested.zip', data: zipOf('inner.zip', zipOf('予算.xls', encryptedXls())) },
    ]);
    expect(await scan(raw)).toEqual([
      { name: 'DOC_ENCRYPTED', details: ['nested.zip/inner.zip/予算.xls: Excel 97-2003: RC4', '請求書.zip/見積書.docx: OOXML EncryptedPackage (agile, AES)'] },
    ]);
  });

  it('the walk inside zips stays within clamav.archive limits (depth)', async () => {
    const raw = mail([{ filename: 'deep.zip', data: zipOf('a.zip', zipOf('b.zip', zipOf('予算.xls', encryptedXls()))) }]);
    expect(await scan(raw, { limits: { ...limits, maxDepth: 2 } })).toEqual([]);
    expect(await scan(raw, { limits: { ...limits, maxDepth: 3 } })).toHaveLength(1);
  });

  it('RAR: unencrypted → ARCHIVE_UNOPENABLE, header-encrypted → ARCHIVE_ENCRYPTED only; a 7z with an encrypted header in a zip → ARCHIVE_ENCRYPTED', async () => {
    const raw = mail([
      { filename: 'scan.rar', data: plainRar() },
      { filename: '機密.rar', data: headerEncryptedRar5() },
      { filename: 'outer.zip', data: zipOf('書類.7z', headerEncrypted7z()) },
    ]);
    expect(await scan(raw)).toEqual([
      { name: 'ARCHIVE_ENCRYPTED', details: ['outer.zip/書類.7z: 7z: AES-256, file names encrypted too', '機密.rar: RAR5: headers encrypted (file names hidden)'] },
      { name: 'ARCHIVE_UNOPENABLE', details: ['scan.rar: RAR: no unrar in Debian’s clamd, contents not scanned'] },
    ]);
  });

  it('zip encryption itself (ZipCrypto, AES) is the clamav check’s finding: not repeated here', async () => {
    const raw = mail([
      { filename: 'ppap.zip', data: buildZip([zipCryptoMember('見積書.xlsx', Buffer.from('x'.repeat(300)), 'pw')]) },
      { filename: 'aes.zip', data: buildZip([aesMember('仕様書.docx', 300)]) },
    ]);
    expect(await scan(raw)).toEqual([]);
  });

  it('by true type: an encrypted docx named photo.jpg (image/jpeg) is still DOC_ENCRYPTED', async () => {
    const raw = mail([{ filename: 'photo.jpg', contentType: 'image/jpeg', data: ENCRYPTED_DOCX }]);
    expect(await scan(raw)).toEqual([{ name: 'DOC_ENCRYPTED', details: ['photo.jpg: OOXML EncryptedPackage (agile, AES)'] }]);
  });

  it('a part of an attached message (message/rfc822) is judged too', async () => {
    const inner = mail([{ filename: '転送.pdf', data: await pdf('pw') }]).toString('latin1');
    const raw = Buffer.from(
      `${HEAD}Content-Type: multipart/mixed; boundary="o"\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nfwd\r\n--o\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename="fwd.eml"\r\n\r\n${inner}\r\n--o--\r\n`,
      'latin1',
    );
    expect(await scan(raw)).toEqual([{ name: 'PDF_ENCRYPTED', details: [expect.stringMatching(/^転送\.pdf: standard handler R6/)] }]);
  });

  it('honours an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort(new Error('shutdown'));
    const raw = mail([{ filename: 'a.zip', data: zipOf('b.docx', ENCRYPTED_DOCX) }]);
    await expect(createUnscannableCheck({ archive: limits }).run(checkContext(raw, { signal: controller.signal }))).rejects.toThrow('shutdown');
  });
});
