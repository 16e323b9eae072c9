/**
 * Splits a raw message into decoded MIME leaves with mailsplit, descending into attached message/rfc822.
 * Runs in the worker only (never in the ingress or admin process): the bytes are hostile.
 *
 * Cost bounds: decoding never yields more bytes than the raw message holds (base64 and QP only shrink), and
 * MAX_PARTS / MAX_DEPTH stop a message made of a million empty parts or a thousand-deep nesting from costing
 * more than a few milliseconds. Ordinary mail has fewer than 50 parts and 3 levels.
 */
import { Readable } from 'node:stream';
import { Splitter } from 'mailsplit';
import libbase64 from 'libbase64';
import libqp from 'libqp';

/** Leaves beyond this are not decoded; the message is flagged MIME_MALFORMED by the structure check. */
export const MAX_PARTS = 1_000;
/** Nesting (multipart + message/rfc822 levels) beyond this is flagged MIME_TOO_DEEP. */
export const MAX_DEPTH = 20;
/** A header block larger than this is cut off by the splitter (HEADER_OVERSIZED). */
export const MAX_HEAD_BYTES = 1024 * 1024;

export interface MimePart {
  /** IMAP-style part number ("1", "2.1", "TEXT"). */
  path: string;
  /** Lower-case "type/subtype"; text/plain when the part has no Content-Type. */
  contentType: string;
  charset: string | null;
  /** Decoded file name (RFC 2047/2231), null when none. */
  filename: string | null;
  disposition: string | null;
  /** Lower-case Content-Transfer-Encoding as written ('' when absent). */
  transferEncoding: string;
  /** Decoded content bytes. */
  content: Buffer;
  /** Levels of message/rfc822 this part is inside (0 for the top-level message). */
  embeddedDepth: number;
}

export interface StructureNote {
  kind: 'boundary-missing' | 'unterminated-multipart' | 'too-deep' | 'too-many-parts' | 'bad-transfer-encoding' | 'parse-error';
  detail: string;
}

export interface ParsedMessage {
  parts: MimePart[];
  /** Headers of the top-level message, lower-case keys, raw (undecoded) values, in order. */
  headers: { key: string; value: string }[];
  notes: StructureNote[];
}

const KNOWN_ENCODINGS = new Set(['', '7bit', '8bit', 'binary', 'base64', 'quoted-printable']);

interface SplitNode {
  type: 'node';
  root: boolean;
  parentNode?: SplitNode;
  multipart: string | false;
  _boundary: Buffer | false;
  rfc822: boolean;
  contentType: string | false;
  charset: string | false;
  filename: string | false;
  disposition: string | false;
  encoding: string | false;
  partNr: (string | number)[] | false;
  headers: { getList(): { key: string; line: string }[] };
}

function depthOf(node: SplitNode): { depth: number; embedded: number } {
  let depth = 0;
  let embedded = 0;
  for (let n = node.parentNode; n; n = n.parentNode) {
    depth++;
    if (n.rfc822) embedded++;
  }
  return { depth, embedded };
}

function decode(encoding: string, body: Buffer): Buffer {
  if (encoding === 'base64') return libbase64.decode(body.toString('latin1'));
  if (encoding === 'quoted-printable') return libqp.decode(body.toString('latin1'));
  return body;
}

function headerValue(line: string): string {
  const i = line.indexOf(':');
  return (i < 0 ? '' : line.slice(i + 1)).replace(/\r?\n[ \t]/g, ' ').trim();
}

export async function parseMessage(raw: Buffer): Promise<ParsedMessage> {
  const parts: MimePart[] = [];
  const notes: StructureNote[] = [];
  let headers: ParsedMessage['headers'] = [];
  let current: { node: SplitNode; chunks: Buffer[] } | undefined;
  let leafCount = 0;

  const flush = () => {
    if (!current) return;
    const { node, chunks } = current;
    current = undefined;
    if (++leafCount > MAX_PARTS) {
      if (leafCount === MAX_PARTS + 1) notes.push({ kind: 'too-many-parts', detail: `more than ${MAX_PARTS} parts` });
      return;
    }
    const encoding = (node.encoding || '').toString();
    parts.push({
      path: (node.partNr || []).join('.') || '1',
      contentType: node.contentType || 'text/plain',
      charset: node.charset || null,
      filename: node.filename || null,
      disposition: node.disposition || null,
      transferEncoding: encoding,
      content: decode(encoding, Buffer.concat(chunks)),
      embeddedDepth: depthOf(node).embedded,
    });
  };

  const splitter = new Splitter({ maxHeadSize: MAX_HEAD_BYTES });
  splitter.on('data', (data: { type: string; value?: Buffer } & Partial<SplitNode>) => {
    if (data.type === 'node') {
      flush();
      const node = data as SplitNode;
      if (node.root) {
        headers = node.headers.getList().map((h) => ({ key: h.key, value: headerValue(h.line) }));
      }
      const { depth } = depthOf(node);
      if (depth > MAX_DEPTH) {
        if (!notes.some((n) => n.kind === 'too-deep')) notes.push({ kind: 'too-deep', detail: `nesting deeper than ${MAX_DEPTH}` });
        return;
      }
      const enc = (node.encoding || '').toString();
      if (!KNOWN_ENCODINGS.has(enc)) notes.push({ kind: 'bad-transfer-encoding', detail: `${node.contentType}: ${enc}` });
      if (node.multipart) {
        if (!node._boundary) {
          notes.push({ kind: 'boundary-missing', detail: `multipart/${node.multipart} without boundary` });
        } else if (!raw.includes(Buffer.concat([Buffer.from('--'), node._boundary, Buffer.from('--')]))) {
          notes.push({ kind: 'unterminated-multipart', detail: `multipart/${node.multipart} boundary never closed` });
        }
      } else if (!node.rfc822) {
        current = { node, chunks: [] };
      }
    } else if (data.type === 'body' && current && data.value) {
      current.chunks.push(data.value);
    }
  });

  try {
    await new Promise<void>((resolve, reject) => {
      splitter.on('end', resolve);
      splitter.on('error', reject);
      Readable.from([raw]).pipe(splitter);
    });
    flush();
  } catch (err) {
    notes.push({ kind: 'parse-error', detail: (err as Error).message });
  }
  return { parts, headers, notes };
}
