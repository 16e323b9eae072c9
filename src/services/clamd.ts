/**
 * A project-managed clamd, started when neither `clamav.socket` nor `clamav.host` is configured (and by the tests
 * and the benchmark). Everything it owns lives under one directory:
 *
 *   clamd.conf  generated on every start (limits derived from the Sekisho config, each commented)
 *   clamd.sock  its unix socket (mode 600: only Sekisho's user talks to it)
 *   clamd.pid, clamd.log, tmp/ (INSTREAM spool files)
 *   db/         its DatabaseDirectory: symlinks to the project's signatures (signatures/ in the repo: EICAR and
 *               the test signatures) and to every signature file of `clamav.databaseDir` (freshclam's directory)
 *
 * Signature updates: clamd's SelfCheck notices changed files; files that appear in or vanish from databaseDir are
 * noticed by a watcher that re-links db/ and sends RELOAD. `reload()` does the same on demand and resolves once the
 * new engine is active (clamd says so on its log, which we read from its stdout).
 */
import { setPriority } from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { SekishoError } from '../errors.ts';
import { ClamdClient, type ClamdEndpoint } from '../scan/clamd-client.ts';
import { ensureBinary } from './debian.ts';

/** The signature files shipped with Sekisho (EICAR and the test signatures of fixtures/mails). */
export const PROJECT_SIGNATURE_DIR = fileURLToPath(new URL('../../signatures/', import.meta.url));

/** File name extensions clamd loads from a DatabaseDirectory (official containers and every local format). */
const SIGNATURE_EXTENSIONS = new Set([
  '.cvd', '.cld', '.cud', // official containers (freshclam)
  '.hdb', '.hsb', '.hdu', '.hsu', '.mdb', '.msb', '.mdu', '.msu', // file and section hashes
  '.ndb', '.ndu', '.ldb', '.ldu', '.cdb', '.idb', '.pdb', '.gdb', '.wdb', '.ftm', '.crb', '.cbc', // body, logical, container, phishing, filetype, cert, bytecode
  '.fp', '.sfp', '.ign', '.ign2', // allow lists and ignored signatures
  '.yar', '.yara',
]);

/** The spooled message is a little larger than the size the ingress accepted (Received and trace headers). */
const STREAM_HEADROOM_BYTES = 1024 * 1024;
/** Floor of clamd's per-file limit (its default): a member unpacked from an archive is scanned up to this size even when smtp.maxMessageBytes is small. */
const MIN_MAX_FILE_BYTES = 100 * 1024 * 1024;
/**
 * clamd's budget for everything it unpacks from one stream (MaxScanSize), as a multiple of the largest stream:
 * bounds the worst case of an archive that Sekisho's own limits let through (and of clamd's own MIME parsing).
 */
const SCAN_SIZE_PER_STREAM = 4;
/** Nested containers clamd follows (mail → multipart → rfc822 → zip → …); deeper content is not scanned (and alerted). */
const MAX_RECURSION = 17;
/** Files clamd extracts from one stream; the archive check (clamav.archive.maxEntries) stops more before clamd sees them. */
const MAX_FILES = 10_000;
/** Pending connections on the socket: a burst of scans waits here instead of being refused. */
const CONNECTION_QUEUE_LENGTH = 200;
/** Scans queued for a thread inside clamd; above this clamd stops accepting until the queue drains. */
const MAX_QUEUE = 200;
/** clamd's own log is rotated at this size so that a long-running installation does not fill the disk. */
const LOG_FILE_MAX_BYTES = 10 * 1024 * 1024;
/** How often clamd itself checks its databases for changes (freshclam rewrites files in place). */
const SELF_CHECK_INTERVAL_S = 300;
/** Niceness of the managed clamd, as the worker child's (processing yields to accepting). */
const CLAMD_NICENESS = 5;
/** freshclam writes a temporary file, then renames: wait this long after the last change before re-linking. */
const DATABASE_DIR_SETTLE_MS = 2_000;
/** Interval between PINGs while waiting for clamd to load its databases. */
const START_POLL_MS = 100;
/** SIGTERM lets clamd remove its socket and pid file; past this it is killed. */
const STOP_TIMEOUT_MS = 10_000;
/** Budget of one PING or RELOAD command (clamd answers them without scanning anything). */
const COMMAND_TIMEOUT_MS = 5_000;
/** The last line clamd writes for a reload that failed, before or after its reload thread ran (ClamAV 0.103–1.4). */
const RELOAD_FAILED = /Database reload (setup )?failed, keeping the previous instance/;
/** Lines of clamd's output kept for error messages. */
const OUTPUT_TAIL_LINES = 20;

