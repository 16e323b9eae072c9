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
 * A row is one entry of `rows()`: a label, its inputs, its conversion, an optional baseline and its targets. A row
 * for office documents is `{ label, inputs: read('report.docx'), convert: async (b) => viaRebuild(await
 * officeToPdf(b, 'docx')), targets }` with the file written by `writeInputs`; a whole mixed mail likewise.
 *
 * Options: --quick (fewer inputs, one pass), --repeat N (passes over the inputs, default 3), --dpi N (150).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { PDFDocument } from 'pdf-lib';
import sharp from 'sharp';
import { sanitizeImage } from '../src/sanitize/image.ts';
import { rebuildPdf } from '../src/sanitize/pdf-rebuild.ts';
import { fmt, percentile, table } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    repeat: { type: 'string' },
    dpi: { type: 'string', default: '150' },
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

/** What one conversion produced. */
interface Output {
  bytes: number;
  pages: number;
  kinds: string[];
  /** Of the baseline: the time pdftoppm alone took. */
  renderMs?: number;
}

interface Measured {
  ms: number[];
  pages: number;
  inBytes: number;
  outBytes: number;
  kinds: Record<string, number>;
  renderMs: number;
  peakRssMb: number;
}

interface Target {
  label: string;
  met: (ours: Measured, baseline: Measured | null) => boolean;
}

interface Row {
  label: string;
  inputs: Buffer[];
  convert: (input: Buffer) => Promise<Output>;
  baseline?: (input: Buffer) => Promise<Output>;
  targets: Target[];
}

const msPerPage = (m: Measured) => m.ms.reduce((a, b) => a + b, 0) / m.pages;
const kbPerPage = (m: Measured) => m.outBytes / 1024 / m.pages;

const targets = {
  imageP50: { label: 'p50 ≤ 100 ms', met: (m) => percentile(m.ms, 50) <= 100 },
  growth: { label: 'out ≤ 1.5× in', met: (m) => m.outBytes <= 1.5 * m.inBytes },
  perPage: { label: '≤ 250 ms/page', met: (m) => msPerPage(m) <= 250 },
  fasterThanPoppler: { label: '< poppler', met: (m, b) => b !== null && msPerPage(m) < msPerPage(b) },
  textPage: { label: '≤ 80 KB/page', met: (m) => kbPerPage(m) <= 80 },
  rss: { label: `RSS ≤ ${TARGET_RSS_MB} MB`, met: (m) => m.peakRssMb <= TARGET_RSS_MB },
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

// ---- conversions ----

async function viaImage(input: Buffer): Promise<Output> {
  const out = await sanitizeImage(input);
  return { bytes: out.data.length, pages: 1, kinds: [out.ext] };
}

async function viaRebuild(input: Buffer): Promise<Output> {
  const r = await rebuildPdf(input, { dpi, as: 'pdf' });
  return { bytes: (r.pdf as Buffer).length, pages: r.pages, kinds: r.pageKinds };
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
  ];
}

// ---- measurement ----

/**
 * Peak RSS of this process since the last call, from the kernel (VmHWM, reset through /proc/self/clear_refs): a
 * conversion blocks the event loop while MuPDF renders, so a timer-driven sampler would miss its peak.
 */
function peakRssMbSinceLast(): number {
  const kb = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'latin1'))?.[1]);
  writeFileSync('/proc/self/clear_refs', '5');
  return kb / 1024;
}

async function measure(inputs: Buffer[], convert: (input: Buffer) => Promise<Output>): Promise<Measured> {
  await convert(inputs[0] as Buffer); // warm-up: module loading, WASM instantiation, font caches
  const m: Measured = { ms: [], pages: 0, inBytes: 0, outBytes: 0, kinds: {}, renderMs: 0, peakRssMb: 0 };
  peakRssMbSinceLast();
  for (let r = 0; r < repeat; r++) {
    for (const input of inputs) {
      const t0 = performance.now();
      const out = await convert(input);
      m.ms.push(performance.now() - t0);
      m.pages += out.pages;
      m.inBytes += input.length;
      m.outBytes += out.bytes;
      m.renderMs += out.renderMs ?? 0;
      for (const k of out.kinds) m.kinds[k] = (m.kinds[k] ?? 0) + 1;
    }
  }
  m.peakRssMb = peakRssMbSinceLast();
  return m;
}

/** In a child process (a fresh heap, like a converter child): one row, ours then the baseline, as JSON. */
async function runRow(index: number, dir: string): Promise<void> {
  const row = rows(dir)[index] as Row;
  const ours = await measure(row.inputs, row.convert);
  const base = row.baseline ? await measure(row.inputs, row.baseline) : null;
  process.stdout.write(`${JSON.stringify({ ours, base })}\n`);
}

async function rowInChild(index: number, dir: string): Promise<{ ours: Measured; base: Measured | null }> {
  const script = fileURLToPath(import.meta.url);
  const argv = [...process.execArgv, script, '--row', String(index), '--inputs', dir, '--repeat', String(repeat), '--dpi', String(dpi)];
  const { stdout } = await promisify(execFile)(process.execPath, argv, { maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as { ours: Measured; base: Measured | null };
}

function line(row: Row, ours: Measured, base: Measured | null): string[] {
  const verdicts = row.targets.map((t) => `${t.met(ours, base) ? '✓' : '✗'} ${t.label}`).join(', ');
  return [
    row.label,
    String(ours.pages / repeat),
    Object.entries(ours.kinds).map(([k, n]) => `${k}×${n / repeat}`).join(' '),
    fmt(percentile(ours.ms, 50)),
    fmt(percentile(ours.ms, 95)),
    fmt(msPerPage(ours)),
    fmt(kbPerPage(ours)),
    fmt(ours.outBytes / ours.inBytes, 2),
    fmt(ours.peakRssMb, 0),
    base ? fmt(msPerPage(base)) : '-',
    base ? fmt(base.renderMs / base.pages) : '-',
    base ? fmt(kbPerPage(base)) : '-',
    verdicts,
  ];
}

async function main(): Promise<void> {
  console.log(`sanitize bench: ${dpi} dpi, ${repeat} pass(es), ${os.cpus().length} cores, node ${process.version}${quick ? ', quick' : ''}`);
  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-sanitize-'));
  try {
    await writeInputs(root);
    const header = ['row', 'pages', 'page kinds', 'p50 ms', 'p95 ms', 'ms/page', 'KB/page', 'out/in', 'peak RSS MB', 'poppler ms/page', '(pdftoppm alone)', 'poppler KB/page', 'targets'];
    const lines: string[][] = [];
    for (const [i, row] of rows(root).entries()) {
      const { ours, base } = await rowInChild(i, root);
      lines.push(line(row, ours, base));
      console.log(lines.at(-1)?.join(' | '));
    }
    console.log(`\n${table(header, lines, 3)}`);
    console.log('\nEach row runs in a fresh child process; peak RSS is that process\'s during our conversions. Poppler: pdftoppm → PNG → pdf-lib embedPng, pdftoppm alone in brackets (start-up included).');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (args.row !== undefined) await runRow(Number(args.row), args.inputs as string);
else await main();
