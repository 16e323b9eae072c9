/**
 * stopOrphan: a process named by a pid file is stopped only when its command line shows it is ours; a pid reused by
 * another program, a stale or garbled pid file, are left alone.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { stopOrphan } from '../../../src/services/orphan.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-orphan-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A long-running process whose command line (sh's) carries `marker`. */
function sleeper(marker: string) {
  const child = spawn('/bin/sh', ['-c', `sleep 300; : ${marker}`], { stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  return { child, exited };
}

it('stops the process of the pid file when its command line is ours', async () => {
  const p = sleeper('x');
  const ours = sleeper(path.join(dir, 'redis.sock'));
  try {
    writeFileSync(path.join(dir, 'x.pid'), `${ours.child.pid}\n`);
    expect(await stopOrphan(path.join(dir, 'x.pid'), ['sh', path.join(dir, 'redis.sock')])).toBe(true);
    await ours.exited;
    expect(existsSync(`/proc/${ours.child.pid}`)).toBe(false);

    // Another program under that pid (no marker): left alone.
    writeFileSync(path.join(dir, 'x.pid'), `${p.child.pid}\n`);
    expect(await stopOrphan(path.join(dir, 'x.pid'), ['sh', path.join(dir, 'redis.sock')])).toBe(false);
    expect(p.child.exitCode).toBeNull();
    // No file, a garbled one, our own pid: nothing.
    expect(await stopOrphan(path.join(dir, 'none.pid'), ['sh'])).toBe(false);
    writeFileSync(path.join(dir, 'x.pid'), 'garbage');
    expect(await stopOrphan(path.join(dir, 'x.pid'), ['sh'])).toBe(false);
    writeFileSync(path.join(dir, 'x.pid'), String(process.pid));
    expect(await stopOrphan(path.join(dir, 'x.pid'), ['node'])).toBe(false);
  } finally {
    p.child.kill('SIGKILL');
    ours.child.kill('SIGKILL');
    await Promise.all([p.exited, ours.exited]);
  }
});
