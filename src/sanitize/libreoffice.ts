/**
 * A resident LibreOffice that turns Office, ODF and RTF documents into PDF (DESIGN §6): soffice.bin and our
 * python3-uno bridge (uno-convert.py) run as one detached process group, with their own profile, no network (a
 * network namespace, as root, and a dead proxy in its profile), a memory rlimit, and a hard per-document deadline
 * past which the whole group is killed and started again. One document at a time per instance; calls queue.
 * As root, the group runs as the unprivileged account `nobody`, no supplementary groups, in a private run directory
 * it can reach: a document that links `file:///root/…` or the spool gets nothing (the proxy and the namespace stop
 * remote links; only the file permissions stop local ones). What is world-readable stays readable to it.
 *
 * The rules not to break: nothing from the mail reaches a command line or a path (the bytes are written to
 * `<run>/in/<random>.<ext>` with `ext` from an allow-list, and the bridge gets only paths we chose); and as root,
 * nothing in the directories the account owns is followed (its output is opened with O_NOFOLLOW, its files are
 * deleted as the account).
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, rmSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, rmdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import { ConversionError } from './types.ts';

export interface LibreOfficeOptions {
  /**
   * Directory for the profile and temp files (created; one profile per instance). Not used as root: the account
   * the group runs as could not enter it (it is under the 0700 data directory); a private directory under
   * os.tmpdir() is made instead, and removed on stop.
   */
  workDir: string;
  /** Hard deadline of one document; past it the whole process group is killed and the instance restarted. */
  timeoutMs?: number;
  /**
   * Address-space limit of soffice.bin (RLIMIT_AS, set by the bridge before it execs soffice). An allocation
   * past it fails, soffice dies, and the document is reported as failed.
   */
  memoryLimitBytes?: number;
  /** Run soffice in its own network namespace (needs root; default: true when root). */
  isolateNetwork?: boolean;
  /** Called when a started instance died (crashed, or killed for its deadline) and is started again. */
  onRestart?: () => void;
  log?: Logger;
}

/** A generous deadline for one document: an ordinary attachment converts in well under a second once warm. */
const DEFAULT_TIMEOUT_MS = 60_000;
/** soffice.bin starts within 256 MiB of address space (not within 64 MiB); 2 GiB leaves room for large documents. */
const DEFAULT_MEMORY_LIMIT_BYTES = 2 * 1024 ** 3;
/** Cold start of soffice + bridge (about 4 s); the bridge itself gives up after 60 s of waiting for the pipe. */
const START_TIMEOUT_MS = 90_000;
/** LibreOffice's PDF of one attachment; a 100-page document with images is a few MiB. Past it: too-large. */
const MAX_PDF_BYTES = 256 * 1024 ** 2;
/** A bridge answer is one short JSON line; a longer one means the bridge is broken, and it is killed. */
const MAX_ANSWER_CHARS = 64 * 1024;
/** Last stderr lines of the group kept for the log when it dies (soffice can print a lot when it crashes). */
const STDERR_TAIL_LINES = 20;

const PYTHON = '/usr/bin/python3';
const UNSHARE = '/usr/bin/unshare';
/** util-linux's setpriv: drops to the account (and clears groups, capabilities, new privileges), then execs. */
const SETPRIV = '/usr/bin/setpriv';
/** The account the group runs as when Sekisho runs as root (Debian's, 65534:65534, owns no files). */
const OFFICE_ACCOUNT = 'nobody';
const PASSWD_FILE = '/etc/passwd';
/** Prefix of the private run directory made under os.tmpdir() as root. */
const RUN_PREFIX = 'sekisho-lo-';
/** Where LibreOffice's UNO pipes live (osl, fixed path; not TMPDIR). */
const OSL_PIPE_PREFIX = '/tmp/OSL_PIPE_';
/** The bridge script; copied into the run directory, since the account may not be able to enter the checkout. */
const BRIDGE = fileURLToPath(new URL('./uno-convert.py', import.meta.url));
const BRIDGE_NAME = 'uno-convert.py';

/** Under the run directory: soffice's profile, our input and output files, soffice's TMPDIR and HOME. */
const WORK_SUBDIRS = ['profile', 'in', 'out', 'tmp', 'home'] as const;

/** An unprivileged account from /etc/passwd. */
interface Account {
  name: string;
  uid: number;
  gid: number;
}

