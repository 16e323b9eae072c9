/**
 * メール無害化 through the whole pipeline, with the real converters (sharp, MuPDF, pdf-lib, LibreOffice) and a real
 * clamd: a sanitizing tenant receives only the rebuilt message — text body, image-only attachments, the notice —
 * while the original stays in the spool under a quarantine record; malware never reaches it in any form;
 * unscannable content is held for a tenant that does not sanitize; a conversion that fails removes that part only.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { PDFDocument, PDFName, PDFString } from 'pdf-lib';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Harness, queuedId } from '../helpers/harness.ts';
import { startTestClamd, type TestClamd } from '../helpers/clamd.ts';
import { buildMail, encodeText } from '../helpers/mail-builder.ts';
import { JAPANESE_SENTENCE, makeOfficeDocs, type OfficeDoc, type OfficeDocName } from '../helpers/office-docs.ts';
import { sendRaw } from '../helpers/raw-smtp.ts';
import { buildZip, encryptedMember } from '../helpers/zip-writer.ts';

const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
const DAY = 24 * 3_600_000;

let clamd: TestClamd;
let h: Harness | undefined;
let docs: Record<OfficeDocName, OfficeDoc>;
const docDir = mkdtempSync(path.join(tmpdir(), 'sekisho-san-docs-'));

beforeAll(async () => {
  [clamd, docs] = await Promise.all([startTestClamd(), makeOfficeDocs(docDir)]);
}, 180_000);
afterAll(async () => {
  await clamd?.cleanup();
  rmSync(docDir, { recursive: true, force: true });
});
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

/** town-b sanitizes; city-a does not. */
async function start(config: Record<string, unknown> = {}, cityA: Record<string, unknown> = {}): Promise<Harness> {
  return Harness.start({
    engines: { clamd: clamd.clamd.endpoint },
    config: { sanitize: { converterProcesses: 1 }, ...config },
    tenantOptions: { 'town-b': { sanitize: true }, 'city-a': cityA },
  });
}

async function gpsJpeg(): Promise<Buffer> {
  return sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 200, g: 120, b: 40 } } })
    .jpeg()
    .withExif({ IFD0: { Make: 'SekishoCam' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '35/1 41/1 0/1' } })
    .toBuffer();
}

async function activePdf(): Promise<Buffer> {
  const doc = await PDFDocument.create();
  const page = doc.addPage([595, 842]);
  page.drawText('Quarterly report', { x: 72, y: 760, size: 24 });
  const js = doc.context.obj({ Type: 'Action', S: 'JavaScript', JS: PDFString.of('app.alert("pwned")') });
  doc.catalog.set(PDFName.of('OpenAction'), doc.context.register(js));
  return Buffer.from(await doc.save());
}

const HTML = [
  '<html><head><style>p{color:red}</style><script>alert("x")</script></head><body>',
  '<h1>会議のお知らせ</h1>',
  '<p>来週の定例会議は第二会議室で行います。</p>',
  '<p><a href="https://evil.example.com/login">こちらから出欠を登録</a></p>',
  '<div style="display:none">隠しテキスト</div>',
  '<img src="https://tracker.example.net/p.gif" width="1" height="1">',
  '</body></html>',
].join('\n');

function names(m: ParsedMail): string[] {
  return m.attachments.map((a) => a.filename ?? '').sort();
}

