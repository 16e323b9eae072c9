/**
 * The Received: trace header (RFC 5321 §4.4) the ingress prepends to every accepted message, laid out like
 * Postfix's so that operators and downstream filters read it the usual way:
 *
 *   Received: from helo.example (rdns.example [192.0.2.1])
 *   	(using TLS_AES_256_GCM_SHA384)
 *   	by mx.pref.example.lg.jp (Sekisho) with ESMTPS id 01HXYZ
 *   	for <user@city-a.example.lg.jp>; Mon, 6 Jan 2025 09:00:00 +0900
 *
 * Every value except the protocol comes from outside: the HELO name and the recipient from the client, the
 * rDNS name from whoever runs the client's reverse zone. Each is reduced to characters that cannot end the
 * header (CR, LF), open or close a comment early (parentheses) or forge another clause, and is length-capped,
 * so a hostile client cannot inject a header or a fake "by" hop into the trace.
 *
 * Lines are folded to at most MAX_FOLDED_LINE_CHARS characters (a tab counts as one). Only a single token longer
 * than that (a HELO or rDNS name near its cap) can make a line longer; every line stays far below the
 * RFC 5322 hard limit of 998 octets.
 */

/** Longest line, in characters, the folder aims for: RFC 5322 §2.1.1 asks for fewer than 78. */
export const MAX_FOLDED_LINE_CHARS = 77;
/**
 * Cap, in characters, on the HELO and rDNS names: a DNS name is at most 253 characters (RFC 1035), and an
 * address literal far less, so only garbage is cut.
 */
export const MAX_HOST_NAME_CHARS = 255;
/** Cap, in characters, on the recipient: RFC 5321 §4.5.3.1.3 limits a path to 256 octets. */
export const MAX_RECIPIENT_CHARS = 256;
/** Cap, in characters, on the queue id and TLS cipher comment: ours are 30 and 40 at most. */
export const MAX_TOKEN_CHARS = 100;

export type ReceivedProtocol = 'SMTP' | 'ESMTP' | 'ESMTPS' | 'ESMTPSA' | 'UTF8SMTP' | 'UTF8SMTPS';

export interface ReceivedOptions {
  /** The name the client gave in HELO/EHLO, as sent (hostile). */
  heloName: string;
  /** The client's verified reverse-DNS name, null when it has none. */
  clientHostname: string | null;
  clientIp: string;
  /** Our hostname (config `hostname`). */
  byHost: string;
  protocol: ReceivedProtocol;
  queueId: string;
  /** Negotiated TLS cipher name, null for a cleartext session. */
  tlsCipher: string | null;
  /** The recipient, only when the message has exactly one (more would disclose Bcc recipients to each other). */
  recipient: string | null;
  date: Date;
}

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

/**
 * An RFC 5322 §3.3 date-time ("Mon, 6 Jan 2025 09:00:00 +0900") in the given offset from UTC, in minutes east;
 * by default the process's local zone, as Postfix does.
 */
export function formatRfc5322Date(date: Date, offsetMinutes: number = -date.getTimezoneOffset()): string {
  const shifted = new Date(date.getTime() + offsetMinutes * 60_000);
  const pad = (n: number): string => String(n).padStart(2, '0');
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return (
    `${DAY_NAMES[shifted.getUTCDay()]}, ${shifted.getUTCDate()} ${MONTH_NAMES[shifted.getUTCMonth()]} ${shifted.getUTCFullYear()} ` +
    `${pad(shifted.getUTCHours())}:${pad(shifted.getUTCMinutes())}:${pad(shifted.getUTCSeconds())} ` +
    `${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`
  );
}

/**
 * A host name or address literal reduced to the characters a domain or literal can hold (letters, digits,
 * '.', '-', '_', ':', '[', ']'). Anything else — spaces, parentheses, CR/LF, 8-bit bytes — is dropped, so the
 * result is one token that cannot close a comment or start a new clause.
 */
