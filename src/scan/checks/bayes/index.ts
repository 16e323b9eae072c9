/**
 * bayes — a statistical spam filter trained on this installation's own mail.
 *
 * What: the message's tokens (tokenizer.ts: decoded, Japanese segmented, header and URL tokens) are looked up in
 * the model (a BayesStore) and combined into a spam probability (classify.ts), reported as one bucket symbol like
 * SpamAssassin's: BAYES_00 (below 1 %) … BAYES_99 (99 % and above). Until the model has learned
 * minSpamMessages spam and minHamMessages ham, it reports BAYES_UNTRAINED instead: an untrained model's opinion is
 * noise. Learning is `sekisho spam train` (learn.ts); nothing is learned from the scanned mail itself.
 * Why: rules and reputation miss what is new and what is local; the model learns both from mail that operators
 * have judged, in Japanese as in English.
 */
import path from 'node:path';
import type { Check, CheckContext, SymbolHit } from '../../check.ts';
import type { BayesStore } from './bayes-store.ts';
import { classify } from './classify.ts';
import type { BayesConfig } from './config.ts';
import { SqliteBayesStore } from './sqlite-bayes-store.ts';
import { tokenize } from './tokenizer.ts';

export type { BayesConfig } from './config.ts';
export { bayesConfigSchema } from './config.ts';
export type { BayesStore } from './bayes-store.ts';

/** Bucket symbols by their lower bound of spam probability, highest first (SpamAssassin's boundaries). */
export const BAYES_BUCKETS: readonly { symbol: string; from: number }[] = [
  { symbol: 'BAYES_99', from: 0.99 },
  { symbol: 'BAYES_95', from: 0.95 },
  { symbol: 'BAYES_80', from: 0.8 },
  { symbol: 'BAYES_60', from: 0.6 },
  { symbol: 'BAYES_50', from: 0.4 },
  { symbol: 'BAYES_40', from: 0.2 },
  { symbol: 'BAYES_20', from: 0.05 },
  { symbol: 'BAYES_05', from: 0.01 },
  { symbol: 'BAYES_00', from: 0 },
];

export function bayesBucket(probability: number): string {
  return (BAYES_BUCKETS.find((b) => probability >= b.from) ?? { symbol: 'BAYES_00' }).symbol;
}

export interface BayesCheckOptions {
  store: BayesStore;
  config: BayesConfig;
}

export function createBayesCheck(opts: BayesCheckOptions): Check {
  const { store, config } = opts;
  return {
    name: 'bayes',
    failSymbol: 'BAYES_FAIL',
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const totals = await store.totals();
      if (totals.spamMessages < config.minSpamMessages || totals.hamMessages < config.minHamMessages) {
        const need = `learned ${totals.spamMessages} spam and ${totals.hamMessages} ham, needs ${config.minSpamMessages} and ${config.minHamMessages}`;
        return [{ name: 'BAYES_UNTRAINED', details: [need] }];
      }
      const tokens = tokenize(await ctx.parsed(), config);
      ctx.signal.throwIfAborted();
      const counts = await store.counts(tokens);
      const { probability } = classify(tokens, counts, totals);
      return [{ name: bayesBucket(probability), details: [probability.toFixed(4)] }];
    },
  };
}

/** The configured model store: SQLite at dbFile, relative to dataDir. The composition root and the CLI open it. */
export function openBayesStore(dataDir: string, config: BayesConfig): BayesStore {
  return new SqliteBayesStore(path.resolve(dataDir, config.dbFile));
}
