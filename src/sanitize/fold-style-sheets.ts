/**
 * Style sheets folded into the HTML before it becomes text (DESIGN §6): the `<style>` rules that can hide text,
 * and the presentational attributes that colour it (bgcolor, background, `<font color>`), are written into each
 * element's own `style` attribute, so body.ts judges hidden text in one place.
 *
 * The rule: when unsure, show. Only simple selectors (tag, .class, #id, compounds of them, descendant and child
 * combinators) outside @media hide; a rule inside @media or @supports, or with a selector not evaluated here,
 * can only undo hiding, on every element its last compound might match; a sheet over a limit is ignored whole.
 */
import { Parser } from 'htmlparser2';

/**
 * Characters of `<style>` text read; a larger sheet is ignored whole (a cut one could lose the rule that undoes
 * a hiding one). Newsletters carry under 100 KiB of CSS.
 */
export const MAX_STYLE_SHEET_CHARS = 512 * 1024;
/** Rules (inside @media included) in all `<style>` blocks; more and the sheet is ignored. Mail has a few thousand. */
export const MAX_STYLE_RULES = 10_000;
/** @media / @supports blocks nested in one another; deeper and the sheet is ignored. Mail nests one, rarely two. */
const MAX_AT_RULE_NESTING = 4;
/**
 * Compounds compared with elements while applying the sheet; past this the sheet is ignored. Bounds rules ×
 * elements × depth (e.g. 10,000 `.a .b` rules on 260,000 `class="a b"` elements nested 200 deep).
 */
const MAX_SELECTOR_STEPS = 5_000_000;

/** The properties that can hide text or change the colours it is judged by; other declarations are dropped. */
const HIDING_PROPERTIES = new Set([
  'display', 'visibility', 'font-size', 'opacity', 'color', 'background', 'background-color', 'background-image', 'mso-hide',
  'height', 'max-height', 'width', 'max-width', 'overflow', 'text-indent', 'left', 'top', 'margin-left', 'margin-top',
]);

/** What an uncertain property is set to: a value that neither hides nor keeps an inherited hiding. */
const NEUTRAL: Record<string, string | undefined> = {
  visibility: 'visible',
  'font-size': 'medium',
  color: 'revert',
  background: 'url(unknown)',
  'background-color': 'url(unknown)',
  'background-image': 'url(unknown)',
};

export interface Declaration {
  value: string;
  important: boolean;
}

/** CSS text without comments, in one linear pass (an unclosed comment runs to the end, as in CSS). */
function stripComments(css: string): string {
  let out = '';
  let at = 0;
  for (let open = css.indexOf('/*'); open >= 0; open = css.indexOf('/*', at)) {
    out += css.slice(at, open);
    const close = css.indexOf('*/', open + 2);
    if (close < 0) return out;
    at = close + 2;
  }
  return out + css.slice(at);
}

/** The size in a `font` shorthand (`bold 0/0 a` → `0`), or undefined. */
function fontShorthandSize(value: string): string | undefined {
  for (const token of value.split(' ')) {
    const m = /^([+-]?[\d.]+[a-z%]*|xx-small|x-small|small|medium|large|x-large|xx-large|smaller|larger)(?:\/|$)/.exec(token);
    if (m) return m[1];
  }
  return undefined;
}

/** A declaration block (`a: b; c: d !important`): names and values lower-cased, blanks folded, `font` giving `font-size`. */
export function parseDeclarations(block: string): Map<string, Declaration> {
  const d = new Map<string, Declaration>();
  for (const decl of stripComments(block).split(';')) {
    const i = decl.indexOf(':');
    if (i < 0) continue;
    const raw = decl.slice(i + 1);
    const important = /!\s*important\s*$/i.test(raw);
    const value = raw.replace(/!\s*important\s*$/i, '').trim().toLowerCase().replace(/\s+/g, ' ');
    const name = decl.slice(0, i).trim().toLowerCase();
    d.set(name, { value, important });
    const size = name === 'font' ? fontShorthandSize(value) : undefined;
    if (size !== undefined) d.set('font-size', { value: size, important });
  }
  return d;
}

// ---- the sheet ----------------------------------------------------------------------------------------------

interface Compound {
  tag: string | undefined;
  id: string | undefined;
  classes: string[];
}

