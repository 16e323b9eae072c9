import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ConverterPool, networkIsolationAvailable, type ConverterPoolOptions, type OpResult } from '../../../src/sanitize/converter-pool.ts';
import { ConversionError } from '../../../src/sanitize/types.ts';

const OPS = new URL('../../helpers/converter-test-ops.ts', import.meta.url);
const POOL_MODULE = new URL('../../../src/sanitize/converter-pool.ts', import.meta.url);
const REPO = new URL('../../../', import.meta.url);
const MIB = 1024 * 1024;

const pools: ConverterPool[] = [];
function newPool(opts: Partial<ConverterPoolOptions> = {}): ConverterPool {
  const pool = new ConverterPool({ opsModule: OPS, processes: 2, jobTimeoutMs: 3_000, memoryLimitBytes: 384 * MIB, ...opts });
  pools.push(pool);
  return pool;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

const tmp = mkdtempSync(path.join(tmpdir(), 'sekisho-pool-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Gone, or a zombie nobody reaps (what an orphan's exit leaves when pid 1 does not reap): not running either way. */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
}

async function waitUntil(cond: () => boolean, what: string, limitMs = 15_000): Promise<void> {
  for (const end = Date.now() + limitMs; !cond(); await sleep(50)) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
  }
}

/** The converter children of `ppid` (not, say, the esbuild service that tsx may start). */
function childrenOf(ppid: number): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // the fields after the command name (which may hold spaces and parentheses): state, ppid…
      const stat = readFileSync(`/proc/${d}/stat`, 'latin1');
      const [state, parent] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const converter = readFileSync(`/proc/${d}/cmdline`, 'latin1').includes('converter-child');
      if (Number(parent) === ppid && state !== 'Z' && converter) pids.push(Number(d));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

async function rejection(p: Promise<unknown>): Promise<ConversionError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConversionError);
  return err as ConversionError;
}

async function pidOf(pool: ConverterPool): Promise<number> {
  const r = await pool.run<OpResult>('echo', Buffer.alloc(0));
  return (r.meta as { pid: number }).pid;
}

