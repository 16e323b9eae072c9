/**
 * The built-in rules on mails built byte by byte in ISO-2022-JP, Shift_JIS, EUC-JP and UTF-8: every symbol has
 * a mail that fires it and a look-alike that must not (the real notice without a link, the link to an official
 * domain, the same domain written in the link text, the preview line a newsletter hides…).
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { SymbolHit } from '../../../../../src/scan/check.ts';
import { createRulesCheck } from '../../../../../src/scan/checks/rules/index.ts';
import { isMalformedDate } from '../../../../../src/scan/checks/rules/builtin.ts';
import { symbolInfo } from '../../../../../src/scan/symbols.ts';
import { checkContext, fixture } from '../../../../helpers/check-context.ts';
import { buildMail, encodedWord, type Charset } from '../../../../helpers/mail-builder.ts';

const check = createRulesCheck({ domains: ['city-a.example.lg.jp', 'town-b.example.lg.jp'], log: pino({ level: 'silent' }) });

async function scan(raw: Buffer): Promise<SymbolHit[]> {
  const hits = await check.run(checkContext(raw));
  for (const h of hits) expect(symbolInfo(h.name), `${h.name} is in the catalogue`).toBeDefined();
  return hits;
}

const names = async (raw: Buffer) => (await scan(raw)).map((h) => h.name).sort();
const text = (body: string, charset: Charset = 'iso-2022-jp', subject?: string) => buildMail({ text: { body, charset }, ...(subject ? { subject } : {}) });
const html = (body: string, charset: Charset = 'utf-8') => buildMail({ html: { body, charset } });

/** A mail with exactly these header lines and a short ASCII body. */
function withHeaders(...lines: string[]): Buffer {
  return Buffer.from(`${lines.join('\r\n')}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nhello\r\n`, 'latin1');
}
const FROM = 'From: shop@shop.example.co.jp';
const DATE = 'Date: Thu, 03 Dec 2026 10:00:00 +0900';
const MID = 'Message-ID: <abc.123@shop.example.co.jp>';