interface Rule {
  /** Compounds right to left (the subject first) and the combinator to the left of each. */
  compounds: Compound[];
  combinators: ('descendant' | 'child')[];
  /**
   * False for a rule in @media, holding nested rules, or with a selector not evaluated: it can only undo hiding,
   * and `compounds` is its subject with pseudo-classes and attributes dropped (it matches more, never less).
   */
  exact: boolean;
  /** ids × 1e6 + classes × 1e3 + tags, then the rule's place in the sheet. */
  specificity: number;
  order: number;
  declarations: Map<string, Declaration>;
}

const COMPOUND = /^(\*|[a-z][a-z0-9-]*)?((?:[.#][a-z0-9_\u0080-\uffff-]+)*)$/i;

function parseCompound(text: string): Compound | undefined {
  const m = COMPOUND.exec(text);
  if (!m || !text) return undefined;
  const parts = m[2]!.match(/[.#][^.#]+/g) ?? [];
  const ids = parts.filter((p) => p.startsWith('#'));
  if (ids.length > 1) return undefined;
  const tag = m[1]?.toLowerCase();
  return { tag: tag === '*' ? undefined : tag, id: ids[0]?.slice(1), classes: parts.filter((p) => p.startsWith('.')).map((p) => p.slice(1)) };
}

function specificityOf(selector: string): number {
  const ids = (selector.match(/#/g) ?? []).length;
  const classes = (selector.match(/[.[:]/g) ?? []).length;
  const tags = (selector.match(/(?:^|[\s>+~(])[a-z]/gi) ?? []).length;
  return ids * 1e6 + classes * 1e3 + tags;
}

/** One selector of a selector list as a rule: exact when simple and not `undoOnly`. */
function ruleFor(selector: string, undoOnly: boolean, order: number, declarations: Map<string, Declaration>): Rule {
  const specificity = specificityOf(selector);
  const tokens = selector.split(/\s*([>+~])\s*|\s+/);
  const compounds: Compound[] = [];
  const combinators: ('descendant' | 'child')[] = [];
  let simple = true;
  for (let i = tokens.length - 1; i >= 0; i -= 2) {
    const compound = parseCompound(tokens[i]!);
    const combinator = i > 0 ? tokens[i - 1] : undefined;
    if (!compound || combinator === '+' || combinator === '~') simple = false;
    if (compound) compounds.push(compound);
    if (i > 0) combinators.push(combinator === '>' ? 'child' : 'descendant');
  }
  if (simple && compounds.length > 0) return { compounds, combinators, exact: !undoOnly, specificity, order, declarations };
  const subject = parseCompound((tokens[tokens.length - 1] ?? '').replace(/\[[^\]]*\]|::?[a-z-]+(?:\([^)]*\))?/gi, ''));
  return { compounds: [subject ?? { tag: undefined, id: undefined, classes: [] }], combinators: [], exact: false, specificity, order, declarations };
}

class SheetTooLarge extends Error {}

/** The `<style>` blocks' rules that set a hiding property, indexed by their subject's id, first class or tag. */
class StyleSheet {
  readonly #index = new Map<string, Rule[]>();
  #rules = 0;

  add(css: string): void {
    this.#parseBlock(stripComments(css).replace(/<!--|-->/g, ' '), 0);
  }

  candidates(tag: string, id: string | undefined, classes: ReadonlySet<string>): Rule[] {
    const keys = id ? ['*', tag, `#${id}`] : ['*', tag];
    for (const c of classes) keys.push(`.${c}`);
    const found: Rule[] = [];
    for (const key of keys) for (const rule of this.#index.get(key) ?? []) found.push(rule);
    return found;
  }

  /** The rules of `css`, inside `nesting` @media or @supports blocks. */
  #parseBlock(css: string, nesting: number): void {
    let at = 0;
    while (at < css.length) {
      const open = css.indexOf('{', at);
      if (open < 0) return;
      const prelude = css.slice(at, open).trim();
      if (prelude.startsWith('@') && prelude.includes(';')) {
        at += css.slice(at, open).indexOf(';') + 1; // @import, @charset
        continue;
      }
      const close = matchingBrace(css, open);
      const body = css.slice(open + 1, close);
      at = close + 1;
      if (++this.#rules > MAX_STYLE_RULES) throw new SheetTooLarge(`over ${MAX_STYLE_RULES} rules`);
      if (/^@(?:media|supports)\b/i.test(prelude)) {
        if (nesting >= MAX_AT_RULE_NESTING) throw new SheetTooLarge(`@media nested over ${MAX_AT_RULE_NESTING} deep`);
        this.#parseBlock(body, nesting + 1);
      } else if (!prelude.startsWith('@')) {
        this.#addRule(prelude, body, nesting > 0 || body.includes('{')); // a nested CSS rule can only undo hiding
      }
    }
  }

  #addRule(selectors: string, body: string, undoOnly: boolean): void {
    const declarations = new Map([...parseDeclarations(body)].filter(([name]) => HIDING_PROPERTIES.has(name)));
    if (declarations.size === 0) return;
    for (const selector of selectors.split(',')) {
      const rule = ruleFor(selector.trim(), undoOnly, this.#rules, declarations);
      const subject = rule.compounds[0]!;
      const key = subject.id ? `#${subject.id}` : subject.classes[0] ? `.${subject.classes[0]}` : (subject.tag ?? '*');
      const list = this.#index.get(key);
      if (list) list.push(rule);
      else this.#index.set(key, [rule]);
    }
  }
}

/** The index of the `}` closing the block opened at `open` (strings skipped), or the end of the text. */
function matchingBrace(css: string, open: number): number {
  let depth = 0;
  for (let i = open; i < css.length; i++) {
    const c = css[i];
    if (c === '"' || c === "'") {
      const end = css.indexOf(c, i + 1);
      if (end < 0) return css.length;
      i = end;
    } else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i;
  }
  return css.length;
}

// ---- applying it --------------------------------------------------------------------------------------------

interface OpenElement {
  tag: string;
  id: string | undefined;
  classes: Set<string>;
}

class TooCostly extends Error {}

class Matcher {
  #steps = 0;

  /** Whether `rule` matches the element on top of `stack` (its ancestors below it). */
  matches(rule: Rule, stack: readonly OpenElement[]): boolean {
    return this.#matchFrom(rule, 0, stack, stack.length - 1);
  }

  #compound(c: Compound, e: OpenElement): boolean {
    if (++this.#steps > MAX_SELECTOR_STEPS) throw new TooCostly();
    return (c.tag === undefined || c.tag === e.tag) && (c.id === undefined || c.id === e.id) && c.classes.every((k) => e.classes.has(k));
  }

  #matchFrom(rule: Rule, i: number, stack: readonly OpenElement[], at: number): boolean {
    if (!this.#compound(rule.compounds[i]!, stack[at]!)) return false;
    if (i === rule.compounds.length - 1) return true;
    if (rule.combinators[i] === 'child') return at > 0 && this.#matchFrom(rule, i + 1, stack, at - 1);
    for (let up = at - 1; up >= 0; up--) if (this.#matchFrom(rule, i + 1, stack, up)) return true;
    return false;
  }
}

interface Winner extends Declaration {
  specificity: number;
  order: number;
}

function outranks(important: boolean, specificity: number, order: number, b: Winner | undefined): boolean {
  if (!b) return true;
  if (important !== b.important) return important;
  return specificity !== b.specificity ? specificity > b.specificity : order > b.order;
}

/** Inline declarations outrank every rule of their importance. */
const INLINE_RANK = Number.POSITIVE_INFINITY;
/** Presentational attributes are outranked by any CSS. */
const PRESENTATIONAL_RANK = -1;

/** bgcolor="003366" as browsers read it. */
function legacyColor(v: string): string {
  const t = v.trim().toLowerCase();
  return /^[0-9a-f]{6}$/.test(t) ? `#${t}` : t;
}

/** Declarations from presentational attributes, which any CSS outranks. */
function presentational(tag: string, attribs: Record<string, string>): Map<string, Winner> {
  const found: [string, string][] = [];
  if (attribs.bgcolor) found.push(['background-color', legacyColor(attribs.bgcolor)]);
  if (attribs.background) found.push(['background-image', 'url(attribute)']);
  if (tag === 'font' && attribs.color) found.push(['color', legacyColor(attribs.color)]);
  return new Map(found.map(([name, value]) => [name, { value, important: false, specificity: PRESENTATIONAL_RANK, order: PRESENTATIONAL_RANK }]));
}

/** The element's cascaded style as a `style` value, or undefined when neither the sheet nor its attributes touch it. */
function cascade(sheet: StyleSheet | undefined, matcher: Matcher, stack: readonly OpenElement[], attribs: Record<string, string>): string | undefined {
  const e = stack[stack.length - 1]!;
  const won = presentational(e.tag, attribs);
  const rules = sheet ? sheet.candidates(e.tag, e.id, e.classes).filter((r) => matcher.matches(r, stack)) : [];
  if (won.size === 0 && rules.length === 0) return undefined;
  for (const rule of rules) {
    if (!rule.exact) continue;
    for (const [name, d] of rule.declarations) {
      if (outranks(d.important, rule.specificity, rule.order, won.get(name))) won.set(name, { value: d.value, important: d.important, specificity: rule.specificity, order: rule.order });
    }
  }
  const inline = parseDeclarations(attribs.style ?? '');
  for (const [name, d] of inline) {
    if (outranks(d.important, INLINE_RANK, INLINE_RANK, won.get(name))) won.set(name, { value: d.value, important: d.important, specificity: INLINE_RANK, order: INLINE_RANK });
  }
  let undone = false;
  for (const rule of rules) {
    if (rule.exact) continue;
    for (const [name, d] of rule.declarations) {
      const current = won.get(name);
      if (current?.value === d.value || !outranks(d.important, rule.specificity, rule.order, current)) continue;
      undone = true;
      const neutral = NEUTRAL[name];
      if (neutral === undefined) won.delete(name);
      else won.set(name, { value: neutral, important: true, specificity: INLINE_RANK, order: INLINE_RANK });
    }
  }
  // mso-hide hides from Outlook only, which ignores @media: with it, a block other clients may show is shown.
  if (undone) won.delete('mso-hide');
  const parts: string[] = [];
  for (const [name, d] of inline) if (!won.has(name)) parts.push(`${name}:${d.value}`);
  for (const [name, d] of won) parts.push(`${name}:${d.value}`);
  return parts.join(';');
}

function escapeAttribute(v: string): string {
  return v.replaceAll('&', '&amp;').replaceAll('"', '&quot;');
}

/** Writes the cascaded style of each element the sheet or its attributes touch as its first `style` attribute. */
function foldStyles(html: string, sheet: StyleSheet | undefined): string {
  const matcher = new Matcher();
  const stack: OpenElement[] = [];
  const inserts: [at: number, text: string][] = [];
  const parser: Parser = new Parser({
    onopentag(name, attribs) {
      stack.push({ tag: name, id: attribs.id?.trim() || undefined, classes: new Set((attribs.class ?? '').split(/\s+/).filter((c) => c)) });
      const style = cascade(sheet, matcher, stack, attribs);
      // An element the parser implies (`<p>` for a stray `</p>`) has no tag to write into: it keeps its inline style.
      const tag = /^<[a-z][^\s/>]*/i.exec(html.slice(parser.startIndex, parser.endIndex));
      if (style !== undefined && tag) inserts.push([parser.startIndex + tag[0].length, ` style="${escapeAttribute(style)}"`]);
    },
    onclosetag() {
      stack.pop();
    },
  });
  parser.write(html);
  parser.end();
  let out = '';
  let at = 0;
  for (const [pos, text] of inserts) {
    out += html.slice(at, pos) + text;
    at = pos;
  }
  return out + html.slice(at);
}

/**
 * The HTML with the hiding rules of `styleBlocks` (the texts of its `<style>` elements, in order) and its colour
 * attributes written into each element's `style`. A sheet over a limit is ignored, with a note in `actions`.
 */
export function foldStyleSheets(html: string, styleBlocks: readonly string[], actions: string[]): string {
  let sheet: StyleSheet | undefined = new StyleSheet();
  try {
    const chars = styleBlocks.reduce((n, b) => n + b.length, 0);
    if (chars > MAX_STYLE_SHEET_CHARS) throw new SheetTooLarge(`over ${MAX_STYLE_SHEET_CHARS / 1024} KiB`);
    for (const block of styleBlocks) sheet.add(block);
  } catch (err) {
    if (!(err instanceof SheetTooLarge)) throw err;
    actions.push(`style sheet ignored (${err.message}): text it hides is shown`);
    sheet = undefined;
  }
  try {
    return foldStyles(html, sheet);
  } catch (err) {
    if (!(err instanceof TooCostly)) throw err;
    actions.push('style sheet ignored (too costly to match): text it hides is shown');
    return foldStyles(html, undefined);
  }
}
