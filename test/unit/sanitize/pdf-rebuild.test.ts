/**
 * rebuildPdf on PDFs generated here (pdf-lib, MuPDF for encryption, by hand for broken structure): the rebuilt PDF
 * holds page images and nothing else of the input — checked on its objects, on its decompressed content streams
 * and with poppler's pdffonts/pdftotext — keeps the page count, size and visible content, stays small for a text
 * page; hostile files (encrypted, truncated, garbage, cyclic page tree, no pages, too many or too large pages)
 * become ConversionErrors with the right reason.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as mupdf from 'mupdf';
import {
  PDFArray,
  PDFDict,
  PDFDocument,
  PDFHexString,
  PDFName,
  PDFRawStream,
  PDFString,
  StandardFonts,
  decodePDFRawStream,
  rgb,
  type PDFFont,
  type PDFObject,
  type PDFPage,
} from 'pdf-lib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { reasonOf } from '../../helpers/conversion.ts';
import { rebuildPdf } from '../../../src/sanitize/pdf-rebuild.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'sekisho-pdf-rebuild-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const LOREM = 'The municipal office sends the quarterly budget report and the minutes of the council meeting. ';

/** A page of dense 10-point text, like a report. */
function fillWithText(page: PDFPage, font: PDFFont): void {
  for (let y = 800, line = 0; y > 40; y -= 13, line++) page.drawText(LOREM.repeat(2).slice(line % 40, line % 40 + 105), { x: 40, y, size: 10, font });
}

/** A PDF with every active or hidden thing the rebuild must drop, two pages of text. */
async function hostilePdf(): Promise<Buffer> {
  const doc = await PDFDocument.create();
  doc.setTitle('Secret title');
  doc.setAuthor('Secret author');
  doc.setProducer('Evil producer');
  const font = await doc.embedFont(StandardFonts.Helvetica);
  const ctx = doc.context;
  const page1 = doc.addPage([595, 842]);
  fillWithText(page1, font);
  const page2 = doc.addPage([842, 595]);
  page2.drawText('Second page, landscape', { x: 50, y: 500, size: 24, font, color: rgb(0.8, 0, 0) });

  const js = ctx.obj({ S: 'JavaScript', JS: PDFString.of('app.alert("pwned")') });
  doc.catalog.set(PDFName.of('OpenAction'), js);
  const jsRef = ctx.register(ctx.obj({ S: 'JavaScript', JS: PDFString.of('this.exportDataObject({cName: "payload"})') }));
  doc.catalog.set(PDFName.of('Names'), ctx.obj({ JavaScript: ctx.obj({ Names: [PDFString.of('startup'), jsRef] }) }));
  const xmp = ctx.stream('<x:xmpmeta xmlns:x="adobe:ns:meta/">secret xmp</x:xmpmeta>', { Type: 'Metadata', Subtype: 'XML' });
  doc.catalog.set(PDFName.of('Metadata'), ctx.register(xmp));
  const link = ctx.obj({
    Type: 'Annot',
    Subtype: 'Link',
    Rect: [40, 40, 300, 60],
    A: ctx.obj({ S: 'URI', URI: PDFString.of('http://evil.example/phish') }),
  });
  page1.node.set(PDFName.of('Annots'), ctx.obj([ctx.register(link)]));
  page1.node.set(PDFName.of('AA'), ctx.obj({ O: ctx.obj({ S: 'Launch', F: PDFString.of('cmd.exe') }) }));
  const field = doc.getForm().createTextField('applicant.name');
  field.setText('filled in');
  field.addToPage(page2, { x: 50, y: 300, width: 200, height: 30 });
  await doc.attach(Buffer.from('MZ fake program'), 'payload.exe', { mimeType: 'application/octet-stream', description: 'payload' });
  return Buffer.from(await doc.save());
}

/** Every name (as a key or a value) and string in every object of a PDF, and the decoded bytes of its streams. */
async function namesAndStreams(pdf: Buffer): Promise<{ names: Set<string>; strings: string[]; streams: Buffer[] }> {
  const doc = await PDFDocument.load(pdf, { updateMetadata: false });
  const names = new Set<string>();
  const strings: string[] = [];
  const streams: Buffer[] = [];
  const walk = (o: PDFObject | undefined): void => {
    if (o instanceof PDFName) names.add(o.asString().slice(1));
    else if (o instanceof PDFString || o instanceof PDFHexString) strings.push(o.decodeText());
    else if (o instanceof PDFArray) o.asArray().forEach(walk);
    else if (o instanceof PDFDict) {
      for (const [k, v] of o.entries()) {
        names.add(k.asString().slice(1));
        walk(v);
      }
    } else if (o instanceof PDFRawStream) {
      walk(o.dict);
      const isImage = o.dict.get(PDFName.of('Subtype')) === PDFName.of('Image');
      if (!isImage) streams.push(Buffer.from(decodePDFRawStream(o).decode()));
    }
  };
  for (const [, obj] of doc.context.enumerateIndirectObjects()) walk(obj);
  walk(doc.context.trailerInfo.Root);
  walk(doc.context.trailerInfo.Info);
  return { names, strings, streams };
}

