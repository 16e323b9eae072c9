/**
 * Delivery status notifications (RFC 3464): the bounce ("failed") and warning ("delayed") messages the delivery
 * stage sends back to the envelope sender when the downstream server of a tenant refuses a recipient, or keeps
 * deferring it.
 *
 * The message is multipart/report (RFC 6522) with three parts: a bilingual explanation (Japanese first, then
 * English), the machine-readable message/delivery-status, and text/rfc822-headers with the original message's
 * headers only. The body is never returned: a bounce must not become a way to reflect content (spam, malware)
 * at a forged sender.
 *
 * Output is 7bit-clean with CRLF line endings and no line over 998 octets, so any relay accepts it: non-ASCII
 * text is base64, 8-bit original headers are quoted-printable, header words are RFC 2047 encoded-words (the MIME
 * writing is src/mime/compose.ts's). Every
 * value that reaches a header or a delivery-status field (downstream reply, address, host name, queue id) may be
 * hostile — a downstream server's reply is not ours — so each is stripped of CR/LF and other controls and
 * length-capped before use; no input can add a header or a field.
 */
import { randomBytes } from 'node:crypto';
import libmime from 'libmime';
import { composeMessage, FOLD_LINE_CHARS, MAX_LINE_OCTETS, type HeaderLine, type MimeNode } from '../mime/compose.ts';
import { formatRfc5322Date } from '../smtp/received.ts';

/**
 * Cap, in characters, on a downstream reply in Diagnostic-Code. Multi-line replies joined together stay far below
 * it (Postfix keeps about 500); with the field name it also keeps an unbreakable reply under MAX_LINE_OCTETS.
 */
export const MAX_DIAGNOSTIC_CHARS = 900;
/** Cap, in characters, on an address: RFC 5321 allows 64 (local part) + 1 + 255 (domain). */
export const MAX_ADDRESS_CHARS = 320;
/** Cap, in characters, on a host name: a DNS name is at most 253 characters. */
export const MAX_HOST_CHARS = 255;
/** Cap, in characters, on the queue id: ours are about 30. */
export const MAX_QUEUE_ID_CHARS = 100;
/**
 * Cap, in octets, on the returned original headers (Postfix's header_size_limit). Ordinary mail has 2–20 KiB of
 * headers; a message built to make its bounce large is cut at a line boundary.
 */
export const MAX_ORIGINAL_HEADER_BYTES = 100 * 1024;
/** Characters of one RFC 2047 encoded-word in the To: group name (under RFC 2047's 75). */
const ENCODED_WORD_CHARS = 60;

export interface DsnRecipient {
  address: string;
  /** RFC 3463 status, e.g. "5.1.1" or "4.4.1" (see statusFromReply). */
  status: string;
  action: 'failed' | 'delayed';
  /** Downstream reply, e.g. "550 5.1.1 <x@y>: user unknown", or a connection error; null when none. */
  diagnostic: string | null;
  /** Host name of the downstream server, null when no connection was made. */
  remoteMta: string | null;
  /** Epoch milliseconds of the last delivery attempt. */
  lastAttemptAt: number | null;
}