/** True-type extensions handed to LibreOffice (the extension steers its type detection). */
const OFFICE_EXTENSIONS: ReadonlySet<string> = new Set([
  'doc', 'docx', 'docm', 'dot', 'dotx', 'dotm',
  'xls', 'xlsx', 'xlsm', 'xlsb', 'xlt', 'xltx', 'xltm',
  'ppt', 'pptx', 'pptm', 'pps', 'ppsx', 'pot', 'potx',
  'odt', 'ott', 'ods', 'ots', 'odp', 'otp', 'fodt', 'fods', 'fodp',
  'rtf',
]);

interface Answer {
  id: number;
  ok: boolean;
  error?: 'encrypted' | 'conversion-failed' | 'unsupported-type' | 'crashed';
  message?: string;
}

interface Pending {
  id: number;
  resolve: (a: Answer) => void;
  reject: (e: Error) => void;
}

/** One running group: the bridge (group leader) and its soffice.bin. */
interface Instance {
  proc: ChildProcessWithoutNullStreams;
  pgid: number;
  sofficePid?: number;
  exited: Promise<void>;
  stderrTail: string[];
  pending?: Pending;
  /** The bridge said ready: a later death is restarted at once. */
  ready: boolean;
  /** We killed it (timeout, abort, stop): its death is expected. */
  killedOnPurpose: boolean;
  /** The sockets soffice listens on; soffice removes them when it exits, but not when it is killed. */
  pipeFiles: string[];
}

export class LibreOfficeConverter {
  readonly #workDir: string;
  readonly #timeoutMs: number;
  readonly #memoryLimitBytes: number;
  readonly #isolateNetwork: boolean;
  readonly #log: Logger | undefined;
  readonly #onRestart: (() => void) | undefined;
  readonly #pipeName = `sekisho-lo-${randomBytes(8).toString('hex')}`;
  /** Set as root: the account the group runs as (looked up at the first start). */
  #account: Account | undefined;
  /** Where the profile and the documents live while started: workDir, or (as root) a private one in os.tmpdir(). */
  #runDir: string | undefined;
  #instance: Instance | undefined;
  #starting: Promise<Instance> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #nextId = 1;
  #restarts = 0;
  #stopped = false;

  constructor(opts: LibreOfficeOptions) {
    this.#workDir = path.resolve(opts.workDir);
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#memoryLimitBytes = opts.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT_BYTES;
    this.#isolateNetwork = opts.isolateNetwork ?? process.getuid?.() === 0;
    this.#log = opts.log;
    this.#onRestart = opts.onRestart;
  }

  get restarts(): number {
    return this.#restarts;
  }

  /** The run directory (profile, in, out, tmp, home, the bridge); undefined before the first start and once stopped. */
  get runDir(): string | undefined {
    return this.#runDir;
  }

  /** soffice.bin's pid; undefined while (re)starting and once stopped. */
  get pid(): number | undefined {
    return this.#instance?.sofficePid;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    await this.#ensureRunning();
  }

