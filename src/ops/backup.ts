/**
 * `sekisho backup`: an online backup of dataDir while mail flows. The order is what makes it consistent:
 *   1. meta.sqlite first, in one step of SQLite's online backup API: a snapshot that fixes the set of messages the
 *      backup knows (the backup point is its newest message).
 *   2. the spool files (raw and sanitized copies) of exactly the messages in that snapshot; files of newer messages
 *      (accepted after the snapshot, or still in their SMTP session) are skipped.
 *   3. roll-forward: a message the snapshot has unfinished may have finished while the spool was copied, and a
 *      finished message's bytes leave the spool only after its `done` is durable (queue/finalize.ts,
 *      quarantine/retention.ts). So every such message whose live state is final now takes its live rows into the
 *      backup: no message in the backup waits for bytes it does not have.
 *   4. quarantine.sqlite after the spool copy; records of messages newer than the backup point are left out.
 *   5. admin.sqlite with audit-anchor.json under the admin database's write lock (BEGIN IMMEDIATE on a second
 *      connection): no append can land between the two, so the restored chain and anchor agree. Then the others.
 * Rule: the live dataDir is only read — every fix-up happens on the copies in the staging directory.
 */
import Database from 'better-sqlite3';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ADMIN_DB_FILE } from '../admin/admin-stores.ts';
import { AUDIT_ANCHOR_FILE, SqliteAuditLog } from '../admin/audit/sqlite-audit-log.ts';
import type { AuditVerification } from '../admin/audit/audit-log.ts';
import type { Config } from '../config/schema.ts';
import { SekishoError } from '../errors.ts';
import { finalMessageStates, messageStates } from '../spool/meta-store.ts';
import {
  CONFIG_PREFIX,
  DATA_PREFIX,
  DIR_MODE,
  FILE_MODE,
  fsyncFile,
  isTarTarget,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  sekishoVersion,
  sha256,
  writeTar,
  type BackupManifest,
  type BackupPoint,
  type ManifestFile,
} from './backup-files.ts';

export const META_DB_FILE = 'meta.sqlite';
export const QUARANTINE_DB_FILE = 'quarantine.sqlite';
export const SENDER_LISTS_DB_FILE = 'sender-lists.sqlite';
/** The digest links' signing key (quarantine/digest.ts): restored links keep working. */
export const DIGEST_KEY_FILE = 'digest.key';
const SPOOL_DIR = 'spool';
/** Writes in progress: never part of a backup. */
const SPOOL_TMP_DIR = 'tmp';
/**
 * Pages per step of SQLite's backup API: all of them, so each database is copied in one step under one read
 * snapshot. In smaller steps a write by the ingress between two steps restarts the copy, which under steady mail
 * might never finish. One step only blocks this command's thread; in WAL mode the writers go on meanwhile.
 */
const ALL_PAGES = 0x7fffffff;
/** How long the backup waits for another process's write lock (the admin database's, step 5). */
const BUSY_TIMEOUT_MS = 30_000;

const unfinishedStates = messageStates.filter((s) => !finalMessageStates.includes(s));

export interface BackupOptions {
  config: Pick<Config, 'dataDir' | 'antispam'>;
  /** The config file in use; copied into the backup. */
  configFile?: string;
  /** A directory (must not exist, or be empty) or a FILE ending .tar, .tar.gz or .tgz (must not exist). */
  to: string;
  now?: () => number;
  /** Called after each step of the header's order (progress output; tests act between steps). */
  onStep?: (step: BackupStep) => void | Promise<void>;
}

/** The steps of the header, in order: after `meta` the backup point is fixed. */
export type BackupStep = 'meta' | 'spool' | 'quarantine' | 'admin';

export interface BackupResult {
  target: string;
  manifest: BackupManifest;
  /** The audit chain of the copy, with its anchor. */
  audit: AuditVerification | null;
}

