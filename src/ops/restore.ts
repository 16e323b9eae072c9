/**
 * `sekisho restore`: a backup (ops/backup.ts) back into a dataDir. Every file is checked against the manifest
 * before anything is written; the files go to a staging directory beside dataDir that is renamed into place, so a
 * failed restore leaves no half-restored dataDir. What was unfinished at the backup point is put back on the queue
 * by the reconciler at the next start (queue/reconciler.ts): only recipients still pending or deferred are
 * delivered, a recipient recorded `delivered` stays delivered. Redis is not restored (DESIGN §2).
 * Rule: never over a running instance — the target must be empty, or (--force) moved aside while no process has
 * one of its files open.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ADMIN_DB_FILE, openAdminStores } from '../admin/admin-stores.ts';
import type { AuditVerification } from '../admin/audit/audit-log.ts';
import { SekishoError } from '../errors.ts';
import {
  CONFIG_PREFIX,
  DATA_PREFIX,
  DIR_MODE,
  extractTar,
  FILE_MODE,
  fsyncFile,
  insideRoot,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  openersOf,
  sha256,
  type BackupManifest,
} from './backup-files.ts';
import { META_DB_FILE, QUARANTINE_DB_FILE } from './backup.ts';

/** A backup opened for a restore: its files checked against the manifest. */
export interface OpenedBackup {
  dir: string;
  manifest: BackupManifest;
  /** Removes what opening an archive unpacked; nothing for a directory. */
  close(): void;
}

export interface RestoreResult {
  dataDir: string;
  /** Where --force moved the old dataDir. */
  movedAside: string | null;
  files: number;
  /** Messages by state in the restored MetaStore. */
  messages: Record<string, number>;
  /** Recipients pending or deferred: the reconciler queues them at the next start. */
  openRecipients: number;
  /** Quarantine records by state. */
  quarantine: Record<string, number>;
  audit: AuditVerification | null;
}

function checksum(message: string): SekishoError {
  return new SekishoError('SEKISHO_ERR_RESTORE_CHECKSUM', message);
}

/**
 * Opens a backup directory, or unpacks an archive (.tar, .tar.gz) into a new directory under `workDir`, and checks
 * every file of the manifest (size, SHA-256). Throws SEKISHO_ERR_RESTORE_CHECKSUM on anything missing or changed.
 */
export function openBackup(from: string, workDir: string): OpenedBackup {
  const src = path.resolve(from);
  if (!existsSync(src)) throw checksum(`${src} does not exist`);
  let dir = src;
  let unpacked: string | undefined;
  if (statSync(src).isFile()) {
    mkdirSync(workDir, { recursive: true, mode: DIR_MODE });
    unpacked = mkdtempSync(path.join(workDir, '.sekisho-restore-'));
    dir = unpacked;
  }
  const close = () => {
    if (unpacked) rmSync(unpacked, { recursive: true, force: true });
  };
  try {
    if (unpacked) extractTar(src, unpacked);
    const manifest = readManifest(dir);
    for (const f of manifest.files) {
      const file = insideRoot(dir, f.path, 'SEKISHO_ERR_RESTORE_CHECKSUM');
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch {
        throw checksum(`${f.path} is listed in the manifest but missing from the backup`);
      }
      if (bytes.length !== f.size || sha256(bytes) !== f.sha256) throw checksum(`${f.path} does not match its size and SHA-256 in the manifest`);
    }
    return { dir, manifest, close };
  } catch (err) {
    close();
    throw err;
  }
}

