/**
 * URL domains as a blocklist sees them: registrable domains of what a reader's client would link, found in
 * decoded text and HTML, in body order, without duplicates; IP literals and non-URLs left out.
 */
import { describe, expect, it } from 'vitest';
import { registrableDomain, urlDomains } from '../../../../../src/scan/checks/reputation/url-domains.ts';
import { parseMessage } from '../../../../../src/scan/mime-parts.ts';
import { buildMail, type Charset } from '../../../../helpers/mail-builder.ts';

async function domainsOf(spec: { text?: string; html?: string; charset?: Charset }, max = 20): Promise<string[]> {
  const charset = spec.charset ?? 'utf-8';
  const raw = buildMail({
    ...(spec.text !== undefined ? { text: { body: spec.text, charset } } : {}),
    ...(spec.html !== undefined ? { html: { body: spec.html, charset } } : {}),
  });
  return urlDomains(await parseMessage(raw), max);
}

describe('urlDomains', () => {
  it('finds scheme URLs, www. hosts and protocol-relative hrefs, in order, once each', async () => {
    expect(
      await domainsOf({
        html: '<a href="//cdn.tracker.example.net/x">a</a> see www.shop.example.org and HTTPS://Mail.Example.CO.JP/login <a href=\'https://a.example.net/\'>b</a>',
      }),
    ).toEqual(['example.net', 'example.org', 'example.co.jp']);
  });

  it('resolves character references and percent-escapes as a browser does', async () => {
    expect(await domainsOf({ html: '<a href="https&colon;&sol;&sol;evil&period;example&#46;com/">x</a>' })).toEqual(['example.com']);
    expect(await domainsOf({ text: 'http://%65vil.example.com/' })).toEqual(['example.com']);
  });

  it('IDN hosts become punycode; IP literals and bare words are left out', async () => {
    expect(await domainsOf({ text: 'https://例え.jp/ と http://192.0.2.1/ と http://[2001:db8::1]/ と mail@example.com と report.pdf' })).toEqual([
      'xn--r8jz45g.jp',
    ]);
  });

  it('reads ISO-2022-JP text', async () => {
    expect(await domainsOf({ text: '詳細はこちら https://login.example-bank.co.jp/ をご覧ください', charset: 'iso-2022-jp' })).toEqual(['example-bank.co.jp']);
  });

  it('stops at max domains', async () => {
    expect(await domainsOf({ text: 'https://a.com https://b.com https://c.com' }, 2)).toEqual(['a.com', 'b.com']);
  });

  it('registrableDomain', () => {
    expect(registrableDomain('a.b.city-a.example.co.jp')).toBe('example.co.jp');
    expect(registrableDomain('192.0.2.1')).toBeUndefined();
    expect(registrableDomain('')).toBeUndefined();
  });
});
