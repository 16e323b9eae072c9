/**
 * `sekisho start` supervises what it starts: its managed clamd and redis-server, killed with SIGKILL, come back on
 * the same socket (the worker child reconnects by itself and mail flows again), /healthz shows `degraded` while one
 * is down and the restart is counted. And it stops within its shutdown deadline even when its managed redis-server
 * cannot come back, leaving no clamd, no redis-server and no clamd run directory.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Health } from '../../src/admin/routes/operations.ts';
import { ClamdClient } from '../../src/scan/clamd-client.ts';
import { findBinary } from '../../src/services/debian.ts';
import { freePort, waitForPort } from '../../src/services/redis-server.ts';
import type { ServiceStatus } from '../../src/services/supervisor.ts';
import { runDirOf } from '../helpers/clamd.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';
import { runSekisho, SEKISHO_BIN as BIN, stopSekishoProcesses, type SekishoProcess } from '../helpers/sekisho-process.ts';
import { SmtpSink } from '../helpers/smtp-sink.ts';

/** smtp.closeTimeoutMs of these tests: the shutdown deadline is this + 30 s (src/cli/main.ts SHUTDOWN_GRACE_MS). */
const CLOSE_TIMEOUT_MS = 2_000;
const SHUTDOWN_DEADLINE_MS = CLOSE_TIMEOUT_MS + 30_000;
/** Budget of anything these tests wait for (a start, a restart, a delivery) on a loaded 2-core machine. */
const WAIT_MS = 60_000;

let dir: string;
let sink: SmtpSink;

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-sup-'));
  sink = await new SmtpSink().start();
});
afterEach(async () => {
  // A second SIGTERM is not needed: the shutdown deadline stops a process that hangs.
  await stopSekishoProcesses();
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
});

type App = SekishoProcess;
const run = runSekisho;

