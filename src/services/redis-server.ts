/**
 * A project-managed redis-server, started when `redis.url` is not configured (and by the test suite). It listens
 * on 127.0.0.1 only, on a port of its own, and keeps an append-only file under dataDir so that a restart of Sekisho
 * does not drop queued jobs (the spool would recover them anyway: Redis is not the source of truth).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SekishoError } from '../errors.ts';
import { ensureBinary } from './debian.ts';

export interface ManagedRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitForPort(port: number, host: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`process exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Start-up budget: redis-server loads an AOF of a few MB in well under a second. */
const REDIS_START_TIMEOUT_MS = 15_000;

export async function startManagedRedis(opts: { dir: string; persist?: boolean; port?: number }): Promise<ManagedRedis> {
  const bin = ensureBinary('redis-server', 'redis-server');
  mkdirSync(opts.dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const args = [
    '--bind', '127.0.0.1',
    '--port', String(port),
    '--dir', path.resolve(opts.dir),
    '--save', '',
    '--appendonly', opts.persist ? 'yes' : 'no',
    '--appendfsync', 'everysec',
    '--maxmemory-policy', 'noeviction', // BullMQ requires it
    '--protected-mode', 'yes',
    '--daemonize', 'no',
    '--loglevel', 'warning',
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await waitForPort(port, '127.0.0.1', REDIS_START_TIMEOUT_MS, child);
  } catch (err) {
    child.kill('SIGKILL');
    throw new SekishoError('SEKISHO_ERR_SERVICE_START', `redis-server did not start: ${(err as Error).message} ${stderr}`.trim());
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
