/**
 * Encryption and "no engine can open this" by structure: zip, 7z and RAR headers, OLE2 (Office) streams and a
 * PDF's encryption dictionary are read; nothing is decrypted and no password is tried, except the empty one that
 * every PDF reader tries by itself (a PDF encrypted with an empty user password opens without asking and is
 * not reported).
 *
 * The rule a reader must not break: every parser here reads hostile bytes, so every loop is bounded by a named
 * constant and every offset is checked against the buffer; a malformed file is "not found encrypted" (null),
 * never a throw. Cost is header parsing, except OLE2, which cfb reads in full, and a PDF with "/Encrypt", whose
 * encryption dictionary is looked up by a scan of the file: both linear in the file size, which the message size
 * bounds.
 */
import { createCipheriv, createHash } from 'node:crypto';
import CFB from 'cfb';
import type { TrueType } from './true-type.ts';

export interface EncryptionFinding {
  kind: 'archive-encrypted' | 'document-encrypted' | 'pdf-encrypted' | 'archive-unopenable';
  detail: string;
}

/**
 * Zip central-directory entries read. 65,535 is all a zip without zip64 can declare; a zip64 directory of a
 * million empty entries costs no more than this many 46-byte header reads.
 */
const MAX_ZIP_ENTRIES = 65_535;
/** The end-of-central-directory record sits within its 22 bytes plus a comment of at most 64 KiB from the end. */
const MAX_EOCD_SEARCH_BYTES = 22 + 0xffff;
/** RAR headers walked before giving up (each may be a file); encryption shows in the first ones of real archives. */
const MAX_RAR_HEADERS = 10_000;
/** BIFF records read in an .xls workbook's globals before FILEPASS must have appeared (it follows BOF at once). */
const MAX_XLS_RECORDS = 64;
/** Occurrences of "/Encrypt…" looked at from the end of a PDF (each is one Buffer.lastIndexOf). */
const MAX_PDF_ENCRYPT_KEYS = 1_000;
/** Nesting of arrays and dictionaries in one PDF object parsed here (an encryption dictionary has two levels). */
const MAX_PDF_OBJECT_DEPTH = 16;
/** Bytes of a 7z header parsed; a header that points further is not ours to follow. */
const MAX_7Z_HEADER_BYTES = 1024 * 1024;
/** Coders per 7z folder: the format allows 64; real folders have 1 to 4. */
const MAX_7Z_CODERS = 64;

// ---------------------------------------------------------------------------------------------------------------
// zip

/** One central-directory entry: what encryption detection and true-type refinement need. */
export interface ZipEntry {
  name: string;
  flags: number;
  method: number;
  /** Offset of the local header, for reading a stored member (ODF's "mimetype"). */
  localOffset: number;
  compressedSize: number;
  /** Extra-field header ids present (0x9901 is WinZip AES). */
  extraIds: number[];
}

const ZIP_FLAG_ENCRYPTED = 0x1;
const ZIP_FLAG_STRONG_ENCRYPTION = 0x40;
const ZIP_FLAG_UTF8 = 0x800;
/** APPNOTE 7.2: the central directory itself is encrypted and local headers masked (PKWARE SecureZIP). */
const ZIP_FLAG_MASKED_HEADERS = 0x2000;
const ZIP_METHOD_AES = 99;
const ZIP_EXTRA_AES = 0x9901;

function findEocd(data: Buffer): number {
  const floor = Math.max(0, data.length - MAX_EOCD_SEARCH_BYTES);
  for (let i = data.length - 22; i >= floor; i--) {
    if (data.readUInt32LE(i) === 0x06054b50) return i;
  }
  return -1;
}

