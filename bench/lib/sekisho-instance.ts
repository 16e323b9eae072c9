/**
 * Sekisho under test: a temp data dir and config (one tenant delivering to the sink, free loopback ports,
 * `log.level: warn`, its own redis-server since `redis.url` is absent), `node bin/sekisho.js start --config FILE`
 * as a child process, ready once `/healthz` answers 200 and the ingress greets. Teardown: SIGTERM, then SIGKILL
 * to whatever of its process tree outlived it, then the temp dir goes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { merge } from '../../test/helpers/merge.ts';
import { onCleanup } from './cleanup.ts';
import { benchDomain } from './message.ts';
import { ProcessSet, processTree } from './proc-rss.ts';
import { LineRing, freePort, smtpGreets, waitFor } from './util.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const entry = path.join(repoRoot, 'bin', 'sekisho.js');

/** Start-up budget: a cold start builds the SQLite schema and starts redis-server. */
const startTimeoutMs = 180_000;
/** Graceful shutdown budget before SIGKILL. */
const stopTimeoutMs = 30_000;

/** Why Sekisho cannot be started from this tree, or null when it can (as far as files go). */
export function sekishoUnavailable(): string | null {
  if (!existsSync(entry)) return 'bin/sekisho.js is missing';
  if (!existsSync(path.join(repoRoot, 'src', 'cli', 'main.ts'))) return 'src/cli/main.ts (the sekisho command) is missing';
  return null;
}

export class SekishoInstance {
  readonly port: number;
  readonly adminPort: number;
  readonly dir: string;
  readonly #child: ChildProcess;
  readonly #output = new LineRing(60);
  readonly #procs = new ProcessSet();
  readonly #stop: () => Promise<void>;

  private constructor(dir: string, port: number, adminPort: number, child: ChildProcess) {
    this.dir = dir;
    this.port = port;
    this.adminPort = adminPort;
    this.#child = child;
    child.stdout?.setEncoding('utf8').on('data', (s: string) => this.#output.push(s));
    child.stderr?.setEncoding('utf8').on('data', (s: string) => this.#output.push(s));
    this.#stop = onCleanup(
      `Sekisho in ${dir}`,
      () => this.#shutdown(),
      () => this.#emergency(),
    );
  }

  static async start(sinkPort: number, extraConfig: Record<string, unknown> = {}): Promise<SekishoInstance> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-'));
    const port = await freePort();
    const adminPort = await freePort();
    const config = merge({
      hostname: 'bench-sekisho.localdomain',
      smtp: {
        listen: `127.0.0.1:${port}`,
        // All load comes from 127.0.0.1: the per-IP guards must not throttle the benchmark itself.
        maxConnectionsPerIp: 1_000,
        connectionRatePerIpPerMinute: 1_000_000,
      },
      dataDir: path.join(dir, 'data'),
      admin: { listen: `127.0.0.1:${adminPort}` },
      log: { level: 'warn' },
      tenants: [
        {
          id: 'bench',
          name: 'Bench',
          domains: [benchDomain],
          deliverTo: `smtp://127.0.0.1:${sinkPort}`,
        },
      ],
    }, extraConfig);
    const configFile = path.join(dir, 'sekisho.yaml');
    writeFileSync(configFile, stringify(config));
    const child = spawn(process.execPath, [entry, 'start', '--config', configFile], {
      cwd: repoRoot,
      // Own process group: a Ctrl-C on the bench reaches the bench, which then stops Sekisho in order.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_ENV: 'production' },
    });
    const inst = new SekishoInstance(dir, port, adminPort, child);
    try {
      await inst.#waitReady();
    } catch (err) {
      await inst.stop();
      throw err;
    }
    return inst;
  }

  async #waitReady(): Promise<void> {
    let exited = false;
    this.#child.once('exit', () => {
      exited = true;
    });
    const healthy = await waitFor(
      async () => {
        if (exited) return true;
        const res = await fetch(`http://127.0.0.1:${this.adminPort}/healthz`, { signal: AbortSignal.timeout(2_000) });
        await res.body?.cancel();
        return res.status === 200;
      },
      startTimeoutMs,
      250,
    );
    if (exited) {
      throw new Error(`sekisho exited during start-up (${this.#child.exitCode ?? this.#child.signalCode}):\n${this.output()}`);
    }
    if (!healthy) throw new Error(`sekisho /healthz not 200 within ${startTimeoutMs / 1000} s:\n${this.output()}`);
    if (!(await waitFor(() => smtpGreets(this.port), 30_000, 200))) {
      throw new Error(`sekisho is healthy but its ingress on 127.0.0.1:${this.port} does not greet:\n${this.output()}`);
    }
    this.#procs.add(processTree(this.rootPids()).map((p) => p.pid));
  }

  rootPids(): number[] {
    const pid = this.#child.pid;
    return pid !== undefined && this.#child.exitCode === null && this.#child.signalCode === null ? [pid] : [];
  }

  /** The last lines Sekisho wrote (pino JSON at `warn` and above, plus anything on stderr). */
  output(): string {
    return this.#output.text() || '(no output)';
  }

  get exited(): boolean {
    return this.#child.exitCode !== null || this.#child.signalCode !== null;
  }

  /** Remembers pids of its tree (e.g. from the RSS sampler) so that teardown leaves none behind. */
  notePids(pids: Iterable<number>): void {
    this.#procs.add(pids);
  }

  stop(): Promise<void> {
    return this.#stop();
  }

  async #shutdown(): Promise<void> {
    this.#procs.add(processTree(this.rootPids()).map((p) => p.pid));
    if (!this.exited) {
      const exited = new Promise((r) => this.#child.once('exit', r));
      this.#child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, stopTimeoutMs))]);
      if (!this.exited) console.error(`sekisho did not exit within ${stopTimeoutMs / 1000} s of SIGTERM; killing it`);
    }
    // Its children (redis-server, workers) get a moment to follow; what is left then is a finding, and killed.
    await waitFor(() => this.#procs.alive().length === 0, 5_000, 100);
    const left = this.#procs.alive();
    if (left.length > 0) {
      const names = left.map((pid) => processTree([pid])[0]?.comm ?? '?');
      console.error(`warning: sekisho left ${left.length} process(es) after SIGTERM (${names.join(', ')}); killing them`);
      this.#procs.killAll();
      await waitFor(() => this.#procs.alive().length === 0, 2_000, 100);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  #emergency(): void {
    this.#procs.add(processTree(this.rootPids()).map((p) => p.pid));
    this.#procs.killAll();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
