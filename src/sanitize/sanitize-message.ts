/**
 * メール無害化 of one message (DESIGN §6): the body becomes defanged plain text, every attachment is rebuilt by its
 * true type (magic bytes, never its name or Content-Type) or removed with a reason, and a new MIME message is
 * written with the notice at the top.
 *
 * The rule a reader must not break: no byte of an original part reaches the output. A converter that fails, times
 * out or meets a type it does not know removes the part; nothing falls back to the original.
 */
import { composeMessage, type HeaderLine, type MimeNode } from '../mime/compose.ts';
import type { ArchiveLimits } from '../scan/archive/inspect-archive.ts';
import { findEncryption } from '../scan/encryption.ts';
import { parseMessage, type MimePart } from '../scan/mime-parts.ts';
import { detectType, type TypeInfo } from '../scan/true-type.ts';
import type { SanitizeOptions } from '../config/schema.ts';
import { sanitizeZip } from './archive.ts';
import type { BodyLeaf, SanitizedBody } from './body.ts';
import { renderNotice, sanitizedHeader, type NoticeItem } from './notice.ts';
import { ConversionError, type PartResult, type RemovalReason, type SafeFile } from './types.ts';

/** Where the untrusted bytes are parsed: converter child processes and LibreOffice (see message-sanitizer.ts). */
export interface Converters {
  body(leaves: BodyLeaf[], signal: AbortSignal): Promise<SanitizedBody>;
  image(data: Buffer, signal: AbortSignal): Promise<SafeFile & { ext: string }>;
  /** A PDF → a PDF of page images, or one image per page. */
  pdf(data: Buffer, opts: { dpi: number; as: 'pdf' | 'images' }, signal: AbortSignal): Promise<{ pages: number; files: (SafeFile & { ext: string })[] }>;
  /** An Office/ODF/RTF document → LibreOffice's PDF (which then goes through `pdf`). */
  office(data: Buffer, ext: string, signal: AbortSignal): Promise<Buffer>;
  text(data: Buffer, charset: string | null, kind: 'text' | 'csv', signal: AbortSignal): Promise<Buffer>;
}

export interface SanitizeMessageInput {
  raw: Buffer;
  options: SanitizeOptions;
  quarantineId: string;
  retentionDate: Date;
  tenantName: string;
  archiveLimits: ArchiveLimits;
  converters: Converters;
  signal: AbortSignal;
}

export interface SanitizedMessage {
  message: Buffer;
  /** X-Sekisho-Sanitized, also given to the caller for the log. */
  header: string;
  items: NoticeItem[];
  bodyActions: string[];
}

/** Headers of the original that the rebuilt message keeps (DESIGN §6); everything else is dropped. */
const KEPT_HEADERS = ['from', 'to', 'cc', 'date', 'subject', 'message-id', 'in-reply-to', 'references'];
/** Display names of the headers above, as they are written out. */
const HEADER_NAMES: Record<string, string> = {
  from: 'From',
  to: 'To',
  cc: 'Cc',
  date: 'Date',
  subject: 'Subject',
  'message-id': 'Message-ID',
  'in-reply-to': 'In-Reply-To',
  references: 'References',
};
/** A kept header value longer than this is cut (a sane header is far shorter; References of a long thread ~2 KB). */
const MAX_KEPT_HEADER_CHARS = 8_000;
/** Kept headers are folded at white space near this width (RFC 5322 §2.1.1 recommends 78)… */
const FOLD_AT_CHARS = 76;
/** …and a run without white space longer than this is cut: RFC 5322 lines stop at 998 octets. */
const MAX_WORD_CHARS = 900;

function isBodyLeaf(p: MimePart): boolean {
  return (p.contentType === 'text/plain' || p.contentType === 'text/html') && !p.filename && p.disposition !== 'attachment';
}

/** The kept headers, copied as received (already RFC 2047-encoded where the sender encoded them). */
function keptHeaders(headers: readonly { key: string; value: string }[]): HeaderLine[] {
  const out: HeaderLine[] = [];
  for (const key of KEPT_HEADERS) {
    const h = headers.find((x) => x.key === key);
    if (!h) continue;
    // Unfolded by the parser; any CR/LF left would start a header of the sender's choosing.
    const value = h.value.replace(/[\r\n]+/g, ' ').slice(0, MAX_KEPT_HEADER_CHARS);
    out.push({ name: HEADER_NAMES[key]!, raw: foldRaw(value) });
  }
  return out;
}

/** " word word…" folded into continuation lines at white space; the leading space follows the colon. */
function foldRaw(value: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of value.split(/[ \t]+/).filter(Boolean)) {
    const w = word.slice(0, MAX_WORD_CHARS);
    if (line && line.length + 1 + w.length > FOLD_AT_CHARS) {
      lines.push(line);
      line = w;
    } else {
      line = line ? `${line} ${w}` : w;
    }
  }
  lines.push(line);
  return ` ${lines.join('\r\n ')}`;
}