/** Polls `cond` until it holds; fails with `what` if the process exits first or WAIT_MS pass. */
async function waitUntil(cond: () => boolean | Promise<boolean>, app: App, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (await cond()) return;
    if (app.proc.exitCode !== null || app.proc.signalCode !== null || Date.now() > deadline) {
      throw new Error(`gave up waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function writeConfig(): Promise<{ file: string; smtpPort: number; adminPort: number; dataDir: string }> {
  const smtpPort = await freePort();
  const adminPort = await freePort();
  // An empty stand-in for freshclam's directory: the managed clamd loads the project's signatures only (quickly).
  // Run as root, its account must be able to enter the directories on the way.
  chmodSync(dir, 0o711);
  const databaseDir = path.join(dir, 'official');
  mkdirSync(databaseDir);
  const file = path.join(dir, 'sekisho.yaml');
  const yaml = [
    'hostname: mx.test.lg.jp',
    `smtp: ${JSON.stringify({ listen: `127.0.0.1:${smtpPort}`, closeTimeoutMs: CLOSE_TIMEOUT_MS })}`,
    `admin:\n  listen: "127.0.0.1:${adminPort}"`,
    'dataDir: ./data',
    'log:\n  level: info',
    `clamav: ${JSON.stringify({ databaseDir })}`,
    `tenants:\n  - id: city\n    name: "デモ市"\n    domains: ["city.example.lg.jp"]\n    deliverTo: "${sink.url}"\n`,
  ].join('\n');
  writeFileSync(file, yaml);
  return { file, smtpPort, adminPort, dataDir: path.join(dir, 'data') };
}

/** An operator's API token for /metrics, made with `sekisho user` as an operator would. */
function operatorToken(file: string): string {
  const cli = (args: string[], input?: string) => {
    const r = spawnSync(process.execPath, [BIN, 'user', ...args, '--config', file], { input, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`sekisho user ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  cli(['add', 'ops', '--role', 'operator', '--password-stdin'], 'correct horse battery staple\n');
  const token = /skt_\S+/.exec(cli(['token', 'ops', '--name', 'supervision-test']))?.[0];
  if (!token) throw new Error('no API token printed');
  return token;
}

async function health(adminPort: number): Promise<Health> {
  return (await (await fetch(`http://127.0.0.1:${adminPort}/healthz`)).json()) as Health;
}

function service(h: Health, name: string): ServiceStatus | undefined {
  return h.services?.find((s) => s.service === name);
}

/** pid of each process whose parent is `ppid`, with its command line. */
function childrenOf(ppid: number): { pid: number; cmd: string }[] {
  return processes().filter((p) => p.ppid === ppid);
}

function processes(): { pid: number; ppid: number; cmd: string }[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .flatMap((pid) => {
      try {
        // The command (in parentheses) may hold spaces: the fields after its last ')' are fixed.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return [{ pid: Number(pid), ppid, cmd: readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ') }];
      } catch {
        return [];
      }
    });
}

function childPid(app: App, pattern: RegExp): number | undefined {
  return childrenOf(app.proc.pid!).find((c) => pattern.test(c.cmd))?.pid;
}

/** Sends as an MTA does: a 4xx (the ingress not reconnected to Redis yet answers 451) is retried. */
async function send(smtpPort: number, subject: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const reply = await sendRaw(smtpPort, 's@example.net', ['u@city.example.lg.jp'], simpleMessage({ to: 'u@city.example.lg.jp', subject }));
    if (!reply.startsWith('4') || Date.now() > deadline) return void expect(reply).toMatch(/^250 /);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function delivered(subject: string): boolean {
  return sink.messages.some((m) => m.raw.toString().includes(`Subject: ${subject}`));
}

/** Kills `name` (SIGKILL), sees /healthz say it is down, then waits until it is up again with one more restart. */
async function killAndWatchRestart(app: App, adminPort: number, name: string, pattern: RegExp): Promise<void> {
  const pid = childPid(app, pattern);
  expect(pid, `the managed ${name}`).toBeDefined();
  const before = service(await health(adminPort), name)!;
  expect(before.up).toBe(true);
  process.kill(pid!, 'SIGKILL');
  let sawDown = false;
  await waitUntil(
    async () => {
      const h = await health(adminPort);
      const s = service(h, name)!;
      if (!s.up) {
        sawDown = true;
        expect(h.status).toBe('degraded');
        expect(h.problems).toContain(`${name} down (restarting)`);
        expect(s.lastExit).toBe('signal SIGKILL');
      }
      return s.up && s.restarts === before.restarts + 1;
    },
    app,
    `${name} to come back`,
  );
  expect(sawDown).toBe(true);
  const again = childPid(app, pattern);
  expect(again).toBeDefined();
  expect(again).not.toBe(pid);
}

it('start: a killed managed clamd or redis-server is restarted on the same socket, degraded meanwhile, counted, and mail flows again without restarting the worker', async () => {
  const { file, smtpPort, adminPort } = await writeConfig();
  const token = operatorToken(file);
  const app = run(['start', '--config', file]);
  await waitForPort(adminPort, '127.0.0.1', WAIT_MS, app.proc);
  await waitForPort(smtpPort, '127.0.0.1', WAIT_MS, app.proc);
  await waitUntil(() => app.output().includes('stage workers running'), app, 'the worker child');
  const worker = childPid(app, /sekisho\.js worker/);
  await send(smtpPort, 'before');
  await waitUntil(() => delivered('before'), app, 'the first message');

  const socket = /"socket":"([^"]+)","msg":"started a managed clamd/.exec(app.output())?.[1];
  expect(socket).toBeDefined();
  await killAndWatchRestart(app, adminPort, 'clamd', /clamd --config-file/);
  await new ClamdClient({ socket: socket! }, 5_000).ping();
  await send(smtpPort, 'after-clamd');
  await waitUntil(() => delivered('after-clamd'), app, 'a message sent after the clamd restart');

  await killAndWatchRestart(app, adminPort, 'redis', /redis-server/);
  await send(smtpPort, 'after-redis');
  await waitUntil(() => delivered('after-redis'), app, 'a message sent after the redis-server restart');

  // Scanned, not held: the messages went through the restarted clamd.
  expect(sink.messages).toHaveLength(3);
  expect(childPid(app, /sekisho\.js worker/)).toBe(worker);
  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  expect(metrics).toMatch(/^sekisho_service_restarts_total\{service="clamd"[^}]*\} 1$/m);
  expect(metrics).toMatch(/^sekisho_service_restarts_total\{service="redis"[^}]*\} 1$/m);
  expect(metrics).toMatch(/^sekisho_service_up\{service="clamd"[^}]*\} 1$/m);
  expect(app.output()).toMatch(/"service":"clamd","code":null,"signal":"SIGKILL","restartInMs":1000,"msg":"clamd exited; restarting"/);

  app.proc.kill('SIGTERM');
  expect(await app.exited).toBe(0);
}, 300_000);

