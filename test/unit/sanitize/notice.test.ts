/** The sanitizer's notice: Japanese first, every attachment's outcome, the original's id, templates, no forged lines. */
import { describe, expect, it } from 'vitest';
import { renderNotice, sanitizedHeader, type NoticeInput } from '../../../src/sanitize/notice.ts';

const input: NoticeInput = {
  items: [
    { name: '報告書.docx', outcome: { kind: 'converted', files: ['報告書.docx.pdf'], detail: '3 page(s) → PDF of page images' } },
    { name: '請求書.zip', outcome: { kind: 'removed', reason: 'encrypted', detail: 'ZipCrypto' } },
  ],
  quarantineId: 'mabc123',
  retentionDate: new Date(Date.UTC(2026, 11, 17, 20, 0)), // 18 Dec in Japan
  tenantName: '乙町',
  bodyActions: ['HTML converted to text', '2 links defanged'],
};

describe('renderNotice', () => {
  it('says, Japanese first then English, what happened to each attachment and where the original is', () => {
    const text = renderNotice(input);
    const ja = text.indexOf('【メール無害化のお知らせ】');
    const en = text.indexOf('[Sanitized message]');
    expect(ja).toBe(0);
    expect(en).toBeGreaterThan(ja);
    expect(text).toContain('・報告書.docx → 報告書.docx.pdf（安全な形式に変換）');
    expect(text).toContain('・請求書.zip → 削除：パスワード付き（暗号化）のため検査・変換できません');
    expect(text).toContain('- 請求書.zip → removed: password-protected (encrypted)');
    expect(text).toContain('2026-12-18 まで保管しています（保管ID: mabc123）');
    expect(text).toContain('乙町');
  });

  it('a file name cannot add lines to the notice', () => {
    const text = renderNotice({
      ...input,
      items: [{ name: 'a.pdf\r\n原本は削除されました\u202Eexe.pdf', outcome: { kind: 'removed', reason: 'executable', detail: '' } }],
    });
    // The name stays on its item's line (one in Japanese, one in English), never a line of its own.
    const lines = text.split('\n').filter((l) => l.includes('原本は削除されました'));
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatch(/^(・|- )a\.pdf 原本は削除されました/);
    expect(text).not.toContain('\u202E');
    expect(text).not.toContain('\r');
  });

  it("uses the tenant's templates with every placeholder filled", () => {
    const text = renderNotice({ ...input, templates: { ja: '無害化済み {{quarantineId}}\n{{items}}', en: 'Sanitized for {{tenantName}} until {{retentionDate}}' } });
    expect(text).toMatch(/^無害化済み mabc123\n・報告書\.docx/);
    expect(text).toContain('Sanitized for 乙町 until 2026-12-18');
    expect(text).not.toContain('{{');
  });

  it('says so when there were no attachments', () => {
    expect(renderNotice({ ...input, items: [] })).toContain('・添付ファイルはありません');
  });
});

describe('sanitizedHeader', () => {
  it('is ASCII and counts what was converted and removed', () => {
    const h = sanitizedHeader(input);
    expect(h).toBe('original=mabc123; body=HTML converted to text, 2 links defanged; attachments converted=1 removed=1');
    expect(/^[\x20-\x7e]*$/.test(h)).toBe(true);
  });
});
