/**
 * Header text as a reader sees it: RFC 2047 encoded-words decoded in any charset (ISO-2022-JP, Shift_JIS, EUC-JP,
 * UTF-8 — through decodeText, which knows the CP932 extensions), and address fields split into display name and
 * address. Shared by the spoofing and rules checks. The input is hostile: every regex here is linear (no nested
 * quantifiers) and header values are cut to MAX_HEADER_VALUE_CHARS before they are read.
 */
import addressparser from 'nodemailer/lib/addressparser';
import { decodeText } from '../../../sanitize/charset.ts';
import type { ParsedMessage } from '../../mime-parts.ts';

/**
 * Characters of one header value that are decoded. Bounds the work per header whatever the message; real From,
 * Subject and Reply-To values are under 1,000 characters even with every word encoded.
 */
export const MAX_HEADER_VALUE_CHARS = 16 * 1024;

const ENCODED_WORD = /=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=/g;

function wordBytes(encoding: string, text: string): Buffer {
  if (encoding.toUpperCase() === 'B') return Buffer.from(text, 'base64');
  const qp = text.replace(/_/g, ' ');
  const out: number[] = [];
  for (let i = 0; i < qp.length; i++) {
    const hex = qp[i] === '=' ? qp.slice(i + 1, i + 3) : '';
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      out.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      out.push(qp.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(out);
}

/**
 * Decodes the RFC 2047 encoded-words of a header value. Adjacent words (only whitespace between them) of the same
 * charset are joined as bytes before decoding: Japanese mailers split a multi-byte character, or an ISO-2022-JP
 * escape sequence, across two words.
 */
export function decodeHeaderWords(value: string): string {
  const v = value.length > MAX_HEADER_VALUE_CHARS ? value.slice(0, MAX_HEADER_VALUE_CHARS) : value;
  let out = '';
  let last = 0;
  let pending: { charset: string; bytes: Buffer[] } | undefined;
  const flush = () => {
    if (pending) out += decodeText(Buffer.concat(pending.bytes), pending.charset.replace(/\*.*$/, ''));
    pending = undefined;
  };
  for (const m of v.matchAll(ENCODED_WORD)) {
    const between = v.slice(last, m.index);
    const charset = m[1]!.toLowerCase();
    if (!pending || /\S/.test(between) || pending.charset !== charset) {
      flush();
      out += between;
      pending = { charset, bytes: [] };
    }
    pending.bytes.push(wordBytes(m[2]!, m[3]!));
    last = m.index + m[0].length;
  }
  flush();
  return out + v.slice(last);
}

export interface MailAddress {
  /** Decoded display name ('' when none). */
  name: string;
  /** The address as written, lower-cased ('' when the field has a name but no address). */
  address: string;
  /** Lower-case domain without a trailing dot ('' when none). */
  domain: string;
}

export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? '' : address.slice(at + 1).trim().toLowerCase().replace(/\.+$/, '').replace(/^\[|\]$/g, '');
}

/** The addresses of an address field (From, Reply-To, …), groups flattened, display names decoded. */
export function parseAddresses(value: string): MailAddress[] {
  const v = value.length > MAX_HEADER_VALUE_CHARS ? value.slice(0, MAX_HEADER_VALUE_CHARS) : value;
  return addressparser(v, { flatten: true }).map((a) => {
    const address = (a.address ?? '').trim().toLowerCase();
    return { name: decodeHeaderWords(a.name ?? '').trim(), address, domain: domainOf(address) };
  });
}

/**
 * Values of a top-level header, in order (keys are lower-case in ParsedMessage). ParsedMessage keeps header bytes
 * as Latin-1 characters: raw 8-bit text (UTF-8 under SMTPUTF8, or Shift_JIS from a sloppy mailer) is decoded here.
 */
export function headerValues(parsed: ParsedMessage, key: string): string[] {
  return parsed.headers
    .filter((h) => h.key === key)
    .map((h) => (/[\u0080-\u00ff]/.test(h.value) ? decodeText(Buffer.from(h.value, 'latin1'), null) : h.value));
}
