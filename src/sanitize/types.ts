/**
 * The vocabulary shared by every sanitizer (DESIGN §6): what a converter made of one part — safe files that
 * replace it, or its removal with a reason that the notice shows. A converter never hands back the original.
 */

/** A file the sanitizer made (never a byte of the original part passed through). */
export interface SafeFile {
  filename: string;
  /** "image/png", "image/jpeg", "application/pdf", "text/plain; charset=utf-8", "application/zip" … */
  contentType: string;
  data: Buffer;
}

/** Why a part was removed; the notice has a sentence (Japanese and English) for each. */
export const removalReasons = [
  'encrypted', // password-protected archive or document (PPAP): cannot be scanned or converted
  'executable', // programs, scripts, shortcuts, installers
  'unsupported-type', // a true type with no converter
  'conversion-failed', // the converter rejected or crashed on the file
  'timeout', // the conversion ran past its deadline
  'too-large', // over a size, page or pixel limit
  'archive-limit', // an archive over the depth/size/ratio/count limits
  'malware', // a scanner found malware in it
] as const;
export type RemovalReason = (typeof removalReasons)[number];

export type PartResult =
  | { kind: 'converted'; files: SafeFile[]; /** What was done, for the notice ("3 pages → PDF of images"). */ detail: string }
  | { kind: 'removed'; reason: RemovalReason; detail: string };

/** How attachments come out, a tenant option: a PDF of page images, or one image per page. */
export type AttachmentsAs = 'pdf' | 'images';

/** Thrown by a converter for input it cannot turn into something safe; becomes `removed: <reason>`. */
export class ConversionError extends Error {
  readonly reason: RemovalReason;
  constructor(reason: RemovalReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConversionError';
    this.reason = reason;
  }
}
