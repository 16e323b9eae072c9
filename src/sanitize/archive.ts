/**
 * Zips in a sanitized message (DESIGN §6): each entry is handled by the same rules as an attachment (the caller's
 * `convertEntry`, which recurses into a nested zip by calling sanitizeZip with depth + 1), and what comes out is one
 * new zip — converted files under their original path plus suffix, and `_sekisho-removed.txt` listing what was
 * removed — or the converted files one by one (a tenant option).
 *
 * The rule a reader must not break: no byte of the original is copied. Every entry is inflated, converted and written
 * anew; entry names are decoded (CP932 unless flagged UTF-8) and rebuilt from their segments, never trusted.
 *
 * Cost is bounded as in inspect-archive.ts, with the same ArchiveLimits over the whole tree: declared sizes are
 * added up and checked before anything is inflated, an entry never inflates past what it declared, and entries are
 * counted while the central directory is read. A nested call made from `convertEntry` shares the budget of the call
 * that made it (AsyncLocalStorage), and a limit exceeded anywhere in the tree removes the outermost archive whole.
 */
import { REASON_EN, REASON_JA } from './notice.ts';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import yauzl, { type Entry } from 'yauzl';
import yazl from 'yazl';
import { RATIO_FLOOR_BYTES, type ArchiveLimits } from '../scan/archive/inspect-archive.ts';
import type { PartResult, RemovalReason, SafeFile } from './types.ts';

export interface ArchiveEntryResult {
  /** The entry's path inside the archive, decoded and normalised. */
  path: string;
  result: PartResult;
}

export interface SanitizedArchive {
  result: PartResult;
  entries: ArchiveEntryResult[];
}

export interface SanitizeZipOptions {
  /** The archive's name: the repacked zip's name, and in details. */
  filename: string;
  /** One new zip, or the converted files attached one by one. */
  mode: 'repack' | 'individual';
  limits: ArchiveLimits;
  /** This archive's depth: the outermost archive is 1 (as in inspect-archive.ts). */
  depth?: number;
  /** Converts one entry by the attachment rules; `name` is the entry's file name without its directories. */
  convertEntry: (name: string, data: Buffer, depth: number) => Promise<PartResult>;
  signal?: AbortSignal;
}

/** The list of removed entries inside a repacked zip. */
export const REMOVED_LIST_NAME = '_sekisho-removed.txt';

/** A path segment is cut to this many characters: a member name may be 64 KiB long, and yazl refuses longer. */
const MAX_SEGMENT_CHARS = 120;
/** Directory levels kept in a path (deeper ones are dropped): bounds an output name whatever the input. */
const MAX_DIR_LEVELS = 16;
/** Removed entries named in a result's detail (the notice line); the rest are counted. */
const MAX_NAMED_REMOVALS = 5;

const COMPRESSION_STORED = 0;
const COMPRESSION_DEFLATE = 8;
/** General-purpose flag: PKWARE "strong encryption" (yauzl refuses such archives outright). */
const FLAG_STRONG_ENCRYPTION = 0x40;
const FLAG_UTF8_NAMES = 0x800;

/** Which reason an archive whose every entry was removed is removed for: the one that matters most to the reader. */
const REASON_RANK: Record<RemovalReason, number> = {
  malware: 0,
  encrypted: 1,
  executable: 2,
  'archive-limit': 3,
  'too-large': 4,
  timeout: 5,
  'unsupported-type': 6,
  'conversion-failed': 7,
};

class LimitExceeded extends Error {}

type Removal = { path: string; result: Extract<PartResult, { kind: 'removed' }> };

function isRemoval(e: ArchiveEntryResult): e is Removal {
  return e.result.kind === 'removed';
}

/** What the archives of one tree have used of the limits so far. */
interface Budget {
  /** Declared bytes of every archive opened so far, at every level. */
  expandedBytes: number;
  entries: number;
  /** Set by the archive that broke a limit, so that the archives around it are removed too. */
  overLimit?: string;
}

