/**
 * The `sekisho` command as an operator runs it: `start` with its own managed redis-server (no redis.url), and
 * `ingress` + `worker` as separate processes sharing one Redis and data dir; both stop cleanly on SIGTERM.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { openAdminStores } from '../../src/admin/admin-stores.ts';
import { hashPassword } from '../../src/admin/auth/passwords.ts';
import { freePort, waitForPort } from '../../src/services/redis-server.ts';
import { clamdWrapper } from '../helpers/clamd.ts';
import { deletePrefix } from '../helpers/harness.ts';
import { RawSmtp, sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { runSekisho, stopSekishoProcesses } from '../helpers/sekisho-process.ts';
import { SmtpSink } from '../helpers/smtp-sink.ts';

let dir: string;
let sink: SmtpSink;

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-cli-'));
  sink = await new SmtpSink().start();
});
afterEach(async () => {
  await stopSekishoProcesses();
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Polls `cond` until it holds; fails with `what` if the process exits first or 60 s pass. */
async function waitUntil(cond: () => boolean, app: ReturnType<typeof run>, what: string): Promise<void> {
  for (let i = 0; i < 1200 && !cond(); i++) {
    if (app.proc.exitCode !== null || app.proc.signalCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!cond()) throw new Error(`gave up waiting for ${what}:\n${app.output()}`);
}

const run = runSekisho;

/** An operator's API token for /metrics (which needs a login), made in the config's dataDir. */
async function metricsAuth(): Promise<{ authorization: string }> {
  const { accounts, close } = openAdminStores({ dataDir: path.join(dir, 'data') });
  try {
    const ops = (await accounts.byUsername('ops')) ?? (await accounts.create({ username: 'ops', role: 'operator', passwordHash: await hashPassword('correct horse battery staple') }));
    const { token } = await accounts.createToken({ accountId: ops.id, name: 'cli-test', now: Date.now(), expiresAt: null });
    return { authorization: `Bearer ${token}` };
  } finally {
    await close();
  }
}

async function writeConfig(
  extra: Record<string, unknown>,
  smtpExtra: Record<string, unknown> = {},
): Promise<{ file: string; smtpPort: number; adminPort: number }> {
  const smtpPort = await freePort();
  const adminPort = await freePort();
  const file = path.join(dir, 'sekisho.yaml');
  const tenants = `tenants:\n  - id: city\n    name: "デモ市"\n    domains: ["city.example.lg.jp"]\n    deliverTo: "${sink.url}"\n`;
  const yaml = [
    'hostname: mx.test.lg.jp',
    `smtp: ${JSON.stringify({ listen: `127.0.0.1:${smtpPort}`, closeTimeoutMs: 2000, ...smtpExtra })}`,
    `admin:\n  listen: "127.0.0.1:${adminPort}"`,
    `dataDir: ./data`,
    'log:\n  level: info',
    ...Object.entries(extra).map(([k, v]) => `${k}: ${JSON.stringify(v)}`),
    tenants,
  ].join('\n');
  writeFileSync(file, yaml);
  return { file, smtpPort, adminPort };
}

it('start: runs everything with a managed redis-server, delivers, serves /healthz, and stops on SIGTERM', async () => {
  const { file, smtpPort, adminPort } = await writeConfig({});
  const app = run(['start', '--config', file]);
  await waitForPort(adminPort, '127.0.0.1', 60_000, app.proc);
  await waitForPort(smtpPort, '127.0.0.1', 60_000, app.proc);
  expect(await sendRaw(smtpPort, 's@example.net', ['u@city.example.lg.jp'], simpleMessage({ to: 'u@city.example.lg.jp' }))).toMatch(/^250 /);
  await sink.waitFor(1, 60_000);
  const health = await fetch(`http://127.0.0.1:${adminPort}/healthz`);
  expect(health.status).toBe(200);
  expect(app.output()).toContain('started a managed redis-server');
  // On a unix socket only its own user can open, not on a TCP port every local user can reach.
  const redisSocket = path.join(dir, 'data', 'redis', 'redis.sock');
  expect(app.output()).toContain(`"url":"unix://${redisSocket}?db=0"`);
  expect(statSync(redisSocket).mode & 0o777).toBe(0o700);
  app.proc.kill('SIGTERM');
  expect(await app.exited).toBe(0);
  expect(app.output()).toContain('"msg":"stopped"');
});

it('start: a SIGTERM while it is still starting stops it once started, leaving no clamd, redis-server or clamd run directory', async () => {
  const { file } = await writeConfig({});
  // The managed clamd is started through a `clamd` earlier on PATH that waits for a gate before it becomes the real
  // one, so that the signal lands while clamd is starting (on a fast machine the whole start-up takes 100 ms).
  const gate = path.join(dir, 'gate');
  const bin = clamdWrapper(dir, [`touch '${gate}.starting'`, `while [ ! -e '${gate}.open' ]; do sleep 0.05; done`]);
  const app = run(['start', '--config', file], { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` });
  await waitUntil(() => existsSync(`${gate}.starting`), app, 'the managed clamd being started');
  await waitUntil(() => app.output().includes('started a managed redis-server'), app, 'the managed redis-server');
  app.proc.kill('SIGTERM');
  await waitUntil(() => app.output().includes('stop requested while starting'), app, 'the stop request being logged');
  writeFileSync(`${gate}.open`, '');
  expect(await app.exited).toBe(0);
  expect(app.output()).toContain('"msg":"stopped"');
  const dataDir = path.join(dir, 'data');
  const survivors = readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      } catch {
        return '';
      }
    })
    .filter((cmd) => cmd.includes(dataDir));
  expect(survivors).toEqual([]);
  const runDir = readFileSync(path.join(dataDir, 'clamd', 'rundir'), 'utf8').trim();
  expect(existsSync(runDir)).toBe(false);
  // And nothing answers on the managed redis-server's socket (sekisho start's listens on no TCP port).
  const redisSocket = /"url":"unix:\/\/([^"?]+)\?db=0"/.exec(app.output())?.[1];
  expect(redisSocket).toBe(path.join(dataDir, 'redis', 'redis.sock'));
  const refused = await new Promise<boolean>((resolve) => {
    const sock = net.connect(redisSocket!);
    sock.once('connect', () => {
      sock.destroy();
      resolve(false);
    });
    sock.once('error', () => resolve(true));
  });
  expect(refused).toBe(true);
});

it('start with queue.workerProcesses 2: two worker children share the queues, /metrics adds up both, all stop on SIGTERM', async () => {
  const { file, smtpPort, adminPort } = await writeConfig({ queue: { workerProcesses: 2 } });
  const app = run(['start', '--config', file]);
  await waitForPort(adminPort, '127.0.0.1', 60_000, app.proc);
  await waitForPort(smtpPort, '127.0.0.1', 60_000, app.proc);
  // Both children say so when their workers run (and the ingress, main process, is up).
  await waitUntil(() => (app.output().match(/stage workers running/g) ?? []).length >= 2, app, 'both worker children');
  expect((app.output().match(/stage workers running/g) ?? []).length).toBe(2);
  for (let i = 0; i < 20; i++) {
    expect(await sendRaw(smtpPort, 's@example.net', [`u${i}@city.example.lg.jp`], simpleMessage({ subject: `m${i}` }))).toMatch(/^250 /);
  }
  await sink.waitFor(20, 60_000);
  // Both children report their registries; the merged counter is the total.
  const delivered = async () => {
    const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: await metricsAuth() })).text();
    return Number(/^sekisho_recipients_total\{[^}]*outcome="delivered"[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };
  // (The sink has a message a moment before its worker has counted it.)
  for (let i = 0; i < 300 && (await delivered()) < 20; i++) await new Promise((r) => setTimeout(r, 100));
  expect(await delivered()).toBe(20);
  app.proc.kill('SIGTERM');
  expect(await app.exited).toBe(0);
  expect((app.output().match(/"role":"worker"[^\n]*"msg":"stopped"/g) ?? []).length).toBe(2);
});

it('start with smtp.ingressProcesses 2: sessions run in both ingress children, the per-IP cap holds across them, a dead one is replaced', async () => {
  const { file, smtpPort, adminPort } = await writeConfig({}, { ingressProcesses: 2, maxConnectionsPerIp: 3 });
  const app = run(['start', '--config', file]);
  await waitForPort(adminPort, '127.0.0.1', 60_000, app.proc);
  await waitForPort(smtpPort, '127.0.0.1', 60_000, app.proc);
  await waitUntil(() => (app.output().match(/taking connections from the main process/g) ?? []).length >= 2, app, 'both ingress children');
  // Three at a time (the per-IP cap), twelve messages, each on its own connection. A connection's slot is freed
  // when its ingress child reports the close, a moment after the client sees it: a client at its cap may meanwhile
  // get 421 4.7.0, and retries, as an MTA does.
  const send = async (rcpt: string): Promise<string> => {
    for (let attempt = 0; ; attempt++) {
      const r = await sendRaw(smtpPort, 's@example.net', [rcpt], simpleMessage({ subject: rcpt })).catch((e: Error) => e.message);
      if (r.startsWith('250') || attempt === 20) return r;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  for (let round = 0; round < 4; round++) {
    const replies = await Promise.all([0, 1, 2].map((i) => send(`u${round}${i}@city.example.lg.jp`)));
    for (const r of replies) expect(r).toMatch(/^250 /);
  }
  await sink.waitFor(12, 60_000);
  const acceptedBy = new Set(
    app
      .output()
      .split('\n')
      .filter((l) => l.includes('"msg":"message accepted"'))
      .map((l) => (JSON.parse(l) as { pid: number; role: string }).pid),
  );
  expect(acceptedBy.size).toBe(2);

  // The cap counts connections in both children together: hold three (retrying while earlier closes are still
  // being reported), and the fourth is refused.
  const held: RawSmtp[] = [];
  for (let attempt = 0; held.length < 3 && attempt < 100; attempt++) {
    const c = await RawSmtp.connect(smtpPort);
    if ((await c.reply()).startsWith('220')) held.push(c);
    else await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect(held).toHaveLength(3);
  const fourth = await RawSmtp.connect(smtpPort);
  expect(await fourth.reply()).toMatch(/^421 4\.7\.0 /);
  for (const c of held) c.close();

  const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: await metricsAuth() })).text();
  expect(metrics).toMatch(/^sekisho_messages_received_total\{role="ingress"\} 12$/m);

  // An ingress child that dies is replaced; meanwhile the other one takes the connections.
  const victim = [...acceptedBy][0] as number;
  process.kill(victim, 'SIGKILL');
  expect(await send('after-kill@city.example.lg.jp')).toMatch(/^250 /);
  for (let i = 0; i < 100 && !app.output().includes('ingress process exited; restarting'); i++) await new Promise((r) => setTimeout(r, 100));
  expect(app.output()).toContain('ingress process exited; restarting');
  for (let i = 0; i < 100 && (app.output().match(/taking connections from the main process/g) ?? []).length < 3; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect((app.output().match(/taking connections from the main process/g) ?? []).length).toBe(3);
  await sink.waitFor(13, 60_000);
  app.proc.kill('SIGTERM');
  expect(await app.exited).toBe(0);
  expect((app.output().match(/"role":"ingress"[^\n]*"msg":"stopped"/g) ?? []).length).toBe(2);
});

it('ingress and worker as separate processes against one Redis and data dir', async () => {
  const prefix = uniquePrefix('cli');
  const { file, smtpPort } = await writeConfig({ redis: { url: testRedisUrl(), prefix } });
  try {
    const ingress = run(['ingress', '--config', file]);
    await waitForPort(smtpPort, '127.0.0.1', 60_000, ingress.proc);
    expect(await sendRaw(smtpPort, 's@example.net', ['u@city.example.lg.jp'], simpleMessage({ to: 'u@city.example.lg.jp' }))).toMatch(/^250 /);
    // Accepted and spooled with no worker running; the worker started later delivers it.
    const worker = run(['worker', '--config', file]);
    await sink.waitFor(1, 60_000);
    ingress.proc.kill('SIGTERM');
    worker.proc.kill('SIGTERM');
    expect(await ingress.exited).toBe(0);
    expect(await worker.exited).toBe(0);
  } finally {
    await deletePrefix(testRedisUrl(), prefix);
  }
});

it('check-config reports each invalid key with its path and exits 1', async () => {
  const file = path.join(dir, 'bad.yaml');
  writeFileSync(file, 'hostname: x\nsmtp:\n  listen: "nope"\ntenants:\n  - id: a\n    name: A\n    domains: ["a.example.jp"]\n    deliverTo: "http://x"\n');
  const r = run(['check-config', file]);
  expect(await r.exited).toBe(1);
  expect(r.output()).toContain('smtp.listen');
  expect(r.output()).toContain('tenants[0].deliverTo');
});

it('refuses to run a single role without redis.url', async () => {
  const { file } = await writeConfig({});
  const r = run(['worker', '--config', file]);
  expect(await r.exited).toBe(1);
  expect(r.output()).toContain('needs redis.url');
});
