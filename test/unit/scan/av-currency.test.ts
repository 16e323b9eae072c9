/**
 * The antivirus currency from clamd's VERSION answers (captured from clamd 1.4.6), the age limit against an injected
 * clock, the log lines on changes only, the gauges, and the signature count of database files.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import { SekishoError } from '../../../src/errors.ts';
import { assessCurrency, AvCurrencyMonitor, OWN_SIGNATURES_ONLY, parseClamdVersion } from '../../../src/scan/av-currency.ts';
import { countDatabaseSignatures, parseContainerHeader } from '../../../src/scan/database-signatures.ts';
import { captureLog } from '../../helpers/check-context.ts';

/** clamd 1.4.6 with only signatures/sekisho.ndb and sekisho.hdb loaded. */
const OWN_ONLY = 'ClamAV 1.4.6';
/** The same clamd with a daily database (version 27123) built at 2026-12-03 04:00:12 in clamd's time zone. */
const WITH_DAILY = 'ClamAV 1.4.6/27123/Thu Dec  3 04:00:12 2026';
const DAILY_BUILT_AT = new Date(2026, 11, 3, 4, 0, 12).getTime();
const H = 3_600_000;
const MAX_AGE_MS = 48 * H;

async function gauge(registry: Registry, name: string): Promise<number | undefined> {
  return (await registry.getSingleMetric(name)?.get())?.values[0]?.value;
}

describe('parseClamdVersion', () => {
  it('reads the engine and no official database when only local signatures are loaded', () => {
    expect(parseClamdVersion(OWN_ONLY)).toEqual({ engine: '1.4.6', officialVersion: null, officialBuiltAt: null });
  });

  it("reads the daily database's version and build time (ctime, one- or two-digit day)", () => {
    expect(parseClamdVersion(WITH_DAILY)).toEqual({ engine: '1.4.6', officialVersion: 27123, officialBuiltAt: DAILY_BUILT_AT });
    expect(parseClamdVersion('ClamAV 0.103.11/26950/Sun Jul 16 07:27:09 2023')?.officialBuiltAt).toBe(new Date(2023, 6, 16, 7, 27, 9).getTime());
  });

  it('refuses what is not a VERSION answer', () => {
    for (const reply of ['', 'UNKNOWN COMMAND', 'ClamAV', 'ClamAV 1.4.6/27123/Thu Foo  3 04:00:12 2026', 'PONG']) expect(parseClamdVersion(reply)).toBeNull();
  });
});

describe('assessCurrency', () => {
  const daily = parseClamdVersion(WITH_DAILY)!;

  it('own signatures only: degraded, whatever the clock', () => {
    const c = assessCurrency(parseClamdVersion(OWN_ONLY)!, 2, DAILY_BUILT_AT, MAX_AGE_MS);
    expect(c).toMatchObject({ status: 'degraded', reason: OWN_SIGNATURES_ONLY, signatures: 2, officialVersion: null, ageMs: null });
  });

  it('official database up to the limit: ok; past it: degraded with its age in whole hours', () => {
    expect(assessCurrency(daily, 3, DAILY_BUILT_AT + MAX_AGE_MS, MAX_AGE_MS)).toMatchObject({ status: 'ok', reason: null, ageMs: MAX_AGE_MS });
    const stale = assessCurrency(daily, 3, DAILY_BUILT_AT + 73 * H + 59 * 60_000, MAX_AGE_MS);
    expect(stale).toMatchObject({ status: 'degraded', reason: 'official database is 73 h old (limit 48 h)', officialVersion: 27123 });
    expect(stale.ageMs).toBe(73 * H + 59 * 60_000);
  });

  it('a build time ahead of the clock is age 0, not an alarm', () => {
    expect(assessCurrency(daily, 3, DAILY_BUILT_AT - H, MAX_AGE_MS)).toMatchObject({ status: 'ok', ageMs: 0 });
  });
});

