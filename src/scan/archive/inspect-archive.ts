/**
 * Archive limits, enforced before clamd sees the data: a zip bomb must cost milliseconds and bounded memory.
 *
 * Zip (central directory read with yauzl) and gzip are opened here; nested archives (zip in zip, zip in gzip…)
 * are followed down to `maxDepth`. Other formats (7z, rar, tar…) are left to clamd, whose own limits (MaxScanSize,
 * MaxFiles, MaxRecursion, AlertExceedsMax, AlertEncryptedArchive) bound and report them.
 *
 * How the cost stays bounded:
 * - Declared sizes are trusted only to reject: before any byte is inflated, the central directory's uncompressed
 *   sizes are added up and checked against `maxExpandedBytes` and `maxRatio` (a 42.zip-style bomb, whose deepest
 *   members declare gigabytes, is rejected having inflated about a hundred kilobytes of its upper levels).
 * - Inflating never goes past what was declared: an entry that produces more bytes than its header says (a lying
 *   header) is stopped at that point and reported. So the bytes really inflated stay within `maxExpandedBytes`.
 * - Inflated bytes are counted and dropped, except a member that starts like an archive, which is kept to be
 *   opened in turn, or one a MemberVisitor wants, handed to it; what is kept at once is at most `maxExpandedBytes`.
 * - Entries are counted across the whole tree against `maxEntries` while the central directory is read, so a
 *   directory of a million empty entries costs `maxEntries` iterations.
 */
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import yauzl, { type Entry } from 'yauzl';

export interface ArchiveLimits {
  /** Archives inside archives: the top-level archive is depth 1. */
  maxDepth: number;
  /** Bytes inflated over the whole tree (every level counted). */
  maxExpandedBytes: number;
  /** Declared (or, for gzip, inflated) bytes per byte of archive, checked once an archive expands past RATIO_FLOOR_BYTES. */
  maxRatio: number;
  /** Entries over the whole tree. */
  maxEntries: number;
}

export interface ArchiveFinding {
  symbol: 'ARCHIVE_LIMIT_EXCEEDED' | 'ARCHIVE_ENCRYPTED';
  detail: string;
}

/**
 * Members a caller wants to see besides archives (the unscannable check: documents and 7z/RAR archives, to test
 * them for encryption). A wanted member is kept whole, like a nested archive, handed over once inflated, and
 * dropped; so at most one such member (within its declared size) is held at a time.
 */
export interface MemberVisitor {
  /** Whether a member starting with `head` (its first MAGIC_BYTES bytes) is wanted. */
  wants(head: Buffer): boolean;
  /** `path` is "outer.zip/inner.zip/member" (names cut to MAX_NAME_CHARS). */
  visit(path: string, data: Buffer): Promise<void>;
}

export interface ArchiveInspection {
  findings: ArchiveFinding[];
  /** A limit was exceeded: the data must not be handed to an engine that would unpack it. */
  overLimit: boolean;
  /** Bytes really inflated (the cost paid), as opposed to the bytes the archives declare. */
  inflatedBytes: number;
}

/**
 * Below this many expanded bytes the ratio is not checked: a page of blank lines or a sparse spreadsheet compresses
 * 300:1 and is harmless at that size. A ratio bomb has to expand past it to hurt anyone.
 */
export const RATIO_FLOOR_BYTES = 1024 * 1024;
/** Names in details are cut to this length (a member name may be 64 KiB long). */
const MAX_NAME_CHARS = 120;
/** Encrypted member names listed per archive; the rest are counted. */
const MAX_ENCRYPTED_NAMES = 5;
/** Bytes needed to recognise an archive by its magic. */
const MAGIC_BYTES = 4;

const COMPRESSION_STORED = 0;
const COMPRESSION_DEFLATE = 8;
/** General-purpose flag: PKWARE "strong encryption" (yauzl refuses such archives outright). */
const FLAG_STRONG_ENCRYPTION = 0x40;
const FLAG_UTF8_NAMES = 0x800;

type Kind = 'zip' | 'gzip';

function kindOf(head: Buffer): Kind | undefined {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && (head[2] === 3 || head[2] === 5 || head[2] === 7)) return 'zip';
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 8) return 'gzip';
  return undefined;
}

export function isInspectableArchive(data: Buffer): boolean {
  return kindOf(data.subarray(0, MAGIC_BYTES)) !== undefined;
}

function shortName(s: string): string {
  return s.length > MAX_NAME_CHARS ? `${s.slice(0, MAX_NAME_CHARS)}…` : s;
}

