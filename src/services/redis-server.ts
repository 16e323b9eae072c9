/**
 * A project-managed redis-server, started when `redis.url` is not configured (and by the test suite). It keeps an
 * append-only file under dataDir so that a restart of Sekisho does not drop queued jobs (the spool would recover
 * them anyway: Redis is not the source of truth).
 *
 * `sekisho start`'s listens on a unix socket only (`unixSocket`), mode 700: a TCP port on 127.0.0.1 would let every
 * local user read and flush the queues (Redis has no password here). The test suite's listens on 127.0.0.1, on a
 * port of its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SekishoError } from '../errors.ts';
import { ensureBinary } from './debian.ts';
import { stopOrphan } from './orphan.ts';

export interface ManagedRedis {
  /** `unix:///path/redis.sock?db=0` or `redis://127.0.0.1:port/0`. */
  url: string;
  /** Settles when redis-server exits (src/services/supervisor.ts restarts it). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
  /** SIGKILL, at once: the last resort of a shutdown that ran out of time. */
  kill(): void;
}

/** A unix socket's path must fit sockaddr_un (108 bytes with its NUL on Linux). */
const MAX_UNIX_SOCKET_PATH = 107;

/** The `redis.url` of a unix socket (its path percent-encoded where a URL needs it). */
export function unixRedisUrl(socket: string, db = 0): string {
  return `unix://${encodeURI(socket).replaceAll('?', '%3F').replaceAll('#', '%23')}?db=${db}`;
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
  return waitForListener(() => net.connect(port, host), `${host}:${port}`, timeoutMs, child);
}

export async function waitForSocket(socket: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  return waitForListener(() => net.connect(socket), socket, timeoutMs, child);
}

async function waitForListener(connect: () => net.Socket, where: string, timeoutMs: number, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`process exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect();
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${where} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Start-up budget: redis-server loads an AOF of a few MB in well under a second. */
const REDIS_START_TIMEOUT_MS = 15_000;

export async function startManagedRedis(opts: { dir: string; persist?: boolean; unixSocket?: boolean }): Promise<ManagedRedis> {
  const bin = ensureBinary('redis-server', 'redis-server');
  mkdirSync(opts.dir, { recursive: true });
  const socket = path.join(path.resolve(opts.dir), 'redis.sock');
  if (opts.unixSocket && Buffer.byteLength(socket) > MAX_UNIX_SOCKET_PATH) {
    throw new SekishoError('SEKISHO_ERR_SERVICE_START', `the managed redis-server's socket path is too long for a unix socket (${socket}): choose a shorter dataDir`);
  }
  const pidFile = path.join(path.resolve(opts.dir), 'redis.pid');
  // A redis-server of ours that outlived a SIGKILLed Sekisho holds the socket and the AOF: stop it first.
  if (opts.unixSocket && (await stopOrphan(pidFile, ['redis-server', socket]))) rmSync(socket, { force: true });
  const port = opts.unixSocket ? 0 : await freePort();
  const endpoint = opts.unixSocket
    ? {
        args: ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700'],
        url: unixRedisUrl(socket),
        wait: (child: ChildProcess) => waitForSocket(socket, REDIS_START_TIMEOUT_MS, child),
      }
    : {
        args: ['--bind', '127.0.0.1', '--port', String(port)],
        url: `redis://127.0.0.1:${port}/0`,
        wait: (child: ChildProcess) => waitForPort(port, '127.0.0.1', REDIS_START_TIMEOUT_MS, child),
      };
  const args = [
    ...endpoint.args,
    '--dir', path.resolve(opts.dir),
    '--pidfile', pidFile,
    '--save', '',
    '--appendonly', opts.persist ? 'yes' : 'no',
    '--appendfsync', 'everysec',
    '--maxmemory-policy', 'noeviction', // BullMQ requires it
    '--protected-mode', 'yes',
    '--daemonize', 'no',
    '--loglevel', 'warning',
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const running = () => child.exitCode === null && child.signalCode === null;
  // Never outlives this process, whichever way it exits (a shutdown deadline, an uncaught error).
  const kill = () => {
    if (running()) child.kill('SIGKILL');
  };
  process.once('exit', kill);
  void exited.then(() => process.removeListener('exit', kill));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    await endpoint.wait(child);
  } catch (err) {
    kill();
    throw new SekishoError('SEKISHO_ERR_SERVICE_START', `redis-server did not start: ${(err as Error).message} ${stderr}`.trim());
  }
  return {
    url: endpoint.url,
    exited,
    kill,
    stop: async () => {
      if (running()) child.kill('SIGTERM');
      await exited;
    },
  };
}
