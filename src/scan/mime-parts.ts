/**
 * Splits a raw message into decoded MIME leaves with mailsplit, descending into attached message/rfc822.
 * Runs in the worker only (never in the ingress or admin process): the bytes are hostile.
 *
 * Cost bounds: decoding never yields more bytes than the raw message holds (base64 and QP only shrink), and
 * MAX_PARTS / MAX_DEPTH stop a message made of a million empty parts or a thousand-deep nesting from costing
 * more than a few milliseconds; MAX_EMBEDDED_DEPTH bounds how often attached messages are read again.
 * Ordinary mail has fewer than 50 parts and 3 levels.
 */
import { Readable } from 'node:stream';
import { Splitter } from 'mailsplit';
import libbase64 from 'libbase64';
import libqp from 'libqp';

/** Leaves beyond this are not decoded; the message is flagged MIME_MALFORMED by the structure check. */
export const MAX_PARTS = 1_000;
/** Nesting (multipart + message/rfc822 levels) beyond this is flagged MIME_TOO_DEEP. */
export const MAX_DEPTH = 20;
/**
 * Attached (not inline) message/rfc822 parts are split again on their own, so each such level reads its bytes
 * once more: this bounds that extra work to MAX_EMBEDDED_DEPTH × the cost of the first pass (which is about a
 * second per 15 MB of base64). Forwarded-as-attachment chains in ordinary mail are one or two deep. Deeper ones
 * are flagged MIME_TOO_DEEP and kept as one opaque part.
 */
export const MAX_EMBEDDED_DEPTH = 3;
/**
 * Nodes (leaves, multipart containers, embedded message roots) one splitter reads before it stops. Above
 * MAX_PARTS so that a message of MAX_PARTS leaves in a few containers is still read to its end; mailsplit's own
 * default (1,000) used to stop such a message early with a parse error.
 */
const MAX_SPLITTER_NODES = 2 * MAX_PARTS;
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
  /** Lower-case Content-Disposition value as written ("attachment", "inline"), null when none. */
  disposition: string | null;
  /** Lower-case Content-Transfer-Encoding as written ('' when absent). */
  transferEncoding: string;
  /** Decoded content bytes. */
  content: Buffer;
  /** Levels of message/rfc822 this part is inside (0 for the top-level message). */
  embeddedDepth: number;
}

