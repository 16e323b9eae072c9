/**
 * sanitizeImage on images generated here with sharp (and by hand where sharp cannot write the hostile part): the
 * re-encoded file carries no EXIF/GPS, XMP, ICC or comment, nothing after the image's end, one frame of an
 * animation; a pixel bomb and a non-image become ConversionErrors with the right reason.
 */
import zlib from 'node:zlib';
import sharp from 'sharp';
import { reasonOf } from '../../helpers/conversion.ts';
import { describe, expect, it } from 'vitest';
import { sanitizeImage } from '../../../src/sanitize/image.ts';
import { pngChunk } from '../../../src/sanitize/page-encode.ts';

/** A photo-like picture: a colour gradient with noise, so JPEG sizes behave like a photograph's. */
async function photoRgb(width: number, height: number): Promise<sharp.Sharp> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      raw[i] = (x * 255) / width + Math.random() * 30;
      raw[i + 1] = (y * 255) / height + Math.random() * 30;
      raw[i + 2] = ((x + y) * 127) / (width + height) + Math.random() * 30;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } });
}

/** A JPEG comment (COM segment) inserted right after SOI: sharp cannot write one. */
function withComment(jpeg: Buffer, text: string): Buffer {
  const body = Buffer.from(text, 'latin1');
  const segment = Buffer.concat([Buffer.from([0xff, 0xfe, (body.length + 2) >> 8, (body.length + 2) & 0xff]), body]);
  return Buffer.concat([jpeg.subarray(0, 2), segment, jpeg.subarray(2)]);
}



