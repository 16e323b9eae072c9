/**
 * The antivirus currency against a real clamd: with the project's signatures only (this machine, and any that
 * cannot reach a mirror) it is degraded; with a daily database it is ok until that is older than the limit. The
 * daily database is built here as a .cud (an unsigned container, which clamd loads without ClamAV's signature and
 * reports in VERSION as it does freshclam's daily.cvd). The signature count is compared with clamd's own, which
 * clamd writes to its log after a reload.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvCurrencyMonitor, OWN_SIGNATURES_ONLY } from '../../src/scan/av-currency.ts';
import { ClamdClient } from '../../src/scan/clamd-client.ts';
import { PROJECT_SIGNATURE_DIR } from '../../src/services/clamd.ts';
import { captureLog } from '../helpers/check-context.ts';
import { startTestClamd, type TestClamd } from '../helpers/clamd.ts';

const H = 3_600_000;
const DAILY_VERSION = 27123;

/**
 * Writes `${dir}/daily.cud`: the 512-byte header, then a gzipped tar of daily.info (the header again, and the
 * size and SHA-256 of each file) and daily.ndb. `builtAtS` is the build time clamd reports, in seconds.
 */
function writeDailyCud(dir: string, builtAtS: number, ndbLines: string[]): void {
  const work = mkdtempSync(path.join(os.tmpdir(), 'sekisho-cud-'));
  try {
    const ndb = Buffer.from(ndbLines.map((l) => `${l}\n`).join(''));
    const header = `ClamAV-VDB:test:${DAILY_VERSION}:${ndbLines.length}:90:X:X:sekisho-test:${builtAtS}`;
    writeFileSync(path.join(work, 'daily.ndb'), ndb);
    writeFileSync(path.join(work, 'daily.info'), `${header}\ndaily.ndb:${ndb.length}:${createHash('sha256').update(ndb).digest('hex')}\n`);
    execFileSync('tar', ['--format=ustar', '-czf', 'daily.tgz', 'daily.info', 'daily.ndb'], { cwd: work });
    writeFileSync(path.join(dir, 'daily.cud'), Buffer.concat([Buffer.from(header.padEnd(512)), readFileSync(path.join(work, 'daily.tgz'))]));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** clamd's own count: the last "Database correctly reloaded (N signatures)" of its log. */
function clamdReloadedCount(t: TestClamd): number | undefined {
  const all = [...readFileSync(path.join(t.options.dir, 'clamd.log'), 'utf8').matchAll(/Database correctly reloaded \((\d+) signatures\)/g)];
  const last = all.at(-1)?.[1];
  return last === undefined ? undefined : Number(last);
}

describe('antivirus currency from a real clamd', () => {
  let t: TestClamd;
  let now = 0;
  const captured = captureLog();
  let monitor: AvCurrencyMonitor;

  beforeAll(async () => {
    t = await startTestClamd();
    monitor = new AvCurrencyMonitor({
      client: new ClamdClient(t.clamd.endpoint, 5_000),
      maxAgeMs: 48 * H,
      databaseDirs: [t.databaseDir, PROJECT_SIGNATURE_DIR],
      now: () => now,
      log: captured.log,
    });
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("the project's signatures only: degraded, with the count clamd itself reports", async () => {
    const c = await monitor.refresh();
    expect(c).toMatchObject({ status: 'degraded', reason: OWN_SIGNATURES_ONLY, officialVersion: null, officialBuiltAt: null, ageMs: null });
    expect(c.engine).toMatch(/^\d+\.\d+\.\d+/);
    expect(c.signatures).toBeGreaterThan(0);
    await t.clamd.reload();
    expect(clamdReloadedCount(t)).toBe(c.signatures);
    expect(captured.records.filter((r) => r.level === 40).map((r) => r.msg)).toEqual([`antivirus not current: ${OWN_SIGNATURES_ONLY}`]);
  });

  it('a daily database loaded: ok while younger than the limit, degraded past it', async () => {
    const builtAtS = Math.floor(Date.now() / 1000) - 3600;
    writeDailyCud(t.databaseDir, builtAtS, [`Sekisho.Test.Daily:0:*:${Buffer.from('SEKISHO-DAILY-MARKER').toString('hex')}`]);
    await t.clamd.reload();
    now = builtAtS * 1000 + 2 * H;
    const c = await monitor.refresh();
    expect(c).toMatchObject({ status: 'ok', reason: null, officialVersion: DAILY_VERSION, officialBuiltAt: builtAtS * 1000, ageMs: 2 * H });
    expect(c.signatures).toBe(clamdReloadedCount(t));
    expect(captured.records.at(-1)).toMatchObject({ level: 30, msg: 'antivirus databases are current' });

    now = builtAtS * 1000 + 73 * H;
    expect(await monitor.refresh()).toMatchObject({ status: 'degraded', reason: 'official database is 73 h old (limit 48 h)', officialVersion: DAILY_VERSION });
  });

  it('clamd stopped: unknown, with the reason', async () => {
    await t.clamd.stop();
    const c = await monitor.refresh();
    expect(c.status).toBe('unknown');
    expect(c.reason).toMatch(/^clamd unreachable: unix:.*clamd\.sock/);
  });
});
