/**
 * `sekisho spam train` and `sekisho spam classify` end to end on generated Japanese mail (ISO-2022-JP and
 * Shift_JIS spam and ham) with a real config file and a real SQLite model in dataDir: training is idempotent,
 * classification prints the action policy would choose.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSpamCommand, type Classified, type SpamCommandDeps } from '../../src/cli/spam.ts';
import { loadConfig } from '../../src/config/load.ts';
import { bayesConfigSchema } from '../../src/scan/checks/bayes/index.ts';
import { japaneseHam, japaneseSpam } from '../unit/scan/checks/bayes/japanese-corpus.ts';

/** Messages per class learned; the model classifies from this many (antispam.bayes.minSpamMessages/minHamMessages). */
const PER_CLASS = 16;

let dir: string;
let configFile: string;

function write(sub: string, name: string, raw: Buffer): string {
  const d = path.join(dir, sub);
  mkdirSync(d, { recursive: true });
  const f = path.join(d, name);
  writeFileSync(f, raw);
  return f;
}

async function run(argv: string[], minPerClass = PER_CLASS): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const deps: SpamCommandDeps = {
    loadConfig,
    bayesConfig: () => bayesConfigSchema.parse({ minSpamMessages: minPerClass, minHamMessages: minPerClass }),
    log: pino({ level: 'silent' }),
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  };
  const code = await runSpamCommand([...argv, '--config', configFile], deps);
  return { code, out, err };
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-spam-cli-'));
  configFile = path.join(dir, 'sekisho.yaml');
  writeFileSync(
    configFile,
    [
      'hostname: mx.pref.example.lg.jp',
      'dataDir: ./var',
      'tenants:',
      '  - id: city-a',
      '    name: 甲市',
      '    domains: [city-a.example.lg.jp]',
      '    deliverTo: smtp://127.0.0.1:25',
      '  - id: town-b',
      '    name: 乙町',
      '    domains: [town-b.example.lg.jp]',
      '    deliverTo: smtp://127.0.0.1:25',
      '    policy: { thresholds: { tag: 100, quarantine: 200, reject: 300 } }',
      '',
    ].join('\n'),
  );
  for (let i = 0; i < PER_CLASS; i++) {
    // Nested directories: train reads DIR recursively. An mbox "From " line first, as exported mail has.
    write(`train/spam/${i % 2 ? 'sjis' : 'jis'}`, `${i}.eml`, Buffer.concat([Buffer.from(`From spammer@example.net Thu Dec  3 10:00:00 2026\n`), japaneseSpam(i)]));
    write(`train/ham/${i % 2 ? 'sjis' : 'jis'}`, `${i}.eml`, japaneseHam(i));
  }
  write('check', 'spam-iso-2022-jp.eml', japaneseSpam(200, 'iso-2022-jp'));
  write('check', 'spam-shift_jis.eml', japaneseSpam(201, 'shift_jis'));
  write('check', 'ham-iso-2022-jp.eml', japaneseHam(200, 'iso-2022-jp'));
  write('check', 'ham-shift_jis.eml', japaneseHam(201, 'shift_jis'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sekisho spam', () => {
  it('classify before training: BAYES_UNTRAINED, delivered on the other checks alone', async () => {
    const r = await run(['classify', path.join(dir, 'check', 'spam-shift_jis.eml')]);
    expect(r.code).toBe(0);
    expect(r.out).toHaveLength(1);
    expect(r.out[0]).toMatch(/spam-shift_jis\.eml\tdeliver\t0\tBAYES_UNTRAINED\(learned 0 spam and 0 ham, needs 16 and 16\)$/);
  });

  it('train learns every file under each DIR into dataDir/bayes.sqlite, and a second run learns nothing new', async () => {
    const first = await run(['train', '--spam', path.join(dir, 'train/spam'), '--ham', path.join(dir, 'train/ham')]);
    expect(first.err).toEqual([]);
    expect(first.code).toBe(0);
    expect(first.out).toEqual([
      `spam ${path.join(dir, 'train/spam')}: 16 learned, 0 moved from the other class, 0 already known, 0 skipped`,
      `ham ${path.join(dir, 'train/ham')}: 16 learned, 0 moved from the other class, 0 already known, 0 skipped`,
      'model: 16 spam, 16 ham (classifies from 16 spam and 16 ham)',
    ]);
    const second = await run(['train', '--spam', path.join(dir, 'train/spam'), '--ham', path.join(dir, 'train/ham')]);
    expect(second.out.at(-1)).toBe('model: 16 spam, 16 ham (classifies from 16 spam and 16 ham)');
    expect(second.out[0]).toContain(': 0 learned, 0 moved from the other class, 16 already known');
  });

  it('classify DIR prints file, action, score and symbols: Japanese spam tagged, Japanese ham delivered, in both charsets', async () => {
    const r = await run(['classify', path.join(dir, 'check')]);
    expect(r.code).toBe(0);
    const byFile = Object.fromEntries(r.out.map((l) => l.split('\t')).map(([file, action, score, symbols]) => [path.basename(file!), { action, score: Number(score), symbols }]));
    for (const f of ['spam-iso-2022-jp.eml', 'spam-shift_jis.eml']) {
      expect(byFile[f]?.action).toBe('deliver-tagged');
      expect(byFile[f]?.symbols).toMatch(/^BAYES_99\((0\.99\d\d|1\.0000)\)$/);
    }
    for (const f of ['ham-iso-2022-jp.eml', 'ham-shift_jis.eml']) {
      expect(byFile[f]?.action).toBe('deliver');
      expect(byFile[f]?.score).toBeLessThan(0);
      expect(byFile[f]?.symbols).toMatch(/^BAYES_00\(0\.00\d\d\)$/);
    }
  });

  it('--json gives one object per message; --tenant applies that tenant’s policy', async () => {
    const file = path.join(dir, 'check', 'spam-iso-2022-jp.eml');
    const r = await run(['classify', file, '--json', '--tenant', 'town-b']);
    const parsed = r.out.map((l) => JSON.parse(l) as Classified);
    expect(parsed).toHaveLength(1);
    expect(parsed[0]).toMatchObject({ file, action: 'deliver', failedChecks: [] });
    expect(parsed[0]?.symbols.map((s) => s.name)).toEqual(['BAYES_99']);
    expect(parsed[0]?.reasons).toEqual([`score ${parsed[0]?.score} below every threshold`]);
  });

  it('a message learned as spam and then as ham is moved, not counted twice', async () => {
    const f = path.join(dir, 'train/spam/jis/0.eml');
    const r = await run(['train', '--ham', f]);
    expect(r.out).toEqual([`ham ${f}: 0 learned, 1 moved from the other class, 0 already known, 0 skipped`, 'model: 15 spam, 17 ham (classifies from 16 spam and 16 ham)']);
  });

  it('a path that cannot be read is reported, the others are still classified, and the exit code is 1', async () => {
    const missing = path.join(dir, 'no-such-dir');
    // The previous test moved one spam to ham: 15 spam remain.
    const r = await run(['classify', missing, path.join(dir, 'check', 'ham-shift_jis.eml')], 15);
    expect(r.code).toBe(1);
    expect(r.err).toEqual([expect.stringContaining(`${missing}: ENOENT`)]);
    expect(r.out).toEqual([expect.stringMatching(/ham-shift_jis\.eml\tdeliver\t-3\tBAYES_00/)]);
  });

  it('usage errors exit 2 with a message: no source, unknown tenant, unknown option', async () => {
    expect((await run(['train'])).code).toBe(2);
    const t = await run(['classify', path.join(dir, 'check'), '--tenant', 'nope']);
    expect(t.code).toBe(2);
    expect(t.err).toEqual(['sekisho spam classify: no tenant "nope" in the configuration']);
    const o = await run(['classify', '--bogus']);
    expect(o.code).toBe(2);
    expect(o.err[0]).toContain('--bogus');
  });
});