const treeBudget = new AsyncLocalStorage<Budget>();

function removed(reason: RemovalReason, detail: string): PartResult {
  return { kind: 'removed', reason, detail };
}

/** Zip names are UTF-8 when flagged, otherwise the sender's code page: in Japan, CP932 (Shift_JIS). */
function decodeName(entry: Entry): string {
  const raw = entry.fileNameRaw;
  if (entry.generalPurposeBitFlag & FLAG_UTF8_NAMES) return raw.toString('utf8');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw); // macOS and 7-Zip write UTF-8 without the flag
  } catch {
    return new TextDecoder('shift_jis').decode(raw); // WHATWG Shift_JIS is Windows' CP932
  }
}

/** One path segment made harmless: no control or bidi characters, nothing Windows refuses, a bounded length. */
function cleanSegment(s: string): string {
  const cleaned = s
    .replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, '')
    .replace(/[<>:"|?*/\\]/g, '_')
    .replace(/^[\s.]+|[\s.]+$/g, '');
  const chars = Array.from(cleaned);
  return chars.length > MAX_SEGMENT_CHARS ? chars.slice(0, MAX_SEGMENT_CHARS).join('') : cleaned;
}

/**
 * An entry name rebuilt as a relative path: backslashes are separators, `..`, `.`, empty segments and a drive
 * letter are dropped (zip-slip), each segment is cleaned. Undefined for a directory entry.
 */
function safePath(name: string, index: number): string | undefined {
  const unified = name.replace(/\\/g, '/');
  if (unified.endsWith('/')) return undefined;
  const segments = unified
    .replace(/^[a-zA-Z]:/, '')
    .split('/')
    .filter((s) => s !== '.' && s !== '..')
    .map(cleanSegment)
    .filter((s) => s !== '');
  const base = segments.pop() ?? `entry-${index + 1}`;
  return [...segments.slice(0, MAX_DIR_LEVELS), base].join('/');
}

function splitPath(path: string): { dir: string; base: string } {
  const at = path.lastIndexOf('/');
  return at < 0 ? { dir: '', base: path } : { dir: path.slice(0, at), base: path.slice(at + 1) };
}

/** `name` if unused, else `name (2).ext`, `name (3).ext`…: entries whose names collide after cleaning stay apart. */
function unique(path: string, used: Set<string>): string {
  let candidate = path;
  const { dir, base } = splitPath(path);
  const dot = base.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [base.slice(0, dot), base.slice(dot)] : [base, ''];
  for (let n = 2; used.has(candidate.toLowerCase()); n++) candidate = `${dir ? `${dir}/` : ''}${stem} (${n})${ext}`;
  used.add(candidate.toLowerCase());
  return candidate;
}

/** Inflates one entry into memory, never past its declared size; a CRC mismatch is a corrupt entry. */
async function inflate(zip: yauzl.ZipFile, entry: Entry, path: string, signal?: AbortSignal): Promise<Buffer> {
  const stream: Readable = await zip.openReadStreamPromise(entry);
  const chunks: Buffer[] = [];
  let bytes = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      signal?.throwIfAborted();
      bytes += chunk.length;
      if (bytes > entry.uncompressedSize) throw new LimitExceeded(`${path} inflates past its declared ${entry.uncompressedSize} bytes`);
      chunks.push(chunk);
    }
  } catch (err) {
    if (/too many bytes/.test((err as Error).message)) {
      throw new LimitExceeded(`${path} inflates past its declared ${entry.uncompressedSize} bytes`, { cause: err });
    }
    throw err;
  } finally {
    stream.destroy();
  }
  const data = Buffer.concat(chunks);
  if (zlib.crc32(data) !== entry.crc32) throw new Error('CRC mismatch: the entry is corrupt');
  return data;
}

