/**
 * Chooses how one rendered page is stored: text-like pages as 1-bit (bilevel) or few-colour (palette) samples with
 * lossless Flate compression, everything else as JPEG made by sharp (no metadata). A text page at 150 dpi is about
 * 2 megapixels: as 8-bit RGB it costs hundreds of kilobytes, as 1 bit per pixel it deflates to tens.
 *
 * The lossless kinds are kept as PNG-filtered rows (one filter byte per row) compressed with zlib: the same bytes
 * are a PNG's IDAT and a PDF image stream with /DecodeParms << /Predictor 15 >>, so either output costs one deflate.
 */
import zlib from 'node:zlib';
import sharp from 'sharp';

export type PageKind = 'bilevel' | 'palette' | 'jpeg';

export interface LosslessPage {
  kind: 'bilevel' | 'palette';
  width: number;
  height: number;
  bitsPerComponent: 1 | 2 | 4;
  /** RGB triplets of the palette (palette pages); bilevel samples are 0 = black, 1 = white. */
  palette: Buffer | null;
  /** zlib stream of PNG-filtered rows (filter type 0 on every row). */
  deflated: Buffer;
}

export interface JpegPage {
  kind: 'jpeg';
  width: number;
  height: number;
  channels: 1 | 3;
  jpeg: Buffer;
}

export type EncodedPage = LosslessPage | JpegPage;

/** A page rendered as contiguous 8-bit RGB. */
export interface RgbPixels {
  rgb: Buffer;
  width: number;
  height: number;
}

/** Every this many pixels in each direction one is sampled to classify a page (1/16 of the pixels). */
const SAMPLE_STEP_PX = 4;
/** A pixel whose channels differ by at most this much counts as grey. */
const GREY_CHROMA_MAX = 40;
/**
 * A sample is flat when its right and lower neighbours differ from it by at most this much in every channel:
 * the inside of a fill, a stroke or the paper. The anti-aliased edges of text are not flat; a photograph's flat
 * samples are spread over many colours.
 */
const FLAT_CHANNEL_DELTA = 12;
/** Luma between these bounds is a mid-tone. */
const MID_TONE_LUMA = [64, 200] as const;
/**
 * A grey page is text or line art, stored 1-bit, when at most this fraction of its samples are flat mid-tones
 * (grey fills, pictures): the mid-tones of anti-aliased text are at edges.
 */
const BILEVEL_FLAT_MID_TONE_MAX = 0.01;
/** Tolerated fraction of coloured samples on a bilevel page (a coloured dot, a stamp's edge). */
const BILEVEL_COLOUR_MAX = 0.001;
/** Luma below which a pixel of a bilevel page is black; above the midpoint so that thin anti-aliased strokes stay. */
const BILEVEL_THRESHOLD_LUMA = 176;
/** Colours of a palette page (4 bits per sample), black and white included. */
const PALETTE_COLOURS_MAX = 16;
/** A colour (5 bits per channel) enters the palette when at least this fraction of the samples are flat in it. */
const PALETTE_COLOUR_SHARE_MIN = 0.002;
/**
 * A page is few-colour when this fraction of its flat samples have a palette colour; edges are then mapped to the
 * nearest entry. A photograph's flat areas (sky, skin) are gradients over many colours and fall short.
 */
const PALETTE_FLAT_COVERAGE_MIN = 0.95;
/** A page with more than this fraction of samples not flat is a picture (grain, texture), even in few colours. */
const PALETTE_BUSY_MAX = 0.4;
/** JPEG quality of photo-like pages: ordinary viewing quality at screen and print sizes. */
const PAGE_JPEG_QUALITY = 75;
/** zlib level of lossless pages: 1-bit text rows compress well already at a fast level. */
const PAGE_DEFLATE_LEVEL = 6;

const luma = (r: number, g: number, b: number): number => (r * 77 + g * 150 + b * 29) >> 8;