/** The central directory of a zip, or null when there is none to read (truncated or not a zip). */
export function zipEntries(data: Buffer): ZipEntry[] | null {
  if (data.length < 22) return null;
  const eocd = findEocd(data);
  if (eocd < 0) return null;
  const count = data.readUInt16LE(eocd + 10);
  let pos = data.readUInt32LE(eocd + 16);
  // zip64 (0xFFFF entries / 0xFFFFFFFF offset): walk the directory from its start all the same, bounded below
  if (pos === 0xffffffff || pos >= data.length) pos = data.indexOf(Buffer.from([0x50, 0x4b, 1, 2]));
  if (pos < 0) return null;
  const entries: ZipEntry[] = [];
  const limit = count === 0xffff ? MAX_ZIP_ENTRIES : Math.min(count, MAX_ZIP_ENTRIES);
  while (entries.length < limit && pos + 46 <= data.length && data.readUInt32LE(pos) === 0x02014b50) {
    const flags = data.readUInt16LE(pos + 8);
    const nameLen = data.readUInt16LE(pos + 28);
    const extraLen = data.readUInt16LE(pos + 30);
    const commentLen = data.readUInt16LE(pos + 32);
    const nameRaw = data.subarray(pos + 46, pos + 46 + nameLen);
    const extraIds: number[] = [];
    for (let e = pos + 46 + nameLen; e + 4 <= Math.min(pos + 46 + nameLen + extraLen, data.length); ) {
      extraIds.push(data.readUInt16LE(e));
      e += 4 + data.readUInt16LE(e + 2);
    }
    entries.push({
      name: flags & ZIP_FLAG_UTF8 ? nameRaw.toString('utf8') : nameRaw.toString('latin1'),
      flags,
      method: data.readUInt16LE(pos + 10),
      localOffset: data.readUInt32LE(pos + 42),
      compressedSize: data.readUInt32LE(pos + 20),
      extraIds,
    });
    pos += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

function zipEncryption(data: Buffer): EncryptionFinding | null {
  const entries = zipEntries(data);
  // No readable directory: the first local header still says whether its member is encrypted.
  const flagsList = entries ?? (data.length >= 30 && data.readUInt32LE(0) === 0x04034b50 ? [{ flags: data.readUInt16LE(6), method: data.readUInt16LE(8), extraIds: [] as number[] }] : []);
  const methods = new Set<string>();
  let encrypted = 0;
  for (const e of flagsList) {
    if (e.flags & ZIP_FLAG_MASKED_HEADERS) methods.add('encrypted central directory');
    if (!(e.flags & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION)) && e.method !== ZIP_METHOD_AES) continue;
    encrypted++;
    if (e.method === ZIP_METHOD_AES || e.extraIds.includes(ZIP_EXTRA_AES)) methods.add('AES');
    else if (e.flags & ZIP_FLAG_STRONG_ENCRYPTION) methods.add('PKWARE strong encryption');
    else methods.add('ZipCrypto');
  }
  if (methods.size === 0) return null;
  const of = entries ? ` (${encrypted} of ${entries.length} entries)` : '';
  return { kind: 'archive-encrypted', detail: `${[...methods].sort().join(', ')}${of}` };
}

// ---------------------------------------------------------------------------------------------------------------
// 7z (7zFormat.txt of the 7-Zip sources)

const SEVENZ_SIGNATURE = Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]);
const SEVENZ_AES_CODER = Buffer.from([0x06, 0xf1, 0x07, 0x01]);
const K_END = 0x00;
const K_HEADER = 0x01;
const K_MAIN_STREAMS_INFO = 0x04;
const K_PACK_INFO = 0x06;
const K_UNPACK_INFO = 0x07;
const K_SIZE = 0x09;
const K_CRC = 0x0a;
const K_FOLDER = 0x0b;
const K_ENCODED_HEADER = 0x17;

class SevenZipReader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  byte(): number {
    if (this.pos >= this.buf.length) throw new RangeError('7z header ends early');
    return this.buf[this.pos++] as number;
  }

  /** 7z's variable-length number: the first byte's leading one bits say how many bytes follow. */
  number(): number {
    const first = this.byte();
    let mask = 0x80;
    let value = 0;
    for (let i = 0; i < 8; i++) {
      if ((first & mask) === 0) return value + (first & (mask - 1)) * 2 ** (8 * i);
      value += this.byte() * 2 ** (8 * i);
      mask >>= 1;
    }
    return value;
  }

  skip(n: number): void {
    if (n > this.buf.length - this.pos) throw new RangeError('7z header ends early');
    this.pos += n;
  }
}

/** Reads PackInfo up to its end marker (sizes and CRCs are of no interest here). */
function skipPackInfo(r: SevenZipReader): void {
  r.number(); // pack position
  const streams = r.number();
  for (let id = r.byte(); id !== K_END; id = r.byte()) {
    if (id === K_SIZE) for (let i = 0; i < streams; i++) r.number();
    else if (id === K_CRC) skipDigests(r, streams);
    else throw new RangeError(`unexpected 7z property ${id} in PackInfo`);
  }
}

function skipDigests(r: SevenZipReader, count: number): void {
  const allDefined = r.byte();
  let defined = count;
  if (!allDefined) {
    defined = 0;
    for (let i = 0; i < count; i += 8) {
      const bits = r.byte();
      for (let b = 0; b < 8 && i + b < count; b++) if (bits & (0x80 >> b)) defined++;
    }
  }
  r.skip(4 * defined);
}

