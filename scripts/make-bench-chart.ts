/**
 * Draws docs/img/bench-sanitize.png from the JSON of a `npm run bench:sanitize -- --json FILE` run: for each timed
 * row, our time as a share of its target (the line at 100 %), and the poppler baseline's beside the PDF rows.
 *
 *   npx tsx scripts/make-bench-chart.ts FILE [OUT.png]
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';

interface BenchRow {
  label: string;
  p50Ms: number;
  msPerPage: number;
  popplerMsPerPage: number | null;
}

interface Bar {
  label: string;
  value: number;
  target: number;
  unit: string;
  baseline?: number;
}

/** Which figure of a row is held against which target (issue 9's targets). */
function barOf(r: BenchRow): Bar | null {
  if (r.label.startsWith('image:')) return { label: r.label.slice(7), value: r.p50Ms, target: 100, unit: 'ms p50' };
  if (r.label.startsWith('pdf:')) return { label: r.label.slice(5), value: r.msPerPage, target: 250, unit: 'ms/page', baseline: r.popplerMsPerPage ?? undefined };
  if (r.label.startsWith('office: docx')) return { label: 'docx 3 pages (LibreOffice warm + rebuild)', value: r.p50Ms, target: 2_000, unit: 'ms p50' };
  if (r.label.startsWith('mail')) return { label: 'mixed mail end to end', value: r.p50Ms, target: 6_000, unit: 'ms p50' };
  return null;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function svg(bars: Bar[], title: string): string {
  const W = 1000;
  const left = 330;
  const scaleMax = 4; // 400 % of the target is the right edge; longer bars are cut and labelled
  const px = (share: number) => ((W - left - 40) * Math.min(share, scaleMax)) / scaleMax;
  const rowH = 46;
  const top = 70;
  const H = top + bars.length * rowH + 50;
  const parts: string[] = [
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="20" y="34" font-size="20" font-weight="bold">${esc(title)}</text>`,
    `<text x="20" y="56" font-size="13" fill="#555">bar: our figure as a share of its target (line = target); grey: plain pdftoppm → PNG → pdf-lib</text>`,
  ];
  bars.forEach((b, i) => {
    const y = top + i * rowH;
    const share = b.value / b.target;
    parts.push(`<text x="20" y="${y + 20}" font-size="14">${esc(b.label)}</text>`);
    parts.push(`<rect x="${left}" y="${y + 6}" width="${px(share)}" height="16" fill="${share <= 1 ? '#2e7d32' : '#c62828'}"/>`);
    parts.push(`<text x="${left + px(share) + 6}" y="${y + 19}" font-size="13">${Math.round(b.value)} ${b.unit} (target ${b.target})</text>`);
    if (b.baseline !== undefined) {
      const bs = b.baseline / b.target;
      parts.push(`<rect x="${left}" y="${y + 25}" width="${px(bs)}" height="12" fill="#9e9e9e"/>`);
      const text = `poppler ${Math.round(b.baseline)} ${b.unit}${bs > scaleMax ? ' (bar cut at 400 %)' : ''}`;
      // A long bar runs (almost) to the edge: its label goes inside it.
      const inside = bs > scaleMax * 0.6;
      parts.push(`<text x="${inside ? left + px(bs) - 8 : left + px(bs) + 6}" y="${y + 36}" font-size="12" fill="${inside ? '#fff' : '#555'}" text-anchor="${inside ? 'end' : 'start'}">${esc(text)}</text>`);
    }
  });
  const x100 = left + px(1);
  parts.push(`<line x1="${x100}" y1="${top - 4}" x2="${x100}" y2="${H - 40}" stroke="#333" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="${x100 - 30}" y="${H - 22}" font-size="12">target</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="Noto Sans CJK JP, sans-serif">${parts.join('')}</svg>`;
}

const [file, out = 'docs/img/bench-sanitize.png'] = process.argv.slice(2);
if (!file) throw new Error('usage: npx tsx scripts/make-bench-chart.ts BENCH.json [OUT.png]');
const run = JSON.parse(readFileSync(file, 'utf8')) as { date: string; load: string; rows: BenchRow[] };
const bars = run.rows.map(barOf).filter((b): b is Bar => b !== null);
const title = `npm run bench:sanitize — ${run.date.slice(0, 10)}, 2 cores, load ${run.load.split(' ')[0]}`;
await sharp(Buffer.from(svg(bars, title))).png().toFile(out);
console.log(`${out}: ${bars.length} bars`);