/** Fraction of dark pixels of page `index` rendered back at 36 dpi. */
function inkOf(pdf: Buffer, index: number): number {
  const doc = mupdf.Document.openDocument(pdf, 'application/pdf');
  try {
    const page = doc.loadPage(index);
    const pix = page.toPixmap([0.5, 0, 0, 0.5, 0, 0], mupdf.ColorSpace.DeviceGray, false, true);
    const px = pix.getPixels();
    let dark = 0;
    for (const v of px) if (v < 128) dark++;
    const ratio = dark / px.length;
    pix.destroy();
    page.destroy();
    return ratio;
  } finally {
    doc.destroy();
  }
}

function poppler(tool: 'pdffonts' | 'pdftotext', pdf: Buffer): string {
  const file = path.join(tmp, `${tool}.pdf`);
  writeFileSync(file, pdf);
  return execFileSync(tool, tool === 'pdftotext' ? [file, '-'] : [file], { encoding: 'utf8' });
}


async function textPdf(pages: number, size: [number, number] = [595, 842]): Promise<Buffer> {
  const doc = await PDFDocument.create();
  const font = await doc.embedFont(StandardFonts.TimesRoman);
  for (let i = 0; i < pages; i++) fillWithText(doc.addPage(size), font);
  return Buffer.from(await doc.save());
}