/** Whether any folder of the UnpackInfo that starts at the reader uses the AES coder. */
function foldersUseAes(r: SevenZipReader): boolean {
  if (r.byte() !== K_FOLDER) return false;
  const folders = r.number();
  if (r.byte() !== 0) return false; // "external": folders stored elsewhere, not in real archives
  for (let f = 0; f < folders; f++) {
    const coders = r.number();
    if (coders > MAX_7Z_CODERS) return false;
    let outStreams = 0;
    let inStreams = 0;
    for (let c = 0; c < coders; c++) {
      const flag = r.byte();
      const idSize = flag & 0x0f;
      const id = r.buf.subarray(r.pos, r.pos + idSize);
      r.skip(idSize);
      if (id.equals(SEVENZ_AES_CODER)) return true;
      if (flag & 0x10) {
        inStreams += r.number();
        outStreams += r.number();
      } else {
        inStreams++;
        outStreams++;
      }
      if (flag & 0x20) r.skip(r.number());
    }
    const bindPairs = outStreams - 1;
    for (let b = 0; b < bindPairs; b++) {
      r.number();
      r.number();
    }
    const packed = inStreams - bindPairs;
    if (packed > 1) for (let p = 0; p < packed; p++) r.number();
  }
  return false;
}

/** Whether the StreamsInfo at the reader (PackInfo, then UnpackInfo) encodes with AES. */
function streamsUseAes(r: SevenZipReader): boolean {
  let id = r.byte();
  if (id === K_PACK_INFO) {
    skipPackInfo(r);
    id = r.byte();
  }
  return id === K_UNPACK_INFO && foldersUseAes(r);
}

function sevenZipEncryption(data: Buffer): EncryptionFinding | null {
  if (data.length < 32 || !data.subarray(0, 6).equals(SEVENZ_SIGNATURE)) return null;
  const offset = Number(data.readBigUInt64LE(12));
  const size = Number(data.readBigUInt64LE(20));
  const start = 32 + offset;
  if (size === 0 || size > MAX_7Z_HEADER_BYTES || start + size > data.length) return null;
  const r = new SevenZipReader(data.subarray(start, start + size));
  try {
    const kind = r.byte();
    if (kind === K_ENCODED_HEADER) {
      return streamsUseAes(r) ? { kind: 'archive-encrypted', detail: '7z: AES-256, file names encrypted too' } : null;
    }
    // A plain header lists the coders of every folder: an AES one means encrypted contents.
    if (kind === K_HEADER && r.byte() === K_MAIN_STREAMS_INFO && streamsUseAes(r)) return { kind: 'archive-encrypted', detail: '7z: AES-256' };
  } catch {
    return null; // a header that ends early: clamd's to judge
  }
  // An LZMA-compressed header (7-Zip's default) hides the folders' coders: clamd reads it and alerts
  // Heuristics.Encrypted.7Zip on encrypted contents.
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// RAR (technote.txt of RAR 4; rarfile.htm of RAR 5)

const RAR4_SIGNATURE = Buffer.from('Rar!\x1a\x07\x00', 'latin1');
const RAR5_SIGNATURE = Buffer.from('Rar!\x1a\x07\x01\x00', 'latin1');
const RAR4_MAIN_HEADER = 0x73;
const RAR4_FILE_HEADER = 0x74;
/** Main header flag: headers are encrypted too (rar -hp). */
const RAR4_MHD_PASSWORD = 0x0080;
/** File header flag: the file is encrypted (rar -p). */
const RAR4_LHD_PASSWORD = 0x0004;
const RAR4_LONG_BLOCK = 0x8000;
const RAR4_LHD_LARGE = 0x0100;
const RAR5_ENCRYPTION_HEADER = 4;
const RAR5_FILE_HEADER = 2;
const RAR5_SERVICE_HEADER = 3;
const RAR5_END_HEADER = 5;
const RAR5_EXTRA_FILE_ENCRYPTION = 0x01;
const RAR5_HAS_EXTRA = 0x1;
const RAR5_HAS_DATA = 0x2;

function rar4Encryption(data: Buffer): string | null {
  let pos = RAR4_SIGNATURE.length;
  for (let n = 0; n < MAX_RAR_HEADERS && pos + 7 <= data.length; n++) {
    const type = data[pos + 2];
    const flags = data.readUInt16LE(pos + 3);
    const headSize = data.readUInt16LE(pos + 5);
    if (headSize < 7) return null;
    if (type === RAR4_MAIN_HEADER && flags & RAR4_MHD_PASSWORD) return 'RAR4: headers encrypted (file names hidden)';
    if (type === RAR4_FILE_HEADER && flags & RAR4_LHD_PASSWORD) return 'RAR4: encrypted files';
    let next = pos + headSize;
    if (flags & RAR4_LONG_BLOCK && pos + 11 <= data.length) {
      next += data.readUInt32LE(pos + 7);
      if (type === RAR4_FILE_HEADER && flags & RAR4_LHD_LARGE && pos + 36 <= data.length) next += data.readUInt32LE(pos + 32) * 2 ** 32;
    }
    pos = next;
  }
  return null;
}

/** RAR 5 vint: 7 bits per byte, low first, high bit set on all but the last. */
function vint(data: Buffer, at: { pos: number }): number {
  let value = 0;
  for (let shift = 0; shift < 63; shift += 7) {
    if (at.pos >= data.length) throw new RangeError('RAR5 header ends early');
    const b = data[at.pos++] as number;
    value += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) return value;
  }
  throw new RangeError('RAR5 vint too long');
}