/** Reads the central directory: entries counted against the tree's budget, declared sizes checked before inflating. */
async function readDirectory(zip: yauzl.ZipFile, archiveBytes: number, opts: SanitizeZipOptions, budget: Budget): Promise<Entry[]> {
  const { limits, filename, signal } = opts;
  const entries: Entry[] = [];
  let declared = 0;
  for await (const entry of zip.eachEntry()) {
    signal?.throwIfAborted();
    if (++budget.entries > limits.maxEntries) throw new LimitExceeded(`${filename}: more than ${limits.maxEntries} entries in the archive tree`);
    entries.push(entry);
    declared += entry.uncompressedSize;
  }
  if (budget.expandedBytes + declared > limits.maxExpandedBytes) {
    throw new LimitExceeded(`${filename} expands to more than ${limits.maxExpandedBytes} bytes in all`);
  }
  if (declared > RATIO_FLOOR_BYTES && declared / Math.max(archiveBytes, 1) > limits.maxRatio) {
    throw new LimitExceeded(`${filename} expands ${Math.round(declared / Math.max(archiveBytes, 1))}:1 (limit ${limits.maxRatio}:1)`);
  }
  budget.expandedBytes += declared;
  return entries;
}

/** One entry: encrypted or in a method we cannot inflate → removed; otherwise inflated and given to convertEntry. */
async function convertOne(zip: yauzl.ZipFile, entry: Entry, path: string, opts: SanitizeZipOptions, depth: number, budget: Budget): Promise<PartResult> {
  if (entry.isEncrypted() || entry.generalPurposeBitFlag & FLAG_STRONG_ENCRYPTION) return removed('encrypted', 'password-protected archive entry');
  if (entry.compressionMethod !== COMPRESSION_STORED && entry.compressionMethod !== COMPRESSION_DEFLATE) {
    return removed('unsupported-type', `compression method ${entry.compressionMethod} is not supported`);
  }
  let data: Buffer;
  try {
    data = await inflate(zip, entry, path, opts.signal);
  } catch (err) {
    if (err instanceof LimitExceeded || opts.signal?.aborted) throw err;
    return removed('conversion-failed', `the entry cannot be unpacked: ${(err as Error).message}`);
  }
  const result = await treeBudget.run(budget, () => opts.convertEntry(splitPath(path).base, data, depth + 1));
  if (budget.overLimit !== undefined) throw new LimitExceeded(budget.overLimit);
  return result;
}

function listingText(removals: Removal[]): string {
  const text = [
    'この圧縮ファイルの次のファイルは、メール無害化で削除されました。',
    ...removals.map(({ path, result }) => `・${path} → 削除：${REASON_JA[result.reason]}`),
    '',
    'The following files of this archive were removed by mail sanitization.',
    ...removals.map(({ path, result }) => `- ${path} → ${REASON_EN[result.reason]} (${result.detail})`),
    '',
  ].join('\r\n');
  return `\ufeff${text}`; // BOM and CRLF: Notepad on a Japanese Windows reads it as UTF-8
}