describe('sanitizeImage', () => {
  it('drops EXIF with GPS, XMP, the ICC profile and comments from a JPEG, keeping it a JPEG of the same size', async () => {
    const input = withComment(
      await (await photoRgb(320, 240))
        .jpeg({ quality: 90 })
        .withIccProfile('p3')
        .withExif({ IFD0: { Make: 'SekishoCam', Copyright: 'secret-owner' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '35/1 41/1 0/1' } })
        .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description exif:GPSLatitude="35,41N" xmlns:exif="http://ns.adobe.com/exif/1.0/"/></rdf:RDF></x:xmpmeta>')
        .toBuffer(),
      'camera comment',
    );
    const before = await sharp(input).metadata();
    expect(before.exif).toBeDefined();
    expect(before.icc).toBeDefined();
    expect(input.includes('GPS')).toBe(true);
    expect(input.includes('camera comment')).toBe(true);

    const out = await sanitizeImage(input);
    expect(out.contentType).toBe('image/jpeg');
    expect(out.ext).toBe('jpg');
    const after = await sharp(out.data).metadata();
    expect(after.format).toBe('jpeg');
    expect([after.width, after.height]).toEqual([320, 240]);
    expect(after.exif).toBeUndefined();
    expect(after.xmp).toBeUndefined();
    expect(after.icc).toBeUndefined();
    for (const marker of ['GPS', 'Exif', 'SekishoCam', 'secret-owner', 'xmpmeta', 'camera comment', 'ICC_PROFILE']) {
      expect(out.data.includes(marker), marker).toBe(false);
    }
  });

  it('applies the EXIF orientation to the pixels, since the tag is dropped', async () => {
    const input = await (await photoRgb(40, 20)).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    const after = await sharp((await sanitizeImage(input)).data).metadata();
    expect([after.width, after.height, after.orientation]).toEqual([20, 40, undefined]);
  });

  it('keeps a re-encoded JPEG within 1.5× the size of a low-quality input', async () => {
    const input = await (await photoRgb(640, 480)).jpeg({ quality: 30 }).toBuffer();
    const out = await sanitizeImage(input);
    expect(out.data.length).toBeLessThanOrEqual(1.5 * input.length);
  });

  it('drops data hidden after the IEND of a PNG and its text chunks', async () => {
    const png = await sharp({ create: { width: 30, height: 20, channels: 4, background: { r: 200, g: 10, b: 10, alpha: 0.5 } } })
      .png()
      .toBuffer();
    const iend = png.length - 12;
    const input = Buffer.concat([png.subarray(0, iend), pngChunk('tEXt', Buffer.from('Comment\0hidden-text')), png.subarray(iend), Buffer.from('MZ-TRAILING-PAYLOAD')]);
    const out = await sanitizeImage(input);
    expect(out.contentType).toBe('image/png');
    expect(out.data.includes('TRAILING-PAYLOAD')).toBe(false);
    expect(out.data.includes('hidden-text')).toBe(false);
    expect(out.data.subarray(-8, -4).toString('latin1')).toBe('IEND');
    const { data, info } = await sharp(out.data).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height, info.channels]).toEqual([30, 20, 4]);
    expect([...data.subarray(0, 4)]).toEqual([200, 10, 10, 128]);
  });

  it('turns an animated GIF into a PNG of its first frame', async () => {
    const frame = (r: number) => sharp({ create: { width: 16, height: 12, channels: 3, background: { r, g: 0, b: 0 } } }).png().toBuffer();
    const gif = await sharp(await Promise.all([frame(255), frame(0), frame(128)]), { join: { animated: true } })
      .gif()
      .toBuffer();
    expect((await sharp(gif, { pages: -1 }).metadata()).pages).toBe(3);

    const out = await sanitizeImage(gif);
    expect(out.contentType).toBe('image/png');
    const meta = await sharp(out.data).metadata();
    expect([meta.format, meta.width, meta.height, meta.pages ?? 1]).toEqual(['png', 16, 12, 1]);
    const { data } = await sharp(out.data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect(data[0]).toBeGreaterThan(240);
  });

  it('re-encodes WebP and TIFF to PNG', async () => {
    const base = sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 0, g: 0, b: 255 } } });
    for (const input of [await base.clone().webp({ lossless: true }).toBuffer(), await base.clone().tiff().toBuffer()]) {
      const out = await sanitizeImage(input);
      expect((await sharp(out.data).metadata()).format).toBe('png');
    }
  });

  it('decodes a BMP (which sharp cannot) to PNG with the same pixels', async () => {
    const [width, height] = [3, 2];
    const rowBytes = 12; // 3 pixels × 3 bytes = 9, padded to 4
    const pixels = Buffer.alloc(rowBytes * height);
    for (let x = 0; x < width; x++) pixels.set([255, 0, 0], x * 3); // bottom row blue (BGR)
    for (let x = 0; x < width; x++) pixels.set([0, 0, 255], rowBytes + x * 3); // top row red
    const header = Buffer.alloc(54);
    header.write('BM', 0, 'latin1');
    header.writeUInt32LE(54 + pixels.length, 2);
    header.writeUInt32LE(54, 10);
    header.writeUInt32LE(40, 14);
    header.writeInt32LE(width, 18);
    header.writeInt32LE(height, 22);
    header.writeUInt16LE(1, 26);
    header.writeUInt16LE(24, 28);
    header.writeUInt32LE(pixels.length, 34);

    const out = await sanitizeImage(Buffer.concat([header, pixels]));
    expect(out.contentType).toBe('image/png');
    const { data, info } = await sharp(out.data).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([3, 2]);
    expect([...data.subarray(0, 3)]).toEqual([255, 0, 0]);
    expect([...data.subarray(9, 12)]).toEqual([0, 0, 255]);
  });

  it('rejects a PNG declaring 60000×60000 pixels as too-large without decoding it', async () => {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(60_000, 0);
    ihdr.writeUInt32BE(60_000, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    const bomb = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      pngChunk('IHDR', ihdr),
      pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(1024 * 1024))),
      pngChunk('IEND', Buffer.alloc(0)),
    ]);
    expect(await reasonOf(sanitizeImage(bomb))).toBe('too-large');
  });

  it('applies a caller-given pixel limit', async () => {
    const png = await sharp({ create: { width: 100, height: 100, channels: 3, background: 'white' } }).png().toBuffer();
    expect(await reasonOf(sanitizeImage(png, { maxPixels: 9_999 }))).toBe('too-large');
    await expect(sanitizeImage(png, { maxPixels: 10_000 })).resolves.toMatchObject({ ext: 'png' });
  });

  it('rejects what is not an image, and a broken one, with a ConversionError', async () => {
    expect(await reasonOf(sanitizeImage(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><image href="file:///etc/passwd"/></svg>')))).toBe('unsupported-type');
    expect(await reasonOf(sanitizeImage(Buffer.from('MZ\x90\0 this is a program')))).toBe('unsupported-type');
    expect(await reasonOf(sanitizeImage(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3])))).toBe('conversion-failed');
    expect(await reasonOf(sanitizeImage(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a])))).toBe('conversion-failed');
  });
});
