/**
 * A project-managed clamd, started when neither `clamav.socket` nor `clamav.host` is configured (and by the tests
 * and the benchmark). clamd parses hostile files: when Sekisho runs as root, the managed clamd runs as the
 * unprivileged `clamav` account (Debian's clamav-daemon creates it), so what it touches once it has dropped root
 * lives in a run directory outside dataDir (whose parents that account may not be allowed to enter). clamd's
 * account may write in two of its directories only: a clamd that was taken over must not be able to lead root's
 * hands (the database links Sekisho maintains, the removal of the directory) to another file.
 *
 *   ${dir}/clamd.conf   generated on every start (limits derived from the Sekisho config, each commented)
 *   ${dir}/clamd.log    clamd's log, written by Sekisho from clamd's output (rotated to clamd.log.1)
 *   ${dir}/rundir       the path of the run directory, so that one a killed Sekisho left behind is cleaned up
 *   ${run}/             under /dev/shm (or the system temp directory); Sekisho's, 0711 (0700 when not root)
 *     db/               Sekisho's: clamd's DatabaseDirectory, copies of the project's signatures (signatures/ in
 *                       the repo: EICAR and the test signatures) and symlinks to every signature file of
 *                       `clamav.databaseDir` (freshclam's directory, which the clamav account owns)
 *     sock/             clamd's account's, 0700: clamd.sock (mode 600), clamd.pid
 *     tmp/              clamd's account's, 0700: its TemporaryDirectory (INSTREAM spool files, unpacked members)
 *
 * Signature updates: clamd's SelfCheck notices changed files; files that appear in or vanish from databaseDir are
 * noticed by a watcher that re-links db/ and sends RELOAD. `reload()` does the same on demand and resolves once the
 * new engine is active (clamd says so on its log, which we read from its stdout).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  rmdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  watch,
  writeFileSync,
  type FSWatcher,
  type Stats,
} from 'node:fs';
import os, { setPriority } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import { SekishoError } from '../errors.ts';
import { ClamdClient, type ClamdEndpoint } from '../scan/clamd-client.ts';
import { ensureBinary } from './debian.ts';
import { stopOrphan } from './orphan.ts';

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
/** The unprivileged account of the managed clamd when Sekisho runs as root (Debian's clamav-daemon creates it). */
const CLAMD_USER = 'clamav';
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
  /**
   * Where the run directory is made (socket, databases, temporary files): /dev/shm keeps clamd's temporary files in
   * memory. Default: the system temp directory.
   */
  runParent?: string;
  log?: Logger;
}

export interface ManagedClamd {
  socket: string;
  endpoint: ClamdEndpoint;
  pid: number;
  /** Re-links the databases and reloads them; resolves when the new engine answers scans. */
  reload(): Promise<void>;
  /** Settles when clamd exits (src/services/supervisor.ts restarts it on the same socket). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Stops clamd and removes the run directory (only the latter once clamd has exited by itself). */
  stop(): Promise<void>;
  /** SIGKILL and the run directory removed, at once: the last resort of a shutdown that ran out of time. */
  kill(): void;
}