function sanitizeHost(name: string): string {
  return name.replace(/[^A-Za-z0-9.\-_:[\]]/g, '').slice(0, MAX_HOST_NAME_CHARS);
}

/** An IP address in RFC 5321 address-literal form: "[192.0.2.1]", "[IPv6:2001:db8::1]". */
function addressLiteral(ip: string): string {
  let clean = ip.replace(/[^0-9A-Fa-f.:]/g, '').slice(0, MAX_TOKEN_CHARS);
  // Node reports IPv4 clients of a dual-stack socket as IPv4-mapped IPv6; the trace shows the real address.
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(clean);
  if (mapped?.[1] !== undefined) clean = mapped[1];
  if (clean === '') return '[unknown]';
  return clean.includes(':') ? `[IPv6:${clean}]` : `[${clean}]`;
}

/** The first `max` characters (code points, so a surrogate pair is never split in two). */
function truncate(text: string, max: number): string {
  return text.length <= max ? text : Array.from(text).slice(0, max).join('');
}

/**
 * A mailbox without anything that could end the angle brackets or the header: C0/C1 controls (CR, LF…), DEL,
 * the Unicode line separators, white space, '<' and '>'. Non-ASCII letters stay (SMTPUTF8 recipients).
 */
function sanitizeRecipient(address: string): string {
  let out = '';
  for (const ch of address) {
    const c = ch.codePointAt(0) ?? 0;
    if (c <= 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029 || ch === '<' || ch === '>') continue;
    out += ch;
  }
  return truncate(out, MAX_RECIPIENT_CHARS);
}

/** Comment text: printable ASCII without parentheses or backslash (which would end or escape the comment). */
function sanitizeCommentText(text: string): string {
  return text.replace(/[^\u0021-\u007e ]|[()\\]/g, '').replace(/ +/g, ' ').trim().slice(0, MAX_TOKEN_CHARS);
}

/**
 * Splits one logical line at spaces into lines of at most MAX_FOLDED_LINE_CHARS characters, continuation
 * lines starting with a tab. A token longer than the limit stays whole on its own line.
 */
function foldLine(line: string, first: boolean): string[] {
  const words = line.split(' ');
  const out: string[] = [];
  let current = first ? '' : '\t';
  let hasWord = false;
  for (const word of words) {
    if (!hasWord) {
      current += word;
      hasWord = true;
    } else if (current.length + 1 + word.length <= MAX_FOLDED_LINE_CHARS) {
      current += ` ${word}`;
    } else {
      out.push(current);
      current = `\t${word}`;
    }
  }
  out.push(current);
  return out;
}

/** The complete Received: header, folded, ending in CRLF, ready to be prepended to the message. */
export function receivedHeader(o: ReceivedOptions): string {
  const helo = sanitizeHost(o.heloName) || 'unknown';
  const rdns = (o.clientHostname === null ? '' : sanitizeHost(o.clientHostname)) || 'unknown';
  const byHost = sanitizeHost(o.byHost) || 'localhost';
  const queueId = o.queueId.replace(/[^A-Za-z0-9._-]/g, '').slice(0, MAX_TOKEN_CHARS) || 'unknown';
  const cipher = o.tlsCipher === null ? '' : sanitizeCommentText(o.tlsCipher);
  const recipient = o.recipient === null ? '' : sanitizeRecipient(o.recipient);
  const date = formatRfc5322Date(o.date);

  const logical: string[] = [`Received: from ${helo} (${rdns} ${addressLiteral(o.clientIp)})`];
  if (cipher !== '') logical.push(`(using ${cipher})`);
  const by = `by ${byHost} (Sekisho) with ${o.protocol} id ${queueId}`;
  if (recipient !== '') {
    logical.push(by, `for <${recipient}>; ${date}`);
  } else {
    logical.push(`${by};`, date);
  }
  return logical.flatMap((line, i) => foldLine(line, i === 0)).join('\r\n') + '\r\n';
}