export interface ManagedClamdOptions {
  /** Directory the managed clamd owns (config, socket, pid, log, db/, tmp/). */
  dir: string;
  /** Official signature directory (freshclam's); may be missing or empty. */
  databaseDir: string;
  /** The project's own signatures; PROJECT_SIGNATURE_DIR unless a test wants another set. */
  signatureDir?: string;
  /** Largest stream clamd accepts (StreamMaxLength); at least smtp.maxMessageBytes, or big mail cannot be scanned. */
  maxStreamBytes: number;
  /** clamd's MaxScanTime: past it a scan ends with a Heuristics.Limits.Exceeded alert. */
  scanTimeoutMs: number;
  startTimeoutMs: number;
  maxThreads: number;
  /** clamd's TemporaryDirectory; `${dir}/tmp` when absent. */
  tempDir?: string;
  log?: Logger;
}

export interface ManagedClamd {
  socket: string;
  endpoint: ClamdEndpoint;
  pid: number;
  /** Re-links the databases and reloads them; resolves when the new engine answers scans. */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

/** The clamd configuration, one commented line per setting that matters. */
export function clamdConf(opts: ManagedClamdOptions): string {
  const dir = path.resolve(opts.dir);
  const maxStreamBytes = opts.maxStreamBytes + STREAM_HEADROOM_BYTES;
  const maxFileBytes = Math.max(MIN_MAX_FILE_BYTES, maxStreamBytes);
  return [
    '# Generated by Sekisho on every start: edits are lost. See docs/antivirus.md.',
    'Foreground yes',
    `LocalSocket ${path.join(dir, 'clamd.sock')}`,
    'LocalSocketMode 600',
    `PidFile ${path.join(dir, 'clamd.pid')}`,
    `LogFile ${path.join(dir, 'clamd.log')}`,
    'LogTime yes',
    `LogFileMaxSize ${LOG_FILE_MAX_BYTES}`,
    'LogRotate yes',
    `DatabaseDirectory ${path.join(dir, 'db')}`,
    `TemporaryDirectory ${opts.tempDir ?? path.join(dir, 'tmp')}`,
    `SelfCheck ${SELF_CHECK_INTERVAL_S}`,
    '# the old engine keeps scanning while a reload loads the new one (needs twice the memory for a moment)',
    'ConcurrentDatabaseReload yes',
    `MaxThreads ${opts.maxThreads}`,
    `MaxConnectionQueueLength ${CONNECTION_QUEUE_LENGTH}`,
    `MaxQueue ${MAX_QUEUE}`,
    '# the largest INSTREAM: a whole message of smtp.maxMessageBytes must fit, or it could never be scanned',
    `StreamMaxLength ${maxStreamBytes}`,
    '# largest single file (the raw message included) clamd scans; bigger content raises Heuristics.Limits.Exceeded',
    `MaxFileSize ${maxFileBytes}`,
    '# everything unpacked from one stream (MIME parts, archive members) together',
    `MaxScanSize ${maxFileBytes * SCAN_SIZE_PER_STREAM}`,
    '# nesting of containers followed (mail, multipart, message/rfc822, archives)',
    `MaxRecursion ${MAX_RECURSION}`,
    '# files extracted from one stream (a zip of a million empty files stops here)',
    `MaxFiles ${MAX_FILES}`,
    '# wall-clock budget of one scan inside clamd; Sekisho gives up at clamav.timeoutMs anyway',
    `MaxScanTime ${opts.scanTimeoutMs}`,
    '# inside an IDSESSION (Sekisho keeps sessions open) clamd applies this to a running scan too: keep it above',
    '# the scan budget, or a long scan would end in COMMAND READ TIMED OUT',
    `ReadTimeout ${Math.max(120, Math.ceil(opts.scanTimeoutMs / 1000) + 5)}`,
    '# content not fully scanned because of a limit is an alert (fail closed), not a silent OK',
    'AlertExceedsMax yes',
    '# encrypted archives cannot be scanned (PPAP): alert, Sekisho reports ARCHIVE_ENCRYPTED',
    'AlertEncryptedArchive yes',
    '# encrypted documents are the sanitizer\'s business, not an antivirus finding',
    'AlertEncryptedDoc no',
    'ScanMail yes',
    'ScanArchive yes',
    'PhishingSignatures yes',
    '# URL heuristics flag ordinary HTML newsletters; spam scoring is the antispam checks\' job',
    'PhishingScanURLs no',
    'AlertBrokenExecutables no',
    'AlertOLE2Macros no',
    'Bytecode yes',
    '',
  ].join('\n');
}

/** Makes db/ hold exactly one symlink per signature file of the project and of databaseDir. Returns whether it changed. */
export function linkDatabases(dbDir: string, signatureDir: string, databaseDir: string): boolean {
  mkdirSync(dbDir, { recursive: true });
  const wanted = new Map<string, string>();
  for (const src of [databaseDir, signatureDir]) {
    if (!existsSync(src)) continue;
    for (const name of readdirSync(src)) {
      if (SIGNATURE_EXTENSIONS.has(path.extname(name).toLowerCase())) wanted.set(name, path.resolve(src, name));
    }
  }
  let changed = false;
  for (const name of readdirSync(dbDir)) {
    const target = wanted.get(name);
    let current: string | undefined;
    try {
      current = readlinkSync(path.join(dbDir, name));
    } catch {
      current = undefined;
    }
    if (target !== undefined && current === target) {
      wanted.delete(name);
    } else {
      rmSync(path.join(dbDir, name), { recursive: true, force: true });
      changed = true;
    }
  }
  for (const [name, target] of wanted) {
    symlinkSync(target, path.join(dbDir, name));
    changed = true;
  }
  return changed;
}

/** A clamd left running by a Sekisho that was killed holds our socket: stop it (only if it runs our config). */
async function stopOrphan(pidFile: string, confFile: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0) return;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return;
  }
  if (!cmdline.includes('clamd') || !cmdline.includes(confFile)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, START_POLL_MS));
  if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
}

