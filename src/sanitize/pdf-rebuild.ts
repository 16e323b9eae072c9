/**
 * PDF → a new PDF of page images (or one image per page): each page is rendered to pixels by MuPDF, as a viewer
 * shows it (annotation appearances included, since they become pixels), and only those pixels go out. No object
 * of the input — fonts, text, annotations, actions, JavaScript, forms, embedded files, metadata — is ever copied.
 *
 * MuPDF repairs broken files (a bad xref, a truncated tail); that is fine, as only pixels leave. MuPDF's objects
 * live in WASM memory, which the garbage collector does not see: every document, page and pixmap is destroyed in
 * a `finally`, and MuPDF's cache of decoded resources is emptied after each document. Rendering is synchronous
 * WASM and cannot be interrupted: the converter pool's deadline (which kills the child process) bounds a page
 * that takes too long to draw.
 */
import type * as Mupdf from 'mupdf';
import type { Document, Page } from 'mupdf';
import { assembleImagePdf, type ImagePage } from './pdf-assemble.ts';
import { encodePage, losslessPng, type EncodedPage, type RgbPixels } from './page-encode.ts';
import type { SafeImage } from './image.ts';
import { ConversionError } from './types.ts';

export interface RebuiltPdf {
  pages: number;
  pdf?: Buffer;
  images?: SafeImage[];
  /** per page: 'bilevel' | 'palette' | 'jpeg', for the notice and the bench */
  pageKinds: string[];
}

/** Resolution when the caller names none: text stays readable, a page stays tens of kilobytes. */
const DEFAULT_DPI = 150;
/** Pages of one document; the config's sanitize.maxPages (same default) normally overrides it. */
const DEFAULT_MAX_PAGES = 200;
/** Input bytes: above the largest message the gateway accepts (50 MiB), so it only bounds direct callers. */
const MAX_INPUT_BYTES = 64 * 1024 * 1024;
/**
 * Bytes of the encoded page images of one document, kept in memory until assembled: 200 photo pages of A1 would
 * otherwise hold gigabytes. Past it: too-large (such a result could not be mailed anyway).
 */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/**
 * Pixels of one rendered page: A1 at 150 dpi (60 MB as RGB). A larger page is rendered at a lower resolution, so
 * a 200×200-inch page costs the same memory as an A1 one instead of 2.7 GB.
 */
const MAX_PAGE_PIXELS = 20_000_000;
/** Longest page side in points: 200 inches, the PDF limit for a page without UserUnit. Past it: too-large. */
const MAX_PAGE_SIDE_PT = 14_400;
/** A PDF's header must start within this many bytes (the spec allows leading junk, readers tolerate 1 KB). */
const HEADER_SEARCH_BYTES = 1024;

let mupdfModule: Promise<typeof Mupdf> | undefined;
/** MuPDF (a WASM module of ~10 MB) is loaded on the first PDF, not by a process that only re-encodes images. */
function loadMupdf(): Promise<typeof Mupdf> {
  return (mupdfModule ??= import('mupdf'));
}

