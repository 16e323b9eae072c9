/**
 * npm run bench:sanitize — cost and output size of the image and PDF sanitizers, beside a baseline.
 *
 * The inputs are generated at start in a temporary directory: photo-like JPEGs (a camera's 12 MP and a 2 MP one),
 * a PNG screenshot, an animated GIF; PDFs of Japanese text pages and of mixed pages (text, a coloured table, a
 * photo) made by LibreOffice from generated HTML (real Japanese text set in Noto CJK), and a PDF of photo pages
 * made by pdf-lib. Each row runs in a fresh child process (as conversions do in the gateway's converter children)
 * and converts every input of its kind, after one warm-up conversion; it reports the time per attachment
 * (p50/p95) and per page, output size per page and against the input, and the child's peak RSS. PDF rows run, in
 * the same child, the naive pipeline the sanitizer replaces: `pdftoppm -r DPI` → PNG pages → pdf-lib embedPng →
 * PDF (time per page includes pdftoppm's start, as a per-attachment child would), with pdftoppm's share shown.
 *
 * Office rows run a Japanese docx (3 pages), xlsx and pptx, saved by LibreOffice from generated flat ODF, through
 * the resident LibreOfficeConverter and then rebuildPdf, as the gateway does; the first document (cold start of
 * soffice with a fresh profile) is shown apart, and the peak RSS of soffice's process tree. The mail row runs a
 * whole message — an ISO-2022-JP HTML body, the docx, a 5-page Japanese PDF and two 3000×2000 photos — through the
 * real MessageSanitizer (its converter pool and its LibreOffice); its first message (cold LibreOffice, cold
 * converter children) is shown apart, and the peak RSS of its converter children and of soffice. Split rows run
 * the rebuild's steps one by one (MuPDF render, page encode, PDF assembly) to show where a page's time goes.
 *
 * A row is one entry of `rows()`: a label, its inputs, its conversion, an optional baseline, its targets, and for
 * rows that start processes of their own, how to read their peak RSS and how to stop them.
 *
 * Options: --quick (fewer inputs and passes, for a smoke run), --repeat N (passes over the inputs, default 3),
 * --dpi N (150), --json FILE (the figures as JSON too: scripts/make-bench-chart.ts draws docs/img/bench-sanitize.png).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { PDFDocument } from 'pdf-lib';
import sharp from 'sharp';
import { validateConfig } from '../src/config/load.ts';
import type { TenantConfig } from '../src/config/schema.ts';
import { silentLogger } from '../src/log.ts';
import { sanitizeImage } from '../src/sanitize/image.ts';
import { LibreOfficeConverter } from '../src/sanitize/libreoffice.ts';
import { MessageSanitizer } from '../src/sanitize/message-sanitizer.ts';
import { assembleImagePdf, type ImagePage } from '../src/sanitize/pdf-assemble.ts';
import { encodePage } from '../src/sanitize/page-encode.ts';
import { rebuildPdf } from '../src/sanitize/pdf-rebuild.ts';
import { buildMail } from '../test/helpers/mail-builder.ts';
import { flatPresentation, flatSpreadsheet, saveAs } from '../test/helpers/office-docs.ts';
import { fmt, percentile, table } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    repeat: { type: 'string' },
    dpi: { type: 'string', default: '150' },
    json: { type: 'string' },
    /** Internal: run one row in this (child) process, on the inputs in this directory. */
    row: { type: 'string' },
    inputs: { type: 'string' },
  },
});
const quick = args.quick === true;
const repeat = Number(args.repeat ?? (quick ? 1 : 3));
const dpi = Number(args.dpi);
/** LibreOffice makes the Japanese PDFs once; its first start (a fresh profile) takes a few seconds. */
const SOFFICE_TIMEOUT_MS = 180_000;
const TARGET_RSS_MB = 400;
/** Passes over an office document (warm) and over the mixed mail: enough samples for a p95. */
const OFFICE_PASSES = quick ? 2 : 10;
const MAIL_PASSES = quick ? 2 : 8;

/** What one conversion produced. */
interface Output {
  bytes: number;
  pages: number;
  kinds: string[];
  /** Of the baseline: the time pdftoppm alone took. */
  renderMs?: number;
  /** Time of named steps of the conversion (LibreOffice then rebuild; render, encode, assemble). */
  steps?: Record<string, number>;
}

