/**
 * Learning one raw message into a BayesStore, as `sekisho spam train` (and later the console's "mark as spam/ham")
 * does: parsed and tokenized exactly as the check reads it, identified by the SHA-256 of its bytes so that
 * training on the same files again counts nothing twice.
 */
import { createHash } from 'node:crypto';
import { parseMessage } from '../../mime-parts.ts';
import type { BayesClass, BayesStore, LearnOutcome } from './bayes-store.ts';
import type { BayesConfig } from './config.ts';
import { tokenize } from './tokenizer.ts';

/**
 * The message without an mbox "From " separator line (what `formail`, Thunderbird exports and the SpamAssassin
 * corpus put first): it is not a header, and left in place it would turn the real headers into body text.
 */
export function withoutMboxFromLine(raw: Buffer): Buffer {
  if (raw.subarray(0, 5).toString('latin1') !== 'From ') return raw;
  const eol = raw.indexOf(0x0a);
  return eol < 0 ? raw : raw.subarray(eol + 1);
}

export function messageHash(raw: Buffer): string {
  return createHash('sha256').update(withoutMboxFromLine(raw)).digest('hex');
}

export async function learnMessage(store: BayesStore, raw: Buffer, cls: BayesClass, config: BayesConfig): Promise<LearnOutcome> {
  const message = withoutMboxFromLine(raw);
  const tokens = tokenize(await parseMessage(message), config);
  return store.learn(messageHash(message), cls, tokens);
}
