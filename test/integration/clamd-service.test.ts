/**
 * The managed clamd: its files, failure of the check while clamd is down or hung (and recovery), signature reloads
 * while running, a clamd orphaned by a killed Sekisho, and the composition root's entry point.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import { CheckFailedError, type Check } from '../../src/scan/check.ts';
import { ClamdClient } from '../../src/scan/clamd-client.ts';
import { createClamavCheck } from '../../src/scan/checks/clamav.ts';
import { configuredClamd, PROJECT_SIGNATURE_DIR, startManagedClamd, startManagedClamdForConfig } from '../../src/services/clamd.ts';
import { checkContext, EICAR, fixture } from '../helpers/check-context.ts';
import { clamdWrapper, runDirOf, startTestClamd, type TestClamd } from '../helpers/clamd.ts';

const archive = { maxDepth: 5, maxExpandedBytes: 200 * 1024 * 1024, maxRatio: 100, maxEntries: 10_000 };
const EICAR_MAIL = fixture('av-eicar-attachment.eml');

function mailWith(text: string): Buffer {
  return Buffer.from(`From: a@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: t\r\nContent-Type: text/plain\r\n\r\n${text}\r\n`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('managed clamd', () => {
  let t: TestClamd;
  let check: Check;

  beforeAll(async () => {
    t = await startTestClamd();
    // short enough that a hung clamd fails the check quickly; real scans here take milliseconds
    check = createClamavCheck({ clamd: t.clamd.endpoint, timeoutMs: 2_000, archive });
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it('owns its config, socket and database directory, with limits sized from the config', () => {
    const dir = t.options.dir;
    const run = runDirOf(dir);
    expect(readdirSync(path.join(run, 'db')).sort()).toEqual(readdirSync(PROJECT_SIGNATURE_DIR).filter((f) => /\.(hdb|ndb)$/.test(f)).sort());
    const conf = readFileSync(path.join(dir, 'clamd.conf'), 'utf8');
    const streamMax = Number(/^StreamMaxLength (\d+)$/m.exec(conf)?.[1]);
    expect(streamMax).toBeGreaterThanOrEqual(t.options.maxStreamBytes);
    expect(Number(/^MaxFileSize (\d+)$/m.exec(conf)?.[1])).toBeGreaterThanOrEqual(streamMax);
    expect(conf).toMatch(/^AlertExceedsMax yes$/m);
    expect(conf).toMatch(/^AlertEncryptedArchive yes$/m);
    expect(t.clamd.socket).toBe(path.join(run, 'sock', 'clamd.sock'));
    // clamd's log, written by Sekisho from its output.
    expect(readFileSync(path.join(dir, 'clamd.log'), 'utf8')).toMatch(/Self checking every/);
  });

  it.runIf(process.geteuid?.() === 0)('run by root, clamd parses as the clamav account, which may write in its socket and temporary directories only', () => {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'clamav'], { encoding: 'utf8' }));
    const clamav = { uid: id('-u'), gid: id('-g') };
    expect(clamav.uid).toBeGreaterThan(0);
    const status = readFileSync(`/proc/${t.clamd.pid}/status`, 'utf8');
    // Real, effective, saved and filesystem ids: root is dropped for good, not just set aside.
    expect(/^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number)).toEqual([clamav.uid, clamav.uid, clamav.uid, clamav.uid]);
    expect(/^Gid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number)).toEqual([clamav.gid, clamav.gid, clamav.gid, clamav.gid]);
    const run = runDirOf(t.options.dir);
    const owner = (d: string) => {
      const st = statSync(path.join(run, d));
      return { uid: st.uid, mode: st.mode & 0o777 };
    };
    expect(owner('.')).toEqual({ uid: 0, mode: 0o711 });
    expect(owner('db')).toEqual({ uid: 0, mode: 0o755 });
    expect(owner('sock')).toEqual({ uid: clamav.uid, mode: 0o700 });
    expect(owner('tmp')).toEqual({ uid: clamav.uid, mode: 0o700 });
    expect(statSync(t.clamd.socket).uid).toBe(clamav.uid);
    // As clamd's account: it cannot add to, or swap, the run directory or the databases Sekisho maintains as root.
    const asClamav = (...args: string[]) => spawnSync(args[0]!, args.slice(1), { uid: clamav.uid, gid: clamav.gid, stdio: 'ignore' }).status;
    expect(asClamav('touch', path.join(run, 'planted'))).not.toBe(0);
    expect(asClamav('mv', path.join(run, 'db'), path.join(run, 'sock', 'db'))).not.toBe(0);
    expect(asClamav('touch', path.join(run, 'db', 'planted.ndb'))).not.toBe(0);
    expect(asClamav('touch', path.join(run, 'tmp', 'its-own'))).toBe(0);
    expect(existsSync(path.join(run, 'db'))).toBe(true);
  });

  it('clamd stopped → the check fails (CLAMAV_FAIL); clamd back → the virus is found', async () => {
    await t.clamd.stop();
    await expect(check.run(checkContext(EICAR_MAIL))).rejects.toBeInstanceOf(CheckFailedError);
    await t.restart();
    expect(await check.run(checkContext(EICAR_MAIL))).toEqual([{ name: 'CLAMAV_VIRUS', details: [expect.stringMatching(/EICAR/)] }]);
  });

  it('clamd hung (SIGSTOP) → the check fails at its deadline; resumed → works', async () => {
    process.kill(t.clamd.pid, 'SIGSTOP');
    try {
      await expect(check.run(checkContext(EICAR_MAIL))).rejects.toThrow(/no reply within 2000 ms/);
    } finally {
      process.kill(t.clamd.pid, 'SIGCONT');
    }
    expect((await check.run(checkContext(EICAR_MAIL))).map((h) => h.name)).toEqual(['CLAMAV_VIRUS']);
  });

  it('a new signature in the database directory is detected after reload(), while clamd keeps running', async () => {
    const marker = `SEKISHO-RELOAD-TEST-${process.pid}-${Date.now()}`;
    const mail = mailWith(`the new sample: ${marker}`);
    expect(await check.run(checkContext(mail))).toEqual([]);
    writeFileSync(path.join(t.databaseDir, 'soc-new.ndb'), `Sekisho.Test.Reload:0:*:${Buffer.from(marker).toString('hex')}\n`);
    const pid = t.clamd.pid;
    await t.clamd.reload();
    expect(t.clamd.pid).toBe(pid);
    expect(await check.run(checkContext(mail))).toEqual([{ name: 'CLAMAV_VIRUS', details: ['Sekisho.Test.Reload.UNOFFICIAL'] }]);
  });

  it('a signature file appearing in the database directory is linked and loaded without a call (freshclam update)', async () => {
    const marker = `SEKISHO-WATCH-TEST-${process.pid}-${Date.now()}`;
    const mail = mailWith(marker);
    writeFileSync(path.join(t.databaseDir, 'update.ndb'), `Sekisho.Test.Watch:0:*:${Buffer.from(marker).toString('hex')}\n`);
    await vi.waitFor(
      async () => {
        expect(await check.run(checkContext(mail))).toEqual([{ name: 'CLAMAV_VIRUS', details: ['Sekisho.Test.Watch.UNOFFICIAL'] }]);
      },
      { timeout: 30_000, interval: 250 },
    );
    expect(existsSync(path.join(runDirOf(t.options.dir), 'db', 'update.ndb'))).toBe(true);
  });

  it('a broken signature file: reload() rejects and the old databases keep scanning', async () => {
    writeFileSync(path.join(t.databaseDir, 'broken.ndb'), 'this is not a signature\n');
    try {
      await expect(t.clamd.reload()).rejects.toThrow(/could not reload/);
      expect((await check.run(checkContext(EICAR_MAIL))).map((h) => h.name)).toEqual(['CLAMAV_VIRUS']);
    } finally {
      rmSync(path.join(t.databaseDir, 'broken.ndb'));
      await t.clamd.reload();
    }
  });
});

describe('managed clamd limits and recovery', () => {
  it('a message larger than StreamMaxLength fails the check (never passes unscanned)', async () => {
    const t = await startTestClamd({ maxStreamBytes: 64 * 1024 });
    try {
      const check = createClamavCheck({ clamd: t.clamd.endpoint, timeoutMs: 30_000, archive });
      const big = mailWith('x'.repeat(3 * 1024 * 1024));
      await expect(check.run(checkContext(big))).rejects.toThrow(/INSTREAM size limit exceeded/);
    } finally {
      await t.cleanup();
    }
  });

  it('a failed reload ends at its last line: the next reload is not taken for failed', async () => {
    // clamd tells a failed reload in two lines, the cause and then the end. Through this wrapper the end comes a
    // second after the cause, so that a reload settled on the cause would take the end for the next reload's outcome.
    const wrapperDir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-clamd-bin-'));
    const bin = clamdWrapper(wrapperDir, [
      `exec > >(while IFS= read -r l; do printf '%s\\n' "$l"; case "$l" in *reload_th:*) sleep 1;; esac; done) 2>&1`,
    ]);
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath ?? ''}`;
    let t: TestClamd;
    try {
      t = await startTestClamd();
    } finally {
      process.env.PATH = savedPath;
    }
    try {
      const check = createClamavCheck({ clamd: t.clamd.endpoint, timeoutMs: 30_000, archive });
      writeFileSync(path.join(t.databaseDir, 'broken.ndb'), 'this is not a signature\n');
      await expect(t.clamd.reload()).rejects.toThrow(/could not reload its databases: .*Malformed database/);
      rmSync(path.join(t.databaseDir, 'broken.ndb'));
      await t.clamd.reload();
      expect((await check.run(checkContext(EICAR_MAIL))).map((h) => h.name)).toEqual(['CLAMAV_VIRUS']);
    } finally {
      await t.cleanup();
      rmSync(wrapperDir, { recursive: true, force: true });
    }
  });

  it('once stopped, a database change seen just before does not bring back its run directory, and reload() refuses', async () => {
    const t = await startTestClamd();
    const run = runDirOf(t.options.dir);
    try {
      writeFileSync(path.join(t.databaseDir, 'late.ndb'), `Sekisho.Test.Late:0:*:${Buffer.from('late').toString('hex')}\n`);
      // The watcher has seen the file (its reload is timed for ~2 s later), then clamd is stopped.
      await new Promise((r) => setTimeout(r, 500));
      await t.clamd.stop();
      expect(existsSync(run)).toBe(false);
      await new Promise((r) => setTimeout(r, 3_000));
      expect(existsSync(run)).toBe(false);
      await expect(t.clamd.reload()).rejects.toThrow(/stopped/);
      expect(existsSync(run)).toBe(false);
    } finally {
      await t.cleanup();
    }
  });

  it('a clamd orphaned by a killed Sekisho is stopped before a new one starts on the same directory', async () => {
    const t = await startTestClamd();
    try {
      const orphanPid = t.clamd.pid;
      const second = await startManagedClamd(t.options);
      expect(alive(orphanPid)).toBe(false);
      await new ClamdClient(second.endpoint, 5_000).ping();
      t.clamd = second;
    } finally {
      await t.cleanup();
    }
  });
});

describe('the configured or managed clamd of a config', () => {
  const base = { hostname: 'mx.test', tenants: [{ id: 'city', name: '市', domains: ['city.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:2526' }] };

  it('uses a configured clamd as is', async () => {
    const r = validateConfig({ ...base, clamav: { socket: '/run/clamav/clamd.ctl' } });
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    expect(configuredClamd(r.config)).toEqual({ socket: '/run/clamav/clamd.ctl' });
  });

  it('starts a managed clamd under dataDir/clamd when none is configured', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-cfg-'));
    try {
      const r = validateConfig({ ...base, dataDir, clamav: { databaseDir: path.join(dataDir, 'no-official-db') } });
      if (!r.ok) throw new Error(JSON.stringify(r.issues));
      expect(configuredClamd(r.config)).toBeUndefined();
      // dataDir is private (0700): clamd's account cannot enter it, and need not.
      const svc = await startManagedClamdForConfig(r.config);
      try {
        expect(svc.endpoint).toEqual({ socket: path.join(runDirOf(path.join(dataDir, 'clamd')), 'sock', 'clamd.sock') });
        await new ClamdClient(svc.endpoint, 5_000).ping();
      } finally {
        await svc.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('keeps the run directory (socket, databases, temporary files) private and in memory, removed on stop and at the start after a crash', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-cfg-'));
    const left: string[] = [];
    try {
      const r = validateConfig({ ...base, dataDir, clamav: { databaseDir: path.join(dataDir, 'no-official-db') } });
      if (!r.ok) throw new Error(JSON.stringify(r.issues));
      const runOf = () => runDirOf(path.join(dataDir, 'clamd'));

      const first = await startManagedClamdForConfig(r.config);
      const run = runOf();
      left.push(run);
      expect(path.dirname(run)).toBe('/dev/shm');
      expect(/^TemporaryDirectory (.+)$/m.exec(readFileSync(path.join(dataDir, 'clamd', 'clamd.conf'), 'utf8'))?.[1]).toBe(path.join(run, 'tmp'));
      expect(statSync(run).mode & 0o777).toBe(process.geteuid?.() === 0 ? 0o711 : 0o700);
      expect(statSync(path.join(run, 'tmp')).mode & 0o777).toBe(0o700);
      // A scan goes through it (clamd writes the stream there).
      expect((await new ClamdClient(first.endpoint, 5_000).scan(Buffer.from(EICAR))).found).toHaveLength(1);
      // Sekisho killed (first is never stopped): its clamd runs on and its files stay, until the next start.
      const orphan = first.pid;
      writeFileSync(path.join(run, 'tmp', 'left-by-a-crash'), 'x');
      const second = await startManagedClamdForConfig(r.config);
      expect(alive(orphan)).toBe(false);
      expect(runOf()).toBe(run);
      expect(existsSync(path.join(run, 'tmp', 'left-by-a-crash'))).toBe(false);
      await new ClamdClient(second.endpoint, 5_000).ping();
      await second.stop();
      expect(existsSync(run)).toBe(false);

      // Opting out keeps them on disk, in the system's temporary directory.
      const onDisk = validateConfig({ ...base, dataDir, clamav: { databaseDir: path.join(dataDir, 'no-official-db'), tempInMemory: false } });
      if (!onDisk.ok) throw new Error(JSON.stringify(onDisk.issues));
      const third = await startManagedClamdForConfig(onDisk.config);
      left.push(runOf());
      expect(path.dirname(runOf())).toBe(os.tmpdir());
      await new ClamdClient(third.endpoint, 5_000).ping();
      await third.stop();
      expect(existsSync(runOf())).toBe(false);
    } finally {
      for (const d of left) rmSync(d, { recursive: true, force: true });
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