export interface StructureNote {
  kind:
    | 'boundary-missing'
    | 'unterminated-multipart'
    | 'too-deep'
    | 'too-many-parts'
    | 'bad-transfer-encoding'
    | 'header-oversized'
    | 'parse-error';
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
  /** Set by the splitter on message/rfc822 nodes: true when it descends into them itself (inline ones only). */
  messageNode?: boolean;
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

interface SplitState {
  parts: MimePart[];
  notes: StructureNote[];
  leafCount: number;
}

/** Where a (possibly embedded) message sits in the outer one. */
interface SplitBase {
  /** Part number prefix ("" for the top level, "2." inside part 2). */
  path: string;
  depth: number;
  embedded: number;
}

function note(state: SplitState, kind: StructureNote['kind'], detail: string, once = false): void {
  if (once && state.notes.some((n) => n.kind === kind)) return;
  state.notes.push({ kind, detail });
}

/** An attached message/rfc822 whose body was collected as bytes: split again below. */
interface PendingEmbedded {
  content: Buffer;
  part: MimePart;
  depth: number;
}

/** Splits one message (the top one or an attached one) into `state`; returns its header lines. */
async function split(raw: Buffer, state: SplitState, base: SplitBase): Promise<ParsedMessage['headers']> {
  let headers: ParsedMessage['headers'] = [];
  let current: { node: SplitNode; chunks: Buffer[] } | undefined;
  const pending: PendingEmbedded[] = [];

  const flush = () => {
    if (!current) return;
    const { node, chunks } = current;
    current = undefined;
    const encoding = (node.encoding || '').toString();
    const rel = depthOf(node);
    const part: MimePart = {
      path: base.path + ((node.partNr || []).join('.') || '1'),
      contentType: node.contentType || 'text/plain',
      charset: node.charset || null,
      filename: node.filename || null,
      disposition: node.disposition || null,
      transferEncoding: encoding,
      content: decode(encoding, Buffer.concat(chunks)),
      embeddedDepth: base.embedded + rel.embedded,
    };
    if (node.rfc822) {
      pending.push({ content: part.content, part, depth: base.depth + rel.depth });
      return;
    }
    if (++state.leafCount > MAX_PARTS) {
      note(state, 'too-many-parts', `more than ${MAX_PARTS} parts`, true);
      return;
    }
    state.parts.push(part);
  };

  const splitter = new Splitter({ maxHeadSize: MAX_HEAD_BYTES, maxChildNodes: MAX_SPLITTER_NODES });
  splitter.on('data', (data: { type: string; value?: Buffer } & Partial<SplitNode>) => {
    if (data.type === 'node') {
      flush();
      const node = data as SplitNode;
      if (node.root && base.depth === 0) {
        headers = node.headers.getList().map((h) => ({ key: h.key, value: headerValue(h.line) }));
      }
      const depth = base.depth + depthOf(node).depth;
      if (depth > MAX_DEPTH) {
        note(state, 'too-deep', `nesting deeper than ${MAX_DEPTH}`, true);
        return;
      }
      const enc = (node.encoding || '').toString();
      if (!KNOWN_ENCODINGS.has(enc)) note(state, 'bad-transfer-encoding', `${node.contentType}: ${enc}`);
      if (node.multipart) {
        if (!node._boundary) {
          note(state, 'boundary-missing', `multipart/${node.multipart} without boundary`);
          // Its body is kept as one part: it used to be dropped, so per-part checks never saw those bytes.
          current = { node, chunks: [] };
        } else if (!raw.includes(Buffer.concat([Buffer.from('--'), node._boundary, Buffer.from('--')]))) {
          note(state, 'unterminated-multipart', `multipart/${node.multipart} boundary never closed`);
        }
      } else if (!node.rfc822 || node.messageNode === false) {
        // An attached message/rfc822 (Content-Disposition: attachment, or base64/QP-encoded) is not descended
        // into by mailsplit: its body is collected here and split below. It used to be skipped altogether,
        // so an .exe inside a forwarded message was invisible to every check that reads parts.
        current = { node, chunks: [] };
      }
    } else if (current && data.value && (data.type === 'body' || (data.type === 'data' && current.node.multipart))) {
      // A multipart's lines come as 'data'; the only multipart collected is one without a boundary.
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
    const message = (err as Error).message;
    if (/header size/i.test(message)) note(state, 'header-oversized', `a header block is larger than ${MAX_HEAD_BYTES} bytes`);
    else if (/child nodes/i.test(message)) note(state, 'too-many-parts', `more than ${MAX_SPLITTER_NODES} MIME nodes`, true);
    else note(state, 'parse-error', message);
  }

  for (const e of pending) {
    if (state.leafCount > MAX_PARTS) break;
    if (e.part.embeddedDepth + 1 > MAX_EMBEDDED_DEPTH || e.depth + 1 > MAX_DEPTH) {
      note(state, 'too-deep', `message/rfc822 nested deeper than ${MAX_EMBEDDED_DEPTH}`, true);
      // Kept whole, so that checks reading parts still see its bytes.
      if (++state.leafCount <= MAX_PARTS) state.parts.push(e.part);
      continue;
    }
    await split(e.content, state, { path: `${e.part.path}.`, depth: e.depth + 1, embedded: e.part.embeddedDepth + 1 });
  }
  return headers;
}

export async function parseMessage(raw: Buffer): Promise<ParsedMessage> {
  const state: SplitState = { parts: [], notes: [], leafCount: 0 };
  const headers = await split(raw, state, { path: '', depth: 0, embedded: 0 });
  return { parts: state.parts, headers, notes: state.notes };
}