/** The clamd configuration, one commented line per setting that matters; `run` is the run directory. */
export function clamdConf(opts: ManagedClamdOptions, run: string, user?: string): string {
  const maxStreamBytes = opts.maxStreamBytes + STREAM_HEADROOM_BYTES;
  const maxFileBytes = Math.max(MIN_MAX_FILE_BYTES, maxStreamBytes);
  return [
    '# Generated by Sekisho on every start: edits are lost. See docs/antivirus.md.',
    'Foreground yes',
    ...(user ? ['# clamd parses hostile files: it drops root for this account before it reads a database or a byte', `User ${user}`] : []),
    `LocalSocket ${path.join(run, 'sock', 'clamd.sock')}`,
    'LocalSocketMode 600',
    `PidFile ${path.join(run, 'sock', 'clamd.pid')}`,
    '# no LogFile: clamd logs to its output, which Sekisho writes to clamd.log beside this file',
    'LogTime yes',
    `DatabaseDirectory ${path.join(run, 'db')}`,
    `TemporaryDirectory ${path.join(run, 'tmp')}`,
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

/**
 * Makes db/ hold exactly one entry per signature file of the project and of databaseDir: a copy of each project
 * file (they are small, and the checkout they sit in may be closed to clamd's account) and a symlink to each file
 * of databaseDir (freshclam's files are hundreds of MB; its directory is the clamav account's own). Returns whether
 * it changed.
 */
export function linkDatabases(dbDir: string, signatureDir: string, databaseDir: string): boolean {
  mkdirSync(dbDir, { recursive: true });
  const wanted = new Map<string, { source: string; copy: boolean }>();
  for (const [src, copy] of [[databaseDir, false], [signatureDir, true]] as const) {
    if (!existsSync(src)) continue;
    for (const name of readdirSync(src)) {
      if (SIGNATURE_EXTENSIONS.has(path.extname(name).toLowerCase())) wanted.set(name, { source: path.resolve(src, name), copy });
    }
  }
  let changed = false;
  for (const name of readdirSync(dbDir)) {
    const entry = path.join(dbDir, name);
    const want = wanted.get(name);
    if (want && (want.copy ? sameCopy(entry, want.source) : linksTo(entry, want.source))) {
      wanted.delete(name);
    } else {
      rmSync(entry, { recursive: true, force: true });
      changed = true;
    }
  }
  for (const [name, { source, copy }] of wanted) {
    if (copy) copyFileSync(source, path.join(dbDir, name));
    else symlinkSync(source, path.join(dbDir, name));
    changed = true;
  }
  return changed;
}

function linksTo(entry: string, target: string): boolean {
  try {
    return readlinkSync(entry) === target;
  } catch {
    return false;
  }
}

function sameCopy(entry: string, source: string): boolean {
  try {
    return !lstatSync(entry).isSymbolicLink() && readFileSync(entry).equals(readFileSync(source));
  } catch {
    return false;
  }
}

export async function startManagedClamd(opts: ManagedClamdOptions): Promise<ManagedClamd> {
  const bin = ensureBinary('clamd', 'clamav-daemon');
  const dir = path.resolve(opts.dir);
  mkdirSync(dir, { recursive: true });
  const confFile = path.join(dir, 'clamd.conf');
  const account = process.geteuid?.() === 0 ? clamdAccount() : undefined;
  await removeLeftRun(dir, confFile, account);
  const run = makeRunDir(dir, opts.runParent ?? os.tmpdir(), account);
  const log = opts.log?.child({ service: 'clamd' });
  // Left in place if it cannot be removed (the next start tries again, or names it): never a reason to fail a stop
  // or to hide why a start failed.
  const removeRun = () => {
    try {
      removeRunDir(run, account);
    } catch (err) {
      log?.warn({ err, run }, 'cannot remove the managed clamd\'s run directory');
    }
  };
  const socket = path.join(run, 'sock', 'clamd.sock');
  const dbDir = path.join(run, 'db');
  const signatureDir = opts.signatureDir ?? PROJECT_SIGNATURE_DIR;
  let child: ChildProcess;
  try {
    writeFileSync(confFile, clamdConf(opts, run, account?.name));
    linkDatabases(dbDir, signatureDir, opts.databaseDir);
    child = spawn(bin, ['--config-file', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    removeRun();
    throw err;
  }
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
  const logFile = new RotatingLog(path.join(dir, 'clamd.log'), LOG_FILE_MAX_BYTES, log);
  const onLine = (line: string) => {
    if (!line.trim()) return;
    logFile.write(line);
    tail.push(line);
    if (tail.length > OUTPUT_TAIL_LINES) tail.shift();
    if (/ERROR|WARNING/.test(line)) log?.warn({ line }, 'clamd');
    for (const w of lineWaiters) w(line);
  };
  // A line may come in two chunks: only whole lines are matched.
  for (const stream of [child.stdout, child.stderr]) {
    let partial = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(onLine);
    });
    stream?.on('end', () => onLine(partial));
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  child.on('exit', (code, sig) => {
    log?.info({ code, signal: sig }, 'clamd exited');
    for (const w of lineWaiters) w(null);
  });
  // Neither clamd nor its run directory (scans' spool files) outlives this process, whichever way it exits. A file
  // clamd writes in the moment SIGKILL takes may keep the directory: the next start removes it then.
  const killOnExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    removeRun();
  };
  process.once('exit', killOnExit);

  const client = new ClamdClient({ socket }, COMMAND_TIMEOUT_MS);
  const deadline = Date.now() + opts.startTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      process.removeListener('exit', killOnExit);
      removeRun();
      throw new SekishoError('SEKISHO_ERR_SERVICE_START', `clamd exited (${child.exitCode ?? child.signalCode}): ${tail.join('\n')}`);
    }
    try {
      await client.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        process.removeListener('exit', killOnExit);
        removeRun();
        throw new SekishoError('SEKISHO_ERR_SERVICE_START', `clamd did not answer PING within ${opts.startTimeoutMs} ms: ${tail.join('\n')}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, START_POLL_MS));
    }
  }
  log?.info({ socket, pid: child.pid }, 'clamd started');

  let reloading: Promise<void> = Promise.resolve();
  /** Set by stop(): a reload queued or timed before it must not bring back the run directory stop() removed. */
  let stopped = false;
  const doReload = async (): Promise<void> => {
    if (stopped) throw new SekishoError('SEKISHO_ERR_CLAMAV_UNAVAILABLE', 'clamd is stopped: no reload');
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
  let settle: NodeJS.Timeout | undefined;
  if (existsSync(opts.databaseDir)) {
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
    exited,
    kill: () => {
      stopped = true;
      watcher?.close();
      clearTimeout(settle);
      process.removeListener('exit', killOnExit);
      killOnExit();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        stopped = true;
        watcher?.close();
        clearTimeout(settle);
        process.removeListener('exit', killOnExit);
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve();
          return;
        }
        const kill = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }).then(removeRun),
  };
}

/** The clamd the config names (`clamav.socket` or `clamav.host`); undefined: Sekisho runs a managed one. */
export function configuredClamd(config: Config): ClamdEndpoint | undefined {
  const c = config.clamav;
  if (c.socket) return { socket: c.socket };
  if (c.host) return { host: c.host, port: c.port };
  return undefined;
}

/** The managed clamd under `${dataDir}/clamd`, sized from the config: the same socket on every start. */
export function startManagedClamdForConfig(config: Config, log?: Logger): Promise<ManagedClamd> {
  const c = config.clamav;
  return startManagedClamd({
    dir: path.join(config.dataDir, 'clamd'),
    runParent: c.tempInMemory ? memoryDir(log) : undefined,
    databaseDir: c.databaseDir,
    maxStreamBytes: config.smtp.maxMessageBytes,
    scanTimeoutMs: c.timeoutMs,
    startTimeoutMs: c.startTimeoutMs,
    maxThreads: c.maxThreads,
    log,
  });
}

/** A tmpfs on every Linux with glibc: clamd's temporary files there cost no disk I/O. */
const SHM_DIR = '/dev/shm';

function memoryDir(log?: Logger): string | undefined {
  if (existsSync(SHM_DIR)) return SHM_DIR;
  log?.info({ dir: SHM_DIR }, 'no /dev/shm: clamd keeps its temporary files on disk');
  return undefined;
}

const RUN_PREFIX = 'sekisho-clamd-';

type Account = { name: string; uid: number; gid: number };

/**
 * The account the managed clamd runs as when Sekisho runs as root. Debian's clamav-daemon package (which Sekisho
 * installs when clamd is missing) creates it; without it, clamd would parse hostile files as root, so it does not
 * start.
 */
function clamdAccount(): Account {
  const name = CLAMD_USER;
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  try {
    return { name, uid: id('-u'), gid: id('-g') };
  } catch {
    throw new SekishoError(
      'SEKISHO_ERR_SERVICE_START',
      `the managed clamd runs as the unprivileged account "${name}" when Sekisho runs as root, and there is none: install Debian's clamav-daemon (it creates the account), create it (adduser --system --group ${name}), or run your own clamd (clamav.socket)`,
    );
  }
}

/** The subdirectories of the run directory that clamd's account owns (and may write in). */
const CLAMD_WRITABLE = ['sock', 'tmp'];

/**
 * The run directory of the clamd that owns `dir`: one path per `dir` (its socket stays where the workers were told
 * it is across a restart of clamd), made afresh on every start. A directory already there is removed only if it is
 * Sekisho's own (not a link, not another user's: the parent is world-writable); creating it again is exclusive,
 * so a stranger who raced us makes the start fail instead of our clamd using their directory.
 */
function makeRunDir(dir: string, parent: string, account?: Account): string {
  const run = path.join(parent, `${RUN_PREFIX}${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`);
  const found = ownership(run);
  if (found === 'foreign') throw new SekishoError('SEKISHO_ERR_SERVICE_START', `${run} is in the way of the managed clamd and is not Sekisho's: remove it`);
  if (found === 'ours') removeRunDir(run, account);
  // clamd's account enters it (to reach its socket, databases and temporary files) but cannot list or change it.
  mkdirSync(run, { mode: account ? 0o711 : 0o700 });
  mkdirSync(path.join(run, 'db'), { mode: 0o755 });
  for (const sub of CLAMD_WRITABLE) {
    mkdirSync(path.join(run, sub), { mode: 0o700 });
    if (account) chownSync(path.join(run, sub), account.uid, account.gid);
  }
  writeFileSync(path.join(dir, 'rundir'), `${run}\n`);
  return run;
}

/**
 * Removes a run directory. What clamd's account owns is emptied as that account (`find -delete` follows no link,
 * and as that account a link it planted could only lead to its own files anyway), then its directories are removed
 * one level at a time; a directory it filled again meanwhile stops the removal with an error instead of root
 * descending into it. The rest is Sekisho's own.
 */
function removeRunDir(run: string, account?: Account): void {
  if (!existsSync(run)) return;
  if (account) {
    for (const sub of CLAMD_WRITABLE) {
      const d = path.join(run, sub);
      if (!existsSync(d)) continue;
      spawnSync('find', [d, '-mindepth', '1', '-delete'], { uid: account.uid, gid: account.gid, stdio: 'ignore' });
      try {
        rmdirSync(d);
      } catch (err) {
        throw new SekishoError('SEKISHO_ERR_SERVICE_START', `cannot remove the managed clamd's ${d}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  rmSync(run, { recursive: true, force: true });
}

/**
 * What a Sekisho that was killed (or a start with another `runParent`) left behind: the clamd still running on our
 * config is stopped, and its run directory, which may hold a scan's spool files in memory, removed.
 */
async function removeLeftRun(dir: string, confFile: string, account?: Account): Promise<void> {
  let previous: string;
  try {
    previous = readFileSync(path.join(dir, 'rundir'), 'utf8').trim();
  } catch {
    return;
  }
  if (!path.isAbsolute(previous) || !path.basename(previous).startsWith(RUN_PREFIX)) return;
  await stopOrphan(path.join(previous, 'sock', 'clamd.pid'), ['clamd', confFile]);
  if (ownership(previous) === 'ours') removeRunDir(previous, account);
}

/** Whether `p` is absent, a directory of this process's user (not a link to one), or anything else. */
function ownership(p: string): 'absent' | 'ours' | 'foreign' {
  let stat: Stats;
  try {
    stat = lstatSync(p);
  } catch {
    return 'absent';
  }
  return stat.isDirectory() && stat.uid === process.geteuid?.() ? 'ours' : 'foreign';
}

/**
 * clamd's log, from its output: clamd writes no file itself (once it has dropped root, it could not rotate a log in
 * dataDir). Past `maxBytes` the file becomes clamd.log.1 and a new one starts. A disk error is logged once and
 * the lines are dropped: a log is never a reason to stop scanning.
 */
class RotatingLog {
  readonly #file: string;
  readonly #maxBytes: number;
  readonly #log: Logger | undefined;
  #bytes: number;
  #failed = false;

  constructor(file: string, maxBytes: number, log?: Logger) {
    this.#file = file;
    this.#maxBytes = maxBytes;
    this.#log = log;
    try {
      this.#bytes = statSync(file).size;
    } catch {
      this.#bytes = 0;
    }
  }

  write(line: string): void {
    if (this.#failed) return;
    const data = `${line}\n`;
    const size = Buffer.byteLength(data);
    try {
      if (this.#bytes > 0 && this.#bytes + size > this.#maxBytes) {
        renameSync(this.#file, `${this.#file}.1`);
        this.#bytes = 0;
      }
      appendFileSync(this.#file, data);
      this.#bytes += size;
    } catch (err) {
      this.#failed = true;
      this.#log?.warn({ err, file: this.#file }, "cannot write clamd.log; clamd's warnings still go to this log");
    }
  }
}