describe('sanitization in the pipeline', () => {
  it('delivers only the rebuilt message to a sanitizing tenant and keeps the original in quarantine', async () => {
    h = await start();
    const raw = buildMail({
      subject: `=?ISO-2022-JP?B?${encodeText('会議資料', 'iso-2022-jp').toString('base64')}?=`,
      messageId: '<meeting-1@example.net>',
      html: { body: HTML, charset: 'iso-2022-jp' },
      attachments: [
        { filename: '写真.jpg', contentType: 'image/jpeg', data: await gpsJpeg(), nameCharset: 'iso-2022-jp' },
        { filename: '資料.pdf', contentType: 'application/pdf', data: await activePdf(), nameCharset: 'shift_jis' },
        { filename: '報告書.docx', contentType: 'application/octet-stream', data: readFileSync(docs.docx.path) },
        { filename: '請求書.zip', contentType: 'application/zip', data: buildZip([encryptedMember('請求書.docx', 2_000)]) },
        { filename: 'invoice.pdf', contentType: 'application/pdf', data: Buffer.from(`MZ\x90\x00${'\x00'.repeat(200)}`, 'latin1') },
      ],
    });
    const mid = queuedId(await sendRaw(h.port, 'sender@example.net', ['user@town-b.example.lg.jp'], raw));
    await h.sinks.b.waitFor(1, 120_000);
    await h.waitForState(mid, (s, m) => s[0] === 'delivered' && m === 'done');

    const out = h.sinks.b.messages[0]!;
    const mail = await simpleParser(out.raw);
    expect(mail.messageId).toBe('<meeting-1@example.net>');
    expect(mail.subject).toBe('会議資料');
    const head = out.raw.toString('latin1').split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
    expect(head).toMatch(new RegExp(`^X-Sekisho-Sanitized: original=${mid}; .*converted=3 removed=2$`, 'm'));
    expect(head.match(/^X-Sekisho-Sanitized:/gm)).toHaveLength(1);
    expect(head).toMatch(/^From: sender@example\.net$/m);
    const text = mail.text ?? '';
    expect(text.indexOf('【メール無害化のお知らせ】')).toBe(0);
    expect(text).toContain('来週の定例会議は第二会議室で行います。');
    expect(text).toContain('hxxps://evil[.]example[.]com/login');
    expect(text).not.toMatch(/https?:\/\//);
    expect(text).not.toContain('alert');
    expect(text).not.toContain('隠しテキスト');
    expect(text).toMatch(/請求書\.zip → 削除：パスワード付き/);
    expect(text).toMatch(/invoice\.pdf → 削除：実行ファイル/);
    expect(text).toContain(`保管ID: ${mid}`);
    expect(mail.html).toBe(false);
    expect(names(mail)).toEqual(['写真.jpg.jpg', '報告書.docx.pdf', '資料.pdf.pdf']);

    const photo = mail.attachments.find((a) => a.filename === '写真.jpg.jpg')!;
    const meta = await sharp(photo.content).metadata();
    expect(meta.exif).toBeUndefined();
    expect(photo.content.includes(Buffer.from('SekishoCam'))).toBe(false);
    const pdf = mail.attachments.find((a) => a.filename === '資料.pdf.pdf')!.content;
    for (const bad of ['/JavaScript', '/OpenAction', '/JS', '/Font']) expect(pdf.includes(Buffer.from(bad)), bad).toBe(false);
    expect((await PDFDocument.load(pdf)).getPageCount()).toBe(1);
    // The Office document went through LibreOffice and then the same rendering: pages of pixels, no text left.
    const report = mail.attachments.find((a) => a.filename === '報告書.docx.pdf')!.content;
    expect((await PDFDocument.load(report)).getPageCount()).toBe(docs.docx.pages);
    expect(report.includes(Buffer.from('/Font'))).toBe(false);
    expect(report.includes(Buffer.from(JAPANESE_SENTENCE))).toBe(false);

    const counted = await h.worker!.metrics.sanitizedParts.get();
    const n = (outcome: string, reason: string) => counted.values.find((v) => v.labels.outcome === outcome && v.labels.reason === reason)?.value;
    expect([n('converted', ''), n('removed', 'encrypted'), n('removed', 'executable')]).toEqual([3, 1, 1]);

    // The original is kept, unchanged, under a quarantine record with the tenant's retention deadline.
    expect((await h.stores.store.read(mid)).includes(raw.subarray(raw.indexOf('Content-Type: multipart/mixed')))).toBe(true);
    const rec = await h.stores.quarantine.get(mid, 'town-b');
    expect(rec).toMatchObject({ kind: 'original', state: 'held', recipients: ['user@town-b.example.lg.jp'] });
    expect(rec!.expiresAt - rec!.createdAt).toBe(14 * DAY);
  });

  it('never delivers EICAR to a sanitizing tenant in any form', async () => {
    h = await start();
    const raw = buildMail({ attachments: [{ filename: 'eicar.txt', contentType: 'text/plain', data: Buffer.from(EICAR) }] });
    const mid = queuedId(await sendRaw(h.port, 'attacker@example.net', ['user@town-b.example.lg.jp'], raw));
    await h.waitForState(mid, (s, m) => s[0] === 'quarantined' && m === 'done');
    expect(h.sinks.b.messages).toHaveLength(0);
    expect(await h.stores.quarantine.get(mid, 'town-b')).toMatchObject({ kind: 'held', state: 'held' });
  });

  it('holds a password-protected zip for a tenant that does not sanitize, and sanitizes it away for one that does', async () => {
    h = await start();
    const raw = buildMail({ attachments: [{ filename: '請求書.zip', contentType: 'application/zip', data: buildZip([encryptedMember('請求書.doc', 5_000)]) }] });
    const mid = queuedId(await sendRaw(h.port, 'sender@example.net', ['u@city-a.example.lg.jp', 'user@town-b.example.lg.jp'], raw));
    await h.waitForState(mid, (s, m) => m === 'done' && s.includes('quarantined') && s.includes('delivered'));
    expect(h.sinks.a.messages).toHaveLength(0);
    const rcpts = await h.stores.meta.getRecipients(mid);
    expect(rcpts.find((r) => r.tenantId === 'city-a')?.state).toBe('quarantined');
    expect(await h.stores.quarantine.get(mid, 'city-a')).toMatchObject({ kind: 'held', symbols: expect.arrayContaining(['ARCHIVE_ENCRYPTED']) });
    const mail = await simpleParser(h.sinks.b.messages[0]!.raw);
    expect(mail.attachments).toHaveLength(0);
    expect(mail.text).toMatch(/請求書\.zip → 削除：パスワード付き/);
  });

  it('with unscannable: deliver-tagged, a tenant that does not sanitize gets the PPAP mail tagged', async () => {
    h = await start({}, { unscannable: 'deliver-tagged' });
    const raw = buildMail({ attachments: [{ filename: 'a.zip', contentType: 'application/zip', data: buildZip([encryptedMember('a.doc', 5_000)]) }] });
    queuedId(await sendRaw(h.port, 'sender@example.net', ['u@city-a.example.lg.jp'], raw));
    await h.sinks.a.waitFor(1, 60_000);
    expect(h.sinks.a.messages[0]!.raw.toString('latin1')).toMatch(/X-Sekisho-Symbols: .*ARCHIVE_ENCRYPTED/);
  });

  it('conversions past their deadline remove the parts with a notice; the message is still delivered and the original kept', async () => {
    h = await start({ sanitize: { converterProcesses: 1, jobTimeoutMs: 1 } });
    const raw = buildMail({
      text: { body: '写真を送ります。', charset: 'shift_jis' },
      attachments: [{ filename: '写真.jpg', contentType: 'image/jpeg', data: await gpsJpeg() }],
    });
    const mid = queuedId(await sendRaw(h.port, 'sender@example.net', ['user@town-b.example.lg.jp'], raw));
    await h.sinks.b.waitFor(1, 120_000);
    const mail = await simpleParser(h.sinks.b.messages[0]!.raw);
    expect(mail.attachments).toHaveLength(0);
    expect(mail.text).toMatch(/写真\.jpg → 削除：変換が時間内に終わらなかった/);
    // The body goes through a converter too: converted in time, or replaced by a notice — never passed on as it was.
    const body = mail.text!.slice(mail.text!.indexOf('-'.repeat(60)));
    expect(body).toMatch(/^-+\n+(写真を送ります。|（本文は変換できなかったため削除しました。原本は保管されています）)/);
    expect(await h.stores.store.exists(mid)).toBe(true);
  });
});