  convert(data: Buffer, ext: string, signal?: AbortSignal): Promise<Buffer> {
    const type = ext.toLowerCase();
    if (type === 'jtd' || type === 'jtt') {
      return Promise.reject(new ConversionError('unsupported-type', 'LibreOffice has no import filter for 一太郎 (.jtd)'));
    }
    if (!OFFICE_EXTENSIONS.has(type)) {
      return Promise.reject(new ConversionError('unsupported-type', `LibreOffice is not used for .${type.slice(0, 16)} files`));
    }
    const run = this.#queue.then(() => this.#convertOne(data, type, signal));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const starting = this.#starting;
    if (starting) await starting.catch(() => undefined);
    const inst = this.#instance;
    if (inst) await this.#kill(inst, 'stopped');
    const run = this.#runDir;
    if (!run) return;
    this.#runDir = undefined;
    for (const d of WORK_SUBDIRS) await this.#removeOwned(path.join(run, d));
    await rm(path.join(run, BRIDGE_NAME), { force: true });
    await rmdir(run).catch((err: unknown) => {
      // As root it is ours alone and must go; workDir is left if something else was put there.
      if (this.#account) this.#log?.warn({ err, run }, 'cannot remove the LibreOffice run directory');
    });
  }

  async #convertOne(data: Buffer, ext: string, signal: AbortSignal | undefined): Promise<Buffer> {
    if (this.#stopped) throw new ConversionError('conversion-failed', 'the LibreOffice converter is stopped');
    if (signal?.aborted) throw abortError(signal);
    const inst = await this.#ensureRunning();
    const run = this.#runDir!;
    const name = randomBytes(16).toString('hex');
    const input = path.join(run, 'in', `${name}.${ext}`);
    const output = path.join(run, 'out', `${name}.pdf`);
    try {
      // Exclusive: never through something the account put at that name.
      await writeFile(input, data, { mode: 0o600, flag: 'wx' });
      if (this.#account) await chown(input, this.#account.uid, this.#account.gid);
      const answer = await this.#ask(inst, input, output, signal);
      if (!answer.ok) throw answerError(answer);
      return await readPdf(output);
    } finally {
      await Promise.all([rm(input, { force: true }), rm(output, { force: true })]);
    }
  }

  /** Hands one document to the bridge; the deadline starts here. Kills the group on timeout or abort. */
  #ask(inst: Instance, input: string, output: string, signal: AbortSignal | undefined): Promise<Answer> {
    const id = this.#nextId++;
    return new Promise<Answer>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        inst.pending = undefined;
      };
      const fail = (err: ConversionError) => {
        done();
        reject(err);
        void this.#kill(inst, err.reason);
      };
      const timer = setTimeout(
        () => fail(new ConversionError('timeout', `LibreOffice did not convert the document within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      const onAbort = () => fail(abortError(signal));
      signal?.addEventListener('abort', onAbort, { once: true });
      inst.pending = {
        id,
        resolve: (a) => {
          done();
          resolve(a);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      inst.proc.stdin?.write(`${JSON.stringify({ id, in: input, out: output })}\n`);
    });
  }

  #ensureRunning(): Promise<Instance> {
    if (this.#instance) return Promise.resolve(this.#instance);
    this.#starting ??= this.#launch().finally(() => {
      this.#starting = undefined;
    });
    return this.#starting;
  }

  async #launch(): Promise<Instance> {
    const run = await this.#prepareRunDir();
    const started = performance.now();
    const inst = this.#spawn(run);
    try {
      await this.#ready(inst);
      if (this.#stopped) throw new Error('stopped while starting');
    } catch (err) {
      await this.#kill(inst, 'start failed');
      throw new ConversionError('conversion-failed', `LibreOffice could not be started: ${(err as Error).message}`, { cause: err });
    }
    if (inst.sofficePid) inst.pipeFiles = await listeningPipes(inst.sofficePid);
    this.#instance = inst;
    this.#log?.info({ pid: inst.sofficePid, ms: Math.round(performance.now() - started), restarts: this.#restarts }, 'LibreOffice started');
    return inst;
  }

  /**
   * Makes the run directory on the first start, with a copy of the bridge the account can read and the
   * subdirectories it writes in. On a restart, the temp files a killed soffice left are removed; the profile is kept
   * (a warm profile starts faster).
   */
  async #prepareRunDir(): Promise<string> {
    this.#runDir ??= await this.#newRunDir();
    const run = this.#runDir;
    await this.#removeOwned(path.join(run, 'tmp'));
    await copyFile(BRIDGE, path.join(run, BRIDGE_NAME));
    await chmod(path.join(run, BRIDGE_NAME), 0o644);
    for (const d of WORK_SUBDIRS) await this.#makeOwned(path.join(run, d));
    return run;
  }

  /** workDir; as root, a fresh 0711 root-owned directory under os.tmpdir() that the account can enter but not list. */
  async #newRunDir(): Promise<string> {
    if (process.getuid?.() !== 0) {
      await mkdir(this.#workDir, { recursive: true, mode: 0o700 });
      return this.#workDir;
    }
    this.#account ??= await lookUpAccount(OFFICE_ACCOUNT);
    const run = await mkdtemp(path.join(os.tmpdir(), RUN_PREFIX));
    await chmod(run, 0o711);
    return run;
  }

  /** A subdirectory the group writes in: 0700, the account's own as root. */
  async #makeOwned(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (this.#account) await chown(dir, this.#account.uid, this.#account.gid);
  }

  /**
   * Removes a subdirectory the group wrote in. As root, its content is deleted as the account (`find -delete`
   * follows no link, and as the account a link it planted leads only to what it may delete anyway), then the empty
   * directory by root: root never descends into a tree the account can change under it.
   */
  async #removeOwned(dir: string): Promise<void> {
    const account = this.#account;
    if (!account) {
      await rm(dir, { recursive: true, force: true });
      return;
    }
    await new Promise<void>((resolve) => {
      execFile('find', [dir, '-mindepth', '1', '-delete'], { uid: account.uid, gid: account.gid }, () => resolve());
    });
    await rmdir(dir).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log?.warn({ err, dir }, 'cannot remove a LibreOffice directory');
    });
  }

  /**
   * Starts the bridge (which starts soffice) as the leader of a new process group: in a network namespace if
   * asked, and as root under the account (setpriv runs inside the namespace, made while still root).
   */
  #spawn(run: string): Instance {
    const bridgeArgs = [path.join(run, BRIDGE_NAME), pathToFileURL(path.join(run, 'profile')).href, this.#pipeName, String(this.#memoryLimitBytes)];
    const account = this.#account;
    const asAccount = account
      ? [SETPRIV, `--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--', PYTHON]
      : [PYTHON];
    const command = this.#isolateNetwork ? [UNSHARE, '--net', '--', ...asAccount] : asAccount;
    if (!this.#isolateNetwork) this.#log?.warn('LibreOffice runs without a network namespace (needs root); only its proxy setting keeps it off the network');
    const proc = spawn(command[0]!, [...command.slice(1), ...bridgeArgs], {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        PATH: '/usr/bin:/bin',
        HOME: path.join(run, 'home'),
        TMPDIR: path.join(run, 'tmp'),
        LANG: 'C.UTF-8',
        SAL_USE_VCLPLUGIN: 'svp',
      },
    });
    this.#restarts++;
    const inst: Instance = {
      proc,
      pgid: proc.pid ?? 0,
      // 'close' also follows a failed spawn ('error'), so this settles whatever happens.
      exited: new Promise((resolve) => proc.once('close', () => resolve())),
      stderrTail: [],
      ready: false,
      killedOnPurpose: false,
      pipeFiles: [],
    };
    // A write to a bridge that just died fails with EPIPE; its exit is handled by #onExit.
    proc.stdin.on('error', () => undefined);
    createInterface({ input: proc.stderr }).on('line', (line) => {
      inst.stderrTail.push(line.slice(0, 500));
      if (inst.stderrTail.length > STDERR_TAIL_LINES) inst.stderrTail.shift();
    });
    proc.once('exit', (code, sig) => this.#onExit(inst, code, sig));
    return inst;
  }

  #ready(inst: Instance): Promise<void> {
    const { proc } = inst;
    let timer: NodeJS.Timeout | undefined;
    return new Promise<void>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`LibreOffice did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      proc.once('error', reject);
      proc.once('exit', (code, sig) => reject(new Error(`its bridge exited (${sig ?? code}): ${inst.stderrTail.join(' | ')}`)));
      this.#readAnswers(inst, resolve, reject);
    }).finally(() => clearTimeout(timer));
  }

  /** Reads the bridge's JSON lines: the first says ready (with soffice's pid), each later one answers a request. */
  #readAnswers(inst: Instance, onReady: () => void, onFatal: (e: Error) => void): void {
    createInterface({ input: inst.proc.stdout }).on('line', (line) => {
      let msg: { ready?: boolean; pid?: number; fatal?: string } & Partial<Answer>;
      try {
        if (line.length > MAX_ANSWER_CHARS) throw new Error('answer too long');
        msg = JSON.parse(line) as typeof msg;
      } catch {
        this.#log?.error({ line: line.slice(0, 200) }, 'LibreOffice bridge said something unreadable; killing it');
        void this.#kill(inst, 'protocol error');
        return;
      }
      if (msg.ready) {
        inst.sofficePid = msg.pid;
        inst.ready = true;
        onReady();
      } else if (msg.fatal !== undefined) {
        onFatal(new Error(msg.fatal));
      } else if (inst.pending && msg.id === inst.pending.id) {
        // The bridge exits after saying soffice died: no further document may be queued to it meanwhile.
        if (msg.error === 'crashed') void this.#kill(inst, 'soffice died');
        inst.pending.resolve(msg as Answer);
      }
    });
  }

  #onExit(inst: Instance, code: number | null, sig: NodeJS.Signals | null): void {
    // The bridge leads the group; soffice may outlive it for a moment (or be stopped): take the group down.
    signalGroup(inst.pgid, 'SIGKILL');
    for (const file of inst.pipeFiles) rmSync(file, { force: true });
    if (inst.pending) {
      inst.pending.reject(new ConversionError('conversion-failed', 'LibreOffice died while converting the document'));
    }
    if (this.#instance === inst) this.#instance = undefined;
    if (this.#stopped || !inst.ready) return;
    if (!inst.killedOnPurpose) this.#log?.warn({ code, sig, stderr: inst.stderrTail }, 'LibreOffice exited; starting it again');
    this.#onRestart?.();
    // Warm again before the next document arrives; a failure here is retried by the next convert().
    this.#ensureRunning().catch((err: unknown) => this.#log?.error({ err }, 'LibreOffice could not be restarted'));
  }

  async #kill(inst: Instance, why: string): Promise<void> {
    inst.killedOnPurpose = true;
    // No further document goes to it, even before its exit event arrives.
    if (this.#instance === inst) this.#instance = undefined;
    if (inst.proc.exitCode === null && inst.proc.signalCode === null) {
      this.#log?.warn({ pid: inst.sofficePid, why }, 'killing LibreOffice');
    }
    signalGroup(inst.pgid, 'SIGKILL');
    await inst.exited;
  }
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  if (pgid <= 0) return;
  try {
    process.kill(-pgid, sig);
  } catch {
    // already gone
  }
}

/** The /tmp/OSL_PIPE_* sockets a process listens on: its socket fds matched with its namespace's unix socket table. */
async function listeningPipes(pid: number): Promise<string[]> {
  try {
    const inodes = new Set<string>();
    for (const fd of await readdir(`/proc/${pid}/fd`)) {
      const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
      if (m) inodes.add(m[1]!);
    }
    // Columns: Num RefCount Protocol Flags Type St Inode Path.
    const rows = (await readFile(`/proc/${pid}/net/unix`, 'utf8')).split('\n').map((l) => l.trim().split(/\s+/));
    return rows.filter((r) => inodes.has(r[6] ?? '') && r[7]?.startsWith(OSL_PIPE_PREFIX)).map((r) => r[7]!);
  } catch {
    return [];
  }
}

function abortError(signal: AbortSignal | undefined): ConversionError {
  return new ConversionError('timeout', 'the conversion was aborted (the job ran out of time or is shutting down)', { cause: signal?.reason });
}

function answerError(a: Answer): ConversionError {
  const message = (a.message ?? 'LibreOffice failed').slice(0, 500);
  switch (a.error) {
    case 'encrypted':
      return new ConversionError('encrypted', 'the document is password-protected');
    case 'unsupported-type':
      return new ConversionError('unsupported-type', message);
    case 'crashed':
      return new ConversionError('conversion-failed', `LibreOffice died while converting the document: ${message}`);
    default:
      return new ConversionError('conversion-failed', message);
  }
}

/** The account's uid and gid from /etc/passwd; without it, LibreOffice would parse hostile files as root. */
async function lookUpAccount(name: string): Promise<Account> {
  const passwd = await readFile(PASSWD_FILE, 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const [user, , uid, gid] = line.split(':');
    if (user === name && Number(uid) > 0 && Number(gid) > 0) return { name, uid: Number(uid), gid: Number(gid) };
  }
  throw new ConversionError(
    'conversion-failed',
    `LibreOffice runs as the unprivileged account "${name}" when Sekisho runs as root, and ${PASSWD_FILE} has none (or it is root): create it (useradd --system --no-create-home --shell /usr/sbin/nologin ${name})`,
  );
}

/** Reads the PDF the group wrote, never through a link it put there (as root, its directory is the account's). */
async function readPdf(file: string): Promise<Buffer> {
  const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch(() => undefined);
  if (!handle) throw new ConversionError('conversion-failed', 'LibreOffice wrote no PDF');
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.size === 0) throw new ConversionError('conversion-failed', 'LibreOffice wrote no PDF');
    if (st.size > MAX_PDF_BYTES) throw new ConversionError('too-large', `LibreOffice's PDF is over ${MAX_PDF_BYTES} bytes`);
    // Only the bytes stat saw: a soffice still writing to it cannot push the read past the limit.
    const pdf = Buffer.alloc(st.size);
    const { bytesRead } = await handle.read(pdf, 0, st.size, 0);
    if (bytesRead !== st.size) throw new ConversionError('conversion-failed', 'LibreOffice\'s PDF changed while it was read');
    if (!pdf.subarray(0, 5).equals(Buffer.from('%PDF-'))) throw new ConversionError('conversion-failed', 'LibreOffice wrote something that is not a PDF');
    return pdf;
  } finally {
    await handle.close();
  }
}
