/**
 * A real Rspamd (Debian's package) for one test file: the package's rules with a private configuration in a
 * temporary directory — one `normal` worker on 127.0.0.1:<free port>, no controller or proxy, no Redis, its DNS
 * sent to a UDP socket of ours on loopback that counts the queries and never answers, and its network modules
 * off, so nothing leaves the machine. Runs in the foreground as a child process; `stop()` ends it. The compiled
 * Hyperscan databases are kept in one directory shared by runs, so that only the first run compiles them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ensureBinary } from '../../src/services/debian.ts';

/** Debian's configuration, whose rules and modules the test instance loads. */
const DEBIAN_CONFDIR = '/etc/rspamd';
/** A cold start (Hyperscan compilation of every rule) takes 10–20 s on 2 cores, a warm one 1–2 s; leave room for a busy machine. */
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 10_000;
/** Modules that would look things up on the network (DNS lists, DNS records, remote maps, fuzzy servers). */
const NETWORK_MODULES = ['rbl', 'spf', 'dkim', 'dmarc', 'arc', 'asn', 'fuzzy_check', 'phishing', 'multimap', 'whitelist', 'hfilter', 'mx_check', 'url_redirector'];

export interface TestRspamd {
  /** http://127.0.0.1:<port>: antispam.rspamd.url */
  url: string;
  /** DNS queries Rspamd has sent (to our loopback socket: proof that its resolver is not the system's). */
  dnsQueries(): number;
  /** Ends Rspamd (idempotent). */
  stop(): Promise<void>;
  /** stop(), closes the DNS socket, removes the temporary directory. */
  cleanup(): Promise<void>;
}

/** Why the Rspamd tests cannot run here, or undefined when they can (installs the package as root if missing). */
export function rspamdSkipReason(): string | undefined {
  try {
    ensureBinary('rspamd', 'rspamd');
  } catch (err) {
    return `rspamd is not installed and cannot be installed here (${(err as Error).message})`;
  }
  return existsSync(path.join(DEBIAN_CONFDIR, 'common.conf')) ? undefined : `${DEBIAN_CONFDIR}/common.conf is missing (Debian's rspamd package expected)`;
}

async function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A UDP socket on loopback that takes DNS queries and never answers: every lookup of Rspamd times out. */
async function dnsSink(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => resolve(sock));
  });
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startTestRspamd(): Promise<TestRspamd> {
  const binary = ensureBinary('rspamd', 'rspamd');
  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-rspamd-test-'));
  const hsCacheDir = path.join(os.tmpdir(), 'sekisho-rspamd-hs-cache');
  for (const d of ['local.d', 'override.d', 'db', 'run', 'log']) mkdirSync(path.join(root, d));
  mkdirSync(hsCacheDir, { recursive: true });
  const port = await freeTcpPort();
  const dns = await dnsSink();
  let dnsQueries = 0;
  dns.on('message', () => dnsQueries++);
  // Our options come in with a higher priority: written after the include in the same block, a key is a
  // duplicate and Rspamd keeps the first one, i.e. options.inc's (and the system's resolver).
  writeFileSync(
    path.join(root, 'override.d', 'options.inc'),
    [`dns { nameserver = ["127.0.0.1:${dns.address().port}"]; timeout = 0.2s; retransmits = 1; }`, `hs_cache_dir = "${hsCacheDir}";`, ''].join('\n'),
  );
  writeFileSync(
    path.join(root, 'rspamd.conf'),
    [
      '.include "$CONFDIR/common.conf"',
      'options {',
      '  pidfile = "$RUNDIR/rspamd.pid";',
      '  .include "$CONFDIR/options.inc"',
      '  .include(priority=10) "$LOCAL_CONFDIR/override.d/options.inc"',
      '}',
      'logging { type = "console"; level = "error"; }',
      `worker "normal" { bind_socket = "127.0.0.1:${port}"; mime = true; count = 1; }`,
      '',
    ].join('\n'),
  );
  for (const m of NETWORK_MODULES) writeFileSync(path.join(root, 'local.d', `${m}.conf`), 'enabled = false;\n');

  const vars = { CONFDIR: DEBIAN_CONFDIR, LOCAL_CONFDIR: root, DBDIR: path.join(root, 'db'), RUNDIR: path.join(root, 'run'), LOGDIR: path.join(root, 'log') };
  // -f: stay in the foreground (our child); -i: tests run as root, and this instance need not drop privileges.
  const args = ['-f', '-i', '-c', path.join(root, 'rspamd.conf'), ...Object.entries(vars).flatMap(([k, v]) => ['--var', `${k}=${v}`])];
  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString('utf8')).slice(-4_000);
  });

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited(child);
    clearTimeout(timer);
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await listening(port))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      dns.close();
      rmSync(root, { recursive: true, force: true });
      throw new Error(`rspamd exited (${child.exitCode ?? child.signalCode}) before listening: ${stderr}`);
    }
    if (Date.now() > deadline) {
      await stop();
      dns.close();
      rmSync(root, { recursive: true, force: true });
      throw new Error(`rspamd did not listen on 127.0.0.1:${port} within ${START_TIMEOUT_MS} ms: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    dnsQueries: () => dnsQueries,
    stop,
    async cleanup() {
      await stop();
      dns.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