export async function startManagedClamd(opts: ManagedClamdOptions): Promise<ManagedClamd> {
  const bin = ensureBinary('clamd', 'clamav-daemon');
  const dir = path.resolve(opts.dir);
  const socket = path.join(dir, 'clamd.sock');
  const confFile = path.join(dir, 'clamd.conf');
  const dbDir = path.join(dir, 'db');
  const signatureDir = opts.signatureDir ?? PROJECT_SIGNATURE_DIR;
  mkdirSync(opts.tempDir ?? path.join(dir, 'tmp'), { recursive: true, mode: 0o700 });
  writeFileSync(confFile, clamdConf(opts));
  linkDatabases(dbDir, signatureDir, opts.databaseDir);
  await stopOrphan(path.join(dir, 'clamd.pid'), confFile);

  const log = opts.log?.child({ service: 'clamd' });
  const child: ChildProcess = spawn(bin, ['--config-file', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  // Scanning is processing, as the workers' (src/cli/main.ts): under a burst the SMTP ingress, which clients wait
  // for, keeps the CPU, and the backlog is scanned after.
  if (child.pid !== undefined) {
    try {
      setPriority(child.pid, CLAMD_NICENESS);
    } catch {
      // Lowering one's own child's priority is always allowed; if it fails anyway, clamd just runs at ours.
    }
  }
  const tail: string[] = [];
  /** Called with each output line, and with null when clamd exits. */
  const lineWaiters = new Set<(line: string | null) => void>();
  const onOutput = (buf: Buffer) => {
    for (const line of buf.toString('utf8').split('\n')) {
      if (!line.trim()) continue;
      tail.push(line);
      if (tail.length > OUTPUT_TAIL_LINES) tail.shift();
      if (/ERROR|WARNING/.test(line)) log?.warn({ line }, 'clamd');
      for (const w of lineWaiters) w(line);
    }
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);
  child.on('exit', (code, sig) => {
    log?.info({ code, signal: sig }, 'clamd exited');
    for (const w of lineWaiters) w(null);
  });
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);

  const client = new ClamdClient({ socket }, COMMAND_TIMEOUT_MS);
  const deadline = Date.now() + opts.startTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      process.removeListener('exit', killOnExit);
      throw new SekishoError('SEKISHO_ERR_SERVICE_START', `clamd exited (${child.exitCode ?? child.signalCode}): ${tail.join('\n')}`);
    }
    try {
      await client.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        process.removeListener('exit', killOnExit);
        throw new SekishoError('SEKISHO_ERR_SERVICE_START', `clamd did not answer PING within ${opts.startTimeoutMs} ms: ${tail.join('\n')}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, START_POLL_MS));
    }
  }
  log?.info({ socket, pid: child.pid }, 'clamd started');

  let reloading: Promise<void> = Promise.resolve();
  const doReload = async (): Promise<void> => {
    linkDatabases(dbDir, signatureDir, opts.databaseDir);
    const activated = new Promise<void>((resolve, reject) => {
      // A failed reload is told in two lines or more: the cause ("ERROR: reload_th: Database load failed: …"), then
      // the end ("WARNING: Database reload failed, keeping the previous instance"). Only the end settles this reload:
      // settled on the cause, the end line would be taken for the outcome of the next reload.
      let cause: string | undefined;
      const waiter = (line: string | null) => {
        if (line === null) {
          lineWaiters.delete(waiter);
          reject(new SekishoError('SEKISHO_ERR_CLAMAV_UNAVAILABLE', 'clamd exited during a reload'));
        } else if (line.includes('Activating the newly loaded database')) {
          lineWaiters.delete(waiter);
          resolve();
        } else if (RELOAD_FAILED.test(line)) {
          lineWaiters.delete(waiter);
          reject(new SekishoError('SEKISHO_ERR_CLAMAV_UNAVAILABLE', `clamd could not reload its databases: ${cause ?? line}`));
        } else if (cause === undefined && /ERROR/.test(line)) {
          cause = line;
        }
      };
      lineWaiters.add(waiter);
    });
    await client.reload();
    await activated;
    // The line above is written just before the engine swap, by the thread that accepts connections:
    // once it answers again, every new scan uses the new engine.
    await client.ping();
    log?.info('clamd databases reloaded');
  };
  const reload = () => (reloading = reloading.catch(() => undefined).then(doReload));

  let watcher: FSWatcher | undefined;
  if (existsSync(opts.databaseDir)) {
    let settle: NodeJS.Timeout | undefined;
    watcher = watch(opts.databaseDir, { persistent: false }, (_event, name) => {
      if (!name || !SIGNATURE_EXTENSIONS.has(path.extname(name).toLowerCase())) return;
      clearTimeout(settle);
      settle = setTimeout(() => {
        reload().catch((err: unknown) => log?.error({ err }, 'clamd reload after a database change failed'));
      }, DATABASE_DIR_SETTLE_MS);
      settle.unref();
    });
    watcher.on('error', (err) => log?.warn({ err }, 'cannot watch the clamav database directory'));
  }

  return {
    socket,
    endpoint: { socket },
    pid: child.pid ?? -1,
    reload,
    stop: () =>
      new Promise<void>((resolve) => {
        watcher?.close();
        process.removeListener('exit', killOnExit);
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

export interface ClamdService {
  endpoint: ClamdEndpoint;
  /** Present for the managed clamd only. */
  managed?: ManagedClamd;
  stop(): Promise<void>;
}

/**
 * The composition root's entry point: the configured clamd (`clamav.socket` or `clamav.host`), or else a managed
 * one under `${dataDir}/clamd`, sized from the config.
 */
export async function startClamdForConfig(config: Config, log?: Logger): Promise<ClamdService> {
  const c = config.clamav;
  if (c.socket) return { endpoint: { socket: c.socket }, stop: async () => undefined };
  if (c.host) return { endpoint: { host: c.host, port: c.port }, stop: async () => undefined };
  const dir = path.join(config.dataDir, 'clamd');
  const tempDir = c.tempInMemory ? memoryTempDir(dir, log) : undefined;
  const removeTempDir = () => {
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  };
  const managed = await startManagedClamd({
    dir,
    tempDir,
    databaseDir: c.databaseDir,
    maxStreamBytes: config.smtp.maxMessageBytes,
    scanTimeoutMs: c.timeoutMs,
    startTimeoutMs: c.startTimeoutMs,
    maxThreads: c.maxThreads,
    log,
  }).catch((err: unknown) => {
    removeTempDir();
    throw err;
  });
  return {
    endpoint: managed.endpoint,
    managed,
    stop: async () => {
      await managed.stop();
      removeTempDir();
    },
  };
}

/** Where memory-backed temp directories are made: a tmpfs on every Linux with glibc. */
const SHM_DIR = '/dev/shm';
const SHM_PREFIX = 'sekisho-clamd-';

/**
 * A private (0700) directory for the managed clamd's temporary files under /dev/shm, or undefined (clamd then
 * uses `${dir}/tmp`) when there is none. Its path is recorded in `${dir}/tmpdir`, so that the directory a killed
 * Sekisho left behind is removed at the next start instead of holding memory. A full tmpfs makes scans fail with
 * an error: CLAMAV_FAIL, the message waits and is scanned again — never delivered unscanned.
 */
function memoryTempDir(dir: string, log?: Logger): string | undefined {
  const record = path.join(dir, 'tmpdir');
  try {
    const previous = readFileSync(record, 'utf8').trim();
    if (path.dirname(previous) === SHM_DIR && path.basename(previous).startsWith(SHM_PREFIX)) {
      rmSync(previous, { recursive: true, force: true });
    }
  } catch {
    // no record: nothing left behind
  }
  if (!existsSync(SHM_DIR)) {
    log?.info({ dir: SHM_DIR }, 'no /dev/shm: clamd keeps its temporary files on disk');
    return undefined;
  }
  const tmp = mkdtempSync(path.join(SHM_DIR, SHM_PREFIX));
  mkdirSync(dir, { recursive: true });
  writeFileSync(record, `${tmp}\n`);
  return tmp;
}