function rar5Encryption(data: Buffer): string | null {
  let pos = RAR5_SIGNATURE.length;
  try {
    for (let n = 0; n < MAX_RAR_HEADERS && pos + 4 < data.length; n++) {
      const at = { pos: pos + 4 }; // after the header CRC32
      const size = vint(data, at);
      const bodyStart = at.pos;
      const end = bodyStart + size;
      if (end > data.length) return null;
      const type = vint(data, at);
      if (type === RAR5_ENCRYPTION_HEADER) return 'RAR5: headers encrypted (file names hidden)';
      if (type === RAR5_END_HEADER) return null;
      const flags = vint(data, at);
      const extraSize = flags & RAR5_HAS_EXTRA ? vint(data, at) : 0;
      const dataSize = flags & RAR5_HAS_DATA ? vint(data, at) : 0;
      if ((type === RAR5_FILE_HEADER || type === RAR5_SERVICE_HEADER) && extraSize > 0 && extraSize <= size) {
        const extra = { pos: end - extraSize };
        while (extra.pos < end) {
          const recordSize = vint(data, extra);
          const recordStart = extra.pos;
          if (vint(data, extra) === RAR5_EXTRA_FILE_ENCRYPTION && type === RAR5_FILE_HEADER) return 'RAR5: encrypted files';
          extra.pos = recordStart + recordSize;
        }
      }
      pos = end + dataSize;
    }
  } catch {
    return null;
  }
  return null;
}

function rarFinding(data: Buffer): EncryptionFinding {
  const encrypted = data.subarray(0, 8).equals(RAR5_SIGNATURE) ? rar5Encryption(data) : data.subarray(0, 7).equals(RAR4_SIGNATURE) ? rar4Encryption(data) : null;
  if (encrypted) return { kind: 'archive-encrypted', detail: encrypted };
  return { kind: 'archive-unopenable', detail: 'RAR: no unrar in Debian’s clamd, contents not scanned' };
}

/** Archive formats that libclamav does not unpack (besides RAR), by magic: found on type 'lzh' or 'unknown'. */
const UNOPENABLE_MAGIC: readonly { name: string; test: (d: Buffer) => boolean }[] = [
  { name: 'LZH', test: (d) => d.length >= 7 && d[2] === 0x2d && d[3] === 0x6c && d[6] === 0x2d },
  { name: 'ACE', test: (d) => d.subarray(7, 14).toString('latin1') === '**ACE**' },
  { name: 'Zstandard', test: (d) => d.length >= 4 && d.readUInt32LE(0) === 0xfd2fb528 },
  { name: 'LZ4', test: (d) => d.length >= 4 && d.readUInt32LE(0) === 0x184d2204 },
  { name: 'lzip', test: (d) => d.subarray(0, 4).toString('latin1') === 'LZIP' },
];

function unopenable(data: Buffer): EncryptionFinding | null {
  const hit = UNOPENABLE_MAGIC.find((m) => m.test(data));
  return hit ? { kind: 'archive-unopenable', detail: `${hit.name}: not unpacked by clamd, contents not scanned` } : null;
}

// ---------------------------------------------------------------------------------------------------------------
// OLE2 / CFB (MS-OFFCRYPTO, MS-DOC, MS-XLS, MS-PPT)

