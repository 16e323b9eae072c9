/**
 * The real process tree of the fault suite: `node bin/sekisho.js start --config FILE` as a child of the test, with
 * its workers, ingress children, managed clamd and redis-server, and the means to kill -9 one part of it or all of
 * it and to start it again on the same dataDir. Every pid it ever saw is killed on stop(): nothing outlives a run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync, readdirSync, writeFileSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort } from '../../src/services/redis-server.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const entry = path.join(repoRoot, 'bin', 'sekisho.js');

/** Start-up budget: the schema, redis-server and clamd loading the project's signatures (no official ones). */
export const START_TIMEOUT_MS = 90_000;
/** Graceful stop budget before SIGKILL of what is left. */
const STOP_TIMEOUT_MS = 20_000;

export type Part = 'worker' | 'ingress' | 'clamd' | 'redis-server' | 'converter';

interface Proc {
  pid: number;
  ppid: number;
  comm: string;
  argv: string[];
}

function readProc(pid: number): Proc | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const close = stat.lastIndexOf(')');
    const fields = stat.slice(close + 2).split(' ');
    if (fields[0] === 'Z') return null;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').filter(Boolean);
    return { pid, ppid: Number(fields[1]), comm: stat.slice(stat.indexOf('(') + 1, close), argv };
  } catch {
    return null; // exited meanwhile
  }
}

/** Every live process descending from `root` (root included). */
export function treeOf(root: number): Proc[] {
  const all = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map((e) => readProc(Number(e))).filter((p): p is Proc => p !== null);
  const out: Proc[] = [];
  const stack = [root];
  while (stack.length) {
    const pid = stack.pop() as number;
    const p = all.find((x) => x.pid === pid);
    if (p) out.push(p);
    for (const c of all) if (c.ppid === pid) stack.push(c.pid);
  }
  return out;
}

function sekishoCommand(p: Proc): string | undefined {
  const i = p.argv.findIndex((a) => a.endsWith('sekisho.js'));
  return i >= 0 ? p.argv[i + 1] : undefined;
}

function isPart(p: Proc, part: Part): boolean {
  switch (part) {
    case 'worker':
    case 'ingress':
      return sekishoCommand(p) === part;
    case 'clamd':
      return p.comm === 'clamd';
    case 'redis-server':
      return p.comm === 'redis-server';
    case 'converter':
      return /soffice|oosplash|converter/.test(p.comm) || p.argv.some((a) => /converter/.test(a));
  }
}

export function alive(pid: number): boolean {
  return readProc(pid) !== null;
}

