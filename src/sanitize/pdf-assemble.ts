/**
 * Writes a new PDF whose pages hold one image each and nothing else: no fonts, text, annotations, actions,
 * outlines or metadata (no Info dictionary, no XMP). The image XObjects are built by hand through pdf-lib's
 * low-level context, because embedPng would widen 1-bit and indexed pages to RGB and embedJpg would keep a JPEG's
 * EXIF; JPEG page images come from sharp and carry no metadata.
 */
import { PDFDocument, PDFHexString, PDFName, concatTransformationMatrix, drawObject, popGraphicsState, pushGraphicsState, type PDFContext } from 'pdf-lib';
import type { EncodedPage } from './page-encode.ts';

export interface ImagePage {
  /** Page size in PDF points (1/72 inch), as the original page is displayed. */
  widthPt: number;
  heightPt: number;
  image: EncodedPage;
}

/** A stream dictionary as pdf-lib's context takes it (strings become names). */
type StreamDict = NonNullable<Parameters<PDFContext['stream']>[1]>;

function imageStream(doc: PDFDocument, image: EncodedPage): { contents: Buffer; dict: StreamDict } {
  const base = { Type: 'XObject', Subtype: 'Image', Width: image.width, Height: image.height };
  if (image.kind === 'jpeg') {
    const ColorSpace = image.channels === 1 ? 'DeviceGray' : 'DeviceRGB';
    return { contents: image.jpeg, dict: { ...base, ColorSpace, BitsPerComponent: 8, Filter: 'DCTDecode' } };
  }
  const bpc = image.bitsPerComponent;
  const ColorSpace = image.palette
    ? doc.context.obj([PDFName.of('Indexed'), PDFName.of('DeviceRGB'), image.palette.length / 3 - 1, PDFHexString.of(image.palette.toString('hex'))])
    : 'DeviceGray';
  const DecodeParms = { Predictor: 15, Colors: 1, BitsPerComponent: bpc, Columns: image.width };
  return { contents: image.deflated, dict: { ...base, ColorSpace, BitsPerComponent: bpc, Filter: 'FlateDecode', DecodeParms } };
}

/**
 * The PDF bytes of `pages`, one full-page image per page. The page dictionaries are filled by hand: pdf-lib's
 * drawing helpers would first "normalize" a page, adding empty /Font and /Annots entries.
 */
export async function assembleImagePdf(pages: readonly ImagePage[]): Promise<Buffer> {
  const doc = await PDFDocument.create({ updateMetadata: false });
  const ctx = doc.context;
  for (const { widthPt, heightPt, image } of pages) {
    const page = doc.addPage([widthPt, heightPt]);
    const { contents, dict } = imageStream(doc, image);
    const imageRef = ctx.register(ctx.stream(contents, dict));
    const draw = [pushGraphicsState(), concatTransformationMatrix(widthPt, 0, 0, heightPt, 0, 0), drawObject('Im0'), popGraphicsState()];
    page.node.set(PDFName.of('Resources'), ctx.obj({ XObject: { Im0: imageRef } }));
    page.node.set(PDFName.of('Contents'), ctx.register(ctx.contentStream(draw)));
  }
  return Buffer.from(await doc.save());
}
