/**
 * One pass over an HTML body with htmlparser2: the text a reader sees, the text hidden from them (inline CSS
 * display:none, visibility:hidden, zero font size or opacity, text coloured like its background, the `hidden`
 * attribute) and every link with its text. Scripts, styles and the <head> are neither.
 *
 * Cost: at most MAX_SCANNED_HTML_CHARS are parsed, fed in FEED_CHARS chunks, and parsing stops once elements nest
 * deeper than MAX_HTML_DEPTH (htmlparser2's work per tag grows with the depth of open elements).
 */
import { Parser } from 'htmlparser2';

/** HTML characters parsed; the rest is not looked at. Phishing and spam HTML bodies are under 100 KiB. */
export const MAX_SCANNED_HTML_CHARS = 512 * 1024;
/** Open elements at once beyond which parsing stops; mail HTML nests 20–40 levels, tag soup a few hundred. */
const MAX_HTML_DEPTH = 300;
/** Characters fed to the parser at a time: after the depth limit trips, at most this much more is parsed. */
const FEED_CHARS = 4096;
/** Links kept; a body with more is a link farm and the first ones tell enough. */
const MAX_LINKS = 500;
/** Characters of one link's text kept. */
const MAX_LINK_TEXT_CHARS = 512;

export interface HtmlLink {
  href: string;
  text: string;
}

export interface HtmlScan {
  visibleText: string;
  hiddenText: string;
  links: HtmlLink[];
}

interface Open {
  name: string;
  hides: boolean;
  /** Background colour in force (normalised), inherited. */
  background: string;
  /** Text colour in force (normalised, '' when unknown), inherited. */
  color: string;
}

const SKIPPED = new Set(['script', 'style', 'head', 'title', 'template', 'noscript', 'xml']);
const NAMED_COLORS: Record<string, string> = { white: '#ffffff', black: '#000000' };

function normColor(v: string | undefined): string {
  if (!v) return '';
  const c = v.trim().toLowerCase().replace(/\s+/g, '');
  const named = NAMED_COLORS[c];
  if (named) return named;
  const short = /^#([0-9a-f])([0-9a-f])([0-9a-f])$/.exec(c);
  if (short) return `#${short[1]!.repeat(2)}${short[2]!.repeat(2)}${short[3]!.repeat(2)}`;
  const rgb = /^rgba?\((\d{1,3}),(\d{1,3}),(\d{1,3})(?:,1(?:\.0{0,9})?)?\)$/.exec(c);
  if (rgb) return `#${rgb.slice(1, 4).map((n) => Number(n).toString(16).padStart(2, '0')).join('')}`;
  return /^#[0-9a-f]{6}$/.test(c) ? c : '';
}

function parseStyle(style: string): Map<string, string> {
  const d = new Map<string, string>();
  for (const decl of style.split(';')) {
    const i = decl.indexOf(':');
    if (i > 0) d.set(decl.slice(0, i).trim().toLowerCase(), decl.slice(i + 1).replace(/!\s*important/i, '').trim().toLowerCase());
  }
  return d;
}

function isZero(v: string | undefined): boolean {
  return v !== undefined && /^[+-]?0{1,9}(?:\.0{0,9})?[a-z%]{0,4}$/.test(v);
}

function opened(name: string, attribs: Record<string, string>, parent: Open): Open {
  const d = parseStyle(attribs.style ?? '');
  const background = normColor(d.get('background-color') ?? d.get('background') ?? attribs.bgcolor) || parent.background;
  const color = normColor(d.get('color') ?? attribs.color) || parent.color;
  const hides =
    attribs.hidden !== undefined ||
    d.get('display') === 'none' ||
    d.get('visibility') === 'hidden' ||
    isZero(d.get('font-size')) ||
    isZero(d.get('opacity')) ||
    (d.get('overflow') === 'hidden' && (isZero(d.get('height')) || isZero(d.get('max-height')) || isZero(d.get('width'))));
  return { name, hides: hides || parent.hides, background, color };
}

export function scanHtml(html: string): HtmlScan {
  const root: Open = { name: '', hides: false, background: '#ffffff', color: '' };
  const stack: Open[] = [root];
  let visible = '';
  let hidden = '';
  let skipping = 0;
  let tooDeep = false;
  const links: HtmlLink[] = [];
  let link: HtmlLink | undefined;

  const parser = new Parser(
    {
      onopentag(name, attribs) {
        if (SKIPPED.has(name)) skipping++;
        const top = stack.at(-1) ?? root;
        stack.push(opened(name, attribs, top));
        if (stack.length > MAX_HTML_DEPTH) tooDeep = true;
        if (name === 'a' && attribs.href && links.length < MAX_LINKS) {
          link = { href: attribs.href.trim(), text: '' };
          links.push(link);
        }
        if (name === 'br' || name === 'p' || name === 'div' || name === 'tr' || name === 'li') visible += '\n';
      },
      onclosetag(name) {
        if (SKIPPED.has(name) && skipping > 0) skipping--;
        if (stack.length > 1) stack.pop();
        if (name === 'a') link = undefined;
      },
      ontext(text) {
        if (skipping > 0) return;
        const top = stack.at(-1) ?? root;
        const camouflaged = top.color !== '' && top.color === top.background;
        if (top.hides || camouflaged) hidden += text;
        else visible += text;
        if (link && link.text.length < MAX_LINK_TEXT_CHARS) link.text += text;
      },
    },
    { decodeEntities: true },
  );
  const input = html.length > MAX_SCANNED_HTML_CHARS ? html.slice(0, MAX_SCANNED_HTML_CHARS) : html;
  for (let at = 0; at < input.length && !tooDeep; at += FEED_CHARS) parser.write(input.slice(at, at + FEED_CHARS));
  if (!tooDeep) parser.end();
  for (const l of links) l.text = l.text.replace(/\s+/g, ' ').trim().slice(0, MAX_LINK_TEXT_CHARS);
  return { visibleText: visible, hiddenText: hidden, links };
}
