import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bayesBucket, bayesConfigSchema, createBayesCheck } from '../../../../../src/scan/checks/bayes/index.ts';
import { learnMessage } from '../../../../../src/scan/checks/bayes/learn.ts';
import { SqliteBayesStore } from '../../../../../src/scan/checks/bayes/sqlite-bayes-store.ts';
import { runChecks } from '../../../../../src/scan/runner.ts';
import { symbolInfo } from '../../../../../src/scan/symbols.ts';
import { checkContext } from '../../../../helpers/check-context.ts';
import { buildMail, encodedWord } from '../../../../helpers/mail-builder.ts';
import { japaneseHam, japaneseSpam } from './japanese-corpus.ts';

/** Messages of each class learned; the check needs this many of each (config), as production needs 200. */
const TRAINED_PER_CLASS = 20;
const config = bayesConfigSchema.parse({ minSpamMessages: TRAINED_PER_CLASS, minHamMessages: TRAINED_PER_CLASS });

let dir: string;
let store: SqliteBayesStore;
beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bayes-check-'));
  store = new SqliteBayesStore(path.join(dir, 'bayes.sqlite'));
});
afterAll(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const symbolNames = async (raw: Buffer) => (await createBayesCheck({ store, config }).run(checkContext(raw))).map((h) => h.name);

describe('the bayes check', () => {
  it('reports BAYES_UNTRAINED (and no bucket) until it has learned enough of both classes', async () => {
    for (let i = 0; i < TRAINED_PER_CLASS; i++) await learnMessage(store, japaneseSpam(i), 'spam', config);
    for (let i = 0; i < TRAINED_PER_CLASS - 1; i++) await learnMessage(store, japaneseHam(i), 'ham', config);
    const hits = await createBayesCheck({ store, config }).run(checkContext(japaneseSpam(100)));
    expect(hits).toEqual([{ name: 'BAYES_UNTRAINED', details: [`learned ${TRAINED_PER_CLASS} spam and ${TRAINED_PER_CLASS - 1} ham, needs 20 and 20`] }]);
  });

  it('once trained: unseen Japanese phishing in ISO-2022-JP and Shift_JIS is BAYES_99, municipal mail BAYES_00', async () => {
    await learnMessage(store, japaneseHam(TRAINED_PER_CLASS - 1), 'ham', config);
    for (const i of [100, 101]) expect(await symbolNames(japaneseSpam(i))).toEqual(['BAYES_99']);
    for (const i of [100, 101]) expect(await symbolNames(japaneseHam(i))).toEqual(['BAYES_00']);
  });

  it('judges by words, not by charset: a look-alike ham that shares the spam charset and greeting is still ham', async () => {
    const raw = buildMail({
      from: 'soumu@city-a.example.lg.jp',
      subject: encodedWord('会議資料', 'iso-2022-jp'),
      text: { body: 'お客様各位\n\n来週の課長会議の資料を送付します。議事録もご確認をお願いします。', charset: 'iso-2022-jp' },
    });
    const [hit] = await createBayesCheck({ store, config }).run(checkContext(raw));
    expect(['BAYES_00', 'BAYES_05']).toContain(hit?.name);
    expect(Number(hit?.details?.[0])).toBeLessThan(0.05);
  });

  it('maps probabilities to SpamAssassin buckets whose symbols are in the catalogue, low ones scoring negative', () => {
    expect([0, 0.009, 0.01, 0.2, 0.5, 0.7, 0.9, 0.97, 0.995].map(bayesBucket)).toEqual([
      'BAYES_00', 'BAYES_00', 'BAYES_05', 'BAYES_40', 'BAYES_50', 'BAYES_60', 'BAYES_80', 'BAYES_95', 'BAYES_99',
    ]);
    expect(symbolInfo('BAYES_00')?.score).toBeLessThan(0);
    expect(symbolInfo('BAYES_99')?.score).toBeGreaterThan(0);
  });

  it('fails closed: an unreadable model store gives BAYES_FAIL through the runner, never a bucket', async () => {
    const broken = new SqliteBayesStore(path.join(dir, 'closed.sqlite'));
    broken.close();
    const verdict = await runChecks(
      [createBayesCheck({ store: broken, config })],
      { messageId: 'm', envelope: checkContext(Buffer.alloc(0)).envelope, raw: japaneseSpam(3), log: pino({ level: 'silent' }) },
      { checkTimeoutMs: 5_000 },
    );
    expect(verdict.failedChecks).toEqual(['bayes']);
    expect(verdict.symbols.map((s) => s.name)).toEqual(['BAYES_FAIL']);
  });
});
