/**
 * mime-structure: structural sanity of the message itself — required RFC 5322 headers, duplicated singleton
 * headers, raw 8-bit header bytes, MIME boundaries that are missing or never closed, over-deep nesting,
 * unknown transfer encodings and executable or double-extension attachment names. Such defects are how
 * malware mail slips past filters that parse differently from the recipient's client, so each is a symbol.
 */
import type { Check, CheckContext, SymbolHit } from '../check.ts';
import type { StructureNote } from '../mime-parts.ts';

/** Headers RFC 5322 §3.6 allows at most once. */
const SINGLETON_HEADERS = ['from', 'sender', 'reply-to', 'to', 'cc', 'subject', 'date', 'message-id', 'in-reply-to', 'references'];

/** Extensions Windows runs or scripts when opened (Emotet and friends travel as these, often inside archives). */
const EXECUTABLE_EXTENSIONS = new Set([
  'exe', 'scr', 'com', 'pif', 'bat', 'cmd', 'vbs', 'vbe', 'js', 'jse', 'wsf', 'wsh', 'hta', 'msi', 'msp', 'cpl',
  'jar', 'ps1', 'psm1', 'lnk', 'reg', 'dll', 'scf', 'iso', 'img', 'vhd', 'vhdx', 'one', 'chm', 'application',
]);
/** Document-looking extensions used as the decoy first half of a double extension. */
const DECOY_EXTENSIONS = new Set(['pdf', 'doc', 'docx', 'xls', 'xlsx', 'ppt', 'pptx', 'txt', 'jpg', 'jpeg', 'png', 'gif', 'zip', 'csv', 'rtf', 'jtd']);

const NOTE_SYMBOLS: Record<StructureNote['kind'], string> = {
  'boundary-missing': 'MIME_BOUNDARY_MISSING',
  'unterminated-multipart': 'MIME_UNTERMINATED_MULTIPART',
  'too-deep': 'MIME_TOO_DEEP',
  'too-many-parts': 'MIME_MALFORMED',
  'bad-transfer-encoding': 'MIME_BAD_TRANSFER_ENCODING',
  'header-oversized': 'HEADER_OVERSIZED',
  'parse-error': 'MIME_MALFORMED',
};

function headerEnd(raw: Buffer): number {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  if (crlf < 0) return lf < 0 ? raw.length : lf;
  return lf < 0 ? crlf : Math.min(crlf, lf);
}

function extensionsOf(filename: string): string[] {
  return filename.toLowerCase().replace(/[\s.]+$/, '').split('.').slice(1);
}

export function createMimeStructureCheck(): Check {
  return {
    name: 'mime',
    failSymbol: 'MIME_FAIL',
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const parsed = await ctx.parsed();
      const hits = new Map<string, Set<string>>();
      const add = (name: string, detail?: string) => {
        const set = hits.get(name) ?? new Set<string>();
        if (detail) set.add(detail);
        hits.set(name, set);
      };

      const counts = new Map<string, number>();
      for (const h of parsed.headers) counts.set(h.key, (counts.get(h.key) ?? 0) + 1);
      // A top-level header block too large to parse yields no headers at all: that is HEADER_OVERSIZED, not
      // three "missing" findings about headers that may well be there.
      const headerUnreadable = parsed.headers.length === 0 && parsed.notes.some((n) => n.kind === 'header-oversized');
      if (!headerUnreadable) {
        if (!counts.has('date')) add('HEADER_MISSING_DATE');
        if (!counts.has('from')) add('HEADER_MISSING_FROM');
        if (!counts.has('message-id')) add('HEADER_MISSING_MESSAGE_ID');
      }
      for (const key of SINGLETON_HEADERS) {
        if ((counts.get(key) ?? 0) > 1) add('HEADER_DUPLICATE', key);
      }

      // Raw 8-bit bytes in the header block: legal only with SMTPUTF8 (RFC 6532), which we do not record per
      // message yet, so report them but score them low; Japanese mail normally uses RFC 2047 words.
      const head = ctx.raw.subarray(0, headerEnd(ctx.raw));
      if (head.some((b) => b >= 0x80)) add('HEADER_8BIT_UNENCODED');

      for (const note of parsed.notes) add(NOTE_SYMBOLS[note.kind], note.detail);

      for (const part of parsed.parts) {
        if (!part.filename) continue;
        const exts = extensionsOf(part.filename);
        const last = exts.at(-1);
        if (!last || !EXECUTABLE_EXTENSIONS.has(last)) continue;
        add('MIME_EXECUTABLE_ATTACHMENT', part.filename);
        const before = exts.at(-2);
        if (before && DECOY_EXTENSIONS.has(before)) add('MIME_DOUBLE_EXTENSION', part.filename);
      }
      return [...hits].map(([name, details]) => (details.size ? { name, details: [...details] } : { name }));
    },
  };
}
