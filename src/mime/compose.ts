/**
 * A small MIME writer on libmime, libbase64 and libqp: every message Sekisho writes itself (DSNs, sanitized
 * messages) is built here. Output has CRLF line endings and no line over 998 octets; header values are RFC 2047
 * encoded when not ASCII and folded at 78 characters; file names are written both ways Japanese mail clients
 * read them (RFC 2231 `filename*` and an RFC 2047 `name`); boundaries are random and checked against the content.
 *
 * The rule not to break: no value can add a header or end the header section. Encoded values lose their control
 * characters; raw values may only carry folded continuation lines; a declared 7bit/8bit body that does not fit
 * its encoding is refused, never sent as it is.
 */
import { randomBytes } from 'node:crypto';
import libbase64 from 'libbase64';
import libmime from 'libmime';
import libqp from 'libqp';

/** RFC 5322 §2.1.1 hard limit on a line, in octets, excluding CRLF. */
export const MAX_LINE_OCTETS = 998;
/** Line length, in characters, the header folder aims for (RFC 5322 §2.1.1 "SHOULD be no more than 78"). */
export const FOLD_LINE_CHARS = 78;
/** Base64 and quoted-printable line length in characters (RFC 2045 §6.7, §6.8). */
const ENCODED_LINE_CHARS = 76;
/** Characters of one RFC 2047 encoded-word: under the 75 of RFC 2047 §2, and "Subject: " plus one fits in 78. */
const ENCODED_WORD_CHARS = 60;
/** Attempts at a boundary that occurs nowhere in the content; 96 random bits make a second one all but unheard of. */
const MAX_BOUNDARY_ATTEMPTS = 16;

export type MimeNode =
  | {
      kind: 'leaf';
      /** With parameters, e.g. 'text/plain; charset=utf-8'. */
      contentType: string;
      body: Buffer | string;
      /** Default: 7bit when the body fits it, else base64. quoted-printable and 7bit/8bit take text (line breaks become CRLF). */
      encoding?: 'base64' | 'quoted-printable' | '7bit' | '8bit';
      /** Any Unicode: written as RFC 2231 `filename*` and as an RFC 2047 `name` parameter. */
      filename?: string;
      disposition?: 'attachment' | 'inline';
      description?: string;
      headers?: [string, string][];
    }
  | {
      kind: 'multipart';
      /** 'multipart/mixed' | 'multipart/report; report-type=delivery-status' …; the boundary is added. */
      contentType: string;
      parts: MimeNode[];
      headers?: [string, string][];
    };

/** Header lines given raw (the field body after "Name:", copied as received) or encoded (Unicode → RFC 2047, folded at 78). */
export type HeaderLine = { name: string; raw: string } | { name: string; value: string };

/** Fields composeMessage writes itself from the MIME tree. */
const MIME_FIELDS = new Set(['mime-version', 'content-type', 'content-transfer-encoding']);

const CRLF = Buffer.from('\r\n', 'latin1');

function checkName(name: string): void {
  // RFC 5322 §2.2: printable US-ASCII except the colon.
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(name)) throw new RangeError(`invalid header name ${JSON.stringify(name.slice(0, 80))}`);
}

/** Replaces C0/C1 controls (CR, LF, NUL, TAB, ESC…), DEL and the Unicode line/paragraph separators with a space. */
function stripControls(text: string): string {
  // eslint-disable-next-line no-control-regex -- the controls are what is matched
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, ' ');
}

function isPrintableAscii(text: string): boolean {
  return /^[\u0020-\u007e]*$/.test(text);
}

/**
 * "Name: value" folded at spaces so that lines stay within FOLD_LINE_CHARS where a word allows; unfolding gives
 * back the value exactly. The value is ASCII without CR/LF (callers ensure it).
 */
function fold(name: string, value: string): string {
  let out = '';
  let current = `${name}:`;
  for (const word of value.split(' ')) {
    if (word !== '' && current.length + 1 + word.length > FOLD_LINE_CHARS && current.trim() !== `${name}:`) {
      out += `${current}\r\n`;
      current = ` ${word}`;
    } else {
      current += ` ${word}`;
    }
  }
  return `${out}${current}\r\n`;
}

