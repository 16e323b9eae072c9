/**
 * Image attachments re-encoded from decoded pixels, so nothing of the original file survives but its picture:
 * no EXIF (GPS), XMP, IPTC, ICC profile (colours are converted to sRGB first) or comments, no bytes after the
 * image's end, only the first frame of an animation or of a multi-page TIFF. JPEG stays JPEG; PNG, GIF, WebP,
 * TIFF and BMP become PNG.
 *
 * The true type is read from the magic bytes and only these formats reach a decoder: sharp would also open SVG
 * (an XML parser that follows references) and libvips' other loaders. BMP, which sharp's libvips lacks, is decoded
 * by MuPDF's image loader. The pixel limit is checked against the header before any pixel is decoded.
 */
import sharp from 'sharp';
import { ConversionError } from './types.ts';

export interface SafeImage {
  data: Buffer;
  contentType: 'image/png' | 'image/jpeg';
  ext: 'png' | 'jpg';
}

/** Pixels of one image when the caller names no limit (the config's sanitize.maxImagePixels, same default). */
const DEFAULT_MAX_PIXELS = 100_000_000;
/** libvips work on one image: a 100-megapixel decode and encode takes a few seconds; more means a hostile file. */
const SHARP_TIMEOUT_S = 30;
/** A re-encoded JPEG may be at most this many times the input's size (a low-quality input must not balloon). */
const MAX_JPEG_GROWTH = 1.5;
/** Qualities tried in turn until the output is small enough; the first keeps a camera photo's detail. */
const JPEG_QUALITIES = [85, 70, 55, 40] as const;

type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'bmp';

function sniff(data: Buffer): ImageFormat | null {
  const starts = (bytes: number[], at = 0) => bytes.every((b, i) => data[at + i] === b);
  if (starts([0xff, 0xd8, 0xff])) return 'jpeg';
  if (starts([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (starts([0x47, 0x49, 0x46, 0x38])) return 'gif';
  if (starts([0x52, 0x49, 0x46, 0x46]) && starts([0x57, 0x45, 0x42, 0x50], 8)) return 'webp';
  if (starts([0x49, 0x49, 0x2a, 0x00]) || starts([0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (starts([0x42, 0x4d])) return 'bmp';
  return null;
}

function tooLarge(width: number, height: number, maxPixels: number): ConversionError {
  return new ConversionError('too-large', `image: ${width}×${height} pixels, over the limit of ${maxPixels}`);
}

/** BMP through MuPDF into raw RGB(A) that sharp takes; dimensions checked before the pixels are decoded. */
async function decodeBmp(data: Buffer, maxPixels: number): Promise<sharp.Sharp> {
  const mupdf = await import('mupdf');
  const image = new mupdf.Image(data);
  try {
    const [width, height] = [image.getWidth(), image.getHeight()];
    if (width * height > maxPixels) throw tooLarge(width, height, maxPixels);
    let pixmap = image.toPixmap();
    try {
      if (!pixmap.getColorSpace()?.isRGB()) {
        const rgb = pixmap.convertToColorSpace(mupdf.ColorSpace.DeviceRGB, true);
        pixmap.destroy();
        pixmap = rgb;
      }
      const channels = pixmap.getNumberOfComponents(); // colour components plus alpha
      if (channels !== 3 && channels !== 4) throw new ConversionError('conversion-failed', `image: BMP decoded to ${channels} channels`);
      const stride = pixmap.getStride();
      const samples = pixmap.getPixels();
      const raw = Buffer.alloc(width * height * channels);
      for (let y = 0; y < height; y++) raw.set(samples.subarray(y * stride, y * stride + width * channels), y * width * channels);
      return sharp(raw, { raw: { width, height, channels } });
    } finally {
      pixmap.destroy();
    }
  } finally {
    image.destroy();
  }
}

async function encodeJpeg(input: sharp.Sharp, inputBytes: number): Promise<Buffer> {
  let smallest: Buffer | undefined;
  for (const quality of JPEG_QUALITIES) {
    // No Huffman optimisation: it keeps every DCT coefficient of the picture in memory for a second pass. Without
    // it a camera photo re-encodes in half the time with half the peak memory, for about 15 % more bytes.
    const out = await input.clone().jpeg({ quality, optimiseCoding: false }).toBuffer();
    if (out.length <= MAX_JPEG_GROWTH * inputBytes) return out;
    if (!smallest || out.length < smallest.length) smallest = out;
  }
  return smallest as Buffer;
}

async function reencode(data: Buffer, format: ImageFormat, maxPixels: number): Promise<SafeImage> {
  // failOn 'error': warnings (a truncated scan line, an odd marker) still give a picture, made of pixels only.
  const input = format === 'bmp' ? await decodeBmp(data, maxPixels) : sharp(data, { limitInputPixels: maxPixels, failOn: 'error' });
  const meta = await input.metadata();
  const [width, height] = [meta.width, meta.height];
  if (width * height > maxPixels) throw tooLarge(width, height, maxPixels);
  // rotate(): EXIF orientation applied to the pixels, since the EXIF goes; toColourspace: ICC → sRGB.
  const pipeline = input.rotate().toColourspace('srgb').timeout({ seconds: SHARP_TIMEOUT_S });
  if (format === 'jpeg') return { data: await encodeJpeg(pipeline, data.length), contentType: 'image/jpeg', ext: 'jpg' };
  const png = await pipeline.png({ palette: meta.isPalette === true, dither: 0 }).toBuffer();
  return { data: png, contentType: 'image/png', ext: 'png' };
}

/**
 * Decodes and re-encodes with sharp; metadata gone (EXIF incl. GPS, XMP, ICC only if converted to sRGB, comments),
 * trailing data after the image end gone, animated → first frame, pixel limit against decompression bombs. JPEG
 * input → JPEG (quality chosen so output ≤ 1.5× input size), anything else (PNG, GIF, WebP, TIFF, BMP) → PNG.
 * Throws ConversionError.
 */
export async function sanitizeImage(data: Buffer, opts?: { maxPixels?: number }): Promise<SafeImage> {
  const maxPixels = opts?.maxPixels ?? DEFAULT_MAX_PIXELS;
  const format = sniff(data);
  if (format === null) throw new ConversionError('unsupported-type', 'image: not JPEG, PNG, GIF, WebP, TIFF or BMP');
  try {
    return await reencode(data, format, maxPixels);
  } catch (err) {
    if (err instanceof ConversionError) throw err;
    const message = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(message)) throw new ConversionError('too-large', `image: ${message}`, { cause: err });
    throw new ConversionError('conversion-failed', `image (${format}): ${message}`, { cause: err });
  }
}
