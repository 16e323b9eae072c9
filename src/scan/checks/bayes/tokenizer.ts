/**
 * The Bayes tokenizer: one message → its distinct tokens. Every text is decoded first (any charset, RFC 2047
 * header words, HTML reduced to its text), NFKC-normalised and lower-cased, so that 全角 "ＰＡＹＰＡＬ" and
 * ISO-2022-JP, Shift_JIS or UTF-8 copies of one spam yield the same tokens.
 *
 * Japanese has no spaces: CJK runs are segmented into words by `Intl.Segmenter('ja')` (katakana runs, loanwords,
 * kept whole); the rest is split by a regular expression, since the segmenter is far slower on Latin text.
 * Header, URL and markup tokens carry a prefix (`S:` subject word, `F:` From, `U:` URL, `T:` HTML markup, `H:`
 * other header facts) so that "paypal" in a link and "paypal" in prose are different evidence. Received headers
 * are not read: they describe our own relays more than the sender.
 *
 * Rule: the output is bounded (maxTokensPerMessage distinct tokens, maxTextChars of body text), whatever the input.
 */
import { decodeText } from '../../../sanitize/charset.ts';
import type { MimePart, ParsedMessage } from '../../mime-parts.ts';
import { decodeHeaderWords } from '../spoofing/mail-address.ts';

export interface TokenizeLimits {
  maxTokensPerMessage: number;
  maxTextChars: number;
}

