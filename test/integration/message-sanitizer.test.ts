/**
 * MessageSanitizer with its real converters (converter children, MuPDF, sharp, LibreOffice): the tenant options
 * (attachments as PDF or images; archives repacked, attached one by one or removed), every part type the pipeline
 * test does not show, and the headers of the rebuilt message.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { PDFDict, PDFDocument, PDFName } from 'pdf-lib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import yauzl from 'yauzl';
import { validateConfig } from '../../src/config/load.ts';
import type { Config, TenantConfig } from '../../src/config/schema.ts';
import { silentLogger } from '../../src/log.ts';
import { MessageSanitizer } from '../../src/sanitize/message-sanitizer.ts';
import { buildMail, encodeText, type Attachment } from '../helpers/mail-builder.ts';
import { makeOfficeDocs, type OfficeDoc, type OfficeDocName } from '../helpers/office-docs.ts';
import { buildZip, deflateMember, storeMember } from '../helpers/zip-writer.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-msan-'));
let config: Config;
let sanitizer: MessageSanitizer;
let docs: Record<OfficeDocName, OfficeDoc>;

beforeAll(async () => {
  const r = validateConfig({
    hostname: 'mx.pref.test.lg.jp',
    dataDir: dir,
    sanitize: { converterProcesses: 1 },
    tenants: [{ id: 'town-b', name: '乙町', domains: ['town-b.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:25', sanitize: true }],
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  config = r.config;
  sanitizer = new MessageSanitizer(config, silentLogger);
  docs = await makeOfficeDocs(mkdtempSync(path.join(dir, 'docs-')));
}, 180_000);
afterAll(async () => {
  await sanitizer?.close();
  rmSync(dir, { recursive: true, force: true });
});

function tenant(sanitize: TenantConfig['sanitize'] = true): TenantConfig {
  return { ...config.tenants[0]!, sanitize };
}

async function run(raw: Buffer, t: TenantConfig = tenant()): Promise<ParsedMail> {
  const verdict = { symbols: [], unlistedSymbols: [], failedChecks: [], durationsMs: {}, decisions: {}, scannedAt: Date.now() };
  const r = await sanitizer.sanitize({ mid: 'mtest', raw, tenant: t, recipients: ['u@town-b.example.lg.jp'], verdict, signal: new AbortController().signal, log: silentLogger });
  return simpleParser(r.message);
}

async function photo(): Promise<Buffer> {
  return sharp({ create: { width: 64, height: 48, channels: 3, background: '#3a7' } }).jpeg().toBuffer();
}

async function pdf(pages: number): Promise<Buffer> {
  const doc = await PDFDocument.create();
  for (let i = 0; i < pages; i++) doc.addPage([300, 400]).drawText(`page ${i + 1}`, { x: 40, y: 300, size: 20 });
  return Buffer.from(await doc.save());
}

function zipEntries(data: Buffer): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(data, { lazyEntries: true }, (err, zip) => {
      if (err || !zip) return reject(err ?? new Error('no zip'));
      const out = new Map<string, Buffer>();
      zip.on('entry', (e: yauzl.Entry) =>
        zip.openReadStream(e, (e2, s) => {
          if (e2 || !s) return reject(e2 ?? new Error('no stream'));
          const chunks: Buffer[] = [];
          s.on('data', (c: Buffer) => chunks.push(c)).on('end', () => {
            out.set(e.fileName, Buffer.concat(chunks));
            zip.readEntry();
          });
        }),
      );
      zip.on('end', () => resolve(out));
      zip.readEntry();
    });
  });
}

/** Page 1 of a PDF as a PNG (poppler's pdftoppm: a second, independent renderer). */
function pageImage(pdf: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const p = execFile('pdftoppm', ['-r', '30', '-f', '1', '-l', '1', '-png', '-'], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
    p.stdin?.end(pdf);
  });
}

function att(filename: string, data: Buffer, contentType = 'application/octet-stream'): Attachment {
  return { filename, contentType, data };
}

