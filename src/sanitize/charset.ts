/**
 * Body and text-file bytes → string. Japanese mail is the normal case: ISO-2022-JP (with the CP932 extensions
 * Windows mailers put in it), Shift_JIS read as CP932, EUC-JP and UTF-8. Labels are hints, not facts: a label is
 * used only when the bytes are valid in it; otherwise the HTML <meta charset> (for HTML) and then the bytes decide.
 *
 * Every Japanese charset decodes to the same characters for the same JIS code (～ is U+FF5E, － is U+FF0D, ① and
 * 髙 exist): ISO-2022-JP is rewritten to EUC-JP bytes here and decoded with the WHATWG EUC-JP decoder, whose
 * table is CP932-compatible, rather than with an ISO-2022-JP decoder that loses its state at line ends and turns
 * redundant escape sequences into U+FFFD. Needs Node's full ICU (the default build) for the legacy decoders.
 */
import { isAscii } from 'node:buffer';

type Family = 'iso-2022-jp' | 'shift_jis' | 'euc-jp';

const JAPANESE_LABELS: readonly [RegExp, Family][] = [
  [/^(?:csiso2022jp|iso-?2022-?jp(?:-[0-9a-z]+)?|jis|cp5022[012])$/, 'iso-2022-jp'],
  [/^(?:shift[-_]?jis(?:-?\w+)?|s-?jis|x-sjis|ms_?kanji|csshiftjis|windows-31j|(?:x-ms-|ms|cp|ibm-?)(?:932|943)|x-mac-japanese)$/, 'shift_jis'],
  [/^(?:(?:x-)?euc-?jp(?:-ms)?|cp51932|cseucpkdfmtjapanese|euc-jisx0213)$/, 'euc-jp'],
];

/** Labels that mailers put on anything (their default): valid UTF-8 or ISO-2022-JP bytes under them win. */
const WEAK_ENCODING = 'windows-1252';

/** How far into an HTML body <meta charset> is looked for; mail HTML puts it in the first few lines of <head>. */
const META_PRESCAN_BYTES = 4096;

/**
 * In undeclared or mislabelled bytes that are not UTF-8, a Japanese reading with more than this share of
 * U+FFFD among its non-ASCII characters is rejected and the bytes are read as Windows-1252 (Western 8-bit text).
 */
const MAX_JAPANESE_ERROR_RATIO = 0.05;

const ESC = 0x1b;

type JisSet = 'ascii' | 'kana' | 'jis0208' | 'jis0212' | 'unknown';
/** The designations of ISO-2022-JP (RFC 1468), its JIS X 0212 extension and half-width katakana (CP50221). */
const DESIGNATIONS: readonly [string, JisSet][] = [['$(D', 'jis0212'], ['$B', 'jis0208'], ['$@', 'jis0208'], ['(B', 'ascii'], ['(J', 'ascii'], ['(I', 'kana']];

/** The WHATWG encoding name (or a Japanese family) for a label; null when the label is missing or unknown. */
function resolveLabel(label: string | null | undefined): string | null {
  const l = (label ?? '').trim().replace(/^["']|["']$/g, '').toLowerCase();
  if (!l) return null;
  for (const [re, family] of JAPANESE_LABELS) if (re.test(l)) return family;
  if (l === 'utf8' || l === 'utf-8') return 'utf-8';
  try {
    return new TextDecoder(l).encoding;
  } catch {
    return null;
  }
}

function sniffBom(b: Buffer): string | null {
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return 'utf-8';
  if (b[0] === 0xff && b[1] === 0xfe) return 'utf-16le';
  if (b[0] === 0xfe && b[1] === 0xff) return 'utf-16be';
  return null;
}

function prescanMeta(b: Buffer): string | null {
  const head = b.subarray(0, META_PRESCAN_BYTES).toString('latin1');
  return /<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([a-z0-9_.:-]+)/i.exec(head)?.[1] ?? null;
}

/**
 * ISO-2022-JP → EUC-JP, byte for byte: ASCII and JIS-Roman stay, JIS X 0208 pairs get the high bit, half-width
 * katakana (ESC ( I, or SO/SI) become 0x8E xx, JIS X 0212 pairs 0x8F xx xx. A line end keeps the current set
 * (sloppy mailers do not return to ASCII before it). `clean` is false when the input has 8-bit bytes, an unknown
 * escape sequence or a set this mapping does not know (ISO-2022-JP-2's Chinese and Korean): not ISO-2022-JP.
 */
function iso2022jpToEucJp(b: Buffer): { euc: Buffer; clean: boolean } {
  const out = Buffer.alloc(b.length * 2);
  let n = 0;
  let clean = true;
  let set: JisSet = 'ascii';
  let shifted = false;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c === ESC) {
      const seq = b.subarray(i + 1, i + 4).toString('latin1');
      const hit = DESIGNATIONS.find(([s]) => seq.startsWith(s));
      if (hit) {
        set = hit[1];
        i += hit[0].length;
      } else {
        clean = false;
        set = 'unknown';
      }
      continue;
    }
    if (c === 0x0e || c === 0x0f) {
      shifted = c === 0x0e;
      continue;
    }
    if (c >= 0x80) {
      clean = false;
      out[n++] = 0xff; // invalid in EUC-JP: becomes U+FFFD
    } else if (c < 0x21 || c === 0x7f) {
      out[n++] = c;
    } else if (shifted || set === 'kana') {
      out[n++] = 0x8e;
      out[n++] = c | 0x80;
    } else if (set === 'ascii') {
      out[n++] = c;
    } else {
      const d = b[i + 1];
      if (d === undefined || d < 0x21 || d > 0x7e || set === 'unknown') {
        clean = false;
        out[n++] = 0xff;
        continue;
      }
      if (set === 'jis0212') out[n++] = 0x8f;
      out[n++] = c | 0x80;
      out[n++] = d | 0x80;
      i++;
    }
  }
  return { euc: out.subarray(0, n), clean };
}