/** Latin words shorter than this are noise ("a", "of"); CJK words are kept from one character. */
const MIN_WORD_CHARS = 3;
/** Longer words become `sk:` + their first SKIP_PREFIX_CHARS characters, as SpamAssassin does (base64 junk, hashes). */
const MAX_WORD_CHARS = 20;
const SKIP_PREFIX_CHARS = 8;
/** Characters of one header value read; a header of megabytes (hostile) costs no more than this. */
const MAX_HEADER_CHARS = 2_000;
/** URLs read per message; a message of a million links yields this many URLs' tokens. Newsletters have ~200. */
const MAX_URLS = 300;
/** Tags whose markup is tokenized per HTML part; the same few dozen tag shapes repeat in any longer message. */
const MAX_MARKUP_TAGS = 2_000;
const HTML_TAG = /<([a-z][a-z0-9]{0,15})\b([^<>]{0,300})/gi;
const HTML_ATTRIBUTE = /([a-z-]{2,20})\s*=\s*["']?([^"'\s>]{0,30})/gi;
/** Characters of HTML read per part before tags are stripped; bounds the regex passes over it. */
const MAX_HTML_CHARS = 500_000;

const segmenter = new Intl.Segmenter('ja', { granularity: 'word' });

const CJK_RUN = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}ー々〆ヶ]+/gu;
const HIRAGANA_ONLY = /^\p{Script=Hiragana}+$/u;
const KATAKANA_RUN = /([\p{Script=Katakana}ー]+)/u;
const KATAKANA_ONLY = /^[\p{Script=Katakana}ー]+$/u;
const LATIN_WORD = /[\p{L}\p{N}][\p{L}\p{N}'’$€£¥-]*/gu;
const URL = /\b(?:https?:\/\/|www\.)[^\s<>"'`()[\]{}\\^|\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]+/gi;
const SECOND_LEVEL = new Set(['co', 'ne', 'or', 'ac', 'go', 'lg', 'ed', 'gr', 'ad', 'com', 'net', 'org', 'gov', 'edu']);

/**
 * A header value with its RFC 2047 encoded-words decoded (any charset decodeText knows). The parser hands over
 * header bytes as latin1: raw 8-bit bytes (Shift_JIS written unencoded by old mailers) are decoded as a body is.
 */
export function decodeHeaderValue(value: string): string {
  const head = value.slice(0, MAX_HEADER_CHARS);
  return decodeHeaderWords(/[\x80-\xff]/.test(head) ? decodeText(Buffer.from(head, 'latin1'), null) : head);
}

function normalise(text: string): string {
  return text.normalize('NFKC').toLowerCase();
}

/** The registrable part of a host name, roughly: two labels, three under a Japanese-style second level (co.jp). */
function registrable(host: string): string {
  const labels = host.split('.').filter(Boolean);
  const n = labels.length >= 3 && (labels.at(-1) ?? '').length === 2 && SECOND_LEVEL.has(labels.at(-2) ?? '') ? 3 : 2;
  return labels.slice(-n).join('.');
}

function addressDomain(value: string): string | null {
  const m = /@([a-z0-9.-]+\.[a-z]{2,})/i.exec(value);
  return m?.[1] ? m[1].toLowerCase().replace(/\.$/, '') : null;
}

/**
 * The HTML without comments, scripts and styles. By indexOf, not by a lazy regular expression: thousands of
 * unclosed `<script` would make each one scan to the end of the part, a quadratic cost.
 */
function withoutHiddenBlocks(html: string): string {
  const lower = html.toLowerCase();
  const opener = /<!--|<script\b|<style\b/g;
  let out = '';
  let at = 0;
  for (;;) {
    opener.lastIndex = at;
    const start = opener.exec(lower)?.index;
    if (start === undefined) return out + html.slice(at);
    out += `${html.slice(at, start)} `;
    const closer = lower.startsWith('<!--', start) ? '-->' : lower.startsWith('<script', start) ? '</script' : '</style';
    const end = lower.indexOf(closer, start + 4);
    // Unclosed: the rest is hidden, as a browser hides it.
    if (end < 0) return out;
    at = lower.indexOf('>', end);
    if (at < 0) return out;
    at++;
  }
}

/** Strips an HTML body to its text, collecting the URLs of href/src attributes. */
function htmlToText(html: string, urls: string[]): string {
  const s = html.slice(0, MAX_HTML_CHARS);
  for (const m of s.matchAll(/\b(?:href|src)\s*=\s*["']?([^"'\s>]+)/gi)) if (m[1] && urls.length < MAX_URLS) urls.push(m[1]);
  return withoutHiddenBlocks(s)
    .replace(/<[^<>]*>/g, ' ')
    .replace(/&nbsp;/gi, ' ')
    .replace(/&#x([0-9a-f]{1,6});/gi, (_m, h: string) => safeCodePoint(parseInt(h, 16)))
    .replace(/&#(\d{1,7});/g, (_m, d: string) => safeCodePoint(Number(d)))
    .replace(/&(amp|lt|gt|quot|apos);/gi, (_m, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[e.toLowerCase()] ?? ' ');
}

/**
 * Tokens of the HTML markup itself: tag and attribute names and short attribute values (`T:font`,
 * `T:color=#ff0000`). How a message is marked up tells the software that wrote it, which the text alone does not.
 */
function markupTokens(html: string, emit: (token: string) => boolean): void {
  let tags = 0;
  for (const m of html.slice(0, MAX_HTML_CHARS).matchAll(HTML_TAG)) {
    if (++tags > MAX_MARKUP_TAGS || !emit(`T:${(m[1] ?? '').toLowerCase()}`)) return;
    for (const a of (m[2] ?? '').matchAll(HTML_ATTRIBUTE)) {
      const name = (a[1] ?? '').toLowerCase();
      if (!emit(`T:${name}`)) return;
      if (name !== 'href' && name !== 'src' && !emit(`T:${name}=${(a[2] ?? '').toLowerCase()}`)) return;
    }
  }
}

function safeCodePoint(cp: number): string {
  return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : ' ';
}

function wordToken(word: string): string | null {
  if (/^\d+$/.test(word)) return word.length > 6 ? 'N:long' : word.length >= 2 ? word : null;
  if (word.length < MIN_WORD_CHARS) return null;
  return word.length > MAX_WORD_CHARS ? `sk:${word.slice(0, SKIP_PREFIX_CHARS)}` : word;
}

/** Words of normalised text: CJK runs through the segmenter, everything else through LATIN_WORD. */
export function words(text: string, emit: (token: string) => boolean): void {
  let last = 0;
  const latin = (chunk: string): boolean => {
    for (const m of chunk.matchAll(LATIN_WORD)) {
      const t = wordToken(m[0].replace(/['’-]+$/, ''));
      if (t !== null && !emit(t)) return false;
    }
    return true;
  };
  for (const run of text.matchAll(CJK_RUN)) {
    if (!latin(text.slice(last, run.index))) return;
    last = run.index + run[0].length;
    // Katakana runs are loanwords (カスタマーサポート): kept whole, since ICU's dictionary cuts them into syllables.
    for (const piece of run[0].split(KATAKANA_RUN)) {
      if (piece === '') continue;
      if (KATAKANA_ONLY.test(piece)) {
        if (piece.length >= 2 && !emit(piece)) return;
        continue;
      }
      for (const seg of segmenter.segment(piece)) {
        if (!seg.isWordLike) continue;
        // Lone hiragana (particles, okurigana: の, が, て) carry no evidence.
        if (seg.segment.length === 1 && HIRAGANA_ONLY.test(seg.segment)) continue;
        if (!emit(seg.segment)) return;
      }
    }
  }
  latin(text.slice(last));
}

function urlTokens(url: string, emit: (token: string) => boolean): void {
  const m = /^(?:https?:\/\/)?(?:[^/?#@]*@)?([^/?#:]+)(?::\d+)?([^#]*)/i.exec(url);
  if (!m?.[1]) return;
  const host = m[1].toLowerCase().replace(/\.$/, '');
  if (/^[\d.]+$/.test(host) || host.startsWith('[')) {
    emit('U:ip');
  } else {
    emit(`U:h:${host}`);
    emit(`U:d:${registrable(host)}`);
  }
  for (const seg of (m[2] ?? '').split(/[/?&=.,;_+-]+/)) {
    if (seg.length >= 2 && seg.length <= 30 && !/^\d+$/.test(seg)) emit(`U:p:${seg}`);
  }
}

function isBodyText(part: MimePart): boolean {
  return (part.contentType === 'text/plain' || part.contentType === 'text/html') && part.disposition !== 'attachment' && part.filename === null;
}

/** The distinct tokens of one parsed message, at most `limits.maxTokensPerMessage`, header and URL tokens first. */
export function tokenize(parsed: ParsedMessage, limits: TokenizeLimits): string[] {
  const tokens = new Set<string>();
  const emit = (t: string): boolean => {
    if (tokens.size >= limits.maxTokensPerMessage) return false;
    tokens.add(t);
    return true;
  };
  const prefixed = (prefix: string) => (t: string) => emit(prefix + t);

  const header = (key: string) => parsed.headers.find((h) => h.key === key)?.value;
  const subject = header('subject');
  if (subject !== undefined) words(normalise(decodeHeaderValue(subject)), prefixed('S:'));
  const from = header('from');
  if (from !== undefined) {
    const decoded = normalise(decodeHeaderValue(from));
    const domain = addressDomain(decoded);
    if (domain) {
      emit(`F:d:${domain}`);
      emit(`F:r:${registrable(domain)}`);
    } else {
      emit('F:d:none');
    }
    words(decoded.replace(/<[^>]*>|\S+@\S+/g, ' '), prefixed('F:n:'));
  }
  const replyTo = header('reply-to');
  if (replyTo !== undefined) emit(`H:replyto:${addressDomain(replyTo) ?? 'none'}`);
  const messageId = header('message-id');
  emit(`H:mid:${messageId === undefined ? 'none' : registrable(addressDomain(messageId) ?? 'none')}`);
  const mailer = header('x-mailer') ?? header('user-agent');
  if (mailer !== undefined) emit(`H:mailer:${normalise(decodeHeaderValue(mailer)).replace(/[\d.]+/g, '#').slice(0, 40)}`);
  const contentType = header('content-type');
  emit(`H:ct:${contentType === undefined ? 'none' : (/^\s*([\w.+-]+\/[\w.+-]+)/.exec(contentType.toLowerCase())?.[1] ?? 'bad')}`);

  const urls: string[] = [];
  const texts: string[] = [];
  let budget = limits.maxTextChars;
  for (const part of parsed.parts) {
    if (!isBodyText(part)) {
      emit(`H:att:${part.contentType}`);
      continue;
    }
    emit(`H:cs:${part.charset?.toLowerCase() ?? 'none'}`);
    if (budget <= 0) continue;
    const html = part.contentType === 'text/html';
    const decoded = decodeText(part.content, part.charset, { html });
    if (html) markupTokens(decoded, emit);
    const text = normalise(html ? htmlToText(decoded, urls) : decoded).slice(0, budget);
    budget -= text.length;
    texts.push(text);
  }
  for (const text of texts) {
    for (const m of text.matchAll(URL)) {
      if (urls.length >= MAX_URLS) break;
      urls.push(m[0]);
    }
  }
  for (const url of urls) urlTokens(normalise(url), emit);
  for (const text of texts) words(text.replace(URL, ' '), emit);
  return [...tokens];
}