/** FIB base (MS-DOC 2.5.2): flags at offset 0x0A. */
const DOC_FIB_FLAGS_OFFSET = 0x0a;
const DOC_FIB_IDENT = 0xa5ec;
const DOC_F_ENCRYPTED = 0x0100;
const DOC_F_OBFUSCATED = 0x8000;
const XLS_BOF = 0x0809;
const XLS_EOF = 0x000a;
const XLS_FILEPASS = 0x002f;
/** CurrentUserAtom.headerToken (MS-PPT 2.3.2): this value means the document is encrypted. */
const PPT_TOKEN_ENCRYPTED = 0xf3d1c4df;

type Cfb = ReturnType<typeof CFB.read>;

export function readCfb(data: Buffer): Cfb | null {
  try {
    return CFB.read(data, { type: 'buffer' });
  } catch {
    return null;
  }
}

/** The content of the top-level stream `name`, or null. */
export function cfbStream(cfb: Cfb, name: string): Buffer | null {
  const i = cfb.FullPaths.findIndex((p) => p.replace(/^[^/]*\//, '').toLowerCase() === name.toLowerCase());
  const entry = i < 0 ? undefined : cfb.FileIndex[i];
  return entry && entry.type === 2 ? Buffer.from(entry.content) : null;
}

function ooxmlEncryption(info: Buffer | null): string {
  if (!info || info.length < 4) return 'OOXML EncryptedPackage';
  const major = info.readUInt16LE(0);
  const minor = info.readUInt16LE(2);
  const scheme = major === 4 && minor === 4 ? 'agile, AES' : minor === 2 ? 'standard, AES-128' : `version ${major}.${minor}`;
  return `OOXML EncryptedPackage (${scheme})`;
}

function xlsFilePass(book: Buffer): string | null {
  let pos = 0;
  for (let n = 0; n < MAX_XLS_RECORDS && pos + 4 <= book.length; n++) {
    const type = book.readUInt16LE(pos);
    const len = book.readUInt16LE(pos + 2);
    if (n === 0 && type !== XLS_BOF) return null;
    if (type === XLS_EOF) return null;
    if (type === XLS_FILEPASS) {
      const method = pos + 6 <= book.length ? book.readUInt16LE(pos + 4) : -1;
      return method === 0 ? 'Excel 97-2003: XOR obfuscation' : 'Excel 97-2003: RC4';
    }
    pos += 4 + len;
  }
  return null;
}

function oleEncryption(data: Buffer): EncryptionFinding | null {
  const cfb = readCfb(data);
  if (!cfb) return null;
  const doc = (detail: string): EncryptionFinding => ({ kind: 'document-encrypted', detail });
  if (cfbStream(cfb, 'EncryptedPackage')) return doc(ooxmlEncryption(cfbStream(cfb, 'EncryptionInfo')));
  const word = cfbStream(cfb, 'WordDocument');
  if (word && word.length > DOC_FIB_FLAGS_OFFSET + 2 && word.readUInt16LE(0) === DOC_FIB_IDENT) {
    const flags = word.readUInt16LE(DOC_FIB_FLAGS_OFFSET);
    if (flags & DOC_F_ENCRYPTED) return doc(flags & DOC_F_OBFUSCATED ? 'Word 97-2003: XOR obfuscation' : 'Word 97-2003: RC4');
  }
  const book = cfbStream(cfb, 'Workbook') ?? cfbStream(cfb, 'Book');
  const xls = book && xlsFilePass(book);
  if (xls) return doc(xls);
  const user = cfbStream(cfb, 'Current User');
  if (cfbStream(cfb, 'EncryptedSummary') || (user && user.length >= 16 && user.readUInt32LE(12) === PPT_TOKEN_ENCRYPTED)) {
    return doc('PowerPoint 97-2003: RC4 CryptoAPI');
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// PDF (ISO 32000-2 §7.6: the standard security handler)

type PdfValue = number | boolean | null | string | Buffer | PdfValue[] | PdfDict | PdfRef | PdfName;
interface PdfName {
  name: string;
}
interface PdfRef {
  ref: [number, number];
}
type PdfDict = Map<string, PdfValue>;

const PDF_WHITESPACE = new Set([0x00, 0x09, 0x0a, 0x0c, 0x0d, 0x20]);
const PDF_DELIMITERS = new Set([...'()<>[]{}/%'].map((c) => c.charCodeAt(0)));

/** A minimal PDF object parser: enough for an encryption dictionary and a trailer's /ID array. */
class PdfParser {
  constructor(
    readonly buf: Buffer,
    public pos: number,
  ) {}

  #skipSpace(): void {
    while (this.pos < this.buf.length) {
      const c = this.buf[this.pos] as number;
      if (PDF_WHITESPACE.has(c)) this.pos++;
      else if (c === 0x25) while (this.pos < this.buf.length && this.buf[this.pos] !== 0x0a && this.buf[this.pos] !== 0x0d) this.pos++;
      else return;
    }
  }

  #token(): string {
    const start = this.pos;
    while (this.pos < this.buf.length && !PDF_WHITESPACE.has(this.buf[this.pos] as number) && !PDF_DELIMITERS.has(this.buf[this.pos] as number)) this.pos++;
    return this.buf.toString('latin1', start, this.pos);
  }

  value(depth = 0): PdfValue {
    if (depth > MAX_PDF_OBJECT_DEPTH) throw new RangeError('PDF object nested too deep');
    this.#skipSpace();
    const c = this.buf[this.pos];
    if (c === undefined) throw new RangeError('PDF ends inside an object');
    if (c === 0x3c && this.buf[this.pos + 1] === 0x3c) return this.#dict(depth);
    if (c === 0x3c) return this.#hexString();
    if (c === 0x28) return this.#literalString();
    if (c === 0x5b) {
      this.pos++;
      const items: PdfValue[] = [];
      for (this.#skipSpace(); this.buf[this.pos] !== 0x5d; this.#skipSpace()) items.push(this.value(depth + 1));
      this.pos++;
      return items;
    }
    if (c === 0x2f) {
      this.pos++;
      return { name: this.#token() };
    }
    const word = this.#token();
    if (word === '') throw new RangeError(`unexpected PDF byte ${c}`);
    if (word === 'true' || word === 'false') return word === 'true';
    if (word === 'null') return null;
    const num = Number(word);
    if (!Number.isFinite(num)) return word;
    // "12 0 R": an indirect reference
    const save = this.pos;
    this.#skipSpace();
    const gen = this.#token();
    this.#skipSpace();
    if (/^\d+$/.test(gen) && this.buf[this.pos] === 0x52) {
      this.pos++;
      return { ref: [num, Number(gen)] };
    }
    this.pos = save;
    return num;
  }

  #dict(depth: number): PdfDict {
    this.pos += 2;
    const dict: PdfDict = new Map();
    for (this.#skipSpace(); !(this.buf[this.pos] === 0x3e && this.buf[this.pos + 1] === 0x3e); this.#skipSpace()) {
      const key = this.value(depth + 1);
      if (typeof key !== 'object' || key === null || !('name' in key)) throw new RangeError('PDF dictionary key is not a name');
      dict.set(key.name, this.value(depth + 1));
    }
    this.pos += 2;
    return dict;
  }

  #hexString(): Buffer {
    const end = this.buf.indexOf(0x3e, this.pos);
    if (end < 0) throw new RangeError('unterminated PDF hex string');
    let hex = this.buf.toString('latin1', this.pos + 1, end).replace(/[^0-9a-fA-F]/g, '');
    if (hex.length % 2) hex += '0';
    this.pos = end + 1;
    return Buffer.from(hex, 'hex');
  }

  #literalString(): Buffer {
    const out: number[] = [];
    let depth = 0;
    for (this.pos++; this.pos < this.buf.length; this.pos++) {
      const c = this.buf[this.pos] as number;
      if (c === 0x29 && depth === 0) {
        this.pos++;
        return Buffer.from(out);
      }
      if (c === 0x28) depth++;
      if (c === 0x29) depth--;
      if (c !== 0x5c) {
        out.push(c);
        continue;
      }
      const e = this.buf[++this.pos];
      if (e === undefined) break;
      const simple: Record<number, number> = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x66: 0x0c };
      if (simple[e] !== undefined) out.push(simple[e]);
      else if (e >= 0x30 && e <= 0x37) {
        let v = e - 0x30;
        for (let k = 0; k < 2 && (this.buf[this.pos + 1] ?? 0) >= 0x30 && (this.buf[this.pos + 1] ?? 0) <= 0x37; k++) v = v * 8 + ((this.buf[++this.pos] as number) - 0x30);
        out.push(v & 0xff);
      } else if (e === 0x0d) {
        if (this.buf[this.pos + 1] === 0x0a) this.pos++;
      } else if (e !== 0x0a) out.push(e);
    }
    throw new RangeError('unterminated PDF string');
  }
}