/** Zip names are UTF-8 when flagged, otherwise the sender's code page: in Japan, CP932 (Shift_JIS). */
function entryName(entry: Entry): string {
  const raw = entry.fileNameRaw;
  if (entry.generalPurposeBitFlag & FLAG_UTF8_NAMES) return raw.toString('utf8');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    return new TextDecoder('shift_jis').decode(raw);
  }
}

class LimitExceeded extends Error {
  constructor(readonly limit: keyof ArchiveLimits | 'declaredSize', detail: string) {
    super(`${limit}: ${detail}`);
  }
}

interface Budget {
  /** Declared (zip) or inflated (gzip) bytes reserved so far. */
  expandedBytes: number;
  entries: number;
  inflatedBytes: number;
}

/** Drains `source`, stopping with LimitExceeded past `maxBytes`; returns the bytes only when they start like an archive or `visitor` wants them. */
async function drain(source: Readable, maxBytes: number, onOver: () => LimitExceeded, budget: Budget, signal?: AbortSignal, visitor?: MemberVisitor): Promise<{ bytes: number; kept?: Buffer }> {
  let bytes = 0;
  let keep: boolean | undefined;
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      signal?.throwIfAborted();
      bytes += chunk.length;
      budget.inflatedBytes += chunk.length;
      if (bytes > maxBytes) throw onOver();
      if (keep === undefined) {
        chunks.push(chunk);
        const head = Buffer.concat(chunks).subarray(0, MAGIC_BYTES);
        if (head.length >= MAGIC_BYTES) keep = kindOf(head) !== undefined || visitor?.wants(head) === true;
        if (keep === false) chunks.length = 0;
      } else if (keep) {
        chunks.push(chunk);
      }
    }
  } finally {
    source.destroy();
  }
  return { bytes, kept: keep ? Buffer.concat(chunks) : undefined };
}

class Inspector {
  readonly findings: ArchiveFinding[] = [];
  readonly #limits: ArchiveLimits;
  readonly budget: Budget = { expandedBytes: 0, entries: 0, inflatedBytes: 0 };
  readonly #signal: AbortSignal | undefined;
  readonly #visitor: MemberVisitor | undefined;

  constructor(limits: ArchiveLimits, signal?: AbortSignal, visitor?: MemberVisitor) {
    this.#limits = limits;
    this.#signal = signal;
    this.#visitor = visitor;
  }