/** An unstructured value as it goes on the wire: controls gone, non-ASCII runs as RFC 2047 encoded-words. */
function encodeValue(value: string): string {
  const clean = stripControls(value);
  // Text that merely looks like an encoded-word is encoded as a whole, so a decoder cannot misread it.
  if (clean.includes('=?')) return libmime.encodeWord(clean, 'B', ENCODED_WORD_CHARS);
  // libmime leaves ASCII words alone and encodes the run from the first non-ASCII word to the last.
  return isPrintableAscii(clean) ? clean : libmime.encodeWords(clean, 'B', ENCODED_WORD_CHARS);
}

/** A raw field body: bare CR or LF become CRLF; every line break must start a continuation line. */
function rawValue(name: string, raw: string): string {
  const value = raw.replace(/\r\n|\r|\n/g, '\r\n');
  if (/\r\n(?![ \t])/.test(value) || value.includes('\0')) {
    throw new RangeError(`raw header ${name}: a line break not followed by a space or tab, or a NUL, would break the header section`);
  }
  for (const line of value.split('\r\n')) {
    if (Buffer.byteLength(line) + name.length + 1 > MAX_LINE_OCTETS) throw new RangeError(`raw header ${name}: a line exceeds ${MAX_LINE_OCTETS} octets`);
  }
  return `${name}:${value}\r\n`;
}

/** One header field, folded, with its CRLF. */
export function encodeHeader(h: HeaderLine): string {
  checkName(h.name);
  return 'raw' in h ? rawValue(h.name, h.raw) : fold(h.name, encodeValue(h.value));
}