/**
 * The last "/Encrypt" key (not "/EncryptMetadata") whose value is a reference or a dictionary, as in a trailer or
 * an xref stream dictionary: the words "/Encrypt" in an uncompressed content stream or string are passed over.
 */
function lastEncryptEntry(data: Buffer): { at: number; value: PdfDict | PdfRef } | null {
  let at = data.length;
  for (let n = 0; n < MAX_PDF_ENCRYPT_KEYS; n++) {
    at = data.lastIndexOf('/Encrypt', at - 1, 'latin1');
    if (at < 0) return null;
    const next = data[at + 8];
    if (next !== undefined && !PDF_WHITESPACE.has(next) && !PDF_DELIMITERS.has(next)) continue;
    try {
      const value = new PdfParser(data, at + 8).value();
      if (value instanceof Map || (value !== null && typeof value === 'object' && 'ref' in value)) return { at, value };
    } catch {
      // not an entry of a dictionary: look further back
    }
  }
  return null;
}

/** The last "N G obj" definition's value (incremental updates append newer versions). */
function indirectObject(data: Buffer, [num, gen]: [number, number]): PdfValue {
  const text = data.toString('latin1');
  const re = new RegExp(`(?<![0-9])${num}\\s+${gen}\\s+obj`, 'g');
  let last = -1;
  for (let m = re.exec(text); m; m = re.exec(text)) last = m.index + m[0].length;
  if (last < 0) throw new RangeError(`object ${num} ${gen} not found`);
  return new PdfParser(data, last).value();
}

