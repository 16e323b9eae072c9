/**
 * A private Postfix instance for the comparison: its own config_directory, queue_directory and data_directory
 * in a temp dir, smtpd on a high loopback port, relaying the bench domain to the sink. It never reads or writes
 * /etc/postfix and never listens on port 25. Defaults are Postfix's own (fsync before 250, in_flow_delay,
 * destination concurrency 20…) except what a loopback-only, DNS-free relay needs.
 *
 * With `antivirus`, the instance is the gateway Sekisho replaces: Postfix with clamav-milter (Debian's package)
 * in front of a clamd of its own — the same clamd, started by Sekisho's own code with Sekisho's defaults (signatures,
 * ScanMail, limits, temporary files in /dev/shm), so that both systems pay for the same scan; at the default
 * priority, as Debian's clamav-daemon runs (Sekisho nices its own). The milter
 * scans before the 250 (what clamav-milter does), up to the same 50 MB, and rejects what is infected.
 *
 * With `routes`, the instance relays those domains instead, each to a sink of its own (as Sekisho's tenants do);
 * kill9() / restart() / flush() are the fault bench's means to kill it and start it again on the same queue.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os, { setPriority } from 'node:os';
import path from 'node:path';
import { type ManagedClamd, startManagedClamd } from '../../src/services/clamd.ts';
import { waitForPort } from '../../src/services/redis-server.ts';
import { onCleanup } from './cleanup.ts';
import { benchDomain } from './message.ts';
import { ProcessSet, processTree } from './proc-rss.ts';
import { freePort, sleep, smtpGreets, waitFor } from './util.ts';

const postfixBin = '/usr/sbin/postfix';
const postconfBin = '/usr/sbin/postconf';
const milterBin = '/usr/sbin/clamav-milter';
const clamdBin = '/usr/sbin/clamd';

/** Sekisho's defaults (src/config/schema.ts), so that the two clamds are configured alike. */
const clamdDefaults = {
  databaseDir: '/var/lib/clamav',
  maxStreamBytes: 52_428_800,
  scanTimeoutMs: 25_000,
  startTimeoutMs: 180_000,
  maxThreads: 8,
};

/** Process limit per service: well above 20 concurrent clients plus the delivery agents. */
const processLimit = 100;
/** How long killed daemons may take to disappear from /proc (they die at once; this bounds a stuck zombie). */
const killWaitMs = 10_000;

export interface PostfixStartOptions {
  /** clamav-milter and a clamd of its own in front of the 250. */
  antivirus?: boolean;
  /** Relay these domains (not the bench domain), each to 127.0.0.1:port. */
  routes?: Record<string, number>;
}

/** Why Postfix cannot be used here, or null when it can. */
export function postfixUnavailable(): string | null {
  if (!existsSync(postfixBin) || !existsSync(postconfBin)) return 'Postfix is not installed (no /usr/sbin/postfix)';
  if (process.getuid?.() !== 0) return 'a private Postfix instance needs root';
  return null;
}

/** Why Postfix with clamav-milter cannot be used here, or null when it can. */
export function postfixAvUnavailable(): string | null {
  const why = postfixUnavailable();
  if (why) return why;
  if (!existsSync(milterBin)) return 'clamav-milter is not installed (apt-get install clamav-milter)';
  if (!existsSync(clamdBin)) return 'clamd is not installed (apt-get install clamav-daemon)';
  return null;
}