function readManifest(dir: string): BackupManifest {
  let m: BackupManifest;
  try {
    m = JSON.parse(readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')) as BackupManifest;
  } catch (err) {
    throw checksum(`${path.join(dir, MANIFEST_FILE)} is missing or not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (m.format !== MANIFEST_FORMAT || m.version !== MANIFEST_VERSION || !Array.isArray(m.files)) {
    throw checksum(`${dir}: not a Sekisho backup of manifest version ${MANIFEST_VERSION}`);
  }
  return m;
}

/** Writes the backup's config file to `file` (which must not exist), 0600; false when the backup has none. */
export function restoreConfigFile(backup: OpenedBackup, file: string): boolean {
  if (!backup.manifest.configFile?.startsWith(`${CONFIG_PREFIX}/`)) return false;
  const src = insideRoot(backup.dir, backup.manifest.configFile, 'SEKISHO_ERR_RESTORE_CHECKSUM');
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileSync(file, readFileSync(src), { mode: FILE_MODE, flag: 'wx' });
  return true;
}

export async function restoreBackup(backup: OpenedBackup, opts: { dataDir: string; force?: boolean; now?: () => number }): Promise<RestoreResult> {
  const dataDir = path.resolve(opts.dataDir);
  const movedAside = clearTarget(dataDir, opts.force ?? false, opts.now ?? Date.now);
  const staging = `${dataDir}.restoring-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true, mode: DIR_MODE });
  let files = 0;
  try {
    for (const f of backup.manifest.files) {
      if (!f.path.startsWith(`${DATA_PREFIX}/`)) continue;
      const dest = insideRoot(staging, f.path.slice(DATA_PREFIX.length + 1), 'SEKISHO_ERR_RESTORE_CHECKSUM');
      mkdirSync(path.dirname(dest), { recursive: true, mode: DIR_MODE });
      writeFileSync(dest, readFileSync(path.join(backup.dir, f.path)), { mode: FILE_MODE, flag: 'wx' });
      fsyncFile(dest);
      files++;
    }
    renameSync(staging, dataDir);
    fsyncFile(path.dirname(dataDir));
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  return { dataDir, movedAside, files, ...summarize(dataDir), audit: await verifyAudit(dataDir) };
}

/** Makes room for the restore: nothing there, an empty directory, or (force) the old dataDir renamed aside. */
function clearTarget(dataDir: string, force: boolean, now: () => number): string | null {
  if (!existsSync(dataDir)) {
    mkdirSync(path.dirname(dataDir), { recursive: true });
    return null;
  }
  const openers = openersOf(dataDir);
  if (openers.length > 0) {
    throw new SekishoError('SEKISHO_ERR_RESTORE_TARGET', `${dataDir} is in use by process(es) ${openers.join(', ')}: stop Sekisho first`);
  }
  if (statSync(dataDir).isDirectory() && readdirSync(dataDir).length === 0) {
    rmSync(dataDir, { recursive: true });
    return null;
  }
  if (!force) throw new SekishoError('SEKISHO_ERR_RESTORE_TARGET', `${dataDir} is not empty: restore onto an empty dataDir, or give --force to move it aside`);
  const aside = `${dataDir}.before-restore-${new Date(now()).toISOString().replace(/[:.]/g, '-')}`;
  renameSync(dataDir, aside);
  return aside;
}

function summarize(dataDir: string): Pick<RestoreResult, 'messages' | 'openRecipients' | 'quarantine'> {
  const counts = (file: string, sql: string): Record<string, number> => {
    if (!existsSync(file)) return {};
    const db = new Database(file, { readonly: true });
    try {
      return Object.fromEntries((db.prepare(sql).all() as { state: string; n: number }[]).map((r) => [r.state, r.n]));
    } finally {
      db.close();
    }
  };
  const meta = path.join(dataDir, META_DB_FILE);
  const recipients = counts(meta, 'SELECT state, count(*) AS n FROM recipients GROUP BY state');
  return {
    messages: counts(meta, 'SELECT state, count(*) AS n FROM messages GROUP BY state'),
    openRecipients: (recipients.pending ?? 0) + (recipients.deferred ?? 0),
    quarantine: counts(path.join(dataDir, QUARANTINE_DB_FILE), 'SELECT state, count(*) AS n FROM quarantine GROUP BY state'),
  };
}

async function verifyAudit(dataDir: string): Promise<AuditVerification | null> {
  if (!existsSync(path.join(dataDir, ADMIN_DB_FILE))) return null;
  const stores = openAdminStores({ dataDir });
  try {
    return await stores.audit.verify();
  } finally {
    await stores.close();
  }
}
