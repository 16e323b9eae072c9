/**
 * Text and CSV attachments → UTF-8 (DESIGN §6): decoded from whatever Japanese or Western charset they are in,
 * control characters dropped, CRLF line ends (the recipients use Windows). CSV gets a byte-order mark, without
 * which Excel in Japan reads UTF-8 as Shift_JIS, and every cell that a spreadsheet would run as a formula
 * (=, +, -, @ first, also after blanks or quotes, or a leading TAB/CR) gets a leading apostrophe, which makes it text.
 *
 * The rule: the output is rebuilt from the decoded characters; no byte of the original passes through unread.
 */
import { decodeText } from './charset.ts';
import { ConversionError } from './types.ts';

/**
 * Bytes of a text attachment converted; larger ones are removed as too large. Bounds the decoded string and the
 * output (each a few times this in memory) and the work, whose worst case is a CSV of this many line ends or
 * commas (one record or field each). Text and CSV attachments in mail are under 1 MiB.
 */
export const MAX_TEXT_FILE_BYTES = 10 * 1024 * 1024;
/** Output characters gathered before they are encoded to UTF-8 and released. */
const CHUNK_CHARS = 64 * 1024;
/** Bytes looked at to tell text from binary data. */
const SNIFF_BYTES = 64 * 1024;
/**
 * C0 control bytes (other than TAB, LF, FF, CR, ESC) allowed per thousand sniffed bytes, and at least this many
 * in all, before data counts as binary: a stray BEL or form feed in a short text is still text.
 */
const MAX_CONTROL_PER_MILLE = 10;
const MIN_CONTROL_BYTES = 8;
/** U+FFFD allowed per thousand decoded characters (the share Japanese detection itself tolerates) before data counts as not text. */
const MAX_UNDECODABLE_PER_MILLE = 50;

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** Starts like a formula once blanks and quotes are skipped (full-width forms too: Japanese Excel takes ＝ as =). */
const FORMULA_START = /^[\s"']*[=+\-@＝＋－＠]|^[\t\r]/;
/** A plain signed number: Excel reads it as a number, not a formula, so it stays as it is (-1,234.5). */
const SIGNED_NUMBER = /^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?$/;

function hasUtf16Bom(b: Buffer): boolean {
  return (b[0] === 0xff && b[1] === 0xfe) || (b[0] === 0xfe && b[1] === 0xff);
}

function assertLooksLikeText(content: Buffer): void {
  if (hasUtf16Bom(content)) return;
  const head = content.subarray(0, SNIFF_BYTES);
  if (head.includes(0)) throw new ConversionError('conversion-failed', 'not text: the data contains NUL bytes (binary data)');
  let controls = 0;
  for (const c of head) if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0c && c !== 0x0d && c !== 0x1b) controls++;
  if (controls > MIN_CONTROL_BYTES && controls * 1000 > head.length * MAX_CONTROL_PER_MILLE) {
    throw new ConversionError('conversion-failed', `not text: ${controls} control bytes in the first ${head.length} (binary data)`);
  }
}

function assertDecoded(text: string): void {
  let undecodable = 0;
  for (let i = text.indexOf('\ufffd'); i >= 0; i = text.indexOf('\ufffd', i + 1)) undecodable++;
  if (undecodable * 1000 > text.length * MAX_UNDECODABLE_PER_MILLE) {
    throw new ConversionError('conversion-failed', `not text: ${undecodable} of ${text.length} characters are undecodable in any known charset`);
  }
}

/** A field in quotes, from its opening quote: its value (doubled quotes undone) and where its closing quote ends. */
function readQuoted(text: string, open: number): { value: string; end: number } {
  let value = '';
  let j = open + 1;
  for (;;) {
    const q = text.indexOf('"', j);
    if (q < 0) return { value: value + text.slice(j), end: text.length };
    value += text.slice(j, q);
    if (text[q + 1] !== '"') return { value, end: q + 1 };
    value += '"';
    j = q + 2;
  }
}

/** CSV records (RFC 4180, leniently: text after a closing quote stays in the field, an unclosed quote runs to the end). */
function* csvRecords(text: string, delimiter: string): Generator<string[]> {
  if (!text) return;
  const stops = new RegExp(`[${delimiter}\\r\\n]`, 'g');
  const nextStop = (from: number) => {
    stops.lastIndex = from;
    return stops.exec(text)?.index ?? text.length;
  };
  let record: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    let from = i;
    if (text[i] === '"') {
      const q = readQuoted(text, i);
      field = q.value;
      from = q.end;
    }
    i = nextStop(from);
    record.push(field + text.slice(from, i));
    if (text[i] === delimiter) {
      i++;
      continue;
    }
    yield record;
    record = [];
    i += text.startsWith('\r\n', i) ? 2 : 1;
    if (i >= text.length) return;
  }
}

function neutralise(cell: string): string {
  return !SIGNED_NUMBER.test(cell) && FORMULA_START.test(cell) ? `'${cell}` : cell;
}

function quoteField(cell: string, delimiter: string): string {
  return cell.includes(delimiter) || /["\r\n]/.test(cell) || cell !== cell.trim() ? `"${cell.replaceAll('"', '""')}"` : cell;
}

/** Tab-separated data sent as .csv is common; its first line has tabs and no commas. */
function delimiterOf(text: string): string {
  const firstLine = text.slice(0, text.search(/[\r\n]|$/));
  return firstLine.includes('\t') && !firstLine.includes(',') ? '\t' : ',';
}

/** The CSV rebuilt record by record into UTF-8 chunks, so that memory stays near the size of the output. */
function rebuildCsv(text: string): Buffer {
  const delimiter = delimiterOf(text);
  const chunks: Buffer[] = [UTF8_BOM];
  let pending = '';
  for (const record of csvRecords(text, delimiter)) {
    pending += `${record.map((cell) => quoteField(neutralise(cell), delimiter)).join(delimiter)}\r\n`;
    if (pending.length >= CHUNK_CHARS) {
      chunks.push(Buffer.from(pending, 'utf8'));
      pending = '';
    }
  }
  chunks.push(Buffer.from(pending, 'utf8'));
  return Buffer.concat(chunks);
}

/** A text or CSV attachment → UTF-8 text (with BOM for CSV so Excel in Japan opens it right), CSV cells starting with = + - @ (also after whitespace/quotes, and TAB/CR) neutralised by a leading apostrophe. Throws ConversionError('conversion-failed', …) for binary data that is not text. */
export function sanitizeTextFile(content: Buffer, charset: string | null, kind: 'text' | 'csv'): Buffer {
  if (content.length > MAX_TEXT_FILE_BYTES) {
    throw new ConversionError('too-large', `text file of ${content.length} bytes is over the ${MAX_TEXT_FILE_BYTES}-byte limit`);
  }
  assertLooksLikeText(content);
  const decoded = decodeText(content, charset);
  assertDecoded(decoded);
  // Controls other than TAB and line ends go (an ESC would still drive a terminal that shows the file).
  const text = decoded.replace(/^\ufeff/, '').replace(/[^\P{Cc}\t\r\n]/gu, '');
  if (kind === 'csv') return rebuildCsv(text);
  return Buffer.from(text.replace(/\r\n|\r|\n/g, '\r\n'), 'utf8');
}
