/**
 * What the console shows of a quarantined message without opening it: the main headers decoded, a plain-text
 * preview of the body (HTML converted by the sanitizer's body code: nothing remote, no markup, links defanged) and
 * the list of parts with their true types. Built in the worker when the message is held — untrusted bytes are never
 * parsed in the admin process (DESIGN §6) — and stored with the quarantine record as plain data.
 */
import { sanitizeBody } from '../sanitize/body.ts';
import { decodeHeaderWords } from '../scan/checks/spoofing/mail-address.ts';
import { parseMessage } from '../scan/mime-parts.ts';
import { detectType } from '../scan/true-type.ts';

/** Characters of body text kept: a screenful or two, enough to judge a message; the rest is cut. */
export const MAX_PREVIEW_TEXT_CHARS = 8_000;
/** Characters of one header value kept (a forged header can be megabytes). */
const MAX_HEADER_CHARS = 1_000;
/** Parts listed; a message with more is listed up to here with a count of the rest. */
const MAX_LISTED_PARTS = 200;
/** Received headers listed (the path the message took): the nearest ones. */
const MAX_RECEIVED = 10;

const SHOWN_HEADERS = ['from', 'sender', 'reply-to', 'to', 'cc', 'date', 'subject', 'message-id', 'return-path', 'received'];

export interface PreviewPart {
  path: string;
  filename: string | null;
  contentType: string;
  /** What the bytes are (magic bytes, structure), e.g. "docx", "exe", "zip". */
  trueType: string;
  size: number;
}

export interface MessagePreview {
  headers: { name: string; value: string }[];
  text: string;
  textTruncated: boolean;
  parts: PreviewPart[];
  /** Parts beyond MAX_LISTED_PARTS. */
  morePartCount: number;
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

export async function buildPreview(raw: Buffer): Promise<MessagePreview> {
  const parsed = await parseMessage(raw);
  let received = 0;
  const headers: MessagePreview['headers'] = [];
  for (const h of parsed.headers) {
    if (!SHOWN_HEADERS.includes(h.key)) continue;
    if (h.key === 'received' && ++received > MAX_RECEIVED) continue;
    const value = h.key === 'received' ? h.value : decodeHeaderWords(h.value);
    headers.push({ name: h.key, value: clip(value.replace(/\s+/g, ' ').trim(), MAX_HEADER_CHARS) });
  }
  const leaves = parsed.parts.filter((p) => p.embeddedDepth === 0 && !p.filename && (p.contentType === 'text/plain' || p.contentType === 'text/html'));
  const body = sanitizeBody(leaves.map((p) => ({ contentType: p.contentType, charset: p.charset, content: p.content })));
  const parts: PreviewPart[] = [];
  for (const p of parsed.parts.slice(0, MAX_LISTED_PARTS)) {
    const type = await detectType(p.content, { filename: p.filename, contentType: p.contentType });
    parts.push({ path: p.path, filename: p.filename, contentType: p.contentType, trueType: type.type, size: p.content.length });
  }
  return {
    headers,
    text: clip(body.text, MAX_PREVIEW_TEXT_CHARS),
    textTruncated: body.text.length > MAX_PREVIEW_TEXT_CHARS,
    parts,
    morePartCount: Math.max(0, parsed.parts.length - MAX_LISTED_PARTS),
  };
}