function milterConf(dir: string, port: number, clamdSocket: string, tempDir: string): string {
  return [
    '# private bench instance, written by bench/lib/postfix-instance.ts',
    `MilterSocket inet:${port}@127.0.0.1`,
    `ClamdSocket unix:${clamdSocket}`,
    'Foreground yes',
    `PidFile ${path.join(dir, 'clamav-milter.pid')}`,
    `TemporaryDirectory ${tempDir}`,
    `LogFile ${path.join(dir, 'clamav-milter.log')}`,
    'LogInfected Basic',
    'OnClean Accept',
    'OnInfected Reject',
    // A scan that fails is a 4xx, as Sekisho defers: never "deliver unscanned".
    'OnFail Defer',
    'AddHeader No',
    // Messages above MaxFileSize go unscanned; Sekisho scans up to smtp.maxMessageBytes (50 MB).
    'MaxFileSize 50M',
    'ReadTimeout 120',
    '',
  ].join('\n');
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`.trim());
  }
}

/** mail_owner "postfix" and setgid_group "postdrop" must exist; Debian's package creates them, we do if not. */
function ensureAccounts(): void {
  const has = (db: string, name: string) => spawnSync('getent', [db, name]).status === 0;
  if (!has('group', 'postdrop')) run('groupadd', ['--system', 'postdrop']);
  if (!has('passwd', 'postfix')) {
    run('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', 'postfix']);
  }
}

function masterCf(port: number): string {
  // chroot off everywhere: a chroot would need copies of /etc files inside the temp queue directory.
  const services = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'proxywrite unix - - n - 1 proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  return `# private bench instance, written by bench/lib/postfix-instance.ts\n${services.join('\n')}\n`;
}

