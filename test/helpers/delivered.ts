/**
 * What a downstream server received, without what Sekisho puts on top of a delivered message: its spam verdict
 * fields (X-Spam-Score, X-Spam-Status, policy.thresholds.headers) and then its own Received header.
 */
import { expect } from 'vitest';

function field(name: string): RegExp {
  return new RegExp(`^${name}: [^\\r\\n]*(\\r\\n[ \\t][^\\r\\n]*)*\\r\\n`, 'i');
}

/** The delivered bytes after our X-Spam fields (when present); they must then start with our Received header. */
export function withoutOurMarks(raw: Buffer): string {
  let text = raw.toString('latin1');
  for (const name of ['X-Spam-Score', 'X-Spam-Status']) {
    const m = field(name).exec(text);
    if (m) text = text.slice(m[0].length);
  }
  return text;
}

/** The delivered bytes as the client sent them: our X-Spam fields and our Received header removed. */
export function withoutOurHeaders(raw: Buffer): string {
  const text = withoutOurMarks(raw);
  const m = field('Received').exec(text);
  expect(m, 'delivered message starts with our Received header').not.toBeNull();
  return text.slice(m![0].length);
}