export interface DsnInput {
  /** Our hostname (config `hostname`). */
  reportingMta: string;
  /** Our queue id of the original message. */
  originalMessageId: string;
  /** Epoch milliseconds when the ingress accepted the original. */
  arrivalDate: number;
  /** Envelope sender of the original; never '' (no DSN for a null sender — the caller guarantees it). */
  sender: string;
  recipients: DsnRecipient[];
  /** Header block of the original message; anything after its first empty line is ignored. */
  originalHeaders: Buffer;
  /** Epoch milliseconds; the Date header and Message-ID. Defaults to Date.now(). */
  now?: number;
  /** Right-hand side of the Message-ID; defaults to reportingMta. */
  messageIdDomain?: string;
  /** Epoch milliseconds until which delayed recipients are retried (Will-Retry-Until). */
  willRetryUntil?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// Status codes

/** Subject.detail for basic reply codes whose RFC 5321 meaning is unambiguous; others get ".0.0". */
const SUBJECT_DETAIL_BY_REPLY: Readonly<Record<number, string>> = {
  421: '4.1', // service not available: the host did not take the call (Postfix reports 4.4.1 too)
  500: '5.2', // syntax error, command unrecognised
  501: '5.4', // syntax error in parameters or arguments
  502: '5.1', // command not implemented
  503: '5.1', // bad sequence of commands (X.5.1 covers "out of sequence")
  504: '5.4', // command parameter not implemented
  530: '7.0', // authentication / STARTTLS required (RFC 3207, RFC 4954)
};

const ENHANCED_STATUS = /^([245])\.(\d{1,3})\.(\d{1,3})$/;

/**
 * Maps a downstream SMTP reply — or a failure to get one (code null: connection refused, timeout, TLS failure) —
 * to the RFC 3463 status of a DSN recipient.
 *
 * Class (the first digit):
 * - a 5xx reply is always 5: the server said the failure is permanent, and nothing we do changes that;
 * - a 4xx reply, no reply, or an unexpected one (2xx/3xx where a refusal was met) is 4, or 5 when `permanent`
 *   is true — the caller has given up (retry window expired, retries exhausted), so the recipient has failed
 *   and the status agrees with `Action: failed`. The subject and detail of the transient condition are kept:
 *   a mailbox that stayed full (4.2.2) is reported as 5.2.2.
 *
 * Subject.detail: the server's enhanced code when it sent a well-formed one, whatever class it claimed (RFC 5321
 * makes the basic code authoritative, so a "550 4.1.1" is a permanent 5.1.1); otherwise a mapping of the basic
 * code where its meaning is unambiguous (421 → X.4.1, 500–504 → X.5.x, 530 → X.7.0), X.0.0 for other 4xx/5xx
 * codes (550, 552 and 554 are used for too many different things to guess), X.4.1 ("no answer from host") when
 * there was no reply, and X.5.0 (protocol status) for a reply code that makes no sense there.
 */
export function statusFromReply(code: number | null, enhanced: string | null, permanent: boolean): string {
  const validCode = code !== null && Number.isInteger(code) && code >= 200 && code <= 599 ? code : null;
  const replyClass = validCode === null ? 0 : Math.floor(validCode / 100);
  const statusClass = replyClass === 5 || permanent ? '5' : '4';

  const match = enhanced === null ? null : ENHANCED_STATUS.exec(enhanced.trim());
  if (match !== null && match[1] !== '2') {
    return `${statusClass}.${Number(match[2])}.${Number(match[3])}`;
  }
  if (code === null) return `${statusClass}.4.1`;
  if (replyClass !== 4 && replyClass !== 5) return `${statusClass}.5.0`;
  return `${statusClass}.${SUBJECT_DETAIL_BY_REPLY[validCode ?? 0] ?? '0.0'}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Sanitizing

/** Replaces C0/C1 controls (CR, LF, NUL, TAB, ESC…), DEL and the Unicode line/paragraph separators with a space. */
function stripControls(text: string): string {
  let out = '';
  for (const ch of text) {
    const c = ch.codePointAt(0) ?? 0;
    out += c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029 ? ' ' : ch;
  }
  return out;
}

/** The first `max` characters (code points, so a surrogate pair is never split in two). */
function truncate(text: string, max: number): string {
  return text.length <= max ? text : Array.from(text).slice(0, max).join('');
}

/** One line of text: controls gone, runs of spaces collapsed, trimmed, capped. */
function oneLine(text: string, maxChars: number): string {
  return truncate(stripControls(text).replace(/ {2,}/g, ' ').trim(), maxChars).trimEnd();
}

/** Printable US-ASCII only (for delivery-status fields, which are 7bit text): anything else becomes '?'. */
function asciiLine(text: string, maxChars: number): string {
  return oneLine(text, maxChars).replace(/[^\u0020-\u007e]/g, '?');
}

/** A host name or address literal: letters, digits, '.', '-', '_', ':', '[', ']'. */
function sanitizeHost(name: string): string {
  return name.replace(/[^A-Za-z0-9.\-_:[\]]/g, '').slice(0, MAX_HOST_CHARS);
}

/** A mailbox: no controls, spaces or angle brackets (nothing that can close "<…>" or the header). */
function sanitizeAddress(address: string): string {
  return truncate(stripControls(address).replace(/[\s<>]/g, ''), MAX_ADDRESS_CHARS);
}

function isPrintableAscii(text: string): boolean {
  return /^[\u0020-\u007e]*$/.test(text);
}

/**
 * An address in a delivery-status field: "rfc822; user@example.jp" when it is ASCII, otherwise RFC 6533's
 * "utf-8" type in utf-8-addr-xtext form ("utf-8; \x{7530}\x{4E2D}@example.jp"), which keeps the part 7bit.
 */
function typedAddress(address: string): string {
  if (isPrintableAscii(address)) return `rfc822; ${address}`;
  let xtext = '';
  for (const ch of address) {
    const c = ch.codePointAt(0) ?? 0;
    const qchar = c >= 0x21 && c <= 0x7e && c !== 0x2b && c !== 0x3d && c !== 0x5c;
    xtext += qchar ? ch : `\\x{${c.toString(16).toUpperCase().padStart(2, '0')}}`;
  }
  return `utf-8; ${xtext}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding

/**
 * "Name: token token …" folded at the spaces between tokens so that lines stay within FOLD_LINE_CHARS where a
 * token allows; continuation lines start with a space. Tokens are ASCII without CR/LF (callers ensure it).
 */
function foldField(name: string, tokens: string[]): string {
  const lines: string[] = [];
  let current = `${name}:`;
  for (const token of tokens) {
    if (token === '') continue;
    if (current.length + 1 + token.length > FOLD_LINE_CHARS && current.trim() !== `${name}:`) {
      lines.push(current);
      current = ` ${token}`;
    } else {
      current += ` ${token}`;
    }
  }
  lines.push(current);
  return lines.join('\r\n');
}

/**
 * The original header block as lines (without line breaks): cut at the first empty line, so a body passed by
 * mistake is never returned, and at MAX_ORIGINAL_HEADER_BYTES on a line boundary. CRLF, bare LF and bare CR all
 * end a line.
 */
function originalHeaderLines(raw: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let size = 0;
  let start = 0;
  while (start < raw.length) {
    let end = start;
    // Bounded scan: a "line" longer than the whole cap is not looked at further.
    while (end < raw.length && raw[end] !== 0x0a && raw[end] !== 0x0d && end - start <= MAX_ORIGINAL_HEADER_BYTES) end++;
    if (end === start) break; // the empty line that ends the header block
    size += end - start + 2;
    if (size > MAX_ORIGINAL_HEADER_BYTES) break;
    lines.push(raw.subarray(start, end));
    start = raw[end] === 0x0d && raw[end + 1] === 0x0a ? end + 2 : end + 1;
  }
  return lines;
}

/** The text/rfc822-headers part: 7bit when the headers are, quoted-printable otherwise. */
function rfc822HeadersPart(raw: Buffer): MimeNode {
  const lines = originalHeaderLines(raw);
  // Each header line keeps its line break, the last one included.
  const body = Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\r\n')]));
  const sevenBit = lines.every((l) => l.length <= MAX_LINE_OCTETS && l.every((b) => b > 0 && b < 0x80 && b !== 0x0d && b !== 0x0a));
  const description = 'Undelivered Message Headers';
  return sevenBit
    ? { kind: 'leaf', contentType: 'text/rfc822-headers', encoding: '7bit', description, body }
    : // RFC 6532 headers are UTF-8; other 8-bit bytes are shown as the decoder sees fit.
      { kind: 'leaf', contentType: 'text/rfc822-headers; charset=UTF-8', encoding: 'quoted-printable', description, body };
}

// ---------------------------------------------------------------------------------------------------------------
// The message

const SUBJECT_FAILED = '配送不能通知 / Undelivered Mail Returned to Sender';
const SUBJECT_DELAYED = '配送遅延通知 / Delayed Mail (still being retried)';

interface CleanRecipient {
  address: string;
  status: string;
  action: 'failed' | 'delayed';
  diagnosticAscii: string | null;
  diagnosticText: string | null;
  remoteMta: string | null;
  lastAttemptAt: number | null;
}

/** The status as given when it is well-formed and fits the action; otherwise the class default. */
function cleanStatus(status: string, action: 'failed' | 'delayed'): string {
  const match = ENHANCED_STATUS.exec(status.trim());
  if (match === null || match[1] === '2') return action === 'failed' ? '5.0.0' : '4.0.0';
  const statusClass = action === 'delayed' ? '4' : match[1];
  return `${statusClass}.${Number(match[2])}.${Number(match[3])}`;
}

function cleanRecipient(r: DsnRecipient): CleanRecipient {
  const remote = r.remoteMta === null ? '' : sanitizeHost(r.remoteMta);
  const diagnosticAscii = r.diagnostic === null ? '' : asciiLine(r.diagnostic, MAX_DIAGNOSTIC_CHARS);
  const diagnosticText = r.diagnostic === null ? '' : oneLine(r.diagnostic, MAX_DIAGNOSTIC_CHARS);
  return {
    address: sanitizeAddress(r.address),
    status: cleanStatus(r.status, r.action),
    action: r.action,
    diagnosticAscii: diagnosticAscii === '' ? null : diagnosticAscii,
    diagnosticText: diagnosticText === '' ? null : diagnosticText,
    remoteMta: remote === '' ? null : remote,
    lastAttemptAt: r.lastAttemptAt,
  };
}

function dateOf(ms: number): string {
  return formatRfc5322Date(new Date(ms));
}

/** The bilingual human-readable part, as text with CRLF line endings. */
function explanation(input: DsnInput, mta: string, queueId: string, recipients: CleanRecipient[]): string {
  const failed = recipients.some((r) => r.action === 'failed');
  const delayed = recipients.some((r) => r.action === 'delayed');
  const until = input.willRetryUntil === undefined ? null : dateOf(input.willRetryUntil);
  const lines: string[] = [`このメールは ${mta} のメール配送システムが自動的に送信しています。`, ''];
  if (failed) {
    lines.push(
      'お送りいただいたメールは、以下の宛先に配送できませんでした。宛先のメールサーバーが受け取りを拒否したか、' +
        '再試行の期限を過ぎたためです。宛先のアドレスに誤りがないかご確認ください。お心当たりのない場合は、' +
        'この通知を破棄してください。元のメールのヘッダーを添付しています(本文は添付していません)。',
      '',
    );
  }
  if (delayed) {
    lines.push(
      'お送りいただいたメールは、以下の宛先にまだ配送できていません。配送は自動的に再試行しています' +
        (until === null ? '' : `(${until} まで)`) +
        '。再送していただく必要はありません。期限までに配送できなかった場合は、あらためて通知します。',
      '',
    );
  }
  lines.push(`This is an automatically generated message from the mail delivery system at ${mta}.`, '');
  if (failed) {
    lines.push(
      'Your message could not be delivered to the recipients listed below: the receiving mail server refused it, ' +
        'or delivery was retried until the time limit ran out. Please check the addresses. If you did not send ' +
        'this message, please discard this notice. The headers of your message are attached; its body is not.',
      '',
    );
  }
  if (delayed) {
    lines.push(
      'Your message has not yet been delivered to the recipients listed below. Delivery is being retried ' +
        `automatically${until === null ? '' : ` until ${until}`}; you do not need to send it again. If it still ` +
        'cannot be delivered by then, you will receive another notice.',
      '',
    );
  }
  lines.push(`受付番号 / Queue ID: ${queueId}`, `受付日時 / Received: ${dateOf(input.arrivalDate)}`, '');
  for (const r of recipients) {
    const result = r.action === 'failed' ? '配送不能 / failed' : '配送遅延 / delayed';
    lines.push(`宛先 / Recipient: <${r.address}>`, `  結果 / Result: ${result} (${r.status})`);
    if (r.remoteMta !== null) lines.push(`  相手サーバー / Remote server: ${r.remoteMta}`);
    if (r.diagnosticText !== null) lines.push(`  応答 / Reply: ${r.diagnosticText}`);
    lines.push('');
  }
  return lines.join('\r\n');
}

/** Diagnostic-Code type: "smtp" for an SMTP reply, our own X- type for anything else (a connection error). */
function diagnosticField(diagnostic: string): string[] {
  const type = /^[245]\d\d(?:[ -]|$)/.test(diagnostic) ? 'smtp;' : 'X-Sekisho;';
  return [type, ...diagnostic.split(' ')];
}

/** The message/delivery-status body: per-message fields, then one block per recipient. */
function deliveryStatus(input: DsnInput, mta: string, queueId: string, recipients: CleanRecipient[]): string {
  const blocks: string[] = [
    [
      foldField('Reporting-MTA', ['dns;', mta]),
      foldField('X-Sekisho-Queue-ID', [queueId]),
      foldField('Arrival-Date', dateOf(input.arrivalDate).split(' ')),
    ].join('\r\n'),
  ];
  for (const r of recipients) {
    const fields = [
      foldField('Final-Recipient', typedAddress(r.address).split(' ')),
      foldField('Action', [r.action]),
      foldField('Status', [r.status]),
    ];
    if (r.remoteMta !== null) fields.push(foldField('Remote-MTA', ['dns;', r.remoteMta]));
    if (r.diagnosticAscii !== null) fields.push(foldField('Diagnostic-Code', diagnosticField(r.diagnosticAscii)));
    if (r.lastAttemptAt !== null) fields.push(foldField('Last-Attempt-Date', dateOf(r.lastAttemptAt).split(' ')));
    if (r.action === 'delayed' && input.willRetryUntil !== undefined) {
      fields.push(foldField('Will-Retry-Until', dateOf(input.willRetryUntil).split(' ')));
    }
    blocks.push(fields.join('\r\n'));
  }
  return blocks.join('\r\n\r\n');
}

/** The To: header: the sender's address, or — when it is non-ASCII and cannot appear in a 7bit header — an empty
 * group whose RFC 2047-encoded name shows the address to the reader (delivery uses the envelope anyway). */
function toField(sender: string): HeaderLine {
  if (isPrintableAscii(sender)) return { name: 'To', value: `<${sender}>` };
  const words = libmime.encodeWord(sender, 'B', ENCODED_WORD_CHARS).split(' ');
  return { name: 'To', raw: ` ${words.join('\r\n ')}:;` };
}

/** Builds the complete DSN message: raw bytes, CRLF line endings, 7bit-clean. */
export function buildDsn(input: DsnInput): Buffer {
  if (input.recipients.length === 0) throw new RangeError('buildDsn: a DSN needs at least one recipient');
  const now = input.now ?? Date.now();
  const mta = sanitizeHost(input.reportingMta) || 'localhost';
  const queueId = input.originalMessageId.replace(/[^A-Za-z0-9._-]/g, '').slice(0, MAX_QUEUE_ID_CHARS) || 'unknown';
  const idDomain = sanitizeHost(input.messageIdDomain ?? '') || mta;
  const sender = sanitizeAddress(input.sender);
  const recipients = input.recipients.map(cleanRecipient);
  const failed = recipients.some((r) => r.action === 'failed');

  const headers: HeaderLine[] = [
    { name: 'From', value: `Mail Delivery System <MAILER-DAEMON@${mta}>` },
    toField(sender),
    { name: 'Subject', value: failed ? SUBJECT_FAILED : SUBJECT_DELAYED },
    { name: 'Date', value: dateOf(now) },
    { name: 'Message-ID', value: `<${now.toString(36)}.${queueId}.${randomBytes(6).toString('hex')}@${idDomain}>` },
    { name: 'Auto-Submitted', value: 'auto-replied' },
  ];
  return composeMessage(headers, {
    kind: 'multipart',
    contentType: 'multipart/report; report-type=delivery-status',
    parts: [
      {
        kind: 'leaf',
        contentType: 'text/plain; charset=UTF-8',
        encoding: 'base64',
        description: 'Notification',
        body: explanation(input, mta, queueId, recipients),
      },
      {
        kind: 'leaf',
        contentType: 'message/delivery-status',
        encoding: '7bit',
        description: 'Delivery report',
        body: deliveryStatus(input, mta, queueId, recipients),
      },
      rfc822HeadersPart(input.originalHeaders),
    ],
  });
}