/** Our own errors pass through; anything MuPDF throws becomes conversion-failed, naming what was being done. */
function failed(what: string, err: unknown): ConversionError {
  if (err instanceof ConversionError) return err;
  return new ConversionError('conversion-failed', `PDF: ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** Renders page `index` at `dpi` (lower for a huge page) to RGB; returns its displayed size in points too. */
function renderPage(mupdf: typeof Mupdf, doc: Document, index: number, dpi: number): { widthPt: number; heightPt: number; pixels: RgbPixels } {
  let page: Page | undefined;
  try {
    page = doc.loadPage(index);
    const [x0, y0, x1, y1] = page.getBounds();
    const widthPt = x1 - x0;
    const heightPt = y1 - y0;
    if (!(widthPt >= 1 && heightPt >= 1)) throw new ConversionError('conversion-failed', `PDF: page ${index + 1} has no usable size (${widthPt}×${heightPt} pt)`);
    if (widthPt > MAX_PAGE_SIDE_PT || heightPt > MAX_PAGE_SIDE_PT) {
      throw new ConversionError('too-large', `PDF: page ${index + 1} is ${Math.round(widthPt)}×${Math.round(heightPt)} pt, over ${MAX_PAGE_SIDE_PT} pt a side`);
    }
    // 0.995: MuPDF rounds the pixmap's edges outwards, up to a pixel on each side.
    const scale = Math.min(dpi / 72, 0.995 * Math.sqrt(MAX_PAGE_PIXELS / (widthPt * heightPt)));
    const pixmap = page.toPixmap([scale, 0, 0, scale, 0, 0], mupdf.ColorSpace.DeviceRGB, false, true);
    try {
      const width = pixmap.getWidth();
      const height = pixmap.getHeight();
      // A copy out of WASM memory, contiguous whatever the pixmap's stride.
      const samples = pixmap.getPixels();
      const stride = pixmap.getStride();
      const rgb = Buffer.alloc(width * height * 3);
      for (let y = 0; y < height; y++) rgb.set(samples.subarray(y * stride, y * stride + width * 3), y * width * 3);
      return { widthPt, heightPt, pixels: { rgb, width, height } };
    } finally {
      pixmap.destroy();
    }
  } catch (err) {
    throw failed(`page ${index + 1}`, err);
  } finally {
    page?.destroy();
  }
}

function pageImage(image: EncodedPage): SafeImage {
  return image.kind === 'jpeg'
    ? { data: image.jpeg, contentType: 'image/jpeg', ext: 'jpg' }
    : { data: losslessPng(image), contentType: 'image/png', ext: 'png' };
}

function openPdf(mupdf: typeof Mupdf, data: Buffer): Document {
  const header = data.subarray(0, HEADER_SEARCH_BYTES).indexOf('%PDF-');
  if (header < 0) throw new ConversionError('conversion-failed', 'PDF: no %PDF- header, not a PDF');
  try {
    return mupdf.Document.openDocument(data, 'application/pdf');
  } catch (err) {
    throw failed('cannot open', err);
  }
}

/**
 * Renders each page with MuPDF at `dpi` and assembles with pdf-lib a new PDF of page images only (as: 'pdf'), or
 * returns one image per page (as: 'images'). Throws ConversionError('encrypted') for an encrypted PDF that needs a
 * password, ('too-large') past maxPages or a page size limit, ('conversion-failed') for a broken file.
 */
export async function rebuildPdf(data: Buffer, opts: { dpi?: number; maxPages?: number; as: 'pdf' | 'images' }): Promise<RebuiltPdf> {
  const dpi = opts.dpi ?? DEFAULT_DPI;
  const maxPages = opts.maxPages ?? DEFAULT_MAX_PAGES;
  if (data.length > MAX_INPUT_BYTES) throw new ConversionError('too-large', `PDF: ${data.length} bytes, over ${MAX_INPUT_BYTES}`);
  const mupdf = await loadMupdf();
  const doc = openPdf(mupdf, data);
  try {
    if (doc.needsPassword()) throw new ConversionError('encrypted', 'PDF: encrypted, opening needs a password');
    let count: number;
    try {
      count = doc.countPages();
    } catch (err) {
      throw failed('cannot count pages', err);
    }
    if (count === 0) throw new ConversionError('conversion-failed', 'PDF: no pages');
    if (count > maxPages) throw new ConversionError('too-large', `PDF: ${count} pages, over ${maxPages}`);
    const pages: ImagePage[] = [];
    let outputBytes = 0;
    for (let i = 0; i < count; i++) {
      const { widthPt, heightPt, pixels } = renderPage(mupdf, doc, i, dpi);
      const image = await encodePage(pixels);
      outputBytes += image.kind === 'jpeg' ? image.jpeg.length : image.deflated.length;
      if (outputBytes > MAX_OUTPUT_BYTES) throw new ConversionError('too-large', `PDF: page images past ${MAX_OUTPUT_BYTES} bytes at page ${i + 1} of ${count}`);
      pages.push({ widthPt, heightPt, image });
    }
    const pageKinds = pages.map((p) => p.image.kind);
    if (opts.as === 'images') return { pages: count, images: pages.map((p) => pageImage(p.image)), pageKinds };
    return { pages: count, pdf: await assembleImagePdf(pages), pageKinds };
  } finally {
    doc.destroy();
    mupdf.emptyStore(); // decoded images and fonts cached for this document: the next one starts from nothing
  }
}
