/**
 * The spoofing check on mails built byte by byte (ISO-2022-JP, Shift_JIS, UTF-8 display names): our own domains
 * from the internet, look-alikes of every kind, display names that name a tenant or an official — and the
 * look-alikes that must stay silent: unrelated domains, our own relay, an allowed sender, a newsletter that
 * mentions the city in its body.
 */
import { describe, expect, it } from 'vitest';
import type { SymbolHit } from '../../../../../src/scan/check.ts';
import { createSpoofingCheck, spoofingConfigSchema, type SpoofingCheckOptions } from '../../../../../src/scan/checks/spoofing/index.ts';
import { symbolInfo } from '../../../../../src/scan/symbols.ts';
import { checkContext, fixture } from '../../../../helpers/check-context.ts';
import { buildMail, encodedWord } from '../../../../helpers/mail-builder.ts';

const TENANTS: SpoofingCheckOptions = {
  domains: ['city-a.example.lg.jp', 'town-b.example.lg.jp'],
  names: ['甲市', '乙町'],
  officials: ['山田太郎'],
  trustedRelays: ['192.0.2.0/24', '2001:db8::10'],
};

async function scan(raw: Buffer, opts: { mailFrom?: string; clientIp?: string; check?: Partial<SpoofingCheckOptions> } = {}): Promise<SymbolHit[]> {
  const ctx = checkContext(raw);
  ctx.envelope = { ...ctx.envelope, mailFrom: opts.mailFrom ?? 'bounce@mailer.example.net', clientIp: opts.clientIp ?? '203.0.113.5' };
  const hits = await createSpoofingCheck({ ...TENANTS, ...opts.check }).run(ctx);
  for (const h of hits) expect(symbolInfo(h.name), `${h.name} is in the catalogue`).toBeDefined();
  return hits;
}

const from = (header: string) => buildMail({ from: header, text: { body: 'ご確認ください。', charset: 'iso-2022-jp' } });
/** A From header written raw in UTF-8 (SMTPUTF8 style): buildMail writes headers as Latin-1. */
const rawFrom = (header: string) =>
  Buffer.from(`From: ${header}\r\nTo: soumu@city-a.example.lg.jp\r\nSubject: test\r\nDate: Thu, 03 Dec 2026 10:00:00 +0900\r\nMessage-ID: <raw@example.net>\r\n\r\nbody\r\n`, 'utf8');
const names = (hits: SymbolHit[]) => hits.map((h) => h.name).sort();