/** Decodes, or returns null when `fatal` and the bytes are not valid in `encoding`. */
function decodeAs(b: Buffer, encoding: string, fatal: boolean): string | null {
  let bytes = b;
  let enc = encoding;
  if (encoding === 'iso-2022-jp') {
    const { euc, clean } = iso2022jpToEucJp(b);
    if (fatal && !clean) return null;
    bytes = euc;
    enc = 'euc-jp';
  }
  try {
    return new TextDecoder(enc, { fatal }).decode(bytes);
  } catch {
    return null;
  }
}

function hasIso2022Escape(b: Buffer): boolean {
  for (let i = b.indexOf(ESC); i >= 0; i = b.indexOf(ESC, i + 1)) {
    const seq = b.subarray(i + 1, i + 3).toString('latin1');
    if (seq === '$B' || seq === '$@' || seq === '(I' || seq === '(J' || seq === '$(') return true;
  }
  return false;
}

function isSevenBit(b: Buffer): boolean {
  return isAscii(b); // native: a JavaScript loop over a 100 KB body cost about 0.8 ms a call
}

interface Reading {
  text: string;
  errors: number;
  nonAscii: number;
  /** Hiragana, full-width katakana, CJK ideographs and punctuation: what Japanese text is made of. */
  japanese: number;
  kana: number;
}

function read(b: Buffer, encoding: string): Reading {
  const text = decodeAs(b, encoding, false) ?? '';
  const r: Reading = { text, errors: 0, nonAscii: 0, japanese: 0, kana: 0 };
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    r.nonAscii++;
    if (c === 0xfffd) r.errors++;
    else if (c >= 0x3041 && c <= 0x30ff) {
      r.japanese++;
      r.kana++;
    } else if ((c >= 0x3000 && c <= 0x303f) || (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xff01 && c <= 0xff60)) r.japanese++;
  }
  return r;
}

/** Shift_JIS or EUC-JP, whichever reads as more Japanese with fewer errors (ties go to Shift_JIS, the commoner). */
function bestJapanese(b: Buffer): Reading {
  const score = (r: Reading) => r.japanese - 3 * r.errors;
  const sjis = read(b, 'shift_jis');
  const euc = read(b, 'euc-jp');
  return score(euc) > score(sjis) ? euc : sjis;
}

/** Bytes no label explains (and not ISO-2022-JP): ASCII, UTF-8, Shift_JIS/EUC-JP, else Western 8-bit. */
function guess(b: Buffer, weakLabel: boolean): string {
  if (isSevenBit(b)) return b.toString('latin1');
  const utf8 = decodeAs(b, 'utf-8', true);
  if (utf8 !== null) return utf8;
  const jp = bestJapanese(b);
  // Under a Latin label, Japanese needs kana to be believed: Western text read as Shift_JIS yields kanji, not kana.
  const believable = weakLabel ? jp.errors === 0 && jp.kana > 0 : jp.errors <= jp.nonAscii * MAX_JAPANESE_ERROR_RATIO;
  return believable ? jp.text : decodeAs(b, WEAK_ENCODING, false)!;
}

/**
 * Bytes in a declared charset (may be null, unknown or lying) → string. Order: a byte-order mark; ISO-2022-JP if
 * the bytes are 7-bit with its escapes; the declared label if the bytes are valid in it; for HTML the
 * <meta charset> if valid; else the bytes are looked at. ASCII/Latin-1 labels are weak: valid UTF-8 under them
 * is read as UTF-8.
 */
export function decodeText(content: Buffer, charset: string | null, opts?: { html?: boolean }): string {
  const bom = sniffBom(content);
  if (bom) return decodeAs(content, bom, false)!;
  // ISO-2022-JP escapes in 7-bit bytes mean ISO-2022-JP whatever the label says (mailers label it "UTF-8" too).
  if (isSevenBit(content) && hasIso2022Escape(content)) return decodeAs(content, 'iso-2022-jp', false)!;
  const declared = resolveLabel(charset);
  const meta = opts?.html ? resolveLabel(prescanMeta(content)) : null;
  for (const label of [declared, meta]) {
    if (label === null || label === WEAK_ENCODING) continue;
    const text = decodeAs(content, label, true);
    if (text !== null) return text;
  }
  const weak = declared === WEAK_ENCODING || (declared === null && meta === WEAK_ENCODING);
  return guess(content, weak);
}
