/**
 * Raw test mails built byte by byte, the way Japanese mailers write them: a body in any charset (ISO-2022-JP,
 * Shift_JIS, EUC-JP, UTF-8), attachments in base64 with RFC 2231 file names in the charset given. No library in
 * between that would normalise what the sanitizer must cope with.
 */
import { randomBytes } from 'node:crypto';
import Encoding from 'encoding-japanese';
import iconv from 'iconv-lite';

export type Charset = 'iso-2022-jp' | 'shift_jis' | 'euc-jp' | 'utf-8';

export function encodeText(text: string, charset: Charset): Buffer {
  if (charset === 'iso-2022-jp') return Buffer.from(Encoding.convert(Encoding.stringToCode(text), { to: 'JIS', from: 'UNICODE' }));
  if (charset === 'shift_jis') return iconv.encode(text, 'cp932');
  if (charset === 'euc-jp') return iconv.encode(text, 'euc-jp');
  return Buffer.from(text, 'utf8');
}

export interface Attachment {
  filename: string;
  contentType: string;
  data: Buffer;
  /** Charset of the RFC 2231 file name (default utf-8). */
  nameCharset?: Charset;
}

export interface MailSpec {
  from?: string;
  to?: string;
  subject?: string; // ASCII, or given pre-encoded (=?…?=)
  messageId?: string;
  text?: { body: string; charset: Charset };
  html?: { body: string; charset: Charset };
  attachments?: Attachment[];
  extraHeaders?: string[];
}

function base64Lines(data: Buffer): string {
  return (data.toString('base64').match(/.{1,76}/g) ?? []).join('\r\n');
}

/** RFC 2231 `filename*=charset''%XX…`, percent-encoding every byte outside the attribute-char set. */
function rfc2231(name: string, charset: Charset): string {
  const bytes = encodeText(name, charset);
  let out = '';
  for (const b of bytes) out += /[A-Za-z0-9!#$&+.^_`|~-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return `${charset.toUpperCase()}''${out}`;
}

function textPart(type: 'plain' | 'html', body: string, charset: Charset): string {
  const bytes = encodeText(body.replace(/\r?\n/g, '\r\n'), charset);
  if (charset === 'iso-2022-jp') return `Content-Type: text/${type}; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n${bytes.toString('latin1')}`;
  return `Content-Type: text/${type}; charset=${charset}\r\nContent-Transfer-Encoding: base64\r\n\r\n${base64Lines(bytes)}`;
}

/** The whole message, CRLF line ends, as a Buffer of its exact bytes. */
export function buildMail(spec: MailSpec): Buffer {
  const b = () => `=_b${randomBytes(8).toString('hex')}`;
  const head = [
    `From: ${spec.from ?? 'sender@example.net'}`,
    `To: ${spec.to ?? 'user@town-b.example.lg.jp'}`,
    `Subject: ${spec.subject ?? 'test'}`,
    'Date: Thu, 03 Dec 2026 10:00:00 +0900',
    `Message-ID: ${spec.messageId ?? `<${randomBytes(6).toString('hex')}@example.net>`}`,
    'MIME-Version: 1.0',
    ...(spec.extraHeaders ?? []),
  ];
  let body: string;
  const text = spec.text && textPart('plain', spec.text.body, spec.text.charset);
  const html = spec.html && textPart('html', spec.html.body, spec.html.charset);
  if (text && html) {
    const alt = b();
    body = `Content-Type: multipart/alternative; boundary="${alt}"\r\n\r\n--${alt}\r\n${text}\r\n--${alt}\r\n${html}\r\n--${alt}--\r\n`;
  } else {
    body = text ?? html ?? textPart('plain', '本文です。', 'utf-8');
  }
  const atts = spec.attachments ?? [];
  if (!atts.length) return Buffer.from(`${head.join('\r\n')}\r\n${body}`, 'latin1');
  const mixed = b();
  const parts = atts.map(
    (a) =>
      `Content-Type: ${a.contentType}\r\nContent-Transfer-Encoding: base64\r\n` +
      `Content-Disposition: attachment; filename*=${rfc2231(a.filename, a.nameCharset ?? 'utf-8')}\r\n\r\n${base64Lines(a.data)}`,
  );
  return Buffer.from(
    `${head.join('\r\n')}\r\nContent-Type: multipart/mixed; boundary="${mixed}"\r\n\r\n` +
      [body, ...parts].map((p) => `--${mixed}\r\n${p}\r\n`).join('') +
      `--${mixed}--\r\n`,
    'latin1',
  );
}

/** `text` as one RFC 2047 encoded-word in `charset` (B or Q encoding), the way Japanese mailers write display names and subjects. */
export function encodedWord(text: string, charset: Charset, encoding: 'B' | 'Q' = 'B'): string {
  const bytes = encodeText(text, charset);
  const data = encoding === 'B' ? bytes.toString('base64') : [...bytes].map((b) => `=${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  return `=?${charset.toUpperCase()}?${encoding}?${data}?=`;
}
