/**
 * hash-blocklist — the SOC's own list of known-bad files.
 *
 * What: the SHA-256 of every decoded MIME part (attachments of attached messages included) is looked up in a file
 * the SOC maintains; a hit emits HASH_BLOCKLISTED naming the part, the hash and the name the list gives it.
 * Why: the SOC hears of a malicious attachment (a CSIRT alert, a sandbox report) hours before antivirus signatures
 * ship; a hash stops exact copies at once, without waiting for anyone's update.
 *
 * File format: one hex SHA-256 per line, optionally followed by a name; `#` starts a comment (to the end of the
 * line); blank lines are ignored. Example: `9f86d0…0a08  請求書.exe  # JPCERT alert 2024-05`.
 *
 * Reload: a watcher on the file's directory (deploy tools and editors replace the file by rename) plus an mtime,
 * size and inode check at most every STAT_INTERVAL_MS during scans, in case the watcher misses an event (NFS).
 * A file that cannot be read or has a malformed line keeps the last good list in force and logs the error; at
 * start there is no last good list, so it is a start-up error (SEKISHO_ERR_HASH_BLOCKLIST_INVALID).
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { SekishoError } from '../../errors.ts';
import type { Check, CheckContext, SymbolHit } from '../check.ts';

export interface HashBlocklistCheckOptions {
  /** clamav.hashBlocklistFile */
  file: string;
  log: Logger;
}

export interface HashBlocklistCheck extends Check {
  /** Number of hashes in force. */
  readonly size: number;
  /** Re-reads the file if it changed; returns whether a new list is now in force. */
  reload(): boolean;
  /** Stops watching the file. */
  close(): void;
}

/** Longest the scans go on with a stale list when the watcher missed a change: one stat per this interval. */
const STAT_INTERVAL_MS = 5_000;
/** Editors write in several steps: wait this long after the last event before reading. */
const WATCH_SETTLE_MS = 100;

const LINE = /^([0-9a-fA-F]{64})(?:\s+(.*))?$/;

/** Parses the blocklist text into hash → name ('' when the line has none). Throws on the first malformed line. */
export function parseHashBlocklist(text: string): Map<string, string> {
  const hashes = new Map<string, string>();
  text
    .replace(/^\uFEFF/, '')
    .split(/\r?\n/)
    .forEach((rawLine, i) => {
      const hashAt = rawLine.indexOf('#');
      const line = (hashAt < 0 ? rawLine : rawLine.slice(0, hashAt)).trim();
      if (!line) return;
      const m = LINE.exec(line);
      if (!m?.[1]) throw new Error(`line ${i + 1}: expected a 64-digit hex SHA-256, got ${JSON.stringify(line.slice(0, 80))}`);
      hashes.set(m[1].toLowerCase(), (m[2] ?? '').trim());
    });
  return hashes;
}

interface Loaded {
  hashes: Map<string, string>;
  /** mtime, size and inode of the file the list came from. */
  stamp: string;
}

function stampOf(file: string): string {
  const st = statSync(file);
  return `${st.mtimeMs}:${st.size}:${st.ino}`;
}

function load(file: string): Loaded {
  const stamp = stampOf(file);
  return { hashes: parseHashBlocklist(readFileSync(file, 'utf8')), stamp };
}

export function createHashBlocklistCheck(opts: HashBlocklistCheckOptions): HashBlocklistCheck {
  const file = path.resolve(opts.file);
  let current: Loaded;
  try {
    current = load(file);
  } catch (err) {
    throw new SekishoError('SEKISHO_ERR_HASH_BLOCKLIST_INVALID', `${file}: ${(err as Error).message}`, { cause: err });
  }
  opts.log.info({ file, hashes: current.hashes.size }, 'hash blocklist loaded');
  /** Stamp of the last file that failed to load, so that one broken version is logged once. */
  let rejectedStamp: string | undefined;
  let lastStat = Date.now();

  const reload = (): boolean => {
    lastStat = Date.now();
    let stamp: string;
    try {
      stamp = stampOf(file);
    } catch (err) {
      if (rejectedStamp !== 'missing') opts.log.error({ err, file }, 'hash blocklist unreadable: keeping the last good list');
      rejectedStamp = 'missing';
      return false;
    }
    if (stamp === current.stamp || stamp === rejectedStamp) return false;
    try {
      current = load(file);
    } catch (err) {
      rejectedStamp = stamp;
      opts.log.error({ err, file }, 'hash blocklist malformed: keeping the last good list');
      return false;
    }
    rejectedStamp = undefined;
    opts.log.info({ file, hashes: current.hashes.size }, 'hash blocklist reloaded');
    return true;
  };

  let settle: NodeJS.Timeout | undefined;
  const watcher: FSWatcher = watch(path.dirname(file), { persistent: false }, (_event, name) => {
    if (name !== null && name !== path.basename(file)) return;
    clearTimeout(settle);
    settle = setTimeout(reload, WATCH_SETTLE_MS);
    settle.unref();
  });
  watcher.on('error', (err) => opts.log.warn({ err, file }, 'cannot watch the hash blocklist: relying on periodic checks'));

  return {
    name: 'hash-blocklist',
    failSymbol: 'HASH_BLOCKLIST_FAIL',
    get size() {
      return current.hashes.size;
    },
    reload,
    close() {
      clearTimeout(settle);
      watcher.close();
    },
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      if (Date.now() - lastStat >= STAT_INTERVAL_MS) reload();
      const { parts } = await ctx.parsed();
      const details: string[] = [];
      for (const part of parts) {
        if (part.content.length === 0) continue;
        const sha256 = createHash('sha256').update(part.content).digest('hex');
        const listed = current.hashes.get(sha256);
        if (listed === undefined) continue;
        const label = part.filename ? `part ${part.path} (${part.filename})` : `part ${part.path}`;
        details.push(`${label}: sha256 ${sha256}${listed ? ` ${listed}` : ''}`);
      }
      return details.length > 0 ? [{ name: 'HASH_BLOCKLISTED', details }] : [];
    },
  };
}