describe('MessageSanitizer', () => {
  it('keeps the headers people reply with, exactly, and folds a long References header', async () => {
    const refs = Array.from({ length: 60 }, (_, i) => `<thread-${i}.${'x'.repeat(30)}@example.net>`).join(' ');
    const subject = `=?ISO-2022-JP?B?${encodeText('【至急】予算資料の件', 'iso-2022-jp').toString('base64')}?=`;
    const raw = buildMail({
      subject,
      messageId: '<m1@example.net>',
      extraHeaders: ['Cc: kacho@town-b.example.lg.jp', 'In-Reply-To: <thread-59@example.net>', `References: ${refs}`, 'Reply-To: phish@evil.example', 'X-Mailer: Evil 1.0'],
      text: { body: 'よろしくお願いします。', charset: 'iso-2022-jp' },
    });
    const m = await run(raw);
    expect(m.subject).toBe('【至急】予算資料の件');
    expect(m.messageId).toBe('<m1@example.net>');
    expect(m.inReplyTo).toBe('<thread-59@example.net>');
    expect(m.references).toHaveLength(60);
    expect(m.cc).toBeDefined();
    expect(m.headers.has('reply-to')).toBe(false);
    expect(m.headers.has('x-mailer')).toBe(false);
    expect(m.text).toContain('よろしくお願いします。');
  });

  it('with attachmentsAs: images, a PDF becomes one PNG per page', async () => {
    const m = await run(buildMail({ attachments: [att('資料.pdf', await pdf(2))] }), tenant({ attachmentsAs: 'images', archives: 'repack', dpi: 72 }));
    expect(m.attachments.map((a) => [a.filename, a.contentType])).toEqual([
      ['資料.pdf.p1.png', 'image/png'],
      ['資料.pdf.p2.png', 'image/png'],
    ]);
    expect((await sharp(m.attachments[0]!.content).metadata()).width).toBe(300);
  });

  it('repacks a zip: each entry by the same rules, a list of what was removed', async () => {
    const zip = buildZip([
      deflateMember('写真/photo.jpg', await photo()),
      deflateMember('メモ.txt', encodeText('予定表です', 'shift_jis')),
      storeMember('setup.exe', Buffer.from(`MZ${'\0'.repeat(300)}`, 'latin1')),
      deflateMember('報告書.docx', readFileSync(docs.docx.path)),
    ]);
    const m = await run(buildMail({ attachments: [att('資料.zip', zip, 'application/zip')] }));
    expect(m.attachments.map((a) => a.filename)).toEqual(['資料.zip']);
    const entries = await zipEntries(m.attachments[0]!.content);
    expect([...entries.keys()].sort()).toEqual(['_sekisho-removed.txt', 'メモ.txt', '写真/photo.jpg.jpg', '報告書.docx.pdf'].sort());
    expect(entries.get('メモ.txt')!.toString('utf8')).toBe('予定表です');
    expect(entries.get('_sekisho-removed.txt')!.toString('utf8')).toContain('setup.exe');
    expect((await PDFDocument.load(entries.get('報告書.docx.pdf')!)).getPageCount()).toBe(docs.docx.pages);
    // What was taken out of a delivered archive is in the notice too, not only in the list inside the zip.
    expect(m.text).toContain('・資料.zip › setup.exe → 削除：実行ファイル');
  });

  it('attaches the converted entries one by one with archives: individual, and removes archives with archives: remove', async () => {
    const exe = Buffer.from(`MZ${'\0'.repeat(300)}`, 'latin1');
    const zip = buildZip([deflateMember('a.jpg', await photo()), deflateMember('b.txt', Buffer.from('hello')), deflateMember('c.exe', exe)]);
    const one = await run(buildMail({ attachments: [att('x.zip', zip)] }), tenant({ attachmentsAs: 'pdf', archives: 'individual', dpi: 150 }));
    expect(one.attachments.map((a) => a.filename).sort()).toEqual(['a.jpg.jpg', 'b.txt']);
    expect(one.text).toContain('・x.zip › c.exe → 削除：実行ファイル');
    const none = await run(buildMail({ attachments: [att('x.zip', zip)] }), tenant({ attachmentsAs: 'pdf', archives: 'remove', dpi: 150 }));
    expect(none.attachments).toHaveLength(0);
    expect(none.text).toContain('x.zip → 削除');
  });

  it('treats a part sent as text/csv as CSV whatever its name', async () => {
    const m = await run(buildMail({ attachments: [att('export', Buffer.from('a,b\r\n1,=1+1\r\n'), 'text/csv')] }));
    expect(m.attachments[0]!.content.toString('utf8')).toContain(`'=1+1`);
  });

  it('re-encodes a Shift_JIS CSV to UTF-8 and neutralises its formulas', async () => {
    const csv = encodeText('氏名,金額\r\n山田,=HYPERLINK("http://evil.example","請求")\r\n', 'shift_jis');
    const m = await run(buildMail({ attachments: [att('請求.csv', csv, 'text/csv')] }));
    const out = m.attachments[0]!;
    expect(out.filename).toBe('請求.csv');
    expect(out.content.toString('utf8')).toContain(`'=HYPERLINK`);
    expect(out.content.toString('utf8')).toContain('山田');
  });

  it('names a nameless part after its true type, and turns an attached message into text', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#f00' } }).png().toBuffer();
    const inner = 'From: a@example.net\r\nSubject: fw\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n転送された本文です。\r\n';
    const raw = Buffer.from(
      [
        'From: s@example.net',
        'To: u@town-b.example.lg.jp',
        'Subject: parts',
        'MIME-Version: 1.0',
        'Content-Type: multipart/mixed; boundary="B"',
        '',
        '--B',
        'Content-Type: text/plain; charset=UTF-8',
        '',
        '本文',
        '--B',
        'Content-Type: image/png',
        'Content-Transfer-Encoding: base64',
        '',
        png.toString('base64'),
        '--B',
        'Content-Type: message/rfc822',
        'Content-Disposition: attachment',
        '',
        inner,
        '--B--',
        '',
      ].join('\r\n'),
      'utf8',
    );
    const m = await run(raw);
    const names = m.attachments.map((a) => a.filename).sort();
    expect(names).toEqual(['attached-message-3.txt', 'attachment-1.png']);
    expect(m.attachments.find((a) => a.filename === 'attached-message-3.txt')!.content.toString('utf8')).toContain('転送された本文です。');
  });

  it.each(['docx', 'xlsx', 'pptx', 'rtf', 'odt', 'doc', 'xls', 'ppt', 'ods', 'odp'] as const)(
    'rebuilds a Japanese %s into a PDF of page images: the expected pages, ink on each, no fonts, no text, no active content',
    async (kind) => {
      const m = await run(buildMail({ attachments: [att(`文書.${kind}`, readFileSync(docs[kind].path))] }));
      const out = m.attachments[0]!;
      expect(out.filename).toBe(`文書.${kind}.pdf`);
      const doc = await PDFDocument.load(out.content);
      expect(doc.getPageCount()).toBe(docs[kind].pages);
      for (const bad of ['/Font', '/JavaScript', '/JS', '/OpenAction', '/AA', '/Annots', '/EmbeddedFile', '/AcroForm', '/URI', 'BT']) {
        expect(out.content.includes(Buffer.from(bad)), `${kind}: ${bad}`).toBe(false);
      }
      // Every page is an image with ink on it (not a blank render): its first image is not one flat colour.
      for (const page of doc.getPages()) {
        const xobjects = page.node.Resources()?.lookup(PDFName.of('XObject'), PDFDict);
        expect(xobjects?.keys().length, `${kind}: one image per page`).toBe(1);
      }
      const png = await pageImage(out.content);
      const { channels } = await sharp(png).stats();
      expect(Math.min(...channels.map((c) => c.min)), `${kind}: dark pixels on page 1`).toBeLessThan(128);
    },
  );

  it('removes a password-protected Office document and an Office file LibreOffice cannot open, with the reasons', async () => {
    const m = await run(
      buildMail({
        attachments: [att('見積書.docx', readFileSync(docs['encrypted.docx'].path)), att('壊れた.xlsx', buildZip([deflateMember('[Content_Types].xml', Buffer.from('<Types/>')), deflateMember('xl/workbook.xml', Buffer.from('<<<'))]))],
      }),
    );
    expect(m.attachments).toHaveLength(0);
    expect(m.text).toMatch(/見積書\.docx → 削除：パスワード付き/);
    expect(m.text).toMatch(/壊れた\.xlsx → 削除：/);
  });
});