/** `報告書.docx` → `報告書.docx.pdf`; a nameless part gets a name from its position and true type. */
function outName(original: string, ext: string): string {
  return `${original}.${ext}`;
}

function removed(reason: RemovalReason, detail: string): PartResult {
  return { kind: 'removed', reason, detail };
}

/** Turns whatever a converter threw into a removal with its reason; never rethrows (the part is just removed). */
function asRemoval(err: unknown, signal: AbortSignal): PartResult {
  // The whole message ran out of time: that is the job's failure (retried), not this part's.
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('sanitization aborted');
  if (err instanceof ConversionError) return removed(err.reason, err.message);
  return removed('conversion-failed', err instanceof Error ? err.message : String(err));
}

class MessageSanitizerRun {
  readonly #in: SanitizeMessageInput;
  /** Archives being opened, outermost first: the path of an entry in the notice (`資料.zip › 内部.zip › a.exe`). */
  readonly #archivePath: string[] = [];
  /** Entries removed from archives that were delivered (repacked or one by one): listed in the notice too. */
  readonly removedEntries: NoticeItem[] = [];

  constructor(input: SanitizeMessageInput) {
    this.#in = input;
  }

  /** One attachment (or archive entry) by its true type. Recurses into zips up to the archive limits. */
  async convert(name: string, data: Buffer, hints: { charset: string | null; contentType: string | null }, depth: number): Promise<PartResult> {
    const { converters: c, signal } = this.#in;
    const { charset } = hints;
    let type: TypeInfo;
    try {
      // The name and Content-Type only narrow text (to CSV, a script, HTML); they never make binary data text.
      type = await detectType(data, { filename: name, contentType: hints.contentType });
      const enc = findEncryption(data, type.type);
      if (enc && enc.kind !== 'archive-unopenable') return removed('encrypted', enc.detail);
    } catch (err) {
      return asRemoval(err, signal);
    }
    try {
      switch (type.category) {
        case 'image': {
          const img = await c.image(data, signal);
          return { kind: 'converted', files: [{ ...img, filename: outName(name, img.ext) }], detail: 'image re-encoded' };
        }
        case 'pdf':
          return await this.#document(name, data, signal);
        case 'office': {
          if (type.type === 'ooxml-encrypted') return removed('encrypted', 'password-protected Office document');
          const pdf = await c.office(data, type.ext, signal);
          return await this.#document(name, pdf, signal);
        }
        case 'text': {
          if (type.type === 'html') {
            const body = await c.body([{ contentType: 'text/html', charset, content: data }], signal);
            return this.#textFile(name, Buffer.from(body.text, 'utf8'), 'HTML converted to text');
          }
          const kind = type.type === 'csv' ? 'csv' : 'text';
          const text = await c.text(data, charset, kind, signal);
          return this.#textFile(name, text, kind === 'csv' ? 'CSV re-encoded, formulas neutralised' : 'text re-encoded as UTF-8', kind);
        }
        case 'archive':
          return await this.#archive(name, type, data, depth);
        case 'executable':
          return removed('executable', `${type.type}: programs, scripts and shortcuts are never delivered`);
        default:
          return removed('unsupported-type', `${type.mime || 'unknown type'}: no safe conversion`);
      }
    } catch (err) {
      return asRemoval(err, signal);
    }
  }

