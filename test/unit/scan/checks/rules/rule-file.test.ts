/**
 * The operators' rule file: YAML and JSON lines, every target (subject, body, url, header:<Name>) on decoded
 * Japanese text, RULE_<NAME> symbols with the file's score and description, patterns that could backtrack
 * catastrophically refused, a broken file refused at start and ignored (last good rules kept) on reload.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createRulesCheck } from '../../../../../src/scan/checks/rules/index.ts';
import { MAX_RULE_PATTERN_CHARS, parseRuleFile, riskyPattern } from '../../../../../src/scan/checks/rules/rule-file.ts';
import { SekishoError } from '../../../../../src/errors.ts';
import { storedSymbols } from '../../../../../src/spool/stored-verdict.ts';
import { captureLog, checkContext } from '../../../../helpers/check-context.ts';
import { buildMail, encodedWord } from '../../../../helpers/mail-builder.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-rules-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const YAML_RULES = `
# 自治体向けの独自ルール
rules:
  - name: INVOICE_URGENT
    where: subject
    pattern: '請求書.{0,20}至急'
    description: 請求書を装う至急の依頼
    score: 3
  - name: GIFT_CARD
    where: body
    pattern: 'ギフトカード.{0,10}購入'
    description: ギフトカード購入の依頼
    score: 4.5
  - name: PHP_LOGIN
    where: url
    pattern: '/wp-login\\.php|login\\.php\\?'
    flags: i
    description: ログインページへの直接リンク
    score: 2
  - name: BULK_MAILER
    where: header:X-Mailer
    pattern: 'SendBlaster|大量送信'
    description: 大量送信ソフト
    score: 1
`;

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

function checkWith(file: string) {
  return createRulesCheck({ domains: ['city-a.example.lg.jp'], ruleFile: file, log: captureLog().log });
}

describe('rule file', () => {
  const check = checkWith(write('rules.yaml', YAML_RULES));

  it('fires each rule on its target, decoded (ISO-2022-JP subject, Shift_JIS body, RFC 2047 header)', async () => {
    const mail = buildMail({
      subject: encodedWord('【請求書】至急ご確認ください', 'iso-2022-jp'),
      text: { body: 'ｷﾞﾌﾄｶｰﾄﾞを5万円分購入してください。\nhttps://203-0-113-9.example/WP-LOGIN.php', charset: 'shift_jis' },
      extraHeaders: [`X-Mailer: ${encodedWord('大量送信くん 2.0', 'iso-2022-jp')}`],
    });
    const hits = await check.run(checkContext(mail));
    expect(hits.filter((h) => h.name.startsWith('RULE_'))).toEqual([
      { name: 'RULE_INVOICE_URGENT', details: ['subject: 請求書】至急'] },
      { name: 'RULE_GIFT_CARD', details: ['body: ギフトカードを5万円分購入'] },
      { name: 'RULE_PHP_LOGIN', details: ['url: /WP-LOGIN.php'] },
      { name: 'RULE_BULK_MAILER', details: ['header x-mailer: 大量送信'] },
    ]);
  });

  it('does not fire on look-alikes (the words apart, another header, no URL)', async () => {
    const mail = buildMail({
      subject: encodedWord('請求書の送付について（来月分の明細と内訳を添付しております）。至急のご対応は不要です', 'iso-2022-jp'),
      text: { body: 'ギフトカードは当選者に贈られます。購入は不要です。', charset: 'iso-2022-jp' },
      extraHeaders: ['X-Mailer: Microsoft Outlook 16.0', 'User-Agent: SendBlaster'],
    });
    expect((await check.run(checkContext(mail))).filter((h) => h.name.startsWith('RULE_'))).toEqual([]);
  });

  it('answers group, score and description of its symbols; the stored verdict keeps them as unlisted symbols', () => {
    expect(check.symbolInfo('RULE_GIFT_CARD')).toEqual({ group: 'rules', score: 4.5, description: 'ギフトカード購入の依頼' });
    expect(check.symbolInfo('RULE_NOPE')).toBeUndefined();
    expect(check.symbolInfo('URL_SHORTENER')).toBeUndefined();
    expect(storedSymbols([{ name: 'RULE_GIFT_CARD', details: ['body: x'] }]).unlistedSymbols).toEqual([{ name: 'RULE_GIFT_CARD', details: ['body: x'] }]);
  });

  it('reads JSON lines (comments and blank lines skipped)', async () => {
    const jsonl = ['# one rule per line', '', JSON.stringify({ name: 'WIRE_TRANSFER', where: 'body', pattern: '振込先.{0,10}変更', description: '振込先変更の依頼', score: 5 })].join('\n');
    const c = checkWith(write('rules.jsonl', jsonl));
    const hits = await c.run(checkContext(buildMail({ text: { body: '今月から振込先が変更になりました。', charset: 'euc-jp' } })));
    expect(hits).toEqual([{ name: 'RULE_WIRE_TRANSFER', details: ['body: 振込先が変更'] }]);
  });

  it('refuses patterns that can backtrack catastrophically, backreferences and overlong patterns', () => {
    for (const p of ['(a+)+$', '(?:\\w+\\s?)*x', '((ab)*c)+', '(x|y+){2,}', '(.*a){12}', '(a)\\1', '(?<n>a)\\k<n>']) expect(riskyPattern(p), p).not.toBeNull();
    for (const p of ['請求書.{0,20}至急', '(?:foo|bar)+baz', '(ab)+c', '[(+*)]+', 'a+b*c?', '(?:https?://)?x\\.example', '(a+)?b']) expect(riskyPattern(p), p).toBeNull();
    const rule = (pattern: string) => JSON.stringify({ name: 'X_Y', where: 'body', pattern, description: 'd', score: 1 });
    expect(() => parseRuleFile(rule('(a+)+'), 'r.jsonl')).toThrow(/catastrophic/);
    expect(() => parseRuleFile(rule('a'.repeat(MAX_RULE_PATTERN_CHARS + 1)), 'r.jsonl')).toThrow(/pattern/);
    expect(() => parseRuleFile(rule('('), 'r.jsonl')).toThrow(/X_Y/);
  });

  it('refuses bad names, targets, flags, missing scores and duplicates, naming the rule', () => {
    const bad = (r: object) => () => parseRuleFile(`- ${JSON.stringify({ name: 'OK_NAME', where: 'body', pattern: 'x', description: 'd', score: 1, ...r })}`, 'r.yaml');
    expect(bad({ name: 'lower' })).toThrow(/rule 1: name/);
    expect(bad({ name: 'LOGIN_FAIL' })).toThrow(/FAIL/);
    expect(bad({ where: 'attachment' })).toThrow(/where/);
    expect(bad({ flags: 'g' })).toThrow(/flags/);
    expect(bad({ score: undefined })).toThrow(/score/);
    expect(bad({ extra: 1 })).toThrow(/extra|unrecognized/i);
    expect(() => parseRuleFile('- {name: A_B, where: body, pattern: x, description: d, score: 1}\n- {name: A_B, where: url, pattern: y, description: d, score: 1}', 'r.yaml')).toThrow(/A_B is defined twice/);
  });

  it('a broken file stops the start; on reload the last good rules stay in force', async () => {
    expect(() => checkWith(write('broken.yaml', '- name: BAD\n  where: body\n  pattern: "(a+)+"\n  description: d\n  score: 1\n'))).toThrow(SekishoError);
    const file = write('reload.yaml', YAML_RULES);
    const { log, records } = captureLog();
    const c = createRulesCheck({ domains: [], ruleFile: file, log });
    writeFileSync(file, 'rules: [oops');
    expect(c.reload()).toBe(false);
    expect(c.fileRules.map((r) => r.name)).toEqual(['INVOICE_URGENT', 'GIFT_CARD', 'PHP_LOGIN', 'BULK_MAILER']);
    expect(records.some((r) => r.msg.includes('keeping the rules in force'))).toBe(true);
    writeFileSync(file, '- {name: ONLY_ONE, where: subject, pattern: x, description: d, score: 2}\n');
    expect(c.reload()).toBe(true);
    expect(c.fileRules.map((r) => r.name)).toEqual(['ONLY_ONE']);
  });
});