interface Classification {
  kind: PageKind;
  /** Every sample was grey (a JPEG page is then stored with one channel). */
  grey: boolean;
  /** The palette for a palette page. */
  palette: number[][];
}

const BLACK_BIN = 0;
const WHITE_BIN = 32767;

/** Looks at a sparse sample of the page: grey or colour, flat mid-tones, the colours of its flat areas. */
function classifyPage(page: RgbPixels): Classification {
  const { rgb, width, height } = page;
  // Flat samples by colour, 5 bits per channel, with the sums of each bin's colours for its mean.
  const counts = new Uint32Array(32768);
  const sums = new Float64Array(32768 * 3);
  let samples = 0;
  let flat = 0;
  let colour = 0;
  let flatMid = 0;
  const near = (i: number, j: number) =>
    Math.abs((rgb[i] as number) - (rgb[j] as number)) <= FLAT_CHANNEL_DELTA &&
    Math.abs((rgb[i + 1] as number) - (rgb[j + 1] as number)) <= FLAT_CHANNEL_DELTA &&
    Math.abs((rgb[i + 2] as number) - (rgb[j + 2] as number)) <= FLAT_CHANNEL_DELTA;
  for (let y = 0; y + 1 < height; y += SAMPLE_STEP_PX) {
    for (let x = 0; x + 1 < width; x += SAMPLE_STEP_PX) {
      const i = (y * width + x) * 3;
      const r = rgb[i] as number;
      const g = rgb[i + 1] as number;
      const b = rgb[i + 2] as number;
      samples++;
      if (Math.max(r, g, b) - Math.min(r, g, b) > GREY_CHROMA_MAX) colour++;
      if (!near(i, i + 3) || !near(i, i + width * 3)) continue;
      flat++;
      const l = luma(r, g, b);
      if (l > MID_TONE_LUMA[0] && l < MID_TONE_LUMA[1]) flatMid++;
      const bin = ((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3);
      counts[bin] = (counts[bin] as number) + 1;
      sums[bin * 3] = (sums[bin * 3] as number) + r;
      sums[bin * 3 + 1] = (sums[bin * 3 + 1] as number) + g;
      sums[bin * 3 + 2] = (sums[bin * 3 + 2] as number) + b;
    }
  }
  const grey = colour === 0;
  if (colour <= BILEVEL_COLOUR_MAX * samples && flatMid <= BILEVEL_FLAT_MID_TONE_MAX * samples) return { kind: 'bilevel', grey, palette: [] };
  const common = [...counts.keys()]
    .filter((k) => k !== BLACK_BIN && k !== WHITE_BIN && (counts[k] as number) >= PALETTE_COLOUR_SHARE_MIN * samples)
    .sort((a, b) => (counts[b] as number) - (counts[a] as number))
    .slice(0, PALETTE_COLOURS_MAX - 2);
  const covered = [BLACK_BIN, WHITE_BIN, ...common].reduce((n, k) => n + (counts[k] as number), 0);
  if (covered < PALETTE_FLAT_COVERAGE_MIN * flat || samples - flat > PALETTE_BUSY_MAX * samples) return { kind: 'jpeg', grey, palette: [] };
  const mean = (k: number) => [0, 1, 2].map((c) => Math.round((sums[k * 3 + c] as number) / (counts[k] as number)));
  return { kind: 'palette', grey, palette: [[0, 0, 0], [255, 255, 255], ...common.map(mean)] };
}

/** One sample per pixel (`bits` wide) packed into rows, each prefixed with PNG filter type 0 (None), deflated. */
function deflateRows(samples: Uint8Array, width: number, height: number, bits: 1 | 2 | 4): Buffer {
  const rowBytes = Math.ceil((width * bits) / 8);
  const perByte = 8 / bits;
  const raw = Buffer.alloc((rowBytes + 1) * height);
  let src = 0;
  for (let y = 0; y < height; y++) {
    let at = y * (rowBytes + 1) + 1;
    let acc = 0;
    let n = 0;
    for (let x = 0; x < width; x++) {
      acc = (acc << bits) | (samples[src++] as number);
      if (++n === perByte) {
        raw[at++] = acc;
        acc = 0;
        n = 0;
      }
    }
    if (n > 0) raw[at] = acc << (8 - n * bits);
  }
  return zlib.deflateSync(raw, { level: PAGE_DEFLATE_LEVEL });
}

function encodeBilevel({ rgb, width, height }: RgbPixels): LosslessPage {
  const samples = new Uint8Array(width * height);
  for (let p = 0, i = 0; p < samples.length; p++, i += 3) {
    samples[p] = luma(rgb[i] as number, rgb[i + 1] as number, rgb[i + 2] as number) >= BILEVEL_THRESHOLD_LUMA ? 1 : 0;
  }
  return { kind: 'bilevel', width, height, bitsPerComponent: 1, palette: null, deflated: deflateRows(samples, width, height, 1) };
}

function nearestEntry(palette: number[][], r: number, g: number, b: number): number {
  let best = 0;
  let bestDistance = Infinity;
  palette.forEach(([pr = 0, pg = 0, pb = 0], p) => {
    const d = (pr - r) ** 2 + (pg - g) ** 2 + (pb - b) ** 2;
    if (d < bestDistance) [best, bestDistance] = [p, d];
  });
  return best;
}

function encodePalette({ rgb, width, height }: RgbPixels, palette: number[][]): LosslessPage {
  // Nearest palette entry per 5-bit-per-channel colour, found on first use (at most 32768 searches).
  const nearest = new Int8Array(32768).fill(-1);
  const samples = new Uint8Array(width * height);
  for (let p = 0, i = 0; p < samples.length; p++, i += 3) {
    const key = (((rgb[i] as number) >> 3) << 10) | (((rgb[i + 1] as number) >> 3) << 5) | ((rgb[i + 2] as number) >> 3);
    let entry = nearest[key] as number;
    if (entry < 0) entry = nearest[key] = nearestEntry(palette, rgb[i] as number, rgb[i + 1] as number, rgb[i + 2] as number);
    samples[p] = entry;
  }
  const bits = palette.length <= 2 ? 1 : palette.length <= 4 ? 2 : 4;
  return { kind: 'palette', width, height, bitsPerComponent: bits, palette: Buffer.from(palette.flat()), deflated: deflateRows(samples, width, height, bits) };
}

async function encodeJpeg({ rgb, width, height }: RgbPixels, grey: boolean): Promise<JpegPage> {
  let image = sharp(rgb, { raw: { width, height, channels: 3 } });
  if (grey) image = image.toColourspace('b-w');
  const jpeg = await image.jpeg({ quality: PAGE_JPEG_QUALITY }).toBuffer();
  return { kind: 'jpeg', width, height, channels: grey ? 1 : 3, jpeg };
}

/** Encodes one rendered page in the cheapest form that keeps it readable. */
export async function encodePage(page: RgbPixels): Promise<EncodedPage> {
  const c = classifyPage(page);
  if (c.kind === 'bilevel') return encodeBilevel(page);
  if (c.kind === 'palette') return encodePalette(page, c.palette);
  return encodeJpeg(page, c.grey);
}

/** One PNG chunk: length, type, data, CRC (also used by the tests to build hostile PNGs). */
export function pngChunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(data, zlib.crc32(head.subarray(4))), 0);
  return Buffer.concat([head, data, crc]);
}

/** A PNG of a lossless page: greyscale 1-bit (bilevel) or indexed colour (palette); no ancillary chunks. */
export function losslessPng(page: LosslessPage): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(page.width, 0);
  ihdr.writeUInt32BE(page.height, 4);
  ihdr[8] = page.bitsPerComponent;
  ihdr[9] = page.palette ? 3 : 0; // colour type: indexed or greyscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    ...(page.palette ? [pngChunk('PLTE', page.palette)] : []),
    pngChunk('IDAT', page.deflated),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}
