/**
 * unscannable — content that can be neither scanned nor converted: encrypted 7z and RAR archives
 * (ARCHIVE_ENCRYPTED), password-protected Office documents (DOC_ENCRYPTED) and PDFs (PDF_ENCRYPTED), and
 * archives that neither we nor clamd open (ARCHIVE_UNOPENABLE: RAR, as Debian's clamd has no unrar; LZH, ACE…).
 * Every MIME leaf is judged by its true type (true-type.ts) and structure (encryption.ts), never by its name;
 * the members of zip and gzip archives too, walked by inspect-archive.ts within the clamav.archive limits, so that
 * an encrypted .docx inside a zip is found. Details name the part (or "archive/member") and the reason.
 *
 * Who owns what, so that nothing is reported twice: zip encryption itself (ZipCrypto, AES, strong encryption, at
 * any depth) and the archive limits are the clamav check's (inspect-archive.ts reads every zip's central
 * directory there, and clamd's Heuristics.Encrypted.* alerts map to the same symbol); this check does not repeat
 * them. A walk stopped by a limit reports what it found before the limit.
 */
import type { Check, CheckContext, SymbolHit } from '../check.ts';
import { inspectArchive, type ArchiveLimits, type MemberVisitor } from '../archive/inspect-archive.ts';
import { findEncryption, pdfEncryption, type EncryptionFinding } from '../encryption.ts';
import type { SymbolName } from '../symbols.ts';
import { detectType, type TrueType } from '../true-type.ts';

export interface UnscannableCheckOptions {
  /** clamav.archive: the same limits bound the walk through zip members here. */
  archive: ArchiveLimits;
}

/** Part names in details are cut to this length (an RFC 2231 name may be kilobytes long). */
const MAX_NAME_CHARS = 120;

const SYMBOL_OF: Record<EncryptionFinding['kind'], SymbolName> = {
  'archive-encrypted': 'ARCHIVE_ENCRYPTED',
  'document-encrypted': 'DOC_ENCRYPTED',
  'pdf-encrypted': 'PDF_ENCRYPTED',
  'archive-unopenable': 'ARCHIVE_UNOPENABLE',
};

/** Archive members worth inflating to judge: OLE2 (Office 97-2003, encrypted OOXML, 一太郎), PDF, 7z, RAR. */
const WANTED_MAGIC = [Buffer.from([0xd0, 0xcf, 0x11, 0xe0]), Buffer.from('%PDF'), Buffer.from([0x37, 0x7a, 0xbc, 0xaf]), Buffer.from('Rar!')];

/** Types whose members this check walks (through inspect-archive.ts). */
const WALKED: ReadonlySet<TrueType> = new Set(['zip', 'gzip']);

function shortName(s: string): string {
  return s.length > MAX_NAME_CHARS ? `${s.slice(0, MAX_NAME_CHARS)}…` : s;
}

export function createUnscannableCheck(opts: UnscannableCheckOptions): Check {
  return {
    name: 'unscannable',
    failSymbol: 'UNSCANNABLE_FAIL',
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const found = new Map<SymbolName, Set<string>>();

      const judge = (data: Buffer, type: TrueType, where: string) => {
        const finding = findEncryption(data, type);
        if (type === 'pdf' && !finding) {
          const pdf = pdfEncryption(data);
          if (pdf) ctx.log.debug({ part: where, encryption: pdf.detail }, 'PDF encrypted with an empty user password: opens, not reported');
        }
        // zip encryption is the clamav check's finding (inspect-archive.ts)
        if (!finding || (type === 'zip' && finding.kind === 'archive-encrypted')) return;
        const symbol = SYMBOL_OF[finding.kind];
        const set = found.get(symbol) ?? new Set<string>();
        set.add(`${where}: ${finding.detail}`);
        found.set(symbol, set);
      };

      const visitor: MemberVisitor = {
        wants: (head) => WANTED_MAGIC.some((m) => head.subarray(0, m.length).equals(m)),
        visit: async (path, data) => {
          ctx.signal.throwIfAborted();
          judge(data, (await detectType(data)).type, path);
        },
      };

      const { parts } = await ctx.parsed();
      for (const part of parts) {
        ctx.signal.throwIfAborted();
        if (part.content.length === 0) continue;
        const name = shortName(part.filename ?? `part ${part.path}`);
        const { type } = await detectType(part.content, { filename: part.filename, contentType: part.contentType });
        judge(part.content, type, name);
        if (WALKED.has(type)) await inspectArchive(part.content, name, opts.archive, ctx.signal, visitor);
      }
      return [...found].map(([name, details]) => ({ name, details: [...details].sort() }));
    },
  };
}