async function repack(files: { path: string; file: SafeFile }[], removals: Removal[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  const mtime = new Date();
  for (const { path, file } of files) {
    // PDFs and images are compressed already: deflating them again costs CPU for nothing
    zip.addBuffer(file.data, path, { mtime, compress: file.contentType.startsWith('text/') });
  }
  if (removals.length > 0) zip.addBuffer(Buffer.from(listingText(removals), 'utf8'), REMOVED_LIST_NAME, { mtime });
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function describeRemovals(removals: Removal[]): string {
  const named = removals.slice(0, MAX_NAMED_REMOVALS).map((r) => `${r.path} (${r.result.reason})`);
  const more = removals.length > MAX_NAMED_REMOVALS ? ` and ${removals.length - MAX_NAMED_REMOVALS} more` : '';
  return `${named.join(', ')}${more}`;
}

/** The whole archive's result from its entries' results. */
async function assemble(entries: ArchiveEntryResult[], opts: SanitizeZipOptions): Promise<PartResult> {
  const removals = entries.filter(isRemoval);
  const converted: { path: string; file: SafeFile }[] = [];
  for (const { path, result } of entries) {
    if (result.kind !== 'converted') continue;
    const { dir } = splitPath(path);
    for (const file of result.files) {
      // converted files go where their entry was, under the name the converter gave them (報告書.docx.pdf)
      const base = cleanSegment(file.filename) || 'file';
      converted.push({ path: dir ? `${dir}/${base}` : base, file });
    }
  }
  if (converted.length === 0) {
    if (removals.length === 0) return removed('conversion-failed', `${opts.filename} holds no files`);
    const reason = removals.map((r) => r.result.reason).reduce((a, b) => (REASON_RANK[b] < REASON_RANK[a] ? b : a));
    return removed(reason, `every entry was removed: ${describeRemovals(removals)}`);
  }
  const used = new Set<string>();
  const removedNote = removals.length > 0 ? `; removed: ${describeRemovals(removals)}` : '';
  if (opts.mode === 'individual') {
    const files = converted.map(({ path, file }) => ({ ...file, filename: unique(splitPath(path).base, used) }));
    return { kind: 'converted', files, detail: `${files.length} file(s) from the archive attached one by one${removedNote}` };
  }
  used.add(REMOVED_LIST_NAME.toLowerCase());
  const placed = converted.map(({ path, file }) => ({ path: unique(path, used), file }));
  const filename = /\.zip$/i.test(opts.filename) ? opts.filename : `${opts.filename}.zip`;
  const data = await repack(placed, removals);
  return { kind: 'converted', files: [{ filename, contentType: 'application/zip', data }], detail: `${placed.length} file(s) converted and repacked${removedNote}` };
}

async function sanitizeEntries(data: Buffer, opts: SanitizeZipOptions, depth: number, budget: Budget, entries: ArchiveEntryResult[]): Promise<PartResult> {
  if (depth > opts.limits.maxDepth) throw new LimitExceeded(`${opts.filename} is nested deeper than ${opts.limits.maxDepth} archives`);
  let zip: yauzl.ZipFile;
  try {
    zip = await yauzl.fromBufferPromise(data, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true, autoClose: false });
  } catch (err) {
    return removed('conversion-failed', `${opts.filename} is not a readable zip: ${(err as Error).message}`);
  }
  try {
    let directory: Entry[];
    try {
      directory = await readDirectory(zip, data.length, opts, budget);
    } catch (err) {
      if (err instanceof LimitExceeded || opts.signal?.aborted) throw err;
      if (/strong encryption/.test((err as Error).message)) return removed('encrypted', `${opts.filename} uses PKWARE strong encryption`);
      return removed('conversion-failed', `${opts.filename} is not a readable zip: ${(err as Error).message}`);
    }
    for (const [index, entry] of directory.entries()) {
      opts.signal?.throwIfAborted();
      const path = safePath(decodeName(entry), index);
      if (path === undefined) continue;
      entries.push({ path, result: await convertOne(zip, entry, path, opts, depth, budget) });
    }
  } finally {
    zip.close();
  }
  return assemble(entries, opts);
}

/**
 * Opens a zip, converts each entry with `convertEntry`, and returns one repacked zip or the converted files
 * individually. Encrypted entries are removed ('encrypted'); an archive over a limit anywhere in its tree is removed
 * whole ('archive-limit'); an archive whose every entry was removed is removed, for the weightiest of their reasons.
 * Rejects only when `signal` aborts or `convertEntry` rejects.
 */
export async function sanitizeZip(data: Buffer, opts: SanitizeZipOptions): Promise<SanitizedArchive> {
  const budget = treeBudget.getStore() ?? { expandedBytes: 0, entries: 0 };
  const entries: ArchiveEntryResult[] = [];
  try {
    return { result: await sanitizeEntries(data, opts, opts.depth ?? 1, budget, entries), entries };
  } catch (err) {
    if (!(err instanceof LimitExceeded)) throw err;
    budget.overLimit ??= err.message;
    return { result: removed('archive-limit', err.message), entries };
  }
}