/** A `redis-server` earlier on PATH that refuses to start once `${dir}/redis.broken` exists. */
function breakableRedis(): { env: NodeJS.ProcessEnv; breakIt: () => void } {
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  const real = findBinary('redis-server')!;
  const broken = path.join(dir, 'redis.broken');
  writeFileSync(path.join(bin, 'redis-server'), `#!/bin/bash\n[ -e '${broken}' ] && exit 1\nexec '${real}' "$@"\n`, { mode: 0o755 });
  return { env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` }, breakIt: () => writeFileSync(broken, '') };
}

/** The processes of `dataDir` still running, once those SIGKILLed with their parent have had a moment to go. */
async function leftBehind(dataDir: string): Promise<string[]> {
  const running = () => processes().map((p) => p.cmd).filter((cmd) => cmd.includes(dataDir));
  for (let i = 0; i < 100 && running().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
  return running();
}

/** `sekisho start` up, with a managed redis-server that can be kept from restarting. */
async function startWithBreakableRedis(): Promise<{ app: App; redis: ReturnType<typeof breakableRedis>; dataDir: string; runDir: string }> {
  const { file, smtpPort, adminPort, dataDir } = await writeConfig();
  const redis = breakableRedis();
  const app = run(['start', '--config', file], redis.env);
  await waitForPort(adminPort, '127.0.0.1', WAIT_MS, app.proc);
  await waitForPort(smtpPort, '127.0.0.1', WAIT_MS, app.proc);
  await waitUntil(() => app.output().includes('stage workers running'), app, 'the worker child');
  return { app, redis, dataDir, runDir: runDirOf(path.join(dataDir, 'clamd')) };
}

it('start: SIGTERM after its managed redis-server died for good stops it within the shutdown deadline, leaving no clamd, redis-server or run directory', async () => {
  const { app, redis, dataDir, runDir } = await startWithBreakableRedis();
  expect(existsSync(runDir)).toBe(true);

  redis.breakIt();
  process.kill(childPid(app, /redis-server/)!, 'SIGKILL');
  await waitUntil(() => app.output().includes('"msg":"redis could not be restarted; trying again"'), app, 'a failed restart');
  app.proc.kill('SIGTERM');
  const bound = new Promise<'hung'>((r) => setTimeout(() => r('hung'), SHUTDOWN_DEADLINE_MS + 15_000).unref());
  const code = await Promise.race([app.exited, bound]);
  expect(code).not.toBe('hung');
  // Whether a step hung until the deadline (exit 1) or all ended sooner (exit 0), nothing is left behind.
  if (code === 1) expect(app.output()).toContain('not stopped within the shutdown deadline');
  else expect(code).toBe(0);
  expect(await leftBehind(dataDir)).toEqual([]);
  expect(existsSync(runDir)).toBe(false);
}, 180_000);

it('start: a second SIGTERM while it stops ends it at once (exit 1), leaving no clamd, redis-server or run directory', async () => {
  const { app, redis, dataDir, runDir } = await startWithBreakableRedis();
  redis.breakIt();
  process.kill(childPid(app, /redis-server/)!, 'SIGKILL');
  await waitUntil(() => app.output().includes('"msg":"redis exited; restarting"'), app, 'the redis-server death');
  app.proc.kill('SIGTERM');
  await waitUntil(() => app.output().includes('"msg":"shutting down"'), app, 'the shutdown');
  app.proc.kill('SIGTERM');
  expect(await app.exited).toBe(1);
  expect(app.output()).toContain('"why":"SIGTERM while stopping"');
  expect(await leftBehind(dataDir)).toEqual([]);
  expect(existsSync(runDir)).toBe(false);
}, 180_000);