/** Polls `check` every `everyMs` until it is true or `timeoutMs` passed; returns whether it became true. */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return true;
    } catch {
      // not yet
    }
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export class SekishoTree {
  #child: ChildProcess | undefined;
  /** Every process of the tree ever seen, by pid, with its command line: a reused pid is not ours. */
  readonly #seen = new Map<number, string>();
  readonly #log: WriteStream;

  constructor(
    readonly configFile: string,
    readonly smtpPort: number,
    readonly adminPort: number,
    logFile: string,
    readonly env: NodeJS.ProcessEnv = {},
  ) {
    this.#log = createWriteStream(logFile, { flags: 'a' });
  }

  get rootPid(): number | undefined {
    const c = this.#child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  /** Starts `sekisho start` and waits until /healthz answers 200 and the ingress greets. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, [entry, 'start', '--config', this.configFile], {
      cwd: repoRoot,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_ENV: 'production', ...this.env },
    });
    this.#child = child;
    child.stdout?.pipe(this.#log, { end: false });
    child.stderr?.pipe(this.#log, { end: false });
    const ready = await until(async () => {
      if (this.rootPid === undefined) return true;
      const res = await fetch(`http://127.0.0.1:${this.adminPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
      await res.body?.cancel();
      return res.status === 200 && (await this.greets());
    }, START_TIMEOUT_MS, 250);
    if (this.rootPid === undefined) throw new Error(`sekisho start exited during start-up (${child.exitCode ?? child.signalCode})`);
    if (!ready) throw new Error(`sekisho start not ready within ${START_TIMEOUT_MS / 1000} s`);
    this.#note();
  }

  /** Whether the ingress answers with a 220 greeting. */
  async greets(): Promise<boolean> {
    const net = await import('node:net');
    return new Promise((resolve) => {
      const s = net.connect(this.smtpPort, '127.0.0.1');
      s.setTimeout(2_000, () => s.destroy());
      s.once('data', (d) => {
        resolve(d.toString().startsWith('220'));
        s.end('QUIT\r\n');
      });
      s.once('error', () => resolve(false));
      s.once('close', () => resolve(false));
    });
  }

  #note(): Proc[] {
    const root = this.rootPid;
    const procs = root === undefined ? [] : treeOf(root);
    for (const p of procs) this.#seen.set(p.pid, p.argv.join(' '));
    return procs;
  }

  /** The live pids of one part of the tree. */
  pids(part: Part): number[] {
    return this.#note().filter((p) => isPart(p, part)).map((p) => p.pid);
  }

  /** kill -9 of the first process of `part`; returns its pid (undefined when there is none). */
  kill9(part: Part): number | undefined {
    const pid = this.pids(part)[0];
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
    return pid;
  }

  /** kill -9 of every process of the tree at once. */
  async kill9All(): Promise<void> {
    const procs = this.#note();
    for (const p of procs) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    await until(() => procs.every((p) => !alive(p.pid)), 10_000, 50);
  }

  /** SIGTERM, then SIGKILL to whatever of every process it ever had is left after STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    this.#note();
    const child = this.#child;
    if (child && this.rootPid !== undefined) {
      child.kill('SIGTERM');
      await until(() => this.rootPid === undefined, STOP_TIMEOUT_MS, 100);
    }
    const ours = (pid: number, argv: string) => readProc(pid)?.argv.join(' ') === argv;
    await until(() => [...this.#seen].every(([pid, argv]) => !ours(pid, argv)), 3_000, 100);
    for (const [pid, argv] of this.#seen) {
      try {
        if (ours(pid, argv)) process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    this.#log.end();
  }
}

/**
 * Writes the configuration of a fault run (the suite's and bench:faults-postfix's): two ingress children, short
 * retries, no official signatures, info logs (the `delivered` lines carry markMs, the delivered-mark window), the
 * given tenants; `extra` keys replace whole sections.
 */
export async function writeFaultConfig(
  dir: string,
  tenants: readonly Record<string, unknown>[],
  opts: { outboundRelay?: string; extra?: Record<string, unknown> } = {},
): Promise<{ file: string; smtpPort: number; adminPort: number }> {
  const smtpPort = await freePort();
  const adminPort = await freePort();
  const signatures = path.join(dir, 'official-signatures');
  mkdirSync(signatures, { recursive: true, mode: 0o755 });
  const config = {
    hostname: 'faults.sekisho.test',
    dataDir: path.join(dir, 'data'),
    smtp: { listen: `127.0.0.1:${smtpPort}`, ingressProcesses: 2, maxConnectionsPerIp: 1_000, connectionRatePerIpPerMinute: 1_000_000 },
    admin: { listen: `127.0.0.1:${adminPort}` },
    log: { level: 'info' },
    queue: { reconcileIntervalMs: 2_000, lockDurationMs: 4_000, attemptBackoffMs: 500 },
    scan: { failRetryDelayMs: 2_000 },
    delivery: {
      retryInitialDelayMs: 1_000,
      retryMaxDelayMs: 3_000,
      connectTimeoutMs: 2_000,
      socketTimeoutMs: 5_000,
      ...(opts.outboundRelay ? { outboundRelay: opts.outboundRelay } : {}),
    },
    clamav: { databaseDir: signatures, startTimeoutMs: 60_000, maxThreads: 2 },
    tenants,
    ...opts.extra,
  };
  const file = path.join(dir, 'sekisho.yaml');
  writeFileSync(file, stringify(config));
  return { file, smtpPort, adminPort };
}
