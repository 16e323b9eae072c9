/**
 * The text a quarantine search compares: NFKC then lower-case (全角 ＡＢＣ and abc, ｾｷｼｮ and セキショ meet), the
 * subject with its RFC 2047 encoded-words decoded (the record keeps the raw header value). Every driver stores
 * these keys at hold time and applies the same function to the search term — never compare one side only.
 */
import { decodeHeaderWords } from '../scan/checks/spoofing/mail-address.ts';

export function searchKey(text: string): string {
  return text.normalize('NFKC').toLowerCase();
}

export function subjectKey(subject: string | null): string {
  return subject === null ? '' : searchKey(decodeHeaderWords(subject));
}

export function addressKey(address: string): string {
  return searchKey(address.trim());
}

/** One reason per line, so that a substring never spans two reasons. */
export function reasonsKey(reasons: readonly string[]): string {
  return reasons.map(searchKey).join('\n');
}

/** A whole address (local@domain): the recipient filter matches it exactly rather than as a substring. */
export function isWholeAddress(term: string): boolean {
  return /^[^@\s]+@[^@\s]+$/.test(term.trim());
}
