/**
 * Where the Bayes model lives: per-token spam/ham message counts, the two message totals, and the hashes of the
 * messages learned (so that learning a message twice counts it once, and learning it as the other class moves
 * it). An interface so that a Redis store can follow the SQLite one; every method is async for that reason.
 */
export type BayesClass = 'spam' | 'ham';

export interface TokenCounts {
  spam: number;
  ham: number;
}

export interface BayesTotals {
  spamMessages: number;
  hamMessages: number;
}

/** learned: new; relearned: was learned as the other class and moved; unchanged: already learned as this class. */
export type LearnOutcome = 'learned' | 'relearned' | 'unchanged';

export interface BayesStore {
  totals(): Promise<BayesTotals>;
  /** Counts of the given tokens; tokens never seen are absent from the map. */
  counts(tokens: readonly string[]): Promise<Map<string, TokenCounts>>;
  /**
   * Learns one message, identified by `messageHash`, from its distinct tokens. The tokens must be those the
   * tokenizer gives for the same bytes (a relearn subtracts them from the old class).
   */
  learn(messageHash: string, cls: BayesClass, tokens: readonly string[]): Promise<LearnOutcome>;
  close(): void;
}
