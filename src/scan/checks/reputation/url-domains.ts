/**
 * The registrable domains (example.co.jp for https://a.b.example.co.jp/x) of the URLs in a message's text and HTML
 * leaves, in body order, without duplicates: what URI blocklists list. Each leaf is decoded from its charset first
 * (ISO-2022-JP, Shift_JIS…), HTML character references are resolved (`&#104;ttp`, `&colon;`), and the text is
 * NFKC-normalised so that full-width `ｅｖｉｌ．ｅｘａｍｐｌｅ` is read as the reader's client would show it.
 * Hosts are parsed by the WHATWG URL parser, as browsers do (percent-escapes, IDN to punycode).
 *
 * Every byte here is hostile: the regular expressions are linear, and the limits below bound the work.
 */
import { isIP } from 'node:net';
import { getDomain } from 'tldts';
import { decodeText } from '../../../sanitize/charset.ts';
import type { ParsedMessage } from '../../mime-parts.ts';

/** Bytes of one text leaf read for URLs; HTML mail bodies are under 300 KiB. */
export const MAX_LEAF_BYTES = 2 * 1024 * 1024;
/** URL candidates examined per message; beyond this a message is a link farm and the first ones tell enough. */
export const MAX_URL_CANDIDATES = 2_000;

/**
 * `scheme://` (http, https) or `www.` up to white space, quotes, brackets; `//host` in href/src (protocol-relative).
 * The lookbehind runs only where `//` matched, so runs of white space are not scanned again at every position.
 */
const URL_RE = /(?:\bhttps?:\/\/|(?<![\w.@-])www\.|\/\/(?<=\b(?:href|src|action)\s*=\s*["']?\/\/))[^\s<>"'`{}|\\^()[\]]+/giu;
/** Characters of the Japanese scripts and full-width punctuation: text that a sender writes right after a URL. */
const JAPANESE = /[\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Han}\u3000-\u303f\uff01-\uff60]/u;

/** The named character references that can spell a URL; others stay as written (they cannot form a host). */
const NAMED: Readonly<Record<string, string>> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", colon: ':', sol: '/', period: '.', commat: '@', num: '#',
  quest: '?', equals: '=', percnt: '%', lowbar: '_', hyphen: '-', dash: '-', nbsp: ' ', tab: '\t', newline: '\n',
};

function decodeEntities(s: string): string {
  return s.replace(/&(?:#(\d{1,7})|#x([0-9a-f]{1,6})|([a-z]{2,8}));?/gi, (m, dec: string | undefined, hex: string | undefined, name: string | undefined) => {
    if (name !== undefined) return NAMED[name.toLowerCase()] ?? m;
    const cp = dec !== undefined ? Number(dec) : parseInt(hex ?? '', 16);
    return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}

/** "evil.exampleこちら" → "evil.example": a host that runs into Japanese text ends where it does. */
function trimJapaneseTail(candidate: string): string {
  const at = candidate.search(JAPANESE);
  if (at <= 0) return candidate;
  const before = candidate.slice(0, at);
  return /\.[a-z]{2,}$/i.test(before) ? before : candidate;
}

function hostOf(candidate: string): string | undefined {
  const withScheme = candidate.startsWith('//') ? `http:${candidate}` : /^www\./i.test(candidate) ? `http://${candidate}` : candidate;
  try {
    return new URL(trimJapaneseTail(withScheme)).hostname.replace(/\.$/, '');
  } catch {
    return undefined;
  }
}

/** The registrable domain of a host name; undefined for IP literals and names under no public suffix. */
export function registrableDomain(host: string): string | undefined {
  if (!host || isIP(host.replace(/^\[|\]$/g, ''))) return undefined;
  return getDomain(host) ?? undefined;
}

/** Registrable domains of the URLs in the message's text/plain and text/html leaves, at most `max`, in order. */
export function urlDomains(parsed: ParsedMessage, max: number): string[] {
  const found = new Set<string>();
  let candidates = 0;
  for (const part of parsed.parts) {
    const html = part.contentType === 'text/html';
    if (!html && part.contentType !== 'text/plain') continue;
    const raw = decodeText(part.content.subarray(0, MAX_LEAF_BYTES), part.charset, { html });
    const text = (html ? decodeEntities(raw) : raw).normalize('NFKC');
    for (const m of text.matchAll(URL_RE)) {
      if (++candidates > MAX_URL_CANDIDATES || found.size >= max) return [...found];
      const host = hostOf(m[0]);
      const domain = host && registrableDomain(host);
      if (domain) found.add(domain);
    }
  }
  return [...found];
}