  /** A kept member: opened when it is an archive, else handed to the visitor. */
  async #kept(data: Buffer, path: string, depth: number): Promise<void> {
    if (kindOf(data.subarray(0, MAGIC_BYTES))) await this.inspect(data, path, depth);
    else await this.#visitor?.visit(shortName(path), data);
  }

  async inspect(data: Buffer, where: string, depth: number): Promise<void> {
    const kind = kindOf(data.subarray(0, MAGIC_BYTES));
    if (!kind) return;
    if (depth > this.#limits.maxDepth) {
      throw new LimitExceeded('maxDepth', `${shortName(where)} is nested deeper than ${this.#limits.maxDepth} archives`);
    }
    if (kind === 'zip') await this.#zip(data, where, depth);
    else await this.#gzip(data, where, depth);
  }

  /** Throws when an archive of `archiveBytes` that expands to `bytes` breaks the expanded-size or ratio limit. */
  #checkExpansion(bytes: number, archiveBytes: number, where: string): void {
    const { maxExpandedBytes, maxRatio } = this.#limits;
    if (this.budget.expandedBytes + bytes > maxExpandedBytes) throw this.#tooBig(where);
    if (bytes > RATIO_FLOOR_BYTES && bytes / Math.max(archiveBytes, 1) > maxRatio) {
      throw new LimitExceeded('maxRatio', `${shortName(where)} expands ${Math.round(bytes / Math.max(archiveBytes, 1))}:1 (limit ${maxRatio}:1)`);
    }
  }

  #tooBig(where: string): LimitExceeded {
    return new LimitExceeded('maxExpandedBytes', `${shortName(where)} expands to more than ${this.#limits.maxExpandedBytes} bytes in all`);
  }

  async #zip(data: Buffer, where: string, depth: number): Promise<void> {
    let zip: yauzl.ZipFile;
    try {
      zip = await yauzl.fromBufferPromise(data, { lazyEntries: true, decodeStrings: false, validateEntrySizes: true, autoClose: false });
    } catch {
      return; // not a zip we can read: clamd decides what it is
    }
    try {
      const entries: Entry[] = [];
      const encrypted: string[] = [];
      let declared = 0;
      try {
        for await (const entry of zip.eachEntry()) {
          this.#signal?.throwIfAborted();
          if (++this.budget.entries > this.#limits.maxEntries) {
            throw new LimitExceeded('maxEntries', `${shortName(where)}: more than ${this.#limits.maxEntries} entries in the archive tree`);
          }
          if (entry.isEncrypted()) encrypted.push(entryName(entry));
          else entries.push(entry);
          declared += entry.uncompressedSize;
        }
      } catch (err) {
        if (err instanceof LimitExceeded || this.#signal?.aborted) throw err;
        // yauzl refuses strong encryption in the central directory; anything else is a malformed zip left to clamd
        if (/strong encryption/.test((err as Error).message)) encrypted.push('(strong encryption)');
        else return;
      }
      if (encrypted.length > 0) {
        const names = encrypted.slice(0, MAX_ENCRYPTED_NAMES).map(shortName).join(', ');
        const more = encrypted.length > MAX_ENCRYPTED_NAMES ? ` and ${encrypted.length - MAX_ENCRYPTED_NAMES} more` : '';
        this.findings.push({ symbol: 'ARCHIVE_ENCRYPTED', detail: `${shortName(where)}: ${names}${more}` });
      }
      this.#checkExpansion(declared, data.length, where);
      this.budget.expandedBytes += declared;

      for (const entry of entries) {
        // other methods (bzip2, lzma, zstd…) are clamd's to unpack, within the declared sizes checked above
        if (entry.compressionMethod !== COMPRESSION_STORED && entry.compressionMethod !== COMPRESSION_DEFLATE) continue;
        if (entry.generalPurposeBitFlag & FLAG_STRONG_ENCRYPTION) continue;
        const path = `${where}/${entryName(entry)}`;
        let stream: Readable;
        try {
          stream = await zip.openReadStreamPromise(entry);
        } catch {
          continue;
        }
        let kept: Buffer | undefined;
        try {
          ({ kept } = await drain(
            stream,
            entry.uncompressedSize,
            () => new LimitExceeded('declaredSize', `${shortName(path)} inflates past its declared ${entry.uncompressedSize} bytes`),
            this.budget,
            this.#signal,
            this.#visitor,
          ));
        } catch (err) {
          if (err instanceof LimitExceeded || this.#signal?.aborted) throw err;
          if (/too many bytes/.test((err as Error).message)) {
            throw new LimitExceeded('declaredSize', `${shortName(path)} inflates past its declared ${entry.uncompressedSize} bytes`);
          }
          continue; // corrupt member: clamd sees it
        }
        if (kept) await this.#kept(kept, path, depth + 1);
      }
    } finally {
      zip.close();
    }
  }

  async #gzip(data: Buffer, where: string, depth: number): Promise<void> {
    // ISIZE (the last 4 bytes) is the size modulo 4 GiB: trusted to reject, never to allocate.
    this.#checkExpansion(data.length >= 4 ? data.readUInt32LE(data.length - 4) : 0, data.length, where);
    // gzip has no trustworthy size: inflate, and stop at whichever limit comes first
    const remaining = this.#limits.maxExpandedBytes - this.budget.expandedBytes;
    const ratioCap = Math.max(RATIO_FLOOR_BYTES, data.length * this.#limits.maxRatio);
    let result: { bytes: number; kept?: Buffer };
    try {
      result = await drain(
        Readable.from([data]).pipe(zlib.createGunzip()),
        Math.min(remaining, ratioCap),
        () =>
          remaining <= ratioCap
            ? this.#tooBig(where)
            : new LimitExceeded('maxRatio', `${shortName(where)} expands more than ${this.#limits.maxRatio}:1`),
        this.budget,
        this.#signal,
        this.#visitor,
      );
    } catch (err) {
      if (err instanceof LimitExceeded || this.#signal?.aborted) throw err;
      return; // corrupt gzip: clamd sees it
    }
    this.budget.expandedBytes += result.bytes;
    if (result.kept) await this.#kept(result.kept, `${where}/(gunzip)`, depth + 1);
  }
}

/**
 * Inspects one decoded attachment. `name` is used in details only. Never throws for malformed archives (they are
 * clamd's to judge); throws only when `signal` aborts or `visitor` throws.
 */
export async function inspectArchive(data: Buffer, name: string, limits: ArchiveLimits, signal?: AbortSignal, visitor?: MemberVisitor): Promise<ArchiveInspection> {
  const inspector = new Inspector(limits, signal, visitor);
  try {
    await inspector.inspect(data, name, 1);
  } catch (err) {
    if (!(err instanceof LimitExceeded)) throw err;
    return {
      findings: [...inspector.findings, { symbol: 'ARCHIVE_LIMIT_EXCEEDED', detail: err.message }],
      overLimit: true,
      inflatedBytes: inspector.budget.inflatedBytes,
    };
  }
  return { findings: inspector.findings, overLimit: false, inflatedBytes: inspector.budget.inflatedBytes };
}
