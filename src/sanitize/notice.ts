/**
 * The notice at the top of a sanitized message: Japanese first, then English, one line per attachment with its
 * outcome, the quarantine id of the kept original and how to ask for it. Tenants may replace either text with a
 * template (tenants[].sanitize.notice); the placeholders are checked by the config schema.
 *
 * Everything substituted comes from the message (file names): it is shown as text, never interpreted, and control
 * characters are replaced so that a file name cannot forge lines of the notice.
 */
import type { RemovalReason } from './types.ts';

export interface NoticeItem {
  /** The attachment's name as the sender gave it (decoded), or a placeholder for a nameless part. */
  name: string;
  outcome:
    | { kind: 'converted'; files: string[]; detail: string }
    | { kind: 'removed'; reason: RemovalReason; detail: string };
}

export interface NoticeInput {
  items: readonly NoticeItem[];
  quarantineId: string;
  retentionDate: Date;
  tenantName: string;
  /** What was done to the body ('HTML converted to text', '3 links defanged', …), English phrases. */
  bodyActions: readonly string[];
  templates?: { ja?: string | undefined; en?: string | undefined } | undefined;
}

/** Why a part was removed, in the words the notice (and an archive's removal list) uses. */
export const REASON_JA: Record<RemovalReason, string> = {
  encrypted: 'パスワード付き（暗号化）のため検査・変換できません',
  executable: '実行ファイル・スクリプトのため削除しました',
  'unsupported-type': '無害化できない形式のため削除しました',
  'conversion-failed': '変換できなかったため削除しました',
  timeout: '変換が時間内に終わらなかったため削除しました',
  'too-large': '大きさの上限を超えたため削除しました',
  'archive-limit': '圧縮ファイルの展開上限を超えたため削除しました',
  malware: 'ウイルスが検出されたため削除しました',
};

export const REASON_EN: Record<RemovalReason, string> = {
  encrypted: 'password-protected (encrypted): it cannot be scanned or converted',
  executable: 'a program or script: removed',
  'unsupported-type': 'a type that cannot be sanitized: removed',
  'conversion-failed': 'could not be converted: removed',
  timeout: 'conversion did not finish in time: removed',
  'too-large': 'over a size limit: removed',
  'archive-limit': 'archive over the unpacking limits: removed',
  malware: 'malware found: removed',
};

/** A single line of text: control characters (CR, LF, bidi overrides…) would let a file name forge notice lines. */
export function oneLine(s: string): string {
  return s.replace(/[\p{Cc}\p{Cf}\u2028\u2029]+/gu, ' ').trim();
}

function itemLines(items: readonly NoticeItem[], lang: 'ja' | 'en'): string {
  if (!items.length) return lang === 'ja' ? '・添付ファイルはありません' : '- no attachments';
  const bullet = lang === 'ja' ? '・' : '- ';
  return items
    .map((i) => {
      const name = oneLine(i.name);
      if (i.outcome.kind === 'converted') {
        const files = i.outcome.files.map(oneLine).join(', ');
        return lang === 'ja' ? `${bullet}${name} → ${files}（安全な形式に変換）` : `${bullet}${name} → ${files} (converted to a safe format)`;
      }
      const why = (lang === 'ja' ? REASON_JA : REASON_EN)[i.outcome.reason];
      return lang === 'ja' ? `${bullet}${name} → 削除：${why}` : `${bullet}${name} → removed: ${why}`;
    })
    .join('\n');
}

/** YYYY-MM-DD in Japan time: the date staff read on their calendar. */
function jstDate(d: Date): string {
  return new Date(d.getTime() + 9 * 3_600_000).toISOString().slice(0, 10);
}

const DEFAULT_JA = [
  '【メール無害化のお知らせ】',
  'このメールは {{tenantName}} の受信セキュリティ設定により無害化されました。',
  '本文はテキストに変換し、リンクはクリックできない形（hxxps://example[.]com）に変えています。',
  '添付ファイルの処理結果:',
  '{{items}}',
  '元のメール（原本）は {{retentionDate}} まで保管しています（保管ID: {{quarantineId}}）。',
  '原本が必要な場合は、この保管IDを添えて情報システム担当に取り出しを依頼してください。',
].join('\n');

const DEFAULT_EN = [
  '[Sanitized message]',
  "This message was sanitized by {{tenantName}}'s mail security policy.",
  'The body was converted to plain text; links are shown but cannot be clicked (hxxps://example[.]com).',
  'Attachments:',
  '{{items}}',
  'The original message is kept until {{retentionDate}} (quarantine id: {{quarantineId}}).',
  'To receive the original, ask your IT staff to release it, quoting this id.',
].join('\n');

const RULE = '-'.repeat(60);

function fill(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{\s*([^}]*?)\s*\}\}/g, (whole, key: string) => values[key] ?? whole).replace(/\r\n?/g, '\n');
}

/** The notice text (Japanese, then English), followed by a rule; the sanitized body comes after it. */
export function renderNotice(input: NoticeInput): string {
  const common = { quarantineId: input.quarantineId, retentionDate: jstDate(input.retentionDate), tenantName: oneLine(input.tenantName) };
  const ja = fill(input.templates?.ja ?? DEFAULT_JA, { ...common, items: itemLines(input.items, 'ja') });
  const en = fill(input.templates?.en ?? DEFAULT_EN, { ...common, items: itemLines(input.items, 'en') });
  return `${ja}\n\n${en}\n${RULE}\n`;
}

/** The X-Sekisho-Sanitized header value: what was done, in short tokens (ASCII, so no encoding is needed). */
export function sanitizedHeader(input: Pick<NoticeInput, 'items' | 'quarantineId' | 'bodyActions'>): string {
  const converted = input.items.filter((i) => i.outcome.kind === 'converted').length;
  const removed = input.items.length - converted;
  const body = input.bodyActions.length ? input.bodyActions.join(', ') : 'text kept';
  return `original=${input.quarantineId}; body=${body.replace(/[;\r\n]/g, ' ')}; attachments converted=${converted} removed=${removed}`;
}