describe('ConverterPool', () => {
  it('returns the op’s files byte-exact across the process boundary, Buffers as Buffers', async () => {
    const pool = newPool();
    const input = randomBytes(3 * MIB + 7);
    const options = { dpi: 150, names: ['報告書.docx'] };
    const r = await pool.run<OpResult>('echo', input, options);
    const file = r.files?.[0];
    expect(Buffer.isBuffer(file?.data)).toBe(true);
    expect(file?.data.equals(input)).toBe(true);
    expect((r.meta as { options: unknown; pid: number }).options).toEqual(options);
    expect((r.meta as { pid: number }).pid).not.toBe(process.pid);
  });

  it.skipIf(!networkIsolationAvailable())('with isolateNetwork, a child has no network interface at all (as root)', async () => {
    expect(await newPool().run<string[]>('interfaces', Buffer.alloc(0))).toContain('lo');
    const isolated = newPool({ isolateNetwork: true });
    expect(await isolated.run<string[]>('interfaces', Buffer.alloc(0))).toEqual([]);
    // Still a pool child like any other: its deadline kills it, and the next job runs.
    const pool = newPool({ isolateNetwork: true, processes: 1, jobTimeoutMs: 500 });
    await expect(pool.run('hang', Buffer.alloc(0))).rejects.toMatchObject({ reason: 'timeout' });
    expect(await pool.run<string[]>('interfaces', Buffer.alloc(0))).toEqual([]);
  });

  it('kills a job past its deadline with "timeout", and the next job on the pool succeeds', async () => {
    const pool = newPool({ processes: 1, jobTimeoutMs: 1_000 });
    const before = await pidOf(pool);
    const err = await rejection(pool.run('hang', Buffer.alloc(0)));
    expect(err.reason).toBe('timeout');
    expect(err.message).toMatch(/hang did not finish within 1000 ms/);
    await waitUntil(() => !isRunning(before), 'the hung child to die');
    const after = await pidOf(pool);
    expect(after).not.toBe(before);
    expect(pool.stats.killed).toBe(1);
  });

  it('turns a crashing child (process.abort) into "conversion-failed", and the next job succeeds', async () => {
    const pool = newPool({ processes: 1 });
    const err = await rejection(pool.run('crash', Buffer.alloc(0)));
    expect(err.reason).toBe('conversion-failed');
    expect(err.message).toMatch(/SIGABRT.*crash/);
    const r = await pool.run<OpResult>('echo', Buffer.from('still here'));
    expect(r.files?.[0]?.data.toString()).toBe('still here');
  });

  it('reports each child that died in use (crash, deadline) through onRestart, not one retired after maxJobsPerChild', async () => {
    let restarts = 0;
    const pool = newPool({ processes: 1, jobTimeoutMs: 1_000, maxJobsPerChild: 1, onRestart: () => restarts++ });
    await pool.run('echo', Buffer.from('retired after this'));
    await rejection(pool.run('crash', Buffer.alloc(0)));
    await rejection(pool.run('hang', Buffer.alloc(0)));
    await pool.run('echo', Buffer.from('x'));
    await pool.close();
    expect(restarts).toBe(2);
  });

  it('kills a child whose memory grows past the limit with "too-large", and the next job succeeds', async () => {
    const pool = newPool({ processes: 1, memoryLimitBytes: 256 * MIB });
    const err = await rejection(pool.run('hog', Buffer.alloc(0)));
    expect(err.reason).toBe('too-large');
    expect(err.message).toMatch(/hog used \d+ MiB, over the 256 MiB limit/);
    expect((await pool.run<OpResult>('echo', Buffer.from('x'))).files?.[0]?.data.toString()).toBe('x');
  });

  it('keeps the reason of a ConversionError thrown by the op, and the message of any other error', async () => {
    const pool = newPool({ processes: 1 });
    const enc = await rejection(pool.run('throw-encrypted', Buffer.alloc(0)));
    expect(enc.reason).toBe('encrypted');
    expect(enc.message).toBe('the test document is password-protected');
    const other = await rejection(pool.run('throw', Buffer.alloc(0)));
    expect(other.reason).toBe('conversion-failed');
    expect(other.message).toBe('malformed test input at offset 42');
    const unknown = await rejection(pool.run('no-such-op', Buffer.alloc(0)));
    expect(unknown.message).toMatch(/unknown converter op "no-such-op"/);
    expect(pool.stats.started).toBe(1); // an op that throws does not cost its child
  });

  it('never runs more than `processes` jobs at once, and does run that many', async () => {
    const pool = newPool({ processes: 2 });
    const log = path.join(tmp, 'concurrency.log');
    let maxRunning = 0;
    const jobs = Array.from({ length: 6 }, () => pool.run('sleep', Buffer.alloc(0), { ms: 300, log }));
    const sampler = setInterval(() => (maxRunning = Math.max(maxRunning, pool.stats.running)), 10);
    await Promise.all(jobs);
    clearInterval(sampler);
    let running = 0;
    let peak = 0;
    for (const line of readFileSync(log, 'utf8').trim().split('\n')) {
      running += line.startsWith('start') ? 1 : -1;
      peak = Math.max(peak, running);
    }
    expect(peak).toBe(2);
    expect(maxRunning).toBeLessThanOrEqual(2);
    expect(pool.stats.started).toBe(2);
  });

  it('recycles a child after maxJobsPerChild jobs', async () => {
    const pool = newPool({ processes: 1, maxJobsPerChild: 2 });
    const pids = [await pidOf(pool), await pidOf(pool), await pidOf(pool)];
    expect(pids[0]).toBe(pids[1]);
    expect(pids[2]).not.toBe(pids[0]);
    await waitUntil(() => !isRunning(pids[0] as number), 'the retired child to exit');
  });

  it('an AbortSignal cancels a queued job before it starts, and kills the child running one', async () => {
    const pool = newPool({ processes: 1 });
    const log = path.join(tmp, 'abort.log');
    const pid = await pidOf(pool);
    const running = new AbortController();
    const queued = new AbortController();
    const first = pool.run('sleep', Buffer.alloc(0), { ms: 60_000, log }, running.signal);
    const second = pool.run('sleep', Buffer.alloc(0), { ms: 0, log }, queued.signal);
    await waitUntil(() => pool.stats.running === 1 && pool.stats.queued === 1, 'one job running, one queued');
    queued.abort(new Error('message deleted'));
    await expect(second).rejects.toThrow('message deleted');
    await waitUntil(() => existsSync(log), 'the first job to start');
    running.abort(new Error('worker shutting down'));
    await expect(first).rejects.toThrow('worker shutting down');
    await waitUntil(() => !isRunning(pid), 'the aborted job’s child to die');
    expect(readFileSync(log, 'utf8')).toBe(`start ${pid}\n`); // the queued job never started
    expect(pool.stats).toMatchObject({ running: 0, queued: 0, killed: 1 });
  });

  it('fails a job whose ops module cannot be loaded, without starting children for ever', async () => {
    const pool = newPool({ processes: 2, opsModule: path.join(tmp, 'no-such-ops.ts') });
    const err = await rejection(pool.run('echo', Buffer.alloc(0)));
    expect(err.reason).toBe('conversion-failed');
    expect(err.message).toMatch(/exited \(code 1/);
    expect(pool.stats.started).toBe(1);
  });

  it('close() fails the queued and running jobs and leaves no child process', async () => {
    const pool = newPool({ processes: 2 });
    const idle = await pidOf(pool);
    const jobs = [
      pool.run('sleep', Buffer.alloc(0), { ms: 60_000 }),
      pool.run('hang', Buffer.alloc(0)),
      pool.run('echo', Buffer.alloc(0)), // queued: both children are busy
    ].map((p) => rejection(p));
    await waitUntil(() => pool.stats.running === 2, 'both children busy');
    const pids = childrenOf(process.pid);
    expect(pids).toHaveLength(2);
    expect(pids).toContain(idle);
    await pool.close();
    for (const job of jobs) expect((await job).message).toMatch(/pool was closed/);
    for (const pid of pids) expect(isRunning(pid)).toBe(false);
    await expect(pool.run('echo', Buffer.alloc(0))).rejects.toThrow(/closed/);
  });

  it('leaves no child behind when its parent is SIGKILLed (busy in a loop, busy waiting, or idle)', async () => {
    // the parent loads TypeScript through tsx's register(), as bin/sekisho.js does
    const code = `
      import { register } from 'tsx/esm/api';
      register();
      const { ConverterPool } = await import(${JSON.stringify(POOL_MODULE.href)});
      const pool = new ConverterPool({ opsModule: ${JSON.stringify(OPS.href)}, processes: 3, jobTimeoutMs: 600000, memoryLimitBytes: 512 * 1024 * 1024 });
      await Promise.all([1, 2, 3].map(() => pool.run('echo', Buffer.alloc(0))));
      void pool.run('hang', Buffer.alloc(0));
      void pool.run('sleep', Buffer.alloc(0), { ms: 600000 });
      while (pool.stats.running < 2 || pool.stats.started < 3) await new Promise((r) => setTimeout(r, 20));
      console.log('ready');
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    parent.stdout.on('data', (b: Buffer) => (out += b.toString()));
    try {
      await waitUntil(() => out.includes('ready'), 'the parent to start its pool', 45_000);
      // `ready` is printed when the hang and sleep jobs have been handed to two children; give `hang` its loop
      await sleep(300);
      const children = childrenOf(parent.pid as number);
      expect(children).toHaveLength(3);
      parent.kill('SIGKILL');
      await waitUntil(() => children.every((pid) => !isRunning(pid)), 'the orphaned children to exit');
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
