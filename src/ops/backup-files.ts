/**
 * What `sekisho backup` and `sekisho restore` share: the manifest, where each file of dataDir sits in a backup,
 * hashing, the tar archive (the system `tar`), and the check that no process has dataDir's files open.
 * Rule: a backup holds mail and password hashes — every directory 0700, every file 0600.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { SekishoError, type ErrorCode } from '../errors.ts';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'sekisho-backup';
/** The layout of a backup; a restore refuses a manifest of a version it does not know. */
export const MANIFEST_VERSION = 1;
/** dataDir's files sit under this directory of a backup, at their path relative to dataDir. */
export const DATA_PREFIX = 'data';
/** The config file in use sits under this directory of a backup, by its base name. */
export const CONFIG_PREFIX = 'config';
export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

export interface ManifestFile {
  /** Relative to the backup's root, '/'-separated. */
  path: string;
  size: number;
  sha256: string;
}

/** The newest message of the MetaStore backup: mail accepted after it is not in the backup. */
export interface BackupPoint {
  receivedAt: number;
  id: string;
}

export interface BackupManifest {
  format: typeof MANIFEST_FORMAT;
  version: typeof MANIFEST_VERSION;
  sekishoVersion: string;
  createdAt: string;
  hostname: string;
  dataDir: string;
  /** The config file's path under the backup (config/<name>), null when the demo configuration was in use. */
  configFile: string | null;
  backupPoint: BackupPoint | null;
  /** Rows per table of each SQLite database, by its path relative to dataDir. */
  rowCounts: Record<string, Record<string, number>>;
  /** Messages whose state was taken from the live MetaStore because they finished while the spool was copied. */
  rolledForward: number;
  /** Quarantine records left out because their message is newer than the backup point. */
  quarantineAfterPoint: number;
  spoolFiles: number;
  files: ManifestFile[];
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The file at `rel` under `root`, refusing a path that could leave it (a hostile or damaged manifest). */
export function insideRoot(root: string, rel: string, code: ErrorCode): string {
  const file = path.resolve(root, rel);
  if (path.isAbsolute(rel) || rel.split('/').includes('..') || !file.startsWith(path.resolve(root) + path.sep)) {
    throw new SekishoError(code, `the path ${JSON.stringify(rel.slice(0, 200))} leaves ${root}`);
  }
  return file;
}

export function fsyncFile(file: string): void {
  const fd = openSync(file, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function isTarTarget(target: string): boolean {
  return /\.(tar|tar\.gz|tgz)$/.test(target);
}

function gzip(target: string): string[] {
  return /\.(tar\.gz|tgz)$/.test(target) ? ['-z'] : [];
}

/**
 * Writes the tree under `dir` into the tar archive `file` (created 0600 before tar writes into it), compressed
 * when `target` — the name the archive gets once complete — ends .tar.gz or .tgz.
 */
export function writeTar(dir: string, file: string, target: string): void {
  closeSync(openSync(file, 'wx', FILE_MODE));
  chmodSync(file, FILE_MODE);
  runTar(['-c', ...gzip(target), '-f', file, '-C', dir, '.'], 'SEKISHO_ERR_BACKUP_FAILED');
  fsyncFile(file);
}

/** Unpacks the tar archive `file` into the (empty) directory `dir`, without owners or absolute paths. */
export function extractTar(file: string, dir: string): void {
  runTar(['-x', ...gzip(file), '-f', file, '-C', dir, '--no-same-owner', '--no-same-permissions'], 'SEKISHO_ERR_RESTORE_CHECKSUM');
}

function runTar(args: string[], code: ErrorCode): void {
  const r = spawnSync('tar', args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new SekishoError(code, `tar ${args.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
  }
}

/**
 * The pids (other than this process) that have a file under `dir` open, from /proc (Linux). Processes of other
 * users are not visible to an unprivileged caller: run restore as the Sekisho user or root.
 */
export function openersOf(dir: string): number[] {
  const root = path.resolve(dir) + path.sep;
  const pids: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${name}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${name}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target.startsWith(root)) {
        pids.push(Number(name));
        break;
      }
    }
  }
  return pids;
}

export function sekishoVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}