function firstId(data: Buffer, near: number): Buffer {
  // The /ID of the trailer (or xref stream dictionary) that holds /Encrypt: the nearest one, after it or before.
  for (const at of [data.indexOf('/ID', near, 'latin1'), data.lastIndexOf('/ID', near, 'latin1')]) {
    if (at < 0) continue;
    try {
      const id = new PdfParser(data, at + 3).value();
      if (Array.isArray(id) && Buffer.isBuffer(id[0])) return id[0];
    } catch {
      // not an ID array: try the other one
    }
  }
  return Buffer.alloc(0);
}

const PDF_PASSWORD_PAD = Buffer.from('28bf4e5e4e758a4164004e56fffa01082e2e00b6d0683e802f0ca9fe6453697a', 'hex');

function rc4(key: Buffer, input: Buffer): Buffer {
  const s = Array.from({ length: 256 }, (_, i) => i);
  for (let i = 0, j = 0; i < 256; i++) {
    j = (j + (s[i] as number) + (key[i % key.length] as number)) & 0xff;
    [s[i], s[j]] = [s[j] as number, s[i] as number];
  }
  const out = Buffer.alloc(input.length);
  for (let n = 0, i = 0, j = 0; n < input.length; n++) {
    i = (i + 1) & 0xff;
    j = (j + (s[i] as number)) & 0xff;
    [s[i], s[j]] = [s[j] as number, s[i] as number];
    out[n] = (input[n] as number) ^ (s[((s[i] as number) + (s[j] as number)) & 0xff] as number);
  }
  return out;
}

