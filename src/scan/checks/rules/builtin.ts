/**
 * The built-in rules: malformed Date and Message-ID (missing ones are the mime check's), Reply-To in another
 * domain than From, HTML-only mail with hidden text, link text showing another domain than the target, IP-literal
 * and shortener URLs, and Japanese phishing wording. Each yields one catalogue symbol with details.
 *
 * Japanese wording is matched on the subject and visible body text after NFKC (full-width and half-width forms
 * folded) with whitespace and zero-width characters removed (`本 人 確 認` is 本人確認). Wording alone is what
 * real notices and staff warnings say too: a phishing symbol needs a link to a host outside the tenant and
 * official domains as well. Every regex here has bounded repetition and no nested quantifiers.
 */
import { isIP } from 'node:net';
import { getDomain, parse as parseHost } from 'tldts';
import type { SymbolHit } from '../../check.ts';
import type { ParsedMessage } from '../../mime-parts.ts';
import type { SymbolName } from '../../symbols.ts';
import { isWithin } from '../spoofing/lookalike.ts';
import { headerValues, parseAddresses } from '../spoofing/mail-address.ts';
import { hostOf, type MessageView } from './message-view.ts';

export interface BuiltinOptions {
  /** Tenant domains and officialDomains: links to them do not make wording a finding. */
  officialDomains: readonly string[];
  shortenerDomains: readonly string[];
}

/**
 * Hidden HTML text shorter than this (non-blank characters) is not reported unless it outweighs the visible text:
 * newsletters hide a preview line ("preheader") of about a hundred characters; spam hides paragraphs.
 */
const MIN_HIDDEN_CHARS = 200;
/** Hidden text shorter than this is never reported (an empty hidden span, a tracking character). */
const MIN_HIDDEN_CHARS_OUTWEIGHING = 20;
/** Characters of matched text quoted in details. */
const MAX_EXCERPT_CHARS = 60;
/** Details per symbol; a link farm does not need a thousand. */
const MAX_DETAILS = 10;

const PHISHING: readonly { symbol: SymbolName; all: readonly RegExp[] }[] = [
  { symbol: 'PHISH_JA_ACCOUNT_SUSPENDED', all: [/アカウント.{0,30}?(?:停止|利用制限|凍結|ロック)|(?:利用制限|一時停止|凍結).{0,20}?アカウント/u] },
  { symbol: 'PHISH_JA_IDENTITY_CHECK', all: [/本人確認|ご本人様確認|お客様情報の確認|(?:アカウント|ご登録)情報.{0,10}?確認/u] },
  { symbol: 'PHISH_JA_PARCEL_REDELIVERY', all: [/不在.{0,40}?再配達|お荷物.{0,40}?お届けできませんでした|配達できませんでした|再配達.{0,20}?(?:お手続き|手続き|お申し?込み)/u] },
  { symbol: 'PHISH_JA_TAX_REFUND', all: [/還付金|税金?の還付|未払い?.{0,20}?税|税.{0,10}?未納|未納.{0,10}?税/u] },
  { symbol: 'PHISH_JA_CARD_FRAUD', all: [/クレジットカード.{0,30}?不正(?:利用|使用)|カード.{0,20}?不正(?:利用|使用)/u] },
  { symbol: 'PHISH_JA_PAYMENT_UPDATE', all: [/(?:お?支払い?方法|お?支払い?情報|決済情報).{0,20}?(?:更新|変更|再登録)/u] },
  { symbol: 'PHISH_JA_URGENT_DEADLINE', all: [/緊急|至急/u, /(?:24|48|72)時間以内/u] },
];

/** RFC 5322 date-time (obsolete two-digit years allowed), comments and surplus whitespace removed first. */
const DATE_TIME =
  /^(?:(?:mon|tue|wed|thu|fri|sat|sun), ?)?(\d{1,2}) (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec) (?:\d{4}|\d{2}) (\d{2}):(\d{2})(?::(\d{2}))? (?:[+-]\d{4}|ut|gmt|[ecmp][sd]t|[a-ik-z])$/i;
/** Headers that mark mail sent through a mailing list (RFC 2369, RFC 2919, and the older Mailing-List). */
const MAILING_LIST_HEADERS = new Set(['list-id', 'list-post', 'list-unsubscribe', 'list-help', 'mailing-list']);
const MESSAGE_ID = /^<[^<>\s@]{1,512}@[^<>\s@]{1,512}>$/;

function excerpt(s: string): string {
  return s.length > MAX_EXCERPT_CHARS ? `${s.slice(0, MAX_EXCERPT_CHARS)}…` : s;
}

/** NFKC, then without whitespace and zero-width characters: the form Japanese wording is matched in. */
export function foldJapanese(s: string): string {
  return s.normalize('NFKC').replace(/[\s\u00ad\u200b-\u200d\u2060\ufeff]/gu, '');
}