describe('rules check: built-ins', () => {
  it('is named "rules" and fails as RULES_FAIL; a clean Japanese mail and the clean fixtures give nothing', async () => {
    expect([check.name, check.failSymbol]).toEqual(['rules', 'RULES_FAIL']);
    expect(await scan(text('来週の打ち合わせの資料をお送りします。ご確認ください。'))).toEqual([]);
    expect(await scan(fixture('mime-clean-japanese.eml'))).toEqual([]);
    expect(await scan(fixture('iso-2022-jp-plain.eml'))).toEqual([]);
  });

  describe('HEADER_DATE_MALFORMED', () => {
    it('fires on a date that is not RFC 5322', async () => {
      expect(await scan(withHeaders(FROM, MID, 'Date: 2026/12/03 10:00:00'))).toEqual([{ name: 'HEADER_DATE_MALFORMED', details: ['2026/12/03 10:00:00'] }]);
      for (const d of ['Thu, 03 Dec 2026 25:00:00 +0900', 'Thu, 32 Dec 2026 10:00:00 +0900', 'Thu, 03 Dez 2026 10:00:00 +0900', 'Thu, 03 Dec 2026 10:00:00', '']) {
        expect(isMalformedDate(d), d).toBe(true);
      }
    });
    it('does not fire on valid forms (comment, two-digit year, no weekday, zone names)', async () => {
      expect(await scan(withHeaders(FROM, MID, 'Date: Thu, 3 Dec 2026 10:00:00 +0900 (JST)'))).toEqual([]);
      for (const d of ['3 Dec 26 10:00 GMT', 'Thu,  03 Dec 2026 01:02:60 -0000', 'Mon, 7 Dec 2026 10:00:00 EST']) expect(isMalformedDate(d), d).toBe(false);
    });
    it('a missing Date is the mime check\u2019s HEADER_MISSING_DATE, not this', async () => {
      expect(await scan(withHeaders(FROM, MID))).toEqual([]);
    });
  });

  describe('HEADER_MESSAGE_ID_MALFORMED', () => {
    it('fires on a Message-ID without brackets or without @', async () => {
      expect(await scan(withHeaders(FROM, DATE, 'Message-ID: abc@shop.example.co.jp'))).toEqual([{ name: 'HEADER_MESSAGE_ID_MALFORMED', details: ['abc@shop.example.co.jp'] }]);
      expect(await names(withHeaders(FROM, DATE, 'Message-ID: <20261203100000.12345>'))).toEqual(['HEADER_MESSAGE_ID_MALFORMED']);
    });
    it('does not fire on a domain literal or a trailing comment', async () => {
      expect(await scan(withHeaders(FROM, DATE, 'Message-ID: <a.b@[192.168.0.1]>'))).toEqual([]);
      expect(await scan(withHeaders(FROM, DATE, 'Message-ID: <a.b@pc01.local> (Outlook)'))).toEqual([]);
    });
  });

  describe('REPLYTO_OTHER_DOMAIN', () => {
    it('fires when replies go to another registrable domain', async () => {
      expect(await scan(withHeaders(FROM, DATE, MID, `Reply-To: ${encodedWord('サポート', 'iso-2022-jp')} <support@free-mail.example>`))).toEqual([
        { name: 'REPLYTO_OTHER_DOMAIN', details: ['From shop@shop.example.co.jp, Reply-To support@free-mail.example'] },
      ]);
    });
    it('does not fire on a subdomain of the sender, or without Reply-To', async () => {
      expect(await scan(withHeaders(FROM, DATE, MID, 'Reply-To: support@mail.shop.example.co.jp'))).toEqual([]);
      expect(await scan(withHeaders('From: a@sub.city-a.example.lg.jp', DATE, MID, 'Reply-To: b@town-b.example.lg.jp'))).toEqual([]);
      expect(await scan(withHeaders(FROM, DATE, MID))).toEqual([]);
    });
    it('does not fire on a mailing list (List-Id), which sets Reply-To to the list', async () => {
      expect(await scan(withHeaders(FROM, DATE, MID, 'Reply-To: members@lists.example.org', 'List-Id: <members.lists.example.org>'))).toEqual([]);
    });
  });

  describe('HTML_ONLY_HIDDEN_TEXT', () => {
    const filler = 'これは読まれない文章です。ベイジアンフィルタを欺くための普通の言葉を並べています。'.repeat(6);
    it('fires on paragraphs hidden by display:none, by zero font size or in white on white', async () => {
      for (const hidden of [`<div style="display:none">${filler}</div>`, `<span style="font-size:0px">${filler}</span>`, `<p style="color:#FFF">${filler}</p>`, `<table bgcolor="#000"><tr><td><font color="black">${filler}</font></td></tr></table>`]) {
        const hits = await scan(html(`<html><body><p>お得な情報です。</p>${hidden}</body></html>`));
        expect(hits.map((h) => h.name), hidden.slice(0, 40)).toEqual(['HTML_ONLY_HIDDEN_TEXT']);
      }
    });
    it('fires on a short hidden text that outweighs the visible one (Shift_JIS)', async () => {
      expect(await names(html('<p>見てね</p><div hidden>今日はいい天気ですね。明日もいい天気でしょう。</div>', 'shift_jis'))).toEqual(['HTML_ONLY_HIDDEN_TEXT']);
    });
    it('does not fire on a newsletter preheader, nor when a text/plain alternative exists', async () => {
      const visible = '<p>甲市の秋祭りのお知らせです。会場は中央公園、時間は午前十時からです。雨天の場合は翌日に延期します。</p>'.repeat(3);
      expect(await scan(html(`<span style="display:none;max-height:0">今月のおすすめイベント情報をお届けします</span>${visible}`))).toEqual([]);
      const both = buildMail({ text: { body: 'お得な情報です。', charset: 'utf-8' }, html: { body: `<p>お得な情報です。</p><div style="display:none">${filler}</div>`, charset: 'utf-8' } });
      expect(await scan(both)).toEqual([]);
    });
  });

  describe('LINK_TEXT_DOMAIN_MISMATCH', () => {
    it('fires when the text shows our domain and the link goes elsewhere', async () => {
      expect(await scan(html('<p>詳細は <a href="https://evil.example/login">https://www.city-a.example.lg.jp</a> へ</p>'))).toEqual([
        { name: 'LINK_TEXT_DOMAIN_MISMATCH', details: ['text shows www.city-a.example.lg.jp, link goes to evil.example'] },
      ]);
      expect(await names(html('<a href="http://login.bank-secure.example/">www.example-bank.co.jp</a>'))).toEqual(['LINK_TEXT_DOMAIN_MISMATCH']);
    });
    it('does not fire when text and target share the domain, or the text shows no domain', async () => {
      expect(await scan(html('<a href="https://www.city-a.example.lg.jp/news/">city-a.example.lg.jp</a> <a href="https://news.example.com/a">こちら</a> <a href="https://example.com/">example.com</a>'))).toEqual([]);
      expect(await scan(html('<a href="https://files.example.com/">report.pdf</a>'))).toEqual([]);
    });
  });

  describe('URL_IP_LITERAL', () => {
    it('fires on an IPv4 literal in text, a decimal-encoded one in a link, and an IPv6 literal', async () => {
      expect(await scan(text('こちらからログイン http://203.0.113.7/login です'))).toEqual([{ name: 'URL_IP_LITERAL', details: ['http://203.0.113.7/login'] }]);
      expect(await names(html('<a href="http://3405803783/">ここ</a>'))).toEqual(['URL_IP_LITERAL']);
      expect(await names(text('http://[2001:db8::1]/x'))).toEqual(['URL_IP_LITERAL']);
    });
    it('does not fire on version numbers or dotted paths', async () => {
      expect(await scan(text('バージョン 1.2.3.4 を https://example.com/v1.2.3.4/ から入手してください'))).toEqual([]);
    });
  });

  describe('URL_SHORTENER', () => {
    it('fires on a shortener link, in EUC-JP text and in HTML', async () => {
      expect(await scan(text('詳細はこちら https://bit.ly/3xYz9 をご覧ください', 'euc-jp'))).toEqual([{ name: 'URL_SHORTENER', details: ['https://bit.ly/3xYz9'] }]);
      expect(await names(html('<a href="https://x.gd/abcd">確認</a>'))).toEqual(['URL_SHORTENER']);
    });
    it('does not fire on hosts that only contain a shortener name', async () => {
      expect(await scan(text('https://bit.ly.example.com/ と https://orbit.ly.example/ と https://not-t.co.example/'))).toEqual([]);
    });
  });

  describe('Japanese phishing wording', () => {
    const EVIL = 'https://secure-check.example/verify';
    const cases: [string, string, string][] = [
      ['PHISH_JA_ACCOUNT_SUSPENDED', 'お客様のアカウントは一時停止されました。', 'アカウントの設定を変更しました。'],
      ['PHISH_JA_IDENTITY_CHECK', 'ご本人様確認のため、以下よりログインしてください。', 'ご本人にお渡しください。'],
      ['PHISH_JA_PARCEL_REDELIVERY', 'お客様不在のため持ち帰りました。再配達のご依頼はこちら。', '不在の場合は連絡ください。'],
      ['PHISH_JA_TAX_REFUND', '所得税の還付金があります。手続きはこちら。', '税務の研修を行います。'],
      ['PHISH_JA_CARD_FRAUD', 'クレジットカードの不正利用の可能性があります。', 'クレジットカードで支払えます。'],
      ['PHISH_JA_PAYMENT_UPDATE', 'お支払い方法の更新が必要です。', 'お支払いは月末です。'],
      ['PHISH_JA_URGENT_DEADLINE', '【緊急】24時間以内に手続きしないと無効になります。', '緊急連絡網を更新しました。'],
    ];
    for (const [symbol, phish, plain] of cases) {
      it(`${symbol}: fires with a link outside official domains; not without a link, not with an official link, not on ordinary wording`, async () => {
        expect(await names(text(`${phish}\n${EVIL}`))).toEqual([symbol]);
        expect(await scan(text(phish))).toEqual([]);
        expect(await scan(text(`${phish}\nhttps://www.city-a.example.lg.jp/info`))).toEqual([]);
        expect(await scan(text(`${plain}\n${EVIL}`))).toEqual([]);
      });
    }

    it('matches half-width katakana, full-width letters and spaced-out words, in Shift_JIS, in the subject too', async () => {
      expect(await names(text(`ｱｶｳﾝﾄ の 利用 制限 について\n${EVIL}`, 'shift_jis'))).toEqual(['PHISH_JA_ACCOUNT_SUSPENDED']);
      expect(await names(text(`本 人 確 認 を お 願 い し ま す\n${EVIL}`, 'utf-8'))).toEqual(['PHISH_JA_IDENTITY_CHECK']);
      expect(await names(text(`【至急】２４時間以内にご対応ください\n${EVIL}`, 'euc-jp'))).toEqual(['PHISH_JA_URGENT_DEADLINE']);
      const subject = encodedWord('【重要】お荷物をお届けできませんでした', 'iso-2022-jp');
      expect(await names(text(`詳細 ${EVIL}`, 'iso-2022-jp', subject))).toEqual(['PHISH_JA_PARCEL_REDELIVERY']);
    });

    it('a real carrier notice linking to the carrier does not fire', async () => {
      expect(await scan(text('お荷物をお届けにあがりましたが、ご不在でした。再配達のお申し込みは https://www.kuronekoyamato.co.jp/ から。'))).toEqual([]);
    });
  });
  describe('hostile input stays bounded', () => {
    it('HTML nested deeper than the parser limit is read up to the limit only (what lies below is not parsed)', async () => {
      const filler = '隠された文章です。'.repeat(40);
      const deep = `<p>見てね</p>${'<div>'.repeat(20_000)}<div style="display:none">${filler}</div>`;
      expect(await scan(html(deep))).toEqual([]);
      const shallow = `<p>見てね</p>${'<div>'.repeat(50)}<div style="display:none">${filler}</div>`;
      expect(await names(html(shallow))).toEqual(['HTML_ONLY_HIDDEN_TEXT']);
    });

    it('a quarter-megabyte of near-miss wording and dotted names yields its findings, not a hang', async () => {
      const body = `${'アカウント'.repeat(30_000)}${'a.'.repeat(20_000)}\nアカウント停止 https://evil.example/`;
      expect(await names(text(body, 'utf-8'))).toEqual(['PHISH_JA_ACCOUNT_SUSPENDED']);
    });
  });
});