/** Algorithms 2, 4 and 5 of ISO 32000 (revisions 2 to 4): does the empty user password open the file? */
function emptyPasswordOpensRc4(enc: PdfDict, id: Buffer): boolean {
  const r = Number(enc.get('R'));
  const o = enc.get('O');
  const u = enc.get('U');
  const p = enc.get('P');
  if (!Buffer.isBuffer(o) || !Buffer.isBuffer(u) || typeof p !== 'number') return false;
  const length = enc.get('Length');
  const bits = typeof length === 'number' ? length : r === 4 ? 128 : 40;
  const keyBytes = r === 2 ? 5 : Math.min(16, Math.max(5, Math.floor(bits / 8)));
  const pBytes = Buffer.alloc(4);
  pBytes.writeInt32LE(p | 0);
  const md5 = createHash('md5').update(PDF_PASSWORD_PAD).update(o.subarray(0, 32)).update(pBytes).update(id);
  if (r >= 4 && enc.get('EncryptMetadata') === false) md5.update(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  let key = md5.digest();
  if (r >= 3) for (let i = 0; i < 50; i++) key = createHash('md5').update(key.subarray(0, keyBytes)).digest();
  key = key.subarray(0, keyBytes);
  if (r === 2) return rc4(key, PDF_PASSWORD_PAD).equals(u.subarray(0, 32));
  let x = rc4(key, createHash('md5').update(PDF_PASSWORD_PAD).update(id).digest());
  for (let i = 1; i <= 19; i++) x = rc4(Buffer.from(key.map((b) => b ^ i)), x);
  return x.equals(u.subarray(0, 16));
}

/** Algorithm 2.B of ISO 32000-2 (revision 6): the hash of a password with a salt. */
function hashR6(password: Buffer, salt: Buffer): Buffer {
  let k = createHash('sha256').update(password).update(salt).digest();
  for (let round = 0; ; round++) {
    const k1 = Buffer.concat(Array.from({ length: 64 }, () => Buffer.concat([password, k])));
    const cipher = createCipheriv('aes-128-cbc', k.subarray(0, 16), k.subarray(16, 32)).setAutoPadding(false);
    const e = Buffer.concat([cipher.update(k1), cipher.final()]);
    let sum = 0;
    for (let i = 0; i < 16; i++) sum += e[i] as number;
    k = createHash(['sha256', 'sha384', 'sha512'][sum % 3] as string).update(e).digest();
    if (round >= 63 && (e[e.length - 1] as number) <= round - 31) return k.subarray(0, 32);
  }
}

/** Revisions 5 and 6 (AES-256): the user password's hash with the validation salt equals the first 32 bytes of U. */
function emptyPasswordOpensAes256(enc: PdfDict): boolean {
  const u = enc.get('U');
  if (!Buffer.isBuffer(u) || u.length < 48) return false;
  const salt = u.subarray(32, 40);
  const hash = Number(enc.get('R')) === 5 ? createHash('sha256').update(salt).digest() : hashR6(Buffer.alloc(0), salt);
  return hash.equals(u.subarray(0, 32));
}

export interface PdfEncryption {
  /** Whether a reader must ask for a password: false when the empty user password opens the file. */
  needsPassword: boolean;
  /** The security handler and scheme, e.g. "standard handler R6 (AES-256)". */
  detail: string;
}

const PDF_SCHEMES: Record<number, string> = { 2: 'RC4 40-bit', 3: 'RC4 128-bit', 4: 'RC4/AES-128', 5: 'AES-256', 6: 'AES-256' };

/** The encryption of a PDF, or null when it has no /Encrypt. What cannot be read is taken as needing a password. */
export function pdfEncryption(data: Buffer): PdfEncryption | null {
  const entry = lastEncryptEntry(data);
  if (!entry) return null;
  const { at } = entry;
  let enc: PdfValue = entry.value;
  try {
    if (!(enc instanceof Map)) enc = indirectObject(data, enc.ref);
  } catch (err) {
    return { needsPassword: true, detail: `encryption dictionary unreadable (${(err as Error).message})` };
  }
  if (!(enc instanceof Map)) return { needsPassword: true, detail: 'encryption dictionary unreadable' };
  const filter = enc.get('Filter');
  const handler = filter && typeof filter === 'object' && 'name' in filter ? filter.name : '?';
  if (handler !== 'Standard') return { needsPassword: true, detail: `security handler ${handler} (certificate or plug-in)` };
  const r = Number(enc.get('R'));
  const detail = `standard handler R${r} (${PDF_SCHEMES[r] ?? 'unknown scheme'})`;
  let opens = false;
  try {
    if (r >= 2 && r <= 4) opens = emptyPasswordOpensRc4(enc, firstId(data, at));
    else if (r === 5 || r === 6) opens = emptyPasswordOpensAes256(enc);
  } catch {
    opens = false;
  }
  return opens ? { needsPassword: false, detail: `${detail}, empty user password: opens without one` } : { needsPassword: true, detail: `${detail}, user password required` };
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Null when the file (of that true type) is neither encrypted nor in an archive format no engine opens. Reads
 * zip (ZipCrypto flag, AES method 99 / extra 0x9901, strong encryption), 7z (AES coder in the header's folders,
 * encrypted header), RAR 4 and 5 (header and file encryption; unencrypted RAR is 'archive-unopenable'), OLE2
 * (EncryptedPackage; .doc FIB fEncrypted; .xls FILEPASS; .ppt CurrentUser token / EncryptedSummary) and PDF
 * (/Encrypt, reported only when the empty user password does not open it).
 */
export function findEncryption(data: Buffer, type: TrueType): EncryptionFinding | null {
  switch (type) {
    case 'zip':
      return zipEncryption(data);
    case '7z':
      return sevenZipEncryption(data);
    case 'rar':
      return rarFinding(data);
    case 'ooxml-encrypted':
    case 'doc':
    case 'xls':
    case 'ppt':
    case 'jtd':
      return oleEncryption(data);
    case 'pdf': {
      const pdf = pdfEncryption(data);
      return pdf?.needsPassword ? { kind: 'pdf-encrypted', detail: pdf.detail } : null;
    }
    case 'lzh':
    case 'unknown':
      return unopenable(data);
    default:
      return null;
  }
}