interface Measured {
  ms: number[];
  /** CPU time of the row's process per conversion (all its threads): what the load of the machine does not change. */
  cpuMs: number[];
  /** The warm-up conversion: module loading, WASM instantiation, starting soffice or converter children. */
  firstMs: number;
  passes: number;
  pages: number;
  inBytes: number;
  outBytes: number;
  kinds: Record<string, number>;
  renderMs: number;
  /** Per conversion, the time of each named step. */
  steps: Record<string, number[]>;
  peakRssMb: number;
  /** Peak RSS of the processes a row starts besides its own (soffice's tree, the largest converter child). */
  helperRssMb: Record<string, number>;
}

interface Target {
  label: string;
  /** The measured figure the target is about, as printed in the summary. */
  figure: (ours: Measured, baseline: Measured | null) => string;
  met: (ours: Measured, baseline: Measured | null) => boolean;
}

interface Row {
  label: string;
  inputs: Buffer[];
  convert: (input: Buffer) => Promise<Output>;
  baseline?: (input: Buffer) => Promise<Output>;
  targets: Target[];
  /** Passes over the inputs (default: --repeat). */
  passes?: number;
  /** Peak RSS in MB of the processes the row started (read before `close`). */
  helperRss?: () => Record<string, number>;
  /** Stops what the row started (soffice, converter children). */
  close?: () => Promise<void>;
}

const msPerPage = (m: Measured) => m.ms.reduce((a, b) => a + b, 0) / m.pages;
const kbPerPage = (m: Measured) => m.outBytes / 1024 / m.pages;

const p50 = (m: Measured) => percentile(m.ms, 50);
const helperMb = (m: Measured, name: string) => m.helperRssMb[name] ?? Number.NaN;

const targets = {
  imageP50: { label: 'p50 ≤ 100 ms', figure: (m) => `${fmt(p50(m), 0)} ms`, met: (m) => p50(m) <= 100 },
  growth: { label: 'out ≤ 1.5× in', figure: (m) => `${fmt(m.outBytes / m.inBytes, 2)}×`, met: (m) => m.outBytes <= 1.5 * m.inBytes },
  perPage: { label: '≤ 250 ms/page', figure: (m) => `${fmt(msPerPage(m), 0)} ms/page`, met: (m) => msPerPage(m) <= 250 },
  fasterThanPoppler: {
    label: '< poppler',
    figure: (m, b) => `${fmt(msPerPage(m), 0)} vs ${b ? fmt(msPerPage(b), 0) : '-'} ms/page`,
    met: (m, b) => b !== null && msPerPage(m) < msPerPage(b),
  },
  textPage: { label: '≤ 80 KB/page', figure: (m) => `${fmt(kbPerPage(m))} KB/page`, met: (m) => kbPerPage(m) <= 80 },
  rss: { label: `RSS ≤ ${TARGET_RSS_MB} MB`, figure: (m) => `${fmt(m.peakRssMb, 0)} MB`, met: (m) => m.peakRssMb <= TARGET_RSS_MB },
  docxWarm: { label: 'warm p50 ≤ 2 s', figure: (m) => `${fmt(p50(m), 0)} ms`, met: (m) => p50(m) <= 2_000 },
  mailP50: { label: 'p50 ≤ 6 s', figure: (m) => `${fmt(p50(m), 0)} ms`, met: (m) => p50(m) <= 6_000 },
  sofficeRss: {
    label: `soffice RSS ≤ ${TARGET_RSS_MB} MB`,
    figure: (m) => `${fmt(helperMb(m, 'soffice'), 0)} MB`,
    met: (m) => helperMb(m, 'soffice') <= TARGET_RSS_MB,
  },
  converterRss: {
    label: `converter RSS ≤ ${TARGET_RSS_MB} MB`,
    figure: (m) => `${fmt(helperMb(m, 'converter'), 0)} MB`,
    met: (m) => helperMb(m, 'converter') <= TARGET_RSS_MB,
  },
} satisfies Record<string, Target>;

// ---- inputs ----