export class PostfixInstance {
  readonly port: number;
  readonly dir: string;
  readonly #configDir: string;
  readonly #queueDir: string;
  readonly #stop: () => Promise<void>;
  readonly #procs = new ProcessSet();
  #clamd: ManagedClamd | undefined;
  #milterTemp: string | undefined;
  #milter: ChildProcess | undefined;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
    this.#configDir = path.join(dir, 'etc');
    this.#queueDir = path.join(dir, 'queue');
    this.#stop = onCleanup(
      `Postfix in ${dir}`,
      () => this.#shutdown(),
      () => this.#emergency(),
    );
  }

  /**
   * Starts a fresh instance relaying `bench.example.lg.jp` to 127.0.0.1:`sinkPort` (with `antivirus`, through
   * clamav-milter and a clamd of its own); resolves when smtpd greets.
   */
  static async start(sinkPort: number, opts: PostfixStartOptions = {}): Promise<PostfixInstance> {
    ensureAccounts();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-postfix-'));
    chmodSync(dir, 0o755);
    const port = await freePort();
    const pf = new PostfixInstance(dir, port);
    try {
      const milters = opts.antivirus ? await pf.#startAntivirus() : undefined;
      await pf.#boot(sinkPort, milters, opts.routes);
    } catch (err) {
      await pf.stop();
      throw err;
    }
    return pf;
  }

  /** clamd and clamav-milter; returns Postfix's smtpd_milters value. */
  async #startAntivirus(): Promise<string> {
    const dir = path.join(this.dir, 'clamav');
    mkdirSync(path.join(dir, 'clamd'), { recursive: true });
    this.#milterTemp = mkdtempSync('/dev/shm/sekisho-bench-milter-');
    this.#clamd = await startManagedClamd({ dir: path.join(dir, 'clamd'), runParent: '/dev/shm', ...clamdDefaults });
    // Sekisho nices its clamd (scanning yields to accepting); Debian's clamav-daemon runs at the default priority,
    // and so does this one.
    setPriority(this.#clamd.pid, 0);
    const port = await freePort();
    const conf = path.join(dir, 'clamav-milter.conf');
    writeFileSync(conf, milterConf(dir, port, this.#clamd.socket, this.#milterTemp));
    const milter = spawn(milterBin, [`--config-file=${conf}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#milter = milter;
    let stderr = '';
    milter.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4_000);
    });
    try {
      await waitForPort(port, '127.0.0.1', 30_000, milter);
    } catch (err) {
      let log = '';
      try {
        log = readFileSync(path.join(dir, 'clamav-milter.log'), 'utf8').slice(-2_000);
      } catch {
        // no log yet
      }
      throw new Error(`clamav-milter did not listen on 127.0.0.1:${port} (${(err as Error).message}): ${stderr}${log}`, { cause: err });
    }
    return `inet:127.0.0.1:${port}`;
  }

  async #boot(sinkPort: number, milters?: string, routes?: Record<string, number>): Promise<void> {
    const dataDir = path.join(this.dir, 'data');
    mkdirSync(this.#configDir);
    mkdirSync(this.#queueDir);
    mkdirSync(dataDir);
    const uid = Number(execFileSync('id', ['-u', 'postfix'], { encoding: 'utf8' }).trim());
    chownSync(dataDir, uid, 0);
    writeFileSync(path.join(this.#configDir, 'main.cf'), '# private bench instance\n');
    writeFileSync(path.join(this.#configDir, 'master.cf'), masterCf(this.port));
    const settings: Record<string, string> = {
      compatibility_level: '3.6',
      config_directory: this.#configDir,
      queue_directory: this.#queueDir,
      data_directory: dataDir,
      maillog_file: path.join(this.dir, 'maillog'),
      maillog_file_prefixes: this.dir,
      mail_owner: 'postfix',
      setgid_group: 'postdrop',
      myhostname: 'bench-postfix.localdomain',
      mydomain: 'localdomain',
      myorigin: '$myhostname',
      inet_interfaces: '127.0.0.1',
      inet_protocols: 'ipv4',
      mydestination: '',
      mynetworks: '127.0.0.0/8',
      relay_domains: benchDomain,
      relayhost: `[127.0.0.1]:${sinkPort}`,
      smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination',
      smtpd_recipient_restrictions: 'permit_mynetworks, reject_unauth_destination',
      smtpd_peername_lookup: 'no',
      smtp_host_lookup: 'native',
      smtp_dns_support_level: 'disabled',
      default_process_limit: String(processLimit),
      // Sekisho's default smtp.maxMessageBytes (Postfix's own default, 10 MB, would refuse the 50 MB message).
      message_size_limit: '52428800',
      // Nothing may be delivered on this host: no aliases, no local mailboxes, no notices to root.
      alias_maps: '',
      alias_database: '',
      local_recipient_maps: '',
      local_transport: 'error:local delivery disabled in the bench instance',
      biff: 'no',
      smtputf8_enable: 'no',
      ...(routes
        ? {
            relay_domains: Object.keys(routes).join(', '),
            transport_maps: `inline:{ ${Object.entries(routes).map(([d, p]) => `${d}=relay:[127.0.0.1]:${p}`).join(', ')} }`,
          }
        : {}),
      ...(milters
        ? { smtpd_milters: milters, milter_default_action: 'tempfail', milter_protocol: '6', non_smtpd_milters: '' }
        : {}),
    };
    run(postconfBin, ['-c', this.#configDir, '-e', ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`)]);
    await this.#startPostfix();
  }

  /** `postfix start` on this instance's queue; resolves when smtpd greets. */
  async #startPostfix(): Promise<void> {
    // Postfix reports start-up errors only to a terminal or syslog; the maillog file has the rest.
    const r = spawnSync(postfixBin, ['-c', this.#configDir, 'start'], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) {
      throw new Error(
        `postfix -c ${this.#configDir} start failed (${r.status ?? r.signal}).\n${this.maillog()}\n` +
          `(run \`script -qc "postfix -c ${this.#configDir} check" /dev/null\` to see fatal errors)`,
      );
    }
    const up = await waitFor(() => smtpGreets(this.port), 30_000, 200);
    if (!up) throw new Error(`Postfix smtpd on 127.0.0.1:${this.port} did not greet within 30 s.\n${this.maillog()}`);
    this.#procs.add(processTree(this.rootPids()).map((p) => p.pid));
  }

  /** The master process (all daemons are its children) and, with antivirus, clamd and clamav-milter. */
  rootPids(): number[] {
    return [...this.#masterPid(), ...this.scannerPids()];
  }

  /** clamd and clamav-milter (children of the bench process), or []. */
  scannerPids(): number[] {
    return [this.#clamd?.pid, this.#milter?.pid].filter(
      (p): p is number => p !== undefined && p > 0 && existsSync(`/proc/${p}`),
    );
  }

  /** Why the instance cannot go on, or null. */
  broken(): string | null {
    if (this.#masterPid().length === 0) return 'the Postfix master process is gone';
    if (this.#milter && this.#milter.exitCode !== null) return `clamav-milter exited (${this.#milter.exitCode})`;
    return null;
  }

  #masterPid(): number[] {
    try {
      const pid = Number(readFileSync(path.join(this.#queueDir, 'pid', 'master.pid'), 'latin1').trim());
      return pid > 0 && existsSync(`/proc/${pid}`) ? [pid] : [];
    } catch {
      return [];
    }
  }

  /** Last lines of the instance's log. */
  maillog(lines = 30): string {
    try {
      return readFileSync(path.join(this.dir, 'maillog'), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no maillog)';
    }
  }

  /**
   * kill -9 of the master and every daemon under it (`all`), or of its smtp delivery agents only (`smtp`);
   * resolves with how many processes were killed, once they are gone. clamd and clamav-milter are left running.
   */
  async kill9(which: 'all' | 'smtp'): Promise<number> {
    const procs = processTree(this.#masterPid()).filter((p) => which === 'all' || p.comm === 'smtp');
    this.#procs.add(procs.map((p) => p.pid));
    for (const p of procs) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await waitFor(() => procs.every((p) => !existsSync(`/proc/${p.pid}`)), killWaitMs, 20);
    return procs.length;
  }

  /** `postfix start` again on the same queue (after kill9('all')); resolves when smtpd greets. */
  async restart(): Promise<void> {
    await this.#startPostfix();
  }

  /** `postqueue -f`: deferred mail is tried again now, and dead transports are revived. */
  flush(): void {
    spawnSync('/usr/sbin/postqueue', ['-c', this.#configDir, '-f'], { timeout: 30_000 });
  }

  /** Recipients in any of the queues (`postqueue -j`); throws while the queue cannot be listed. */
  queuedRecipients(): number {
    const out = execFileSync('/usr/sbin/postqueue', ['-c', this.#configDir, '-j'], { encoding: 'utf8', timeout: 30_000 });
    let n = 0;
    for (const line of out.split('\n')) {
      if (line.trim() === '') continue;
      n += ((JSON.parse(line) as { recipients?: unknown[] }).recipients ?? []).length;
    }
    return n;
  }

  /** Remembers the current daemons so that teardown can make sure every one of them is gone. */
  notePids(pids: Iterable<number>): void {
    this.#procs.add(pids);
  }

  stop(): Promise<void> {
    return this.#stop();
  }

  async #shutdown(): Promise<void> {
    this.#procs.add(processTree(this.rootPids()).map((p) => p.pid));
    if (this.#masterPid().length > 0) {
      spawnSync(postfixBin, ['-c', this.#configDir, 'stop'], { timeout: 30_000 });
      const gone = await waitFor(() => this.#masterPid().length === 0, 15_000, 100);
      if (!gone) spawnSync(postfixBin, ['-c', this.#configDir, 'abort'], { timeout: 30_000 });
    }
    this.#milter?.kill('SIGTERM');
    await this.#clamd?.stop();
    await waitFor(() => this.#procs.alive().length === 0, 5_000, 100);
    this.#procs.killAll();
    await sleep(50);
    this.#removeDirs();
  }

  #emergency(): void {
    this.#procs.add(processTree(this.rootPids()).map((p) => p.pid));
    if (this.#masterPid().length > 0) spawnSync(postfixBin, ['-c', this.#configDir, 'abort'], { timeout: 10_000 });
    this.#procs.killAll();
    this.#removeDirs();
  }

  #removeDirs(): void {
    rmSync(this.dir, { recursive: true, force: true });
    if (this.#milterTemp) rmSync(this.#milterTemp, { recursive: true, force: true });
  }

}
