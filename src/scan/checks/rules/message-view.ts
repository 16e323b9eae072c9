/**
 * What the rules read of a message, decoded once: the subject (RFC 2047, any Japanese charset), the body text a
 * reader sees (text/plain leaves, and the visible text of HTML leaves), the hidden HTML text, the HTML links with
 * their text, and every http(s) URL of the body. Only the message's own body leaves count (not attachments, not
 * attached messages: a forwarded phish reported by staff is not itself phishing).
 *
 * Cost: each leaf is read up to MAX_LEAF_BYTES and the joined text is cut at MAX_BODY_TEXT_CHARS, so every regex
 * of the rules runs over bounded text.
 */
import { decodeText } from '../../../sanitize/charset.ts';
import type { MimePart, ParsedMessage } from '../../mime-parts.ts';
import { decodeHeaderWords, headerValues } from '../spoofing/mail-address.ts';
import { scanHtml, type HtmlLink } from './html-scan.ts';

/** Bytes of one body leaf decoded. Mail bodies are far smaller; what lies beyond is left to Bayes and antivirus. */
const MAX_LEAF_BYTES = 1024 * 1024;
/** Characters of body text the rules run over: bounds every regex's work per message. */
export const MAX_BODY_TEXT_CHARS = 256 * 1024;
/** URLs kept per message. */
const MAX_URLS = 1_000;

export interface MessageView {
  subject: string;
  /** Visible body text, leaves joined by blank lines. */
  bodyText: string;
  /** True when the body has HTML and no text/plain alternative. */
  htmlOnly: boolean;
  hiddenText: string;
  links: HtmlLink[];
  /** http(s) URLs of links and of the text, as written. */
  urls: string[];
}

/** A URL in text ends at whitespace, quotes, angle brackets or the first non-ASCII character (Japanese text). */
const TEXT_URL = /\bhttps?:\/\/[^\s<>"'\u007f-\uffff]+/gi;

function isBodyLeaf(p: MimePart): boolean {
  return p.embeddedDepth === 0 && p.disposition !== 'attachment' && !p.filename && (p.contentType === 'text/plain' || p.contentType === 'text/html');
}

export function viewOf(parsed: ParsedMessage): MessageView {
  const subject = decodeHeaderWords(headerValues(parsed, 'subject')[0] ?? '');
  const leaves = parsed.parts.filter(isBodyLeaf);
  const texts: string[] = [];
  let hiddenText = '';
  const links: HtmlLink[] = [];
  for (const leaf of leaves) {
    const html = leaf.contentType === 'text/html';
    const text = decodeText(leaf.content.subarray(0, MAX_LEAF_BYTES), leaf.charset, { html });
    if (!html) {
      texts.push(text);
      continue;
    }
    const scan = scanHtml(text);
    texts.push(scan.visibleText);
    hiddenText += scan.hiddenText;
    links.push(...scan.links);
  }
  const bodyText = texts.join('\n\n').slice(0, MAX_BODY_TEXT_CHARS);
  const urls = [...links.map((l) => l.href).filter((h) => /^https?:/i.test(h)), ...(bodyText.match(TEXT_URL) ?? [])].slice(0, MAX_URLS);
  return {
    subject,
    bodyText,
    htmlOnly: leaves.some((l) => l.contentType === 'text/html') && !leaves.some((l) => l.contentType === 'text/plain'),
    hiddenText: hiddenText.slice(0, MAX_BODY_TEXT_CHARS),
    links,
    urls,
  };
}

/** The host of a URL (lower case, IPv4 forms normalised by the WHATWG parser), or '' when it has none. */
export function hostOf(url: string): string {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return '';
  }
}