/** A photo-like picture: soft overlapping shapes, blurred, with sensor-like noise; JPEG at a camera's quality. */
async function photoJpeg(width: number, height: number, seed: number): Promise<Buffer> {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const shapes = Array.from({ length: 80 }, () => {
    const [r, g, b] = [rand() * 255, rand() * 255, rand() * 255].map(Math.round);
    return `<ellipse cx="${rand() * width}" cy="${rand() * height}" rx="${rand() * width * 0.3}" ry="${rand() * height * 0.3}" fill="rgb(${r},${g},${b})" fill-opacity="${0.3 + rand() * 0.5}"/>`;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="rgb(90,120,150)"/>${shapes.join('')}</svg>`;
  const { data, info } = await sharp(Buffer.from(svg)).blur(3).raw().toBuffer({ resolveWithObject: true });
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, (data[i] as number) + (rand() - 0.5) * 24));
  return sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } }).jpeg({ quality: 90 }).toBuffer();
}

async function screenshotPng(): Promise<Buffer> {
  const lines = Array.from({ length: 40 }, (_, i) => `<text x="40" y="${60 + i * 24}" font-size="16" font-family="Noto Sans CJK JP">${i + 1}. 庁内ネットワークの設定画面 Settings → Mail gateway → 無害化 (${i * 37})</text>`);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="1920" height="1080"><rect width="100%" height="100%" fill="#f3f3f3"/><rect x="0" y="0" width="1920" height="36" fill="#2b579a"/><rect x="1400" y="80" width="440" height="600" fill="#ffffff" stroke="#999"/>${lines.join('')}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

async function animatedGif(): Promise<Buffer> {
  const frames = await Promise.all(Array.from({ length: 10 }, (_, i) => sharp({ create: { width: 480, height: 270, channels: 3, background: { r: i * 25, g: 100, b: 200 - i * 20 } } }).png().toBuffer()));
  return sharp(frames, { join: { animated: true } }).gif().toBuffer();
}

const KANJI = '東京都千代田区霞が関市町村情報セキュリティクラウドメール無害化処理性能測定会議資料報告書予算決算条例規則要綱住民課税務課福祉課防災計画令和年度第回議事録出席者について以下のとおり報告いたします。';

function japaneseParagraphs(count: number, seed: number): string {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  return Array.from({ length: count }, (_, p) => {
    const text = Array.from({ length: 150 + Math.floor(rand() * 150) }, () => KANJI[Math.floor(rand() * KANJI.length)]).join('');
    return p % 6 === 0 ? `<h2>第${p / 6 + 1}章 報告事項</h2><p>${text}</p>` : `<p>${text}</p>`;
  }).join('\n');
}

/** LibreOffice's PDFs of generated HTML: real Japanese text pages, as from a word processor. */
function officePdfs(root: string, photoFile: string): { text: Buffer; mixed: Buffer } {
  const dir = path.join(root, 'soffice');
  mkdirSync(dir);
  const style = "<style>body{font-family:'Noto Serif CJK JP';font-size:10.5pt} td{border:1px solid #444;padding:4px}</style>";
  const table = `<table style="border-collapse:collapse"><tr style="background:#dbe5f1"><td>課</td><td>件数</td><td>予算（千円）</td></tr>${Array.from({ length: 8 }, (_, i) => `<tr><td style="color:#c00000">部署${i + 1}</td><td>${i * 13}</td><td>${i * 4200}</td></tr>`).join('')}</table>`;
  writeFileSync(path.join(dir, 'text.html'), `<html><head><meta charset="utf-8">${style}</head><body><h1>令和6年度 事業報告書</h1>${japaneseParagraphs(quick ? 24 : 60, 1)}</body></html>`);
  writeFileSync(
    path.join(dir, 'mixed.html'),
    `<html><head><meta charset="utf-8">${style}</head><body>${[1, 2, 3, 4]
      .map((i) => `<h1>現地調査報告 ${i}</h1>${japaneseParagraphs(4, i)}${table}<p><img src="file://${photoFile}" width="500"></p>${japaneseParagraphs(3, i + 10)}`)
      .join('')}</body></html>`,
  );
  execFileSync(
    'soffice',
    [`-env:UserInstallation=file://${path.join(root, 'lo-profile')}`, '--headless', '--convert-to', 'pdf', '--outdir', dir, path.join(dir, 'text.html'), path.join(dir, 'mixed.html')],
    { timeout: SOFFICE_TIMEOUT_MS, stdio: 'ignore', env: { ...process.env, HOME: root } },
  );
  return { text: readFileSync(path.join(dir, 'text.pdf')), mixed: readFileSync(path.join(dir, 'mixed.pdf')) };
}

/** Photo pages as a scanner or a phone app makes them: one JPEG per A4 page. */
async function photoPdf(photos: Buffer[]): Promise<Buffer> {
  const doc = await PDFDocument.create();
  for (const jpeg of photos) {
    const image = await doc.embedJpg(jpeg);
    const page = doc.addPage([842, 595]);
    page.drawImage(image, { x: 0, y: 0, width: 842, height: 595 });
  }
  return Buffer.from(await doc.save());
}

/** A report of `pages` A4 pages in flat ODF: on each, a heading and four paragraphs of Japanese, then a page break. */
function japaneseFodt(pages: number, seed: number): string {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const text = (n: number) => Array.from({ length: n }, () => KANJI[Math.floor(rand() * KANJI.length)]).join('');
  const body = Array.from({ length: pages }, (_, p) => {
    const paras = Array.from({ length: 4 }, () => `<text:p text:style-name="P">${text(200 + Math.floor(rand() * 100))}</text:p>`);
    return `<text:h text:style-name="${p > 0 ? 'HB' : 'H'}" text:outline-level="1">第${p + 1}章 ${text(12)}</text:h>${paras.join('')}`;
  });
  const font = (pt: number) => `style:font-name-asian="Noto Serif CJK JP" fo:font-size="${pt}pt" style:font-size-asian="${pt}pt"`;
  const heading = `<style:text-properties ${font(16)} fo:font-weight="bold" style:font-weight-asian="bold"/>`;
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" ' +
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" ' +
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.text">' +
    '<office:font-face-decls><style:font-face style:name="Noto Serif CJK JP" svg:font-family="\'Noto Serif CJK JP\'" xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"/></office:font-face-decls>' +
    `<office:automatic-styles><style:style style:name="P" style:family="paragraph"><style:paragraph-properties fo:margin-bottom="0.2cm" fo:text-indent="0.4cm"/><style:text-properties ${font(10.5)}/></style:style>` +
    `<style:style style:name="H" style:family="paragraph"><style:paragraph-properties fo:margin-bottom="0.3cm"/>${heading}</style:style>` +
    `<style:style style:name="HB" style:family="paragraph"><style:paragraph-properties fo:break-before="page" fo:margin-bottom="0.3cm"/>${heading}</style:style></office:automatic-styles>` +
    `<office:body><office:text>${body.join('')}</office:text></office:body></office:document>\n`
  );
}