export async function takeBackup(opts: BackupOptions): Promise<BackupResult> {
  const dataDir = path.resolve(opts.config.dataDir);
  const target = path.resolve(opts.to);
  if (!existsSync(path.join(dataDir, META_DB_FILE))) throw failed(`${dataDir} holds no ${META_DB_FILE}: not a Sekisho dataDir`);
  checkTarget(target);
  const staging = `${target}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(path.join(staging, DATA_PREFIX), { recursive: true, mode: DIR_MODE });
  try {
    const manifest = await stage(dataDir, staging, opts);
    const audit = await verifyStagedAudit(staging);
    const dbs = [META_DB_FILE, QUARANTINE_DB_FILE, ADMIN_DB_FILE, SENDER_LISTS_DB_FILE, bayesFile(dataDir, opts.config)];
    for (const rel of dbs) if (rel) finishDatabase(path.join(staging, DATA_PREFIX, rel), rel, manifest);
    manifest.files = hashTree(staging);
    writeFileSync(path.join(staging, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, { mode: FILE_MODE });
    fsyncFile(path.join(staging, MANIFEST_FILE));
    if (isTarTarget(target)) {
      writeTar(staging, `${staging}.tar`, target);
      renameSync(`${staging}.tar`, target);
      rmSync(staging, { recursive: true, force: true });
    } else {
      if (existsSync(target)) rmSync(target, { recursive: true });
      renameSync(staging, target);
    }
    return { target, manifest, audit };
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    rmSync(`${staging}.tar`, { force: true });
    throw err instanceof SekishoError ? err : failed(err instanceof Error ? err.message : String(err), err);
  }
}

function failed(message: string, cause?: unknown): SekishoError {
  return new SekishoError('SEKISHO_ERR_BACKUP_FAILED', message, { cause });
}

/** A backup never overwrites anything: a new file, or a new (or empty) directory. */
function checkTarget(target: string): void {
  if (!existsSync(target)) return;
  if (!isTarTarget(target) && statSync(target).isDirectory() && readdirSync(target).length === 0) return;
  throw failed(`${target} already exists: give a new file or directory`);
}

/** Steps 1–5 of the header, then the small files; fills everything of the manifest but `files`. */
async function stage(dataDir: string, staging: string, opts: BackupOptions): Promise<BackupManifest> {
  const data = path.join(staging, DATA_PREFIX);
  const step = async (name: BackupStep) => opts.onStep?.(name);
  await backupDatabase(path.join(dataDir, META_DB_FILE), path.join(data, META_DB_FILE));
  await step('meta');
  const meta = new Database(path.join(data, META_DB_FILE));
  let spoolFiles: number;
  let rolledForward: number;
  let quarantineAfterPoint = 0;
  let backupPoint: BackupPoint | null;
  try {
    spoolFiles = copySpool(dataDir, data, meta);
    await step('spool');
    rolledForward = rollForward(path.join(dataDir, META_DB_FILE), meta);
    backupPoint = (meta.prepare('SELECT id, received_at AS receivedAt FROM messages ORDER BY received_at DESC, id DESC LIMIT 1').get() as BackupPoint | undefined) ?? null;
    if (await backupDatabase(path.join(dataDir, QUARANTINE_DB_FILE), path.join(data, QUARANTINE_DB_FILE))) {
      quarantineAfterPoint = pruneQuarantine(path.join(data, QUARANTINE_DB_FILE), meta);
    }
    await step('quarantine');
  } finally {
    meta.close();
  }
  await backupAdmin(dataDir, data);
  await step('admin');
  await backupDatabase(path.join(dataDir, SENDER_LISTS_DB_FILE), path.join(data, SENDER_LISTS_DB_FILE));
  const bayes = bayesFile(dataDir, opts.config);
  if (bayes) await backupDatabase(path.join(dataDir, bayes), path.join(data, bayes));
  copyIfPresent(path.join(dataDir, DIGEST_KEY_FILE), path.join(data, DIGEST_KEY_FILE));
  let configFile: string | null = null;
  if (opts.configFile) {
    configFile = `${CONFIG_PREFIX}/${path.basename(opts.configFile)}`;
    mkdirSync(path.join(staging, CONFIG_PREFIX), { mode: DIR_MODE });
    writeFileSync(path.join(staging, configFile), readFileSync(opts.configFile), { mode: FILE_MODE });
  }
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    sekishoVersion: sekishoVersion(),
    createdAt: new Date((opts.now ?? Date.now)()).toISOString(),
    hostname: os.hostname(),
    dataDir,
    configFile,
    backupPoint,
    rowCounts: {},
    rolledForward,
    quarantineAfterPoint,
    spoolFiles,
    files: [],
  };
}

/** The bayes model's path relative to dataDir, or undefined when it is absent or kept outside dataDir. */
function bayesFile(dataDir: string, config: Pick<Config, 'antispam'>): string | undefined {
  const file = path.resolve(dataDir, config.antispam.bayes.dbFile);
  const rel = path.relative(dataDir, file);
  return rel.startsWith('..') || path.isAbsolute(rel) || !existsSync(file) ? undefined : rel;
}

/** One database through SQLite's online backup API, in one step (ALL_PAGES); false when `src` does not exist. */
async function backupDatabase(src: string, dest: string): Promise<boolean> {
  if (!existsSync(src)) return false;
  mkdirSync(path.dirname(dest), { recursive: true, mode: DIR_MODE });
  const db = new Database(src, { readonly: true, fileMustExist: true });
  try {
    db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    await db.backup(dest, { progress: () => ALL_PAGES });
  } finally {
    db.close();
  }
  chmodSync(dest, FILE_MODE);
  return true;
}

/** Step 5: the admin database and the audit anchor, both taken while no append can run. */
async function backupAdmin(dataDir: string, data: string): Promise<void> {
  const src = path.join(dataDir, ADMIN_DB_FILE);
  if (!existsSync(src)) return;
  const lock = new Database(src, { fileMustExist: true });
  try {
    lock.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    lock.exec('BEGIN IMMEDIATE');
    copyIfPresent(path.join(dataDir, AUDIT_ANCHOR_FILE), path.join(data, AUDIT_ANCHOR_FILE));
    await backupDatabase(src, path.join(data, ADMIN_DB_FILE));
  } finally {
    if (lock.inTransaction) lock.exec('ROLLBACK');
    lock.close();
  }
}

async function verifyStagedAudit(staging: string): Promise<AuditVerification | null> {
  const file = path.join(staging, DATA_PREFIX, ADMIN_DB_FILE);
  if (!existsSync(file)) return null;
  const audit = new SqliteAuditLog(file, { anchorFile: path.join(staging, DATA_PREFIX, AUDIT_ANCHOR_FILE) });
  try {
    return await audit.verify();
  } finally {
    await audit.close();
  }
}

function copyIfPresent(src: string, dest: string): void {
  try {
    writeFileSync(dest, readFileSync(src), { mode: FILE_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** Step 2: spool/raw/<shard>/<id>.eml and spool/sanitized/<tenant>/<shard>/<id>.eml of the messages in `meta`. */
function copySpool(dataDir: string, data: string, meta: Database.Database): number {
  const known = meta.prepare('SELECT 1 FROM messages WHERE id = ?').pluck();
  const spool = path.join(dataDir, SPOOL_DIR);
  let copied = 0;
  const walk = (rel: string): void => {
    let entries;
    try {
      entries = readdirSync(path.join(spool, rel), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const e of entries) {
      const child = path.join(rel, e.name);
      if (e.isDirectory()) {
        if (child !== SPOOL_TMP_DIR) walk(child);
      } else if (e.isFile() && e.name.endsWith('.eml') && known.get(e.name.slice(0, -'.eml'.length)) !== undefined) {
        let bytes: Buffer;
        try {
          bytes = readFileSync(path.join(spool, child));
        } catch (err) {
          // Gone since the listing: the message finished (its rows are rolled forward, step 3).
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        const dest = path.join(data, SPOOL_DIR, child);
        mkdirSync(path.dirname(dest), { recursive: true, mode: DIR_MODE });
        writeFileSync(dest, bytes, { mode: FILE_MODE });
        copied++;
      }
    }
  };
  walk('');
  return copied;
}

/** Tables of the MetaStore keyed by message, parents first. */
const MESSAGE_TABLES = [
  ['messages', 'id'],
  ['recipients', 'message_id'],
  ['delivery_attempts', 'message_id'],
] as const;

/** Step 3: messages unfinished in the copy but final (or gone) in the live MetaStore take their live rows. */
function rollForward(liveFile: string, copy: Database.Database): number {
  const open = copy
    .prepare(`SELECT id FROM messages WHERE state IN (${unfinishedStates.map(() => '?').join(', ')})`)
    .pluck()
    .all(...unfinishedStates) as string[];
  if (open.length === 0) return 0;
  const live = new Database(liveFile, { readonly: true, fileMustExist: true });
  try {
    live.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    const liveState = live.prepare('SELECT state FROM messages WHERE id = ?').pluck();
    const moved = open.filter((id) => {
      const state = liveState.get(id) as string | undefined;
      return state === undefined || finalMessageStates.some((s) => s === state);
    });
    // One read snapshot of the live rows for all of them, one transaction on the copy.
    live.transaction(() => {
      copy.transaction(() => {
        for (const id of moved) {
          for (const [table, key] of [...MESSAGE_TABLES].reverse()) copy.prepare(`DELETE FROM ${table} WHERE ${key} = ?`).run(id);
          for (const [table, key] of MESSAGE_TABLES) {
            for (const row of live.prepare(`SELECT * FROM ${table} WHERE ${key} = ?`).all(id) as Record<string, unknown>[]) {
              const cols = Object.keys(row);
              copy.prepare(`INSERT OR REPLACE INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`).run(row);
            }
          }
        }
      })();
    })();
    return moved.length;
  } finally {
    live.close();
  }
}

/** Tables of the QuarantineStore keyed by message_id. */
const QUARANTINE_TABLES = ['quarantine', 'quarantine_recipients', 'quarantine_symbols', 'quarantine_text'];

/** Step 4: the copy keeps only records of messages the MetaStore copy has; returns how many messages were left out. */
function pruneQuarantine(file: string, meta: Database.Database): number {
  const known = meta.prepare('SELECT 1 FROM messages WHERE id = ?').pluck();
  const q = new Database(file);
  try {
    const present = new Set(q.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all() as string[]);
    const tables = QUARANTINE_TABLES.filter((t) => present.has(t));
    const newer = (q.prepare('SELECT DISTINCT message_id FROM quarantine').pluck().all() as string[]).filter((id) => known.get(id) === undefined);
    q.transaction(() => {
      for (const id of newer) for (const t of tables) q.prepare(`DELETE FROM ${t} WHERE message_id = ?`).run(id);
    })();
    return newer.length;
  } finally {
    q.close();
  }
}

/** A staged database made one self-contained file (journal_mode DELETE) and its rows counted into the manifest. */
function finishDatabase(file: string, rel: string, manifest: BackupManifest): void {
  if (!existsSync(file)) return;
  const db = new Database(file);
  try {
    db.pragma('journal_mode = DELETE');
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name`).pluck().all() as string[];
    manifest.rowCounts[rel] = Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT count(*) FROM "${t}"`).pluck().get() as number]));
  } finally {
    db.close();
  }
}

/** Every file under `root` (but the manifest) with its size and SHA-256, '/'-separated paths, sorted. */
function hashTree(root: string): ManifestFile[] {
  const files: ManifestFile[] = [];
  const walk = (rel: string): void => {
    for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(child);
      else if (child !== MANIFEST_FILE) {
        const bytes = readFileSync(path.join(root, child));
        files.push({ path: child, size: bytes.length, sha256: sha256(bytes) });
      }
    }
  };
  walk('');
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