describe('AvCurrencyMonitor', () => {
  it('logs a change of status (and of the kind of reason) once, sets the gauges, and turns clamd errors into unknown', async () => {
    let reply: string | Error = OWN_ONLY;
    let now = DAILY_BUILT_AT + H;
    const client = {
      version: async () => {
        if (reply instanceof Error) throw reply;
        return reply;
      },
    };
    const { log, records } = captureLog();
    const registry = new Registry();
    const monitor = new AvCurrencyMonitor({ client, maxAgeMs: MAX_AGE_MS, now: () => now, log, registry });
    const lines = () => records.map((r) => [r.level, r.msg]);
    expect(monitor.latest()).toBeNull();

    expect(await monitor.refresh()).toMatchObject({ status: 'degraded', reason: OWN_SIGNATURES_ONLY, checkedAt: now, signatures: null });
    await monitor.refresh();
    expect(lines()).toEqual([[40, `antivirus not current: ${OWN_SIGNATURES_ONLY}`]]);
    expect(await gauge(registry, 'sekisho_av_current')).toBe(0);
    expect(await gauge(registry, 'sekisho_av_database_age_seconds')).toBeNaN();

    reply = WITH_DAILY;
    expect(await monitor.refresh()).toMatchObject({ status: 'ok', officialVersion: 27123, ageMs: H });
    expect(lines().at(-1)).toEqual([30, 'antivirus databases are current']);
    expect(await gauge(registry, 'sekisho_av_current')).toBe(1);
    expect(await gauge(registry, 'sekisho_av_database_age_seconds')).toBe(3600);

    now = DAILY_BUILT_AT + 49 * H;
    await monitor.refresh();
    now = DAILY_BUILT_AT + 50 * H;
    expect(await monitor.refresh()).toMatchObject({ status: 'degraded', reason: 'official database is 50 h old (limit 48 h)' });
    // One line for the change, none for the hour that went by.
    expect(lines().slice(2)).toEqual([[40, 'antivirus not current: official database is 49 h old (limit 48 h)']]);

    reply = new SekishoError('SEKISHO_ERR_CLAMAV_UNAVAILABLE', 'unix:/run/clamd.sock: connect ENOENT');
    expect(await monitor.refresh()).toMatchObject({ status: 'unknown', reason: 'clamd unreachable: unix:/run/clamd.sock: connect ENOENT' });
    expect(await gauge(registry, 'sekisho_av_current')).toBe(0);
    reply = 'UNKNOWN COMMAND';
    expect((await monitor.refresh()).reason).toBe('clamd\'s VERSION answer is not understood: "UNKNOWN COMMAND"');
    expect(monitor.latest()?.status).toBe('unknown');
    expect(lines().slice(3).map((l) => l[1])).toEqual(['antivirus currency unknown: clamd unreachable: unix:/run/clamd.sock: connect ENOENT']);
  });
});

describe('countDatabaseSignatures', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-sigcount-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const header = (version: number, sigs: number) => `ClamAV-VDB:03 Dec 2026 04-00 +0000:${version}:${sigs}:90:X:X:sekisho:1796270412`.padEnd(512) + 'tar…';

  it("parses a container's header", () => {
    expect(parseContainerHeader(header(27123, 2_064_000))).toEqual({ version: 27123, signatures: 2_064_000, builtAt: 1_796_270_412_000 });
    expect(parseContainerHeader('not a header')).toBeNull();
  });

  it('counts container headers (newest of .cvd/.cld per database), signature lines, yara rules; the last directory wins a name', async () => {
    const official = path.join(root, 'official');
    const own = path.join(root, 'own');
    for (const d of [official, own]) mkdirSync(d);
    writeFileSync(path.join(official, 'daily.cvd'), header(27000, 1000));
    writeFileSync(path.join(official, 'daily.cld'), header(27123, 1200));
    writeFileSync(path.join(official, 'main.cvd'), header(62, 5000));
    writeFileSync(path.join(official, 'freshclam.dat'), 'not a database');
    writeFileSync(path.join(official, 'local.ndb'), 'A:0:*:41414141\n# comment\n\nB:0:*:42424242\r\nC:0:*:43434343');
    writeFileSync(path.join(official, 'rules.yar'), 'rule one { condition: true }\nprivate rule two { condition: true }\n');
    writeFileSync(path.join(official, 'sekisho.ndb'), 'old:0:*:41\nold2:0:*:42\n');
    writeFileSync(path.join(own, 'sekisho.ndb'), 'new:0:*:41\n');
    expect(await countDatabaseSignatures([official, own])).toBe(1200 + 5000 + 3 + 2 + 1);
    expect(await countDatabaseSignatures([path.join(root, 'missing')])).toBe(0);
    expect(await countDatabaseSignatures([])).toBeNull();
  });
});