/** Office documents saved by LibreOffice from flat ODF: report.docx (3 pages), report.pdf (5), table.xlsx, slides.pptx. */
async function officeDocs(root: string): Promise<void> {
  const dir = path.join(root, 'office');
  mkdirSync(dir);
  const src = (name: string, xml: string) => {
    writeFileSync(path.join(dir, name), xml);
    return path.join(dir, name);
  };
  const [docx, pdf, sheet, slides] = [src('docx.fodt', japaneseFodt(3, 21)), src('pdf.fodt', japaneseFodt(5, 22)), src('s.fods', flatSpreadsheet(2, 60)), src('p.fodp', flatPresentation(4))];
  await saveAs(dir, [
    [docx, path.join(root, 'report.docx'), 'MS Word 2007 XML', ''],
    [pdf, path.join(root, 'report.pdf'), 'writer_pdf_Export', ''],
    [sheet, path.join(root, 'table.xlsx'), 'Calc MS Excel 2007 XML', ''],
    [slides, path.join(root, 'slides.pptx'), 'Impress MS PowerPoint 2007 XML', ''],
  ]);
}

/** The mixed mail: ISO-2022-JP HTML body, the 3-page docx, the 5-page PDF and two camera-like photos. */
async function mixedMail(root: string): Promise<Buffer> {
  const photos = await Promise.all([11, 12].map((seed) => photoJpeg(3000, 2000, seed)));
  const html = `<html><body><h1>令和6年度 事業報告書の送付について</h1>${japaneseParagraphs(6, 31)}<p><a href="https://example.com/report">報告書のページ</a></p></body></html>`;
  return buildMail({
    subject: 'report',
    html: { body: html, charset: 'iso-2022-jp' },
    attachments: [
      { filename: '事業報告書.docx', contentType: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', data: readFileSync(path.join(root, 'report.docx')) },
      { filename: '会議資料.pdf', contentType: 'application/pdf', data: readFileSync(path.join(root, 'report.pdf')) },
      ...photos.map((data, i) => ({ filename: `現場写真${i + 1}.jpg`, contentType: 'image/jpeg', data })),
    ],
  });
}

// ---- conversions ----

async function viaImage(input: Buffer): Promise<Output> {
  const out = await sanitizeImage(input);
  return { bytes: out.data.length, pages: 1, kinds: [out.ext] };
}

async function viaRebuild(input: Buffer): Promise<Output> {
  const r = await rebuildPdf(input, { dpi, as: 'pdf' });
  return { bytes: (r.pdf as Buffer).length, pages: r.pages, kinds: r.pageKinds };
}

/** What rebuildPdf does, one step at a time, to time each: MuPDF render, page encode, PDF assembly. */
async function viaRebuildSteps(input: Buffer): Promise<Output> {
  const mupdf = await import('mupdf');
  const doc = mupdf.Document.openDocument(input, 'application/pdf');
  const steps = { render: 0, encode: 0, assemble: 0 };
  try {
    const pages: ImagePage[] = [];
    for (let i = 0; i < doc.countPages(); i++) {
      let t0 = performance.now();
      const page = doc.loadPage(i);
      const [x0, y0, x1, y1] = page.getBounds();
      const pixmap = page.toPixmap([dpi / 72, 0, 0, dpi / 72, 0, 0], mupdf.ColorSpace.DeviceRGB, false, true);
      const [width, height, stride] = [pixmap.getWidth(), pixmap.getHeight(), pixmap.getStride()];
      const samples = pixmap.getPixels();
      const rgb = Buffer.alloc(width * height * 3);
      for (let y = 0; y < height; y++) rgb.set(samples.subarray(y * stride, y * stride + width * 3), y * width * 3);
      pixmap.destroy();
      page.destroy();
      steps.render += performance.now() - t0;
      t0 = performance.now();
      pages.push({ widthPt: x1 - x0, heightPt: y1 - y0, image: await encodePage({ rgb, width, height }) });
      steps.encode += performance.now() - t0;
    }
    const t0 = performance.now();
    const pdf = await assembleImagePdf(pages);
    steps.assemble = performance.now() - t0;
    return { bytes: pdf.length, pages: pages.length, kinds: pages.map((p) => p.image.kind), steps };
  } finally {
    doc.destroy();
    mupdf.emptyStore();
  }
}

/** pdftoppm → PNG pages → pdf-lib embedPng: what a straightforward implementation would do. */
async function viaPoppler(input: Buffer): Promise<Output> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-poppler-'));
  try {
    writeFileSync(path.join(dir, 'in.pdf'), input);
    const t0 = performance.now();
    await promisify(execFile)('pdftoppm', ['-r', String(dpi), '-png', path.join(dir, 'in.pdf'), path.join(dir, 'p')]);
    const renderMs = performance.now() - t0;
    const doc = await PDFDocument.create();
    const pngs = readdirSync(dir).filter((f) => f.endsWith('.png')).sort();
    for (const f of pngs) {
      const image = await doc.embedPng(readFileSync(path.join(dir, f)));
      const page = doc.addPage([(image.width * 72) / dpi, (image.height * 72) / dpi]);
      page.drawImage(image, { x: 0, y: 0, width: page.getWidth(), height: page.getHeight() });
    }
    const pdf = await doc.save();
    return { bytes: pdf.length, pages: pngs.length, kinds: [], renderMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An office document through a resident LibreOffice (started by the first one), then rebuilt from its renders. */
function officeRow(label: string, input: Buffer, ext: string, extra: Target[]): Row {
  let office: { converter: LibreOfficeConverter; workDir: string } | undefined;
  return {
    label,
    inputs: [input],
    passes: OFFICE_PASSES,
    convert: async (data) => {
      if (!office) {
        const workDir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-lo-'));
        office = { converter: new LibreOfficeConverter({ workDir }), workDir };
      }
      const t0 = performance.now();
      const pdf = await office.converter.convert(data, ext);
      const t1 = performance.now();
      const r = await rebuildPdf(pdf, { dpi, as: 'pdf' });
      return { bytes: (r.pdf as Buffer).length, pages: r.pages, kinds: r.pageKinds, steps: { libreoffice: t1 - t0, rebuild: performance.now() - t1 } };
    },
    helperRss: (): Record<string, number> => (office?.converter.pid === undefined ? {} : { soffice: treePeakRssMb(office.converter.pid) }),
    close: async () => {
      if (!office) return;
      await office.converter.stop();
      rmSync(office.workDir, { recursive: true, force: true });
    },
    targets: [...extra, targets.sofficeRss],
  };
}

/** A whole message through the real MessageSanitizer: its converter pool and its resident LibreOffice. */
function mailRow(label: string, raw: Buffer): Row {
  let started: { sanitizer: MessageSanitizer; tenant: TenantConfig; dataDir: string } | undefined;
  const start = () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-mail-'));
    const tenant = { id: 'town-b', name: '乙町', domains: ['town-b.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:2525', sanitize: true };
    const r = validateConfig({ hostname: 'mx.bench.example.lg.jp', dataDir, tenants: [tenant] });
    if (!r.ok) throw new Error(`bench config: ${JSON.stringify(r.issues)}`);
    return { sanitizer: new MessageSanitizer(r.config, silentLogger), tenant: r.config.tenants[0] as TenantConfig, dataDir };
  };
  return {
    label,
    inputs: [raw],
    passes: MAIL_PASSES,
    convert: async (data) => {
      started ??= start();
      const r = await started.sanitizer.sanitize({
        mid: 'bench',
        raw: data,
        tenant: started.tenant,
        recipients: ['user@town-b.example.lg.jp'],
        verdict: { symbols: [], unlistedSymbols: [], failedChecks: [], durationsMs: {}, decisions: {}, scannedAt: Date.now() },
        signal: new AbortController().signal,
        log: silentLogger,
      });
      // 'converted' for each part that became safe files; anything removed would show here as a failure.
      return { bytes: r.message.length, pages: 1, kinds: r.summary.map((line) => (/: removed \(/.test(line) ? 'removed' : 'converted')) };
    },
    helperRss: () => {
      const procs = descendants(process.pid);
      const soffice = procs.find((p) => p.command.includes('soffice.bin'));
      const converters = procs.filter((p) => p.command.includes('converter-child'));
      return { converter: Math.max(0, ...converters.map((p) => peakRssMb(p.pid))), ...(soffice && { soffice: treePeakRssMb(soffice.pid) }) };
    },
    close: async () => {
      await started?.sanitizer.close();
      if (started) rmSync(started.dataDir, { recursive: true, force: true });
    },
    targets: [targets.mailP50, targets.converterRss, targets.sofficeRss],
  };
}

// ---- rows ----

/** Generates every input once, into `dir`; the rows read theirs by name. */
async function writeInputs(dir: string): Promise<void> {
  const camera = await Promise.all([1, 2, 3].slice(0, quick ? 1 : 3).map((seed) => photoJpeg(4032, 3024, seed)));
  const small = await Promise.all([4, 5, 6, 7, 8].slice(0, quick ? 2 : 5).map((seed) => photoJpeg(1600, 1200, seed)));
  camera.forEach((jpeg, i) => writeFileSync(path.join(dir, `camera-${i}.jpg`), jpeg));
  small.forEach((jpeg, i) => writeFileSync(path.join(dir, `photo-${i}.jpg`), jpeg));
  writeFileSync(path.join(dir, 'screenshot.png'), await screenshotPng());
  writeFileSync(path.join(dir, 'animated.gif'), await animatedGif());
  const office = officePdfs(dir, path.join(dir, 'photo-0.jpg'));
  writeFileSync(path.join(dir, 'text.pdf'), office.text);
  writeFileSync(path.join(dir, 'mixed.pdf'), office.mixed);
  writeFileSync(path.join(dir, 'photos.pdf'), await photoPdf(small));
  await officeDocs(dir);
  writeFileSync(path.join(dir, 'mail.eml'), await mixedMail(dir));
}

function rows(dir: string): Row[] {
  const read = (prefix: string) => readdirSync(dir).filter((f) => f.startsWith(prefix)).sort().map((f) => readFileSync(path.join(dir, f)));
  const image = (label: string, inputs: Buffer[], extra: Target[] = []): Row => ({ label, inputs, convert: viaImage, targets: [targets.imageP50, ...extra, targets.rss] });
  const pdf = (label: string, inputs: Buffer[], extra: Target[]): Row => ({
    label,
    inputs,
    convert: viaRebuild,
    baseline: viaPoppler,
    targets: [targets.perPage, targets.fasterThanPoppler, ...extra, targets.rss],
  });
  return [
    image('image: JPEG photo 1600×1200', read('photo-'), [targets.growth]),
    image('image: JPEG photo 4032×3024', read('camera-'), [targets.growth]),
    image('image: PNG screenshot 1920×1080', read('screenshot.png')),
    image('image: GIF animated 480×270×10', read('animated.gif')),
    pdf('pdf: Japanese text (LibreOffice)', read('text.pdf'), [targets.textPage]),
    pdf('pdf: mixed text/table/photo (LibreOffice)', read('mixed.pdf'), []),
    pdf('pdf: photo pages (pdf-lib, 1600×1200 JPEGs)', read('photos.pdf'), [targets.growth]),
    { label: 'pdf steps: Japanese text', inputs: read('text.pdf'), convert: viaRebuildSteps, targets: [] },
    { label: 'pdf steps: mixed text/table/photo', inputs: read('mixed.pdf'), convert: viaRebuildSteps, targets: [] },
    officeRow('office: docx 3 pages → PDF', read('report.docx')[0] as Buffer, 'docx', [targets.docxWarm]),
    officeRow('office: xlsx 2 sheets → PDF', read('table.xlsx')[0] as Buffer, 'xlsx', []),
    officeRow('office: pptx 4 slides → PDF', read('slides.pptx')[0] as Buffer, 'pptx', []),
    mailRow('mail: HTML + docx + 5-page PDF + 2 photos', read('mail.eml')[0] as Buffer),
  ];
}

// ---- measurement ----

/** VmHWM of a process (its peak RSS since it started), in MB; 0 when it is gone. */
function peakRssMb(pid: number): number {
  try {
    return Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** Every process below `pid` (children, grandchildren…), from /proc, with its command line. */
function descendants(pid: number): { pid: number; command: string }[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Field 4 of stat, after the command in parentheses (which may itself hold spaces and parentheses).
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      parentOf.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const found: { pid: number; command: string }[] = [];
  const below = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [child, parent] of parentOf) {
      if (below.has(parent) && !below.has(child)) {
        below.add(child);
        grew = true;
        let command = '';
        try {
          command = readFileSync(`/proc/${child}/cmdline`, 'latin1').replaceAll('\0', ' ');
        } catch {
          // gone meanwhile
        }
        found.push({ pid: child, command });
      }
    }
  }
  return found;
}

/** Peak RSS of a process and everything below it, summed (an upper bound: the peaks need not coincide). */
function treePeakRssMb(pid: number): number {
  return [pid, ...descendants(pid).map((p) => p.pid)].reduce((sum, p) => sum + peakRssMb(p), 0);
}

/**
 * Peak RSS of this process since the last call, from the kernel (VmHWM, reset through /proc/self/clear_refs): a
 * conversion blocks the event loop while MuPDF renders, so a timer-driven sampler would miss its peak.
 */
function peakRssMbSinceLast(): number {
  const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'latin1'))?.[1]);
  writeFileSync('/proc/self/clear_refs', '5');
  return kb / 1024;
}

async function measure(inputs: Buffer[], convert: (input: Buffer) => Promise<Output>, passes: number): Promise<Measured> {
  const first = performance.now();
  await convert(inputs[0] as Buffer); // warm-up: module loading, WASM instantiation, font caches, child processes
  const m: Measured = { ms: [], cpuMs: [], firstMs: performance.now() - first, passes, pages: 0, inBytes: 0, outBytes: 0, kinds: {}, renderMs: 0, steps: {}, peakRssMb: 0, helperRssMb: {} };
  peakRssMbSinceLast();
  for (let r = 0; r < passes; r++) {
    for (const input of inputs) {
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      const out = await convert(input);
      m.ms.push(performance.now() - t0);
      const cpu = process.cpuUsage(cpu0);
      m.cpuMs.push((cpu.user + cpu.system) / 1000);
      m.pages += out.pages;
      m.inBytes += input.length;
      m.outBytes += out.bytes;
      m.renderMs += out.renderMs ?? 0;
      for (const [step, ms] of Object.entries(out.steps ?? {})) (m.steps[step] ??= []).push(ms);
      for (const k of out.kinds) m.kinds[k] = (m.kinds[k] ?? 0) + 1;
    }
  }
  m.peakRssMb = peakRssMbSinceLast();
  return m;
}

/** In a child process (a fresh heap, like a converter child): one row, ours then the baseline, as JSON. */
async function runRow(index: number, dir: string): Promise<void> {
  const row = rows(dir)[index] as Row;
  try {
    const ours = await measure(row.inputs, row.convert, row.passes ?? repeat);
    ours.helperRssMb = row.helperRss?.() ?? {};
    const base = row.baseline ? await measure(row.inputs, row.baseline, row.passes ?? repeat) : null;
    process.stdout.write(`${JSON.stringify({ ours, base })}\n`);
  } finally {
    await row.close?.();
  }
}

async function rowInChild(index: number, dir: string): Promise<{ ours: Measured; base: Measured | null }> {
  const script = fileURLToPath(import.meta.url);
  const argv = [...process.execArgv, script, '--row', String(index), '--inputs', dir, '--repeat', String(repeat), '--dpi', String(dpi), ...(quick ? ['--quick'] : [])];
  // As in the converter pool's children (converter-pool.ts): fewer glibc malloc arenas for sharp's threads.
  const env = { ...process.env, MALLOC_ARENA_MAX: '2' };
  const { stdout } = await promisify(execFile)(process.execPath, argv, { maxBuffer: 16 * 1024 * 1024, env });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as { ours: Measured; base: Measured | null };
}

/** Per step: p50/p95 per attachment and the mean per page, e.g. `libreoffice 410/530 (137/page)`. */
function stepsCell(m: Measured): string {
  return Object.entries(m.steps)
    .map(([step, ms]) => `${step} ${fmt(percentile(ms, 50), 0)}/${fmt(percentile(ms, 95), 0)} (${fmt(ms.reduce((a, b) => a + b, 0) / m.pages, 0)}/page)`)
    .join(', ');
}

function line(row: Row, ours: Measured, base: Measured | null): string[] {
  const verdicts = row.targets.map((t) => `${t.met(ours, base) ? '✓' : '✗'} ${t.label}`).join(', ');
  return [
    row.label,
    String(ours.pages / ours.passes),
    Object.entries(ours.kinds).map(([k, n]) => `${k}×${n / ours.passes}`).join(' '),
    String(ours.ms.length),
    fmt(ours.firstMs, 0),
    fmt(percentile(ours.ms, 50)),
    fmt(percentile(ours.ms, 95)),
    // Rows that start processes of their own do their work there, out of this process's CPU time.
    row.helperRss ? '-' : fmt(percentile(ours.cpuMs, 50)),
    fmt(msPerPage(ours)),
    fmt(kbPerPage(ours)),
    fmt(ours.outBytes / ours.inBytes, 2),
    fmt(ours.peakRssMb, 0),
    Object.entries(ours.helperRssMb).map(([k, mb]) => `${k} ${fmt(mb, 0)}`).join(', ') || '-',
    base ? fmt(msPerPage(base)) : '-',
    base ? fmt(base.renderMs / base.pages) : '-',
    base ? fmt(kbPerPage(base)) : '-',
    stepsCell(ours) || '-',
    verdicts,
  ];
}

async function main(): Promise<void> {
  const load = readFileSync('/proc/loadavg', 'latin1').split(' ').slice(0, 3).join(' ');
  console.log(`sanitize bench: ${dpi} dpi, ${repeat} pass(es), ${os.cpus().length} cores, load ${load}, node ${process.version}${quick ? ', quick' : ''}`);
  const started = performance.now();
  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-sanitize-'));
  try {
    await writeInputs(root);
    const header = [
      'row', 'pages', 'page kinds', 'n', 'first ms', 'p50 ms', 'p95 ms', 'CPU p50 ms', 'ms/page', 'KB/page', 'out/in', 'peak RSS MB',
      'helpers peak RSS MB', 'poppler ms/page', '(pdftoppm alone)', 'poppler KB/page', 'steps p50/p95 ms', 'targets',
    ];
    const lines: string[][] = [];
    const summary: string[][] = [];
    const json: unknown[] = [];
    for (const [i, row] of rows(root).entries()) {
      const { ours, base } = await rowInChild(i, root);
      lines.push(line(row, ours, base));
      console.log(lines.at(-1)?.join(' | '));
      for (const t of row.targets) summary.push([row.label, t.label, t.figure(ours, base), t.met(ours, base) ? '✓' : '✗']);
      json.push({
        label: row.label,
        p50Ms: p50(ours),
        msPerPage: msPerPage(ours),
        kbPerPage: kbPerPage(ours),
        outPerIn: ours.outBytes / ours.inBytes,
        peakRssMb: ours.peakRssMb,
        popplerMsPerPage: base ? msPerPage(base) : null,
        targets: row.targets.map((t) => ({ label: t.label, measured: t.figure(ours, base), met: t.met(ours, base) })),
      });
    }
    if (typeof args.json === 'string') {
      writeFileSync(args.json, `${JSON.stringify({ date: new Date().toISOString(), load, dpi, repeat, quick, rows: json }, null, 1)}\n`);
    }
    console.log(`\n${table(header, lines, 3)}`);
    console.log(
      "\nEach row runs in a fresh child process; peak RSS is that process's during our conversions, helpers' that of soffice's process tree and of the largest converter child." +
        " n: conversions measured after the first (shown apart: cold). CPU: of the row's process, all threads. Poppler: pdftoppm → PNG → pdf-lib embedPng, pdftoppm alone in brackets (start-up included).",
    );
    console.log(`\n${table(['row', 'target', 'measured', 'met'], summary, 3)}`);
    console.log(`\nload at the end ${readFileSync('/proc/loadavg', 'latin1').split(' ').slice(0, 3).join(' ')}; ${fmt((performance.now() - started) / 1000, 0)} s in all`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (args.row !== undefined) await runRow(Number(args.row), args.inputs as string);
else await main();
