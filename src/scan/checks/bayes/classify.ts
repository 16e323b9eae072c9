/**
 * Bayes arithmetic: token probabilities after Robinson (a token seen rarely is pulled towards an unknown-token
 * prior) and their chi-square (Fisher) combination into one spam probability, as SpamAssassin and Bogofilter do.
 * Pure functions: the store supplies counts, the check maps the probability to a BAYES_* bucket.
 */
import type { BayesTotals, TokenCounts } from './bayes-store.ts';

/**
 * Robinson's s: how strongly the prior holds against a token's own counts. Robinson's own 1 (SpamAssassin uses
 * 0.03): a token must be seen in three messages of one class before it counts as evidence, so that the one-off
 * words of a few hundred training messages do not outvote the rest.
 */
const ROBINSON_S = 1;
/** Robinson's x: the probability assumed for a token with no evidence (SpamAssassin's FW_X_CONSTANT). */
const ROBINSON_X = 0.538;
/** Tokens whose probability lies closer than this to 0.5 are ignored: they are noise, not evidence. */
const MIN_PROB_STRENGTH = 0.346;
/** At most this many of the strongest tokens are combined (SpamAssassin's N_SIGNIFICANT_TOKENS). */
const MAX_SIGNIFICANT_TOKENS = 150;

export interface Classification {
  /** Spam probability in [0, 1]; 0.5 when no token is significant. */
  probability: number;
  /** The strongest tokens used, strongest first, with their probabilities (for `sekisho spam classify --json`). */
  evidence: { token: string; probability: number }[];
}

/** Robinson's f(w) for one token. */
export function tokenProbability(c: TokenCounts, totals: BayesTotals): number {
  const spamRatio = c.spam / Math.max(1, totals.spamMessages);
  const hamRatio = c.ham / Math.max(1, totals.hamMessages);
  const p = spamRatio + hamRatio === 0 ? ROBINSON_X : spamRatio / (spamRatio + hamRatio);
  const n = c.spam + c.ham;
  return (ROBINSON_S * ROBINSON_X + n * p) / (ROBINSON_S + n);
}

/** Upper tail of the chi-square distribution with an even number of degrees of freedom. */
export function chi2Q(x2: number, degrees: number): number {
  const m = x2 / 2;
  let term = Math.exp(-m);
  let sum = term;
  for (let i = 1; i < degrees / 2; i++) {
    term *= m / i;
    sum += term;
  }
  return Math.min(sum, 1);
}

export function classify(tokens: readonly string[], counts: ReadonlyMap<string, TokenCounts>, totals: BayesTotals): Classification {
  const scored: { token: string; probability: number; strength: number }[] = [];
  for (const token of tokens) {
    const c = counts.get(token);
    if (!c) continue;
    const probability = tokenProbability(c, totals);
    const strength = Math.abs(probability - 0.5);
    if (strength >= MIN_PROB_STRENGTH) scored.push({ token, probability, strength });
  }
  scored.sort((a, b) => b.strength - a.strength || a.token.localeCompare(b.token));
  const used = scored.slice(0, MAX_SIGNIFICANT_TOKENS);
  if (used.length === 0) return { probability: 0.5, evidence: [] };
  let lnHam = 0;
  let lnSpam = 0;
  for (const u of used) {
    lnHam += Math.log(u.probability);
    lnSpam += Math.log(1 - u.probability);
  }
  const h = chi2Q(-2 * lnHam, 2 * used.length);
  const s = chi2Q(-2 * lnSpam, 2 * used.length);
  return { probability: (1 + h - s) / 2, evidence: used.map(({ token, probability }) => ({ token, probability })) };
}