describe('spoofing check', () => {
  it('is named "spoofing" and fails as SPOOFING_FAIL', () => {
    const c = createSpoofingCheck(TENANTS);
    expect([c.name, c.failSymbol]).toEqual(['spoofing', 'SPOOFING_FAIL']);
  });

  describe('SPOOF_OWN_DOMAIN', () => {
    it('fires on a tenant domain in the header From, from the internet', async () => {
      expect(await scan(from('"総務課" <soumu@city-a.example.lg.jp>'))).toEqual([
        { name: 'SPOOF_OWN_DOMAIN', details: ['header From: soumu@city-a.example.lg.jp from 203.0.113.5'] },
      ]);
    });

    it('fires on a tenant domain in MAIL FROM, in any case, and below a tenant domain', async () => {
      const hits = await scan(from('x@example.net'), { mailFrom: 'Staff@MAIL.Town-B.Example.LG.JP' });
      expect(hits).toEqual([{ name: 'SPOOF_OWN_DOMAIN', details: ['MAIL FROM: staff@mail.town-b.example.lg.jp from 203.0.113.5'] }]);
    });

    it('does not fire for a trusted relay (CIDR, IPv4-mapped IPv6, IPv6 address)', async () => {
      const mail = from('soumu@city-a.example.lg.jp');
      for (const clientIp of ['192.0.2.77', '::ffff:192.0.2.77', '2001:db8::10']) {
        expect(await scan(mail, { clientIp, mailFrom: 'soumu@city-a.example.lg.jp' }), clientIp).toEqual([]);
      }
      expect(names(await scan(mail, { clientIp: '2001:db8::11' }))).toEqual(['SPOOF_OWN_DOMAIN']);
    });
  });

  describe('SPOOF_LOOKALIKE_DOMAIN', () => {
    const cases: [string, string, string][] = [
      ['city-a.exarnple.lg.jp', 'city-a.example.lg.jp', 'homoglyph'],
      ['city-a.examp1e.lg.jp', 'city-a.example.lg.jp', 'homoglyph'],
      ['clty-a.example.lg.jp', 'city-a.example.lg.jp', 'homoglyph'],
      ['town-b.ex\u0430mple.lg.jp', 'town-b.example.lg.jp', 'homoglyph'], // Cyrillic а
      ['t\u03bfwn-b.example.lg.jp', 'town-b.example.lg.jp', 'homoglyph'], // Greek ο
      ['xn--ity-a-0ye.example.lg.jp', 'city-a.example.lg.jp', 'idn'], // Cyrillic с, punycode
      ['city-a.example.lg-jp.com', 'city-a.example.lg.jp', 'variant'],
      ['city-a-example-lgjp.com', 'city-a.example.lg.jp', 'variant'],
      ['city-a.example.lg.jp.secure-login.example', 'city-a.example.lg.jp', 'variant'],
      ['cityaexample.jp', 'city-a.example.lg.jp', 'variant'],
      ['example.city-a.lg.jp', 'city-a.example.lg.jp', 'swapped'],
      ['city-a.lg.jp', 'city-a.example.lg.jp', 'dropped'],
      ['city-a.exampel.lg.jp', 'city-a.example.lg.jp', 'edit'],
      ['city-a.exmple.lg.jp', 'city-a.example.lg.jp', 'edit'],
    ];
    for (const [domain, imitates, kind] of cases) {
      it(`${domain} imitates ${imitates} (${kind})`, async () => {
        expect(await scan(rawFrom(`info@${domain}`))).toEqual([
          { name: 'SPOOF_LOOKALIKE_DOMAIN', details: [`header From: info@${domain} imitates ${imitates} (${kind})`] },
        ]);
      });
    }

    it('fires on a Unicode look-alike written raw in the header (SMTPUTF8) and on MAIL FROM', async () => {
      const hits = await scan(rawFrom('info@\u0441ity-a.example.lg.jp'), { mailFrom: 'bounce@city-a-example.lg-jp.net' });
      expect(hits).toEqual([
        {
          name: 'SPOOF_LOOKALIKE_DOMAIN',
          details: ['MAIL FROM: bounce@city-a-example.lg-jp.net imitates city-a.example.lg.jp (variant)', 'header From: info@\u0441ity-a.example.lg.jp imitates city-a.example.lg.jp (homoglyph)'],
        },
      ]);
    });

    it('fires even from a trusted relay (our relays do not send look-alikes)', async () => {
      expect(names(await scan(from('info@city-a.exarnple.lg.jp'), { clientIp: '192.0.2.1' }))).toEqual(['SPOOF_LOOKALIKE_DOMAIN']);
    });

    it('does not fire on unrelated domains, other municipalities, or ignored neighbours', async () => {
      for (const domain of ['example.com', 'gmail.com', 'city.other.lg.jp', 'pref.example2.lg.jp', 'yokohama-bank.co.jp', 'news.example.net', 'kanko-kou.example.jp', 'mail.ex-ample.org']) {
        expect(await scan(from(`info@${domain}`), { mailFrom: `bounce@${domain}` }), domain).toEqual([]);
      }
      expect(await scan(from('info@city-a.exampel.lg.jp'), { check: { lookalikeIgnoreDomains: ['exampel.lg.jp'] } })).toEqual([]);
    });
  });

  describe('SPOOF_DISPLAY_NAME', () => {
    it('fires on a tenant name in an ISO-2022-JP display name over an outside address', async () => {
      const hits = await scan(from(`${encodedWord('甲市 総務課', 'iso-2022-jp')} <soumu-kou@free-mail.example>`));
      expect(hits).toEqual([{ name: 'SPOOF_DISPLAY_NAME', details: ['"甲市 総務課" <soumu-kou@free-mail.example> names 甲市'] }]);
    });

    it('fires on a Shift_JIS Q-encoded name, split across two encoded-words', async () => {
      const word = encodedWord('乙町役場', 'shift_jis', 'Q');
      // split inside the second character's two bytes: the words must be joined as bytes before decoding
      const body = word.slice('=?SHIFT_JIS?Q?'.length, -2);
      const split = `=?SHIFT_JIS?Q?${body.slice(0, 9)}?= =?SHIFT_JIS?Q?${body.slice(9)}?=`;
      const hits = await scan(from(`${split} <yakuba@example.org>`));
      expect(hits).toEqual([{ name: 'SPOOF_DISPLAY_NAME', details: ['"乙町役場" <yakuba@example.org> names 乙町'] }]);
    });

    it('fires on a configured official (with a title), a tenant domain in full-width letters, and an address-looking name', async () => {
      const official = await scan(from(`${encodedWord('市長 山田 太郎', 'utf-8')} <mayor@example.org>`));
      expect(official).toEqual([{ name: 'SPOOF_DISPLAY_NAME', details: ['"市長 山田 太郎" <mayor@example.org> names 山田太郎'] }]);
      const wide = await scan(from(`${encodedWord('ｃｉｔｙ－ａ．ｅｘａｍｐｌｅ．ｌｇ．ｊｐ', 'iso-2022-jp')} <x@example.org>`));
      expect(names(wide)).toEqual(['SPOOF_DISPLAY_NAME']);
      expect(wide[0]!.details![0]).toMatch(/names city-a\.example\.lg\.jp$/);
      const addr = await scan(from('"soumu@town-b.example.lg.jp" <x@example.org>'));
      expect(addr[0]!.details).toEqual(['"soumu@town-b.example.lg.jp" <x@example.org> names town-b.example.lg.jp']);
    });

    it('does not fire on our own address, a trusted relay, an allowed sender or a name that names nobody', async () => {
      expect(await scan(from(`${encodedWord('甲市 総務課', 'iso-2022-jp')} <soumu@city-a.example.lg.jp>`), { clientIp: '192.0.2.9' })).toEqual([]);
      expect(await scan(from(`${encodedWord('甲市長', 'utf-8')} <noreply@vendor.example>`), { clientIp: '192.0.2.9' })).toEqual([]);
      const kanko = from(`${encodedWord('甲市観光協会', 'shift_jis')} <info@news.kanko.example.jp>`);
      expect(await scan(kanko, { check: { displayNameAllowedDomains: ['kanko.example.jp'] } })).toEqual([]);
      expect(names(await scan(kanko))).toEqual(['SPOOF_DISPLAY_NAME']);
      expect(await scan(from(`${encodedWord('山田花子', 'iso-2022-jp')} <hanako@example.com>`))).toEqual([]);
    });

    it('does not fire on a newsletter that mentions the city and its domain in the body only', async () => {
      const mail = buildMail({
        from: `${encodedWord('観光ニュース', 'iso-2022-jp')} <news@travel.example.com>`,
        text: { body: '甲市の秋祭りのご案内です。詳しくは https://www.city-a.example.lg.jp/ をご覧ください。乙町長 山田太郎 も参加します。', charset: 'iso-2022-jp' },
      });
      expect(await scan(mail, { mailFrom: 'bounce@travel.example.com' })).toEqual([]);
    });
  });

  it('the existing clean Japanese fixture passes', async () => {
    expect(await scan(fixture('mime-clean-japanese.eml'))).toEqual([]);
  });

  it('the config schema fills defaults and refuses a bad CIDR', () => {
    expect(spoofingConfigSchema.parse({})).toEqual({ trustedRelays: [], officials: [], lookalikeIgnoreDomains: [], displayNameAllowedDomains: [] });
    expect(spoofingConfigSchema.safeParse({ trustedRelays: ['192.0.2.0/33'] }).success).toBe(false);
    expect(spoofingConfigSchema.safeParse({ trustedRelays: ['relay.example'] }).success).toBe(false);
    expect(spoofingConfigSchema.parse({ trustedRelays: ['2001:db8::/32'] }).trustedRelays).toEqual(['2001:db8::/32']);
  });
});