  #textFile(name: string, data: Buffer, detail: string, kind: 'text' | 'csv' = 'text'): PartResult {
    const ext = kind === 'csv' ? 'csv' : 'txt';
    const contentType = kind === 'csv' ? 'text/csv; charset=utf-8' : 'text/plain; charset=utf-8';
    // A name already ending in the output's extension keeps it (メモ.txt stays メモ.txt): nothing about it changed.
    const filename = name.toLowerCase().endsWith(`.${ext}`) ? name : outName(name, ext);
    return { kind: 'converted', files: [{ filename, contentType, data }], detail };
  }

  async #document(name: string, pdf: Buffer, signal: AbortSignal): Promise<PartResult> {
    const { options, converters } = this.#in;
    const r = await converters.pdf(pdf, { dpi: options.dpi, as: options.attachmentsAs }, signal);
    const files = r.files.map((f, i) => ({
      ...f,
      filename: options.attachmentsAs === 'pdf' ? outName(name, 'pdf') : outName(name, `p${i + 1}.${f.ext}`),
    }));
    const what = options.attachmentsAs === 'pdf' ? 'PDF of page images' : 'page images';
    return { kind: 'converted', files, detail: `${r.pages} page(s) → ${what}` };
  }

  async #archive(name: string, type: TypeInfo, data: Buffer, depth: number): Promise<PartResult> {
    const { options, archiveLimits, signal } = this.#in;
    if (type.type !== 'zip') return removed('unsupported-type', `${type.type} archives cannot be opened and checked here`);
    if (options.archives === 'remove') return removed('unsupported-type', 'archives are removed by this tenant’s policy');
    this.#archivePath.push(name);
    try {
      const r = await sanitizeZip(data, {
        filename: name,
        mode: options.archives === 'individual' ? 'individual' : 'repack',
        limits: archiveLimits,
        depth,
        signal,
        convertEntry: (entryName, entryData, entryDepth) => this.convert(entryName, entryData, { charset: null, contentType: null }, entryDepth),
      });
      // What was taken out of an archive that is delivered must be as visible as a removed attachment.
      if (r.result.kind === 'converted') {
        for (const e of r.entries) {
          if (e.result.kind === 'removed') this.removedEntries.push({ name: [...this.#archivePath, e.path].join(' › '), outcome: e.result });
        }
      }
      return r.result;
    } finally {
      this.#archivePath.pop();
    }
  }
}

/** A name for a part the sender did not name: `attachment-2.bin` (the true type's extension comes later). */
function partName(p: MimePart, index: number): string {
  return p.filename?.trim() || `attachment-${index + 1}`;
}

/** What replaces a body that could not be converted (the original stays in quarantine, like any removed part). */
const BODY_REMOVED = '（本文は変換できなかったため削除しました。原本は保管されています）\n(The body could not be converted and was removed. The original is kept.)';

async function sanitizeTopBody(converters: Converters, leaves: readonly MimePart[], signal: AbortSignal): Promise<SanitizedBody> {
  try {
    return await converters.body(
      leaves.map((p) => ({ contentType: p.contentType, charset: p.charset, content: p.content })),
      signal,
    );
  } catch (err) {
    const r = asRemoval(err, signal);
    return { text: BODY_REMOVED, actions: [`body removed (${r.kind === 'removed' ? r.reason : 'error'})`] };
  }
}

export async function sanitizeMessage(input: SanitizeMessageInput): Promise<SanitizedMessage> {
  const { converters, signal } = input;
  const parsed = await parseMessage(input.raw);
  const run = new MessageSanitizerRun(input);

  const topBody = parsed.parts.filter((p) => p.embeddedDepth === 0 && isBodyLeaf(p));
  const body = await sanitizeTopBody(converters, topBody, signal);

  // Attached messages: their text body becomes a text attachment; their attachments are handled like ours.
  const embeddedBodies = new Map<string, MimePart[]>();
  const attachments: MimePart[] = [];
  for (const p of parsed.parts) {
    if (p.embeddedDepth === 0 && isBodyLeaf(p)) continue;
    if (p.embeddedDepth > 0 && isBodyLeaf(p)) {
      const at = p.path.includes('.') ? p.path.slice(0, p.path.lastIndexOf('.')) : p.path;
      embeddedBodies.set(at, [...(embeddedBodies.get(at) ?? []), p]);
      continue;
    }
    attachments.push(p);
  }

  const items: NoticeItem[] = [];
  const files: SafeFile[] = [];
  const record = (name: string, r: PartResult) => {
    if (r.kind === 'converted') {
      files.push(...r.files);
      items.push({ name, outcome: { kind: 'converted', files: r.files.map((f) => f.filename), detail: r.detail } });
    } else {
      items.push({ name, outcome: r });
    }
  };

  for (const [at, leaves] of embeddedBodies) {
    const name = `attached-message-${at}.txt`;
    try {
      const b = await converters.body(leaves.map((p) => ({ contentType: p.contentType, charset: p.charset, content: p.content })), signal);
      record(name, { kind: 'converted', files: [{ filename: name, contentType: 'text/plain; charset=utf-8', data: Buffer.from(b.text, 'utf8') }], detail: 'attached message converted to text' });
    } catch (err) {
      record(name, asRemoval(err, signal));
    }
  }
  // One at a time: the converters have their own concurrency limit, and a message's parts share it with others.
  for (const [i, p] of attachments.entries()) {
    const name = partName(p, i);
    record(name, await run.convert(name, p.content, { charset: p.charset, contentType: p.contentType }, 1));
  }
  items.push(...run.removedEntries);

  const notice = renderNotice({
    items,
    quarantineId: input.quarantineId,
    retentionDate: input.retentionDate,
    tenantName: input.tenantName,
    bodyActions: body.actions,
    templates: input.options.notice,
  });
  const header = sanitizedHeader({ items, quarantineId: input.quarantineId, bodyActions: body.actions });
  const text: MimeNode = { kind: 'leaf', contentType: 'text/plain; charset=utf-8', body: `${notice}\n${body.text}\n`, encoding: 'base64' };
  const root: MimeNode = files.length
    ? {
        kind: 'multipart',
        contentType: 'multipart/mixed',
        parts: [
          text,
          ...files.map((f): MimeNode => ({ kind: 'leaf', contentType: f.contentType, body: f.data, encoding: 'base64', filename: f.filename, disposition: 'attachment' })),
        ],
      }
    : text;
  // X-Sekisho-Sanitized goes on top when the sanitize stage stores the copy, like a trace header.
  const message = composeMessage(keptHeaders(parsed.headers), root);
  return { message, header, items, bodyActions: body.actions };
}