describe('rebuildPdf', () => {
  it('keeps only page images: no script, action, link, annotation, form, attachment, font, text or metadata', async () => {
    const input = await hostilePdf();
    const before = await namesAndStreams(input);
    for (const n of ['JavaScript', 'JS', 'OpenAction', 'AA', 'URI', 'Annots', 'EmbeddedFile', 'AcroForm', 'Font', 'Launch', 'Metadata']) {
      expect(before.names.has(n), `fixture has /${n}`).toBe(true);
    }
    expect(poppler('pdftotext', input)).toContain('municipal office');
    expect(before.strings.join(' ')).toContain('pwned');

    const r = await rebuildPdf(input, { dpi: 100, as: 'pdf' });
    const out = r.pdf as Buffer;
    expect(r.pages).toBe(2);
    expect(r.pageKinds).toHaveLength(2);
    const after = await namesAndStreams(out);
    for (const n of ['JavaScript', 'JS', 'OpenAction', 'AA', 'URI', 'Annots', 'EmbeddedFile', 'EmbeddedFiles', 'AcroForm', 'Font', 'Launch', 'Metadata', 'Names', 'Producer', 'Creator', 'Title', 'Author', 'CreationDate', 'ModDate', 'Info']) {
      expect(after.names.has(n), `rebuilt PDF has /${n}`).toBe(false);
    }
    for (const s of after.streams) expect(s.toString('latin1')).not.toMatch(/\b(BT|Tj|TJ|Tf)\b/);
    const raw = out.toString('latin1').replace(/stream\r?\n[\s\S]*?endstream/g, ''); // the objects, without the (binary) image data
    const texts = [raw, ...after.strings, ...after.streams.map((s) => s.toString('latin1'))].join('\n');
    for (const s of ['pwned', 'evil.example', 'payload', 'Secret', 'secret xmp', 'cmd.exe', 'filled in', '/Info', '/Producer', '/ID']) {
      expect(texts.includes(s), s).toBe(false);
    }
    expect(poppler('pdffonts', out).split('\n').filter((l) => l.trim() !== '')).toHaveLength(2); // the header lines only
    expect(poppler('pdftotext', out).trim()).toBe('');

    const doc = await PDFDocument.load(out);
    expect(doc.getPages().map((p) => [Math.round(p.getWidth()), Math.round(p.getHeight())])).toEqual([
      [595, 842],
      [842, 595],
    ]);
    expect(inkOf(out, 0)).toBeGreaterThan(0.02); // the text block is there as pixels
    expect(inkOf(out, 1)).toBeGreaterThan(0.001); // the heading and the form field's border
  });

  it('stores a text page at 150 dpi as a bilevel image under 80 KB', async () => {
    const r = await rebuildPdf(await textPdf(1), { dpi: 150, as: 'pdf' });
    expect(r.pageKinds).toEqual(['bilevel']);
    expect((r.pdf as Buffer).length).toBeLessThan(80 * 1024);
    expect(inkOf(r.pdf as Buffer, 0)).toBeGreaterThan(0.02);
  });

  it('stores a photo page as a JPEG (one channel when grey) and a few-colour page as a palette image', async () => {
    const noise = Buffer.alloc(300 * 200 * 3);
    for (let i = 0; i < noise.length; i++) noise[i] = (i % 251) + Math.random() * 60;
    const doc = await PDFDocument.create();
    const photo = await doc.embedJpg(await sharp(noise, { raw: { width: 300, height: 200, channels: 3 } }).jpeg().toBuffer());
    doc.addPage([400, 300]).drawImage(photo, { x: 0, y: 0, width: 400, height: 300 });
    const chart = doc.addPage([400, 300]);
    chart.drawRectangle({ x: 50, y: 50, width: 100, height: 200, color: rgb(0.1, 0.3, 0.9) });
    chart.drawRectangle({ x: 200, y: 50, width: 100, height: 120, color: rgb(0.9, 0.5, 0.1) });
    const grey = await doc.embedJpg(await sharp(noise, { raw: { width: 300, height: 200, channels: 3 } }).greyscale().jpeg().toBuffer());
    doc.addPage([400, 300]).drawImage(grey, { x: 0, y: 0, width: 400, height: 300 });
    const r = await rebuildPdf(Buffer.from(await doc.save()), { as: 'pdf' });
    expect(r.pageKinds).toEqual(['jpeg', 'palette', 'jpeg']);
    const { names } = await namesAndStreams(r.pdf as Buffer);
    expect([...names].filter((n) => ['DCTDecode', 'Indexed', 'DeviceGray', 'DeviceRGB'].includes(n)).sort()).toEqual(['DCTDecode', 'DeviceGray', 'DeviceRGB', 'Indexed']);
    expect(inkOf(r.pdf as Buffer, 0)).toBeGreaterThan(0.05);
    const rendered = mupdf.Document.openDocument(r.pdf as Buffer, 'application/pdf');
    try {
      const pix = rendered.loadPage(1).toPixmap([1, 0, 0, 1, 0, 0], mupdf.ColorSpace.DeviceRGB, false);
      const px = pix.getPixels();
      const at = (x: number, y: number) => [...px.subarray((y * pix.getWidth() + x) * 3, (y * pix.getWidth() + x) * 3 + 3)];
      const [r0, g0, b0] = at(100, 150) as [number, number, number]; // inside the blue bar
      expect(b0).toBeGreaterThan(200);
      expect(r0).toBeLessThan(60);
      expect(g0).toBeLessThan(110);
      pix.destroy();
    } finally {
      rendered.destroy();
    }
  });

  it("as: 'images' returns one image per page at the page's size", async () => {
    const r = await rebuildPdf(await textPdf(3, [300, 200]), { dpi: 144, as: 'images' });
    expect(r.pdf).toBeUndefined();
    expect(r.images).toHaveLength(3);
    for (const img of r.images ?? []) {
      const meta = await sharp(img.data).metadata();
      expect(meta.format).toBe(img.ext === 'png' ? 'png' : 'jpeg');
      expect([meta.width, meta.height]).toEqual([600, 400]);
    }
  });

  it('renders a huge page at a lower resolution instead of allocating gigabytes, and rejects a larger one', async () => {
    const r = await rebuildPdf(await textPdf(1, [14_400, 14_400]), { dpi: 150, as: 'images' });
    const meta = await sharp((r.images ?? [])[0]?.data).metadata();
    expect(meta.width * meta.height).toBeLessThanOrEqual(20_000_000);
    expect(meta.width).toBeGreaterThan(4000);
    expect(await reasonOf(rebuildPdf(await textPdf(1, [20_000, 600]), { as: 'pdf' }))).toBe('too-large');
  });

  it('rejects more pages than maxPages as too-large', async () => {
    expect(await reasonOf(rebuildPdf(await textPdf(3, [100, 100]), { maxPages: 2, as: 'pdf' }))).toBe('too-large');
  });

  it('rejects a PDF that needs a password as encrypted', async () => {
    const doc = new mupdf.PDFDocument(await textPdf(1, [200, 200]));
    const encrypted = Buffer.from(doc.saveToBuffer('encrypt=aes-256,user-password=secret,owner-password=owner').asUint8Array());
    doc.destroy();
    expect(encrypted.includes('/Encrypt')).toBe(true);
    expect(await reasonOf(rebuildPdf(encrypted, { as: 'pdf' }))).toBe('encrypted');
  });

  it('rejects a truncated PDF, a PDF without pages, a cyclic page tree and garbage as conversion-failed', async () => {
    const whole = await textPdf(2, [200, 200]);
    const empty = Buffer.from(await (await PDFDocument.create()).save({ addDefaultPage: false }));
    const cyclic = Buffer.from(
      '%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n' +
        '2 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >> endobj\n' +
        '3 0 obj << /Type /Pages /Kids [2 0 R] /Count 1 >> endobj\n' +
        'trailer << /Root 1 0 R >>\n%%EOF\n',
    );
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    for (const input of [whole.subarray(0, 300), empty, cyclic, garbage, Buffer.concat([Buffer.from('%PDF-1.7\n'), garbage])]) {
      expect(await reasonOf(rebuildPdf(input, { as: 'pdf' }))).toBe('conversion-failed');
    }
  });

  it('renders what MuPDF can repair of a PDF with a broken xref, as pixels only', async () => {
    const whole = (await textPdf(1, [200, 200])).toString('latin1');
    const broken = Buffer.from(whole.replace(/startxref\s+\d+/, 'startxref\n999999'), 'latin1');
    const r = await rebuildPdf(broken, { as: 'pdf' });
    expect(r.pages).toBe(1);
    expect((await namesAndStreams(r.pdf as Buffer)).names.has('Font')).toBe(false);
  });
});