/** A quoted-string parameter value (RFC 2045 §5.1): quotes and backslashes escaped. */
function quoted(text: string): string {
  return `"${text.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** Line breaks as CRLF (text bodies). */
function crlf(body: Buffer): Buffer {
  return Buffer.from(body.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');
}

function wrapLines(text: string, width: number): string {
  const lines: string[] = [];
  for (let i = 0; i < text.length; i += width) lines.push(text.slice(i, i + width));
  return lines.join('\r\n');
}

/** Quoted-printable of CRLF text with soft line breaks so no encoded line exceeds ENCODED_LINE_CHARS. */
function quotedPrintable(body: Buffer): string {
  return crlf(body)
    .toString('latin1')
    .split('\r\n')
    .map((line) => {
      const encoded = libqp.encode(Buffer.from(line, 'latin1'));
      const out: string[] = [];
      let rest = encoded;
      while (rest.length > ENCODED_LINE_CHARS) {
        // Never split an =XX escape: cut before an '=' that is within the last two characters.
        let cut = ENCODED_LINE_CHARS - 1;
        const eq = rest.lastIndexOf('=', cut - 1);
        if (eq > cut - 3) cut = eq;
        out.push(`${rest.slice(0, cut)}=`);
        rest = rest.slice(cut);
      }
      out.push(rest);
      return out.join('\r\n');
    })
    .join('\r\n');
}

function fitsLines(body: Buffer): boolean {
  let start = 0;
  for (let i = 0; i <= body.length; i++) {
    if (i === body.length || body[i] === 0x0a) {
      const end = i > start && body[i - 1] === 0x0d ? i - 1 : i;
      if (end - start > MAX_LINE_OCTETS) return false;
      start = i + 1;
    }
  }
  return true;
}

function fits7bit(body: Buffer): boolean {
  return body.every((b) => b > 0 && b < 0x80) && fitsLines(body);
}

/** The encoded body and the encoding that was used. */
function encodeBody(node: Extract<MimeNode, { kind: 'leaf' }>): { encoding: string; body: Buffer } {
  const raw = typeof node.body === 'string' ? Buffer.from(node.body, 'utf8') : node.body;
  const encoding = node.encoding ?? (fits7bit(crlf(raw)) ? '7bit' : 'base64');
  switch (encoding) {
    case 'base64':
      return { encoding, body: Buffer.from(wrapLines(libbase64.encode(raw), ENCODED_LINE_CHARS), 'latin1') };
    case 'quoted-printable':
      return { encoding, body: Buffer.from(quotedPrintable(raw), 'latin1') };
    case '7bit':
    case '8bit': {
      const body = crlf(raw);
      if (body.includes(0)) throw new RangeError(`a ${encoding} body must not contain NUL octets (${node.contentType})`);
      if (encoding === '7bit' && body.some((b) => b >= 0x80)) throw new RangeError(`a 7bit body must not contain 8-bit octets (${node.contentType})`);
      if (!fitsLines(body)) throw new RangeError(`a ${encoding} body has a line over ${MAX_LINE_OCTETS} octets (${node.contentType})`);
      return { encoding, body };
    }
  }
}

function extraHeaders(headers: [string, string][] | undefined): string {
  return (headers ?? []).map(([name, value]) => encodeHeader({ name, value })).join('');
}

/** Content-Type value with a name parameter: plain when it can be, else RFC 2047 words in quotes (as Outlook reads it). */
function withName(contentType: string, filename: string): string {
  const clean = stripControls(filename);
  const name = isPrintableAscii(clean) && !clean.includes('=?') ? clean : libmime.encodeWord(clean, 'B', ENCODED_WORD_CHARS);
  return `${contentType}; name=${quoted(name)}`;
}

interface Entity {
  head: string;
  body: Buffer;
}

function leaf(node: Extract<MimeNode, { kind: 'leaf' }>): Entity {
  const { encoding, body } = encodeBody(node);
  let head = fold('Content-Type', node.filename === undefined ? node.contentType : withName(node.contentType, node.filename));
  head += fold('Content-Transfer-Encoding', encoding);
  if (node.filename !== undefined || node.disposition !== undefined) {
    const params = node.filename === undefined ? undefined : { filename: stripControls(node.filename) };
    head += fold('Content-Disposition', libmime.buildHeaderValue({ value: node.disposition ?? 'attachment', params }));
  }
  if (node.description !== undefined) head += encodeHeader({ name: 'Content-Description', value: node.description });
  return { head: head + extraHeaders(node.headers), body };
}

function serialize(e: Entity): Buffer {
  return Buffer.concat([Buffer.from(e.head, 'utf8'), CRLF, e.body]);
}

function multipart(node: Extract<MimeNode, { kind: 'multipart' }>): Entity {
  if (!node.parts.length) throw new RangeError(`${node.contentType} needs at least one part`);
  const parts = node.parts.map((p) => serialize(entity(p)));
  let boundary = '';
  for (let i = 0; i < MAX_BOUNDARY_ATTEMPTS && !boundary; i++) {
    // "=_" never occurs in base64 or quoted-printable output; the search covers 7bit/8bit parts.
    const candidate = `=_sekisho-${randomBytes(12).toString('hex')}`;
    if (!parts.some((p) => p.includes(candidate))) boundary = candidate;
  }
  if (!boundary) throw new RangeError('no boundary could be found that the content does not contain');
  const delimiter = Buffer.from(`--${boundary}\r\n`, 'latin1');
  const chunks: Buffer[] = [];
  for (const p of parts) chunks.push(delimiter, p, CRLF);
  chunks.push(Buffer.from(`--${boundary}--\r\n`, 'latin1'));
  return {
    head: fold('Content-Type', `${node.contentType}; boundary=${quoted(boundary)}`) + extraHeaders(node.headers),
    body: Buffer.concat(chunks),
  };
}

function entity(node: MimeNode): Entity {
  return node.kind === 'leaf' ? leaf(node) : multipart(node);
}

/** The whole message: `headers` in order, MIME-Version, the root's MIME headers, its body; CRLF line endings. */
export function composeMessage(headers: readonly HeaderLine[], root: MimeNode): Buffer {
  for (const h of headers) {
    if (MIME_FIELDS.has(h.name.toLowerCase())) throw new RangeError(`${h.name} is written from the MIME tree, not given as a header`);
  }
  const top = headers.map(encodeHeader).join('') + 'MIME-Version: 1.0\r\n';
  const e = entity(root);
  const body = e.body.length === 0 || e.body.subarray(-2).equals(CRLF) ? e.body : Buffer.concat([e.body, CRLF]);
  return Buffer.concat([Buffer.from(top + e.head, 'utf8'), CRLF, body]);
}
