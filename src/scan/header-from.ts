/**
 * The address of the header From, for the tenants' allow and block lists: the first `<addr>` of the field, or its
 * first bare `local@domain`. Only the header block is read (at most MAX_HEADER_BYTES); a message without a From, or
 * with one that names no address, gives null — and then only the envelope sender and the IP can match.
 */
/** Far beyond any real header block; a larger one is cut here (mime-structure flags it as HEADER_OVERSIZED). */
const MAX_HEADER_BYTES = 256 * 1024;

export function headerFromAddress(raw: Buffer): string | null {
  const slice = raw.subarray(0, MAX_HEADER_BYTES).toString('latin1');
  const end = slice.search(/\r?\n\r?\n/);
  const head = (end < 0 ? slice : slice.slice(0, end)).replace(/\r?\n[ \t]+/g, ' ');
  const line = /^from:(.*)$/im.exec(head)?.[1];
  if (!line) return null;
  const angled = /<([^<>\s@]+@[^<>\s@]+)>/.exec(line)?.[1];
  const bare = /([^\s<>"(),;:@]+@[^\s<>"(),;:@]+)/.exec(line)?.[1];
  return (angled ?? bare ?? null)?.toLowerCase() ?? null;
}