function withoutComments(s: string): string {
  return s.replace(/\([^()]{0,200}\)/g, ' ').replace(/\s+/g, ' ').trim();
}

export function isMalformedDate(value: string): boolean {
  const m = DATE_TIME.exec(withoutComments(value));
  if (!m) return true;
  const [day, hour, minute, second] = [m[1], m[2], m[3], m[4] ?? '0'].map(Number) as [number, number, number, number];
  return day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60;
}

function registrable(host: string): string {
  return getDomain(host) ?? host;
}

/** The host a link's text shows: a URL, or a `www.` name, or a bare host name with a known public suffix. */
function shownHost(text: string): string {
  const t = text.normalize('NFKC').trim().toLowerCase();
  const url = /https?:\/\/[^\s/?#<>"']{1,253}/.exec(t);
  if (url) return hostOf(url[0]);
  const bare = /^(?:www\.)?[a-z0-9][a-z0-9.-]{0,251}\.[a-z]{2,24}\/?$/.exec(t);
  if (!bare) return '';
  const host = bare[0].replace(/\/$/, '');
  return host.startsWith('www.') || parseHost(host).isIcann ? host : '';
}

export function runBuiltins(parsed: ParsedMessage, view: MessageView, opts: BuiltinOptions): SymbolHit[] {
  const found = new Map<SymbolName, string[]>();
  const add = (name: SymbolName, detail?: string) => {
    const list = found.get(name) ?? [];
    if (detail !== undefined && list.length < MAX_DETAILS && !list.includes(detail)) list.push(detail);
    found.set(name, list);
  };

  const date = headerValues(parsed, 'date')[0];
  if (date !== undefined && isMalformedDate(date)) add('HEADER_DATE_MALFORMED', excerpt(date));
  const messageId = headerValues(parsed, 'message-id')[0];
  if (messageId !== undefined && !MESSAGE_ID.test(withoutComments(messageId))) add('HEADER_MESSAGE_ID_MALFORMED', excerpt(messageId));

  const from = headerValues(parsed, 'from').flatMap(parseAddresses).filter((a) => a.domain);
  const fromDomains = new Set(from.map((a) => registrable(a.domain)));
  // A mailing list sets Reply-To to the list on purpose (RFC 2369 List-* headers say it is one).
  const list = parsed.headers.some((h) => MAILING_LIST_HEADERS.has(h.key));
  for (const r of from.length > 0 && !list ? headerValues(parsed, 'reply-to').flatMap(parseAddresses) : []) {
    if (r.domain && !fromDomains.has(registrable(r.domain))) add('REPLYTO_OTHER_DOMAIN', `From ${from.map((a) => a.address).join(', ')}, Reply-To ${r.address}`);
  }

  // Only HTML-only mail is measured: counting a whole plain-text body's characters cost ~1 ms per 100 KB.
  const hiddenChars = view.htmlOnly ? view.hiddenText.replace(/\s/g, '').length : 0;
  const visibleChars = hiddenChars ? view.bodyText.replace(/\s/g, '').length : 0;
  if (hiddenChars >= MIN_HIDDEN_CHARS || (hiddenChars >= MIN_HIDDEN_CHARS_OUTWEIGHING && hiddenChars > visibleChars)) {
    add('HTML_ONLY_HIDDEN_TEXT', `${hiddenChars} hidden characters, ${visibleChars} visible: "${excerpt(view.hiddenText.replace(/\s+/g, ' ').trim())}"`);
  }

  for (const link of view.links) {
    const target = /^https?:/i.test(link.href) ? hostOf(link.href) : '';
    const shown = shownHost(link.text);
    if (target && shown && registrable(shown) !== registrable(target)) add('LINK_TEXT_DOMAIN_MISMATCH', `text shows ${shown}, link goes to ${target}`);
  }

  let external = false;
  for (const url of view.urls) {
    const host = hostOf(url);
    if (!host) continue;
    if (isIP(host.replace(/^\[|\]$/g, ''))) add('URL_IP_LITERAL', excerpt(url));
    if (opts.shortenerDomains.some((d) => isWithin(host, d))) add('URL_SHORTENER', excerpt(url));
    if (!opts.officialDomains.some((d) => isWithin(host, d))) external = true;
  }

  if (external) {
    const text = `${foldJapanese(view.subject)}\n${foldJapanese(view.bodyText)}`;
    for (const rule of PHISHING) {
      const matches = rule.all.map((re) => re.exec(text)?.[0]);
      if (matches.every((m) => m !== undefined)) add(rule.symbol, excerpt(matches.join(' … ')));
    }
  }
  return [...found].map(([name, details]) => (details.length ? { name, details } : { name }));
}
