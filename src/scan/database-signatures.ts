/**
 * Counts the signatures in clamd's database directories, for the antivirus currency report. clamd cannot tell its
 * own count over its socket (STATS has threads and memory pools only; its "Loaded N signatures" goes to a LogFile,
 * which the managed clamd has none of), so this counts what it loads: the number each official container
 * (.cvd/.cld/.cud) declares in its header, the newest version per database, plus one per signature line of the
 * local files. Rule: a file that cannot be read counts nothing and fails nothing; the count is a report, not a check.
 */
import { createReadStream } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

/** Official containers: a 512-byte text header, then the (gzipped) tar of the database. */
const CONTAINER_EXTENSIONS = new Set(['.cvd', '.cld', '.cud']);
/** Local files with one signature per line (hashes, body, logical, container, phishing, allow lists). */
const LINE_EXTENSIONS = new Set([
  '.hdb', '.hsb', '.hdu', '.hsu', '.mdb', '.msb', '.mdu', '.msu', '.imp',
  '.ndb', '.ndu', '.ldb', '.ldu', '.cdb', '.idb', '.pdb', '.gdb', '.wdb', '.crb',
  '.fp', '.sfp',
]);
const YARA_EXTENSIONS = new Set(['.yar', '.yara']);
/** One compiled bytecode signature per file. */
const BYTECODE_EXTENSION = '.cbc';
/** Length of a container's header (ClamAV's CVD format). */
const CONTAINER_HEADER_BYTES = 512;
const YARA_RULE = /^\s*(?:(?:private|global)\s+)*rule\s/gm;

/** What one container's header says: `ClamAV-VDB:<date>:<version>:<sigs>:<flevel>:<md5>:<dsig>:<builder>:<stime>`. */
export interface ContainerHeader {
  version: number;
  signatures: number;
  /** Build time, ms since the epoch. */
  builtAt: number;
}

export function parseContainerHeader(header: string): ContainerHeader | null {
  const f = header.slice(0, CONTAINER_HEADER_BYTES).trimEnd().split(':');
  if (f[0] !== 'ClamAV-VDB' || f.length < 9) return null;
  // The date field holds no colon ("03 Dec 2026 04-00 +0000"), so the fields are positional.
  const [version, signatures, stime] = [f[2], f[3], f[8]].map(Number);
  if (!Number.isSafeInteger(version) || !Number.isSafeInteger(signatures) || !Number.isSafeInteger(stime)) return null;
  return { version: version!, signatures: signatures!, builtAt: stime! * 1000 };
}

/** Counts of files already read, by path, kept while their size and mtime stay (freshclam rewrites, then renames). */
export type SignatureCountCache = Map<string, { size: number; mtimeMs: number; count: number; version?: number }>;

/**
 * The signatures clamd loads from `dirs` (null when none is given). A file name found in several directories
 * counts once, the last directory's (as the managed clamd's database links: the project's files win).
 */
export async function countDatabaseSignatures(dirs: readonly string[], cache: SignatureCountCache = new Map()): Promise<number | null> {
  if (dirs.length === 0) return null;
  const files = new Map<string, string>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) files.set(name, path.join(dir, name));
  }
  /** Per database name (daily, main, …): clamd loads the newest of its .cvd and .cld. */
  const containers = new Map<string, { version: number; count: number }>();
  let total = 0;
  for (const [name, file] of files) {
    const ext = path.extname(name).toLowerCase();
    const counted = await countFile(file, ext, cache);
    if (!counted) continue;
    if (counted.version === undefined) {
      total += counted.count;
      continue;
    }
    const stem = path.basename(name, path.extname(name));
    const seen = containers.get(stem);
    if (!seen || counted.version > seen.version) containers.set(stem, { version: counted.version, count: counted.count });
  }
  for (const c of containers.values()) total += c.count;
  return total;
}

async function countFile(file: string, ext: string, cache: SignatureCountCache): Promise<{ count: number; version?: number } | null> {
  const isContainer = CONTAINER_EXTENSIONS.has(ext);
  if (!isContainer && !LINE_EXTENSIONS.has(ext) && !YARA_EXTENSIONS.has(ext) && ext !== BYTECODE_EXTENSION) return null;
  try {
    const st = await stat(file);
    if (!st.isFile()) return null;
    const hit = cache.get(file);
    if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit;
    let entry: { count: number; version?: number };
    if (isContainer) {
      const header = await readHeader(file);
      if (!header) return null;
      entry = { count: header.signatures, version: header.version };
    } else if (YARA_EXTENSIONS.has(ext)) {
      entry = { count: (await readFile(file, 'utf8')).match(YARA_RULE)?.length ?? 0 };
    } else if (ext === BYTECODE_EXTENSION) {
      entry = { count: 1 };
    } else {
      entry = { count: await countSignatureLines(file) };
    }
    cache.set(file, { size: st.size, mtimeMs: st.mtimeMs, ...entry });
    return entry;
  } catch {
    return null;
  }
}

async function readHeader(file: string): Promise<ContainerHeader | null> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(CONTAINER_HEADER_BYTES);
    const { bytesRead } = await fh.read(buf, 0, CONTAINER_HEADER_BYTES, 0);
    return parseContainerHeader(buf.subarray(0, bytesRead).toString('latin1'));
  } finally {
    await fh.close();
  }
}

/** Lines that are neither empty nor `#` comments, streamed: a third-party local database can be tens of MB. */
async function countSignatureLines(file: string): Promise<number> {
  let count = 0;
  let atLineStart = true;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    for (const byte of chunk) {
      if (atLineStart && byte !== 0x0a && byte !== 0x0d && byte !== 0x23) count++;
      atLineStart = byte === 0x0a;
    }
  }
  return count;
}
