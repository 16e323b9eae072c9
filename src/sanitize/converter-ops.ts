/**
 * The operations a converter child process runs (loaded by converter-child.ts, never by the worker itself): the
 * only place where sharp, MuPDF, pdf-lib and html-to-text meet untrusted bytes. Each op takes the part's bytes and
 * plain options and returns plain data (Buffers cross the process boundary as Buffers: serialization 'advanced').
 */
import { sanitizeBody, type BodyLeaf, type SanitizedBody } from './body.ts';
import { sanitizeImage, type SafeImage } from './image.ts';
import { rebuildPdf, type RebuiltPdf } from './pdf-rebuild.ts';
import { sanitizeTextFile } from './text-file.ts';

export interface BodyOpOptions {
  leaves: BodyLeaf[];
}
export interface ImageOpOptions {
  maxPixels: number;
}
export interface PdfOpOptions {
  dpi: number;
  maxPages: number;
  as: 'pdf' | 'images';
}
export interface TextOpOptions {
  charset: string | null;
  kind: 'text' | 'csv';
}

export const ops = {
  body: async (_input: Buffer, o: unknown): Promise<SanitizedBody> =>
    sanitizeBody((o as BodyOpOptions).leaves),
  image: async (input: Buffer, o: unknown): Promise<SafeImage> => sanitizeImage(input, { maxPixels: (o as ImageOpOptions).maxPixels }),
  pdf: async (input: Buffer, o: unknown): Promise<RebuiltPdf> => rebuildPdf(input, o as PdfOpOptions),
  text: async (input: Buffer, o: unknown): Promise<Buffer> => {
    const { charset, kind } = o as TextOpOptions;
    return sanitizeTextFile(input, charset, kind);
  },
} satisfies Record<string, (input: Buffer, options: unknown) => Promise<unknown>>;
