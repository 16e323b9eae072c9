/**
 * The message body made safe to read (DESIGN §6): one plain text, chosen among the body leaves (the text/plain
 * alternative when there is one, else the HTML converted), with every URL defanged.
 *
 * HTML goes through html-to-text with formatters that drop what must not reach the reader — scripts, styles,
 * forms, frames and objects, remote and inline images, hidden text — and keep what a reader reads: paragraphs,
 * line breaks, lists, headings, and data tables aligned in display columns (full-width characters count two).
 * Hidden text is judged from each element's `style`, into which fold-style-sheets.ts first folds the style sheets.
 *
 * The rule: text reaches the output only through html-to-text's text path or a formatter here, and the whole
 * output is defanged last, so a URL cannot slip through in anchor text, alt text or a table cell.
 */
import { compile, type DomNode, type FormatCallback, type FormatOptions, type TagDefinition } from 'html-to-text';
import { Parser } from 'htmlparser2';
import { decodeText } from './charset.ts';
import { foldStyleSheets, parseDeclarations } from './fold-style-sheets.ts';
import { defangText, defangUrl } from './defang.ts';

export { decodeText } from './charset.ts';
export { defangUrl } from './defang.ts';

export interface BodyLeaf {
  contentType: string;
  charset: string | null;
  content: Buffer;
}

export interface SanitizedBody {
  /** The plain-text body, '\n' line ends, no trailing whitespace noise. */
  text: string;
  /** What was done, one short English phrase each, e.g. 'HTML converted to text', '3 links defanged'. */
  actions: string[];
}

/**
 * Bytes of an HTML body leaf that are read; the rest is cut off with a note. Bounds the DOM html-to-text builds
 * and walks, whose worst case is this many bytes of minimal tags (`<b>x</b>`: 260,000 elements). HTML mail
 * bodies are under 300 KiB.
 */
export const MAX_HTML_BYTES = 2 * 1024 * 1024;
/** Bytes of a plain-text body leaf that are read (only regular expressions run over it); mail text is far smaller. */
export const MAX_PLAIN_BYTES = 5 * 1024 * 1024;
/**
 * Open elements allowed at once; the HTML is cut where it goes deeper. htmlparser2 (under html-to-text) keeps open
 * elements in an array it shifts and searches for every tag, so its cost is tags × depth: a million nested
 * `<div>` would take minutes, at this depth MAX_HTML_BYTES of hostile tags cost about as much as flat ones. Mail
 * HTML nests 20–40 levels (tables in tables); unclosed `<font>` soup is what reaches a few hundred.
 */
const MAX_HTML_DEPTH = 200;
/** Children of one element that are rendered; the rest become an ellipsis. Mail has a few hundred at most. */
const MAX_CHILD_NODES = 20_000;
/**
 * Grid cells (rows × columns, spans counted) of a table rendered aligned; a larger table is rendered cell by cell.
 * Bounds the layout grid, which a `colspan=1000 rowspan=65534` cell would otherwise blow up.
 */
const MAX_ALIGNED_TABLE_CELLS = 5_000;
/** Spans beyond this are clamped (HTML allows colspan 1000): the grid stays within MAX_ALIGNED_TABLE_CELLS. */
const MAX_TABLE_SPAN = 50;
/**
 * Characters (display width × lines) of an aligned table; a larger one is printed a cell per line instead.
 * Bounds the padding a table of many columns with one cell of many lines would add. Mail tables stay far below.
 */
const MAX_ALIGNED_TABLE_CHARS = 2_000_000;
/** Display columns a table cell is wrapped to. */
const TABLE_CELL_COLUMNS = 40;
/** Spaces between table columns. */
const TABLE_GAP = '  ';
/** Characters of a link target shown after its text; tracking links run to a thousand. */
const MAX_SHOWN_URL_CHARS = 200;
/** Font sizes at or under these are unreadable: text in them is hidden text. */
const MAX_HIDDEN_FONT_PX = 2;
const MAX_HIDDEN_FONT_PT = 1;
/** Text whose colour is within this of its background's on every channel (0–255) cannot be seen. */
const MAX_SAME_COLOUR_DIFF = 8;

/** What the conversion found, counted by the formatters (html-to-text's metadata). */
interface Findings {
  links: number;
  remoteImages: number;
  inlineImages: number;
  scripts: number;
  forms: number;
  embedded: number;
  hiddenText: boolean;
  /** Inherited CSS that hides text and that a descendant can undo: visibility:hidden, a tiny font-size. */
  invisible: boolean;
  tinyFont: boolean;
  /** The text colour declared on the element or an ancestor; undefined when none is, or it is not understood. */
  color: Rgb | 'transparent' | undefined;
  /** The nearest declared background; undefined when none is (the page is white), 'unknown' for images and the like. */
  background: Rgb | 'unknown' | undefined;
}

type Builder = Parameters<FormatCallback>[2];
/** html-to-text's builder carries these at run time; its published types leave them out. */
interface BuilderInternals {
  metadata: Findings;
  picker: { pick1(elem: DomNode): TagDefinition };
}

function findingsOf(builder: Builder): Findings {
  return (builder as unknown as BuilderInternals).metadata;
}

const WHITE: Rgb = [255, 255, 255];

/** Text the colour of what is behind it: transparent, or its colour within MAX_SAME_COLOUR_DIFF of the background. */
function camouflaged(f: Findings): boolean {
  if (f.color === 'transparent') return true;
  const bg = f.background ?? WHITE;
  return f.color !== undefined && bg !== 'unknown' && f.color.every((c, i) => Math.abs(c - bg[i]!) <= MAX_SAME_COLOUR_DIFF);
}

function textHidden(f: Findings): boolean {
  return f.invisible || f.tinyFont || camouflaged(f);
}

function attr(elem: DomNode, name: string): string | undefined {
  const v: unknown = elem.attribs?.[name];
  return typeof v === 'string' ? v : undefined;
}

/** True when the subtree has any non-blank text (visits each node once: hidden subtrees are not walked later). */
function hasText(elem: DomNode): boolean {
  const stack: DomNode[] = [elem];
  for (let n = stack.pop(); n; n = stack.pop()) {
    if (n.type === 'text' && /\S/.test(n.data ?? '')) return true;
    if (n.type === 'tag') for (const c of n.children ?? []) stack.push(c);
  }
  return false;
}

// ---- hidden text -------------------------------------------------------------------------------------------

function parseStyle(style: string): Map<string, string> {
  return new Map([...parseDeclarations(style)].map(([name, d]) => [name, d.value]));
}

function isZero(v: string | undefined): boolean {
  return v !== undefined && /^[+-]?(?:0+(?:\.0*)?|\.0+)[a-z%]*$/.test(v);
}

function isTinyFont(v: string): boolean {
  const m = /^([+-]?(?:\d+\.?\d*|\.\d+))(px|pt)$/.exec(v);
  return isZero(v) || (m?.[2] === 'px' && Number(m[1]) <= MAX_HIDDEN_FONT_PX) || (m?.[2] === 'pt' && Number(m[1]) <= MAX_HIDDEN_FONT_PT);
}

type Rgb = readonly [number, number, number];

/** Colour names mail uses, the near-white ones above all (white text on the white page). */
const NAMED_COLORS = new Map<string, Rgb>([
  ['white', [255, 255, 255]], ['snow', [255, 250, 250]], ['ivory', [255, 255, 240]], ['whitesmoke', [245, 245, 245]],
  ['ghostwhite', [248, 248, 255]], ['azure', [240, 255, 255]], ['mintcream', [245, 255, 250]], ['honeydew', [240, 255, 240]],
  ['seashell', [255, 245, 238]], ['floralwhite', [255, 250, 240]], ['aliceblue', [240, 248, 255]], ['black', [0, 0, 0]],
  ['silver', [192, 192, 192]], ['gray', [128, 128, 128]], ['grey', [128, 128, 128]], ['red', [255, 0, 0]], ['green', [0, 128, 0]],
  ['blue', [0, 0, 255]], ['navy', [0, 0, 128]], ['yellow', [255, 255, 0]],
]);

/** A CSS colour; undefined when it is not understood (then it is never judged the same as another). */
function parseColor(v: string): Rgb | 'transparent' | undefined {
  if (v === 'transparent') return 'transparent';
  const named = NAMED_COLORS.get(v);
  if (named) return named;
  const hex = /^#([0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})$/.exec(v)?.[1];
  if (hex) {
    const full = hex.length <= 4 ? [...hex].map((c) => c + c).join('') : hex;
    const alpha = full.slice(6) || 'ff';
    if (alpha !== 'ff') return alpha === '00' ? 'transparent' : undefined;
    return [0, 2, 4].map((i) => Number.parseInt(full.slice(i, i + 2), 16)) as unknown as Rgb;
  }
  const rgb = /^rgba?\( ?(\d+) ?,? ?(\d+) ?,? ?(\d+) ?(?:[,/] ?([\d.]+)(%?) ?)?\)$/.exec(v);
  if (!rgb) return undefined;
  const alpha = rgb[4] === undefined ? 1 : Number(rgb[4]) / (rgb[5] ? 100 : 1);
  if (alpha !== 1) return alpha === 0 ? 'transparent' : undefined;
  return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])].map((n) => Math.min(n, 255)) as unknown as Rgb;
}

/** The background an element declares: a colour, 'unknown' (image, gradient, colour not understood), or undefined (none, transparent). */
function backgroundOf(d: Map<string, string>): Rgb | 'unknown' | undefined {
  const image = d.get('background-image');
  if (image !== undefined && image !== 'none') return 'unknown';
  const v = d.get('background-color') ?? d.get('background');
  if (v === undefined || ['none', 'inherit', 'initial', 'unset', 'transparent'].includes(v)) return undefined;
  if (/url\(|gradient/.test(v)) return 'unknown';
  const tokens = v.replace(/ ?, ?/g, ',').split(' ').map(parseColor);
  const color = tokens.find((t) => t !== undefined);
  if (color === 'transparent') return undefined;
  return color ?? 'unknown';
}

/** CSS on one element that hides it and everything in it, whatever the descendants say. */
function hidesSubtree(d: Map<string, string>): boolean {
  if (d.get('display') === 'none' || d.get('mso-hide') === 'all' || isZero(d.get('opacity'))) return true;
  const clipped = d.get('overflow') === 'hidden' && ['height', 'max-height', 'width', 'max-width'].some((k) => isZero(d.get(k)));
  return clipped || ['text-indent', 'left', 'top', 'margin-left', 'margin-top'].some((k) => Number.parseFloat(d.get(k) ?? '') <= -500);
}

/** A font size that does not scale the inherited one (px, pt, rem, keywords): it undoes an inherited tiny one. */
function isAbsoluteFontSize(v: string): boolean {
  return !/(?:em|ex|ch|%)$|^(?:smaller|larger|inherit)$/.test(v);
}

/** Words added while text is hidden become empty; the transform stays on the stack for the element's subtree. */
function hideWords(f: Findings): (word: string) => string {
  return (word) => {
    if (!textHidden(f)) return word;
    if (word.trim()) f.hiddenText = true;
    return '';
  };
}

/** Runs `render` with the findings' inherited state changed by `change`, words emptied while text is hidden. */
function renderWith(builder: Builder, change: (f: Findings) => void, render: () => void): void {
  const f = findingsOf(builder);
  const saved = { invisible: f.invisible, tinyFont: f.tinyFont, color: f.color, background: f.background };
  change(f);
  builder.pushWordTransform(hideWords(f));
  try {
    render();
  } finally {
    builder.popWordTransform();
    Object.assign(f, saved);
  }
}

/**
 * Runs `render` for an element unless its attributes hide it: `hidden`, or inline CSS that hides the subtree
 * (skipped) or its text (visibility:hidden, a tiny font, the colour of the background: rendered with its words
 * emptied, descendants may undo).
 */
function renderVisible(elem: DomNode, builder: Builder, render: () => void): void {
  const f = findingsOf(builder);
  const d = parseStyle(attr(elem, 'style') ?? '');
  if (attr(elem, 'hidden') !== undefined || hidesSubtree(d)) {
    if (hasText(elem)) f.hiddenText = true;
    return;
  }
  const visibility = d.get('visibility');
  const fontSize = d.get('font-size');
  const color = d.get('color');
  const background = backgroundOf(d);
  if (visibility === undefined && fontSize === undefined && color === undefined && background === undefined) {
    render();
    return;
  }
  renderWith(
    builder,
    (s) => {
      if (visibility !== undefined) s.invisible = visibility === 'hidden' || visibility === 'collapse';
      if (fontSize !== undefined) s.tinyFont = isTinyFont(fontSize) || (s.tinyFont && !isAbsoluteFontSize(fontSize));
      if (color !== undefined && color !== 'inherit' && color !== 'currentcolor') s.color = parseColor(color);
      if (background !== undefined) s.background = background;
    },
    render,
  );
}

/** For elements with `style` or `hidden`: checks them, then renders the element as its tag would be. */
const formatStyled: FormatCallback = (elem, walk, builder) => {
  renderVisible(elem, builder, () => {
    const attribs: Record<string, string> = elem.attribs;
    const { style: _style, hidden: _hidden, ...rest } = attribs;
    elem.attribs = rest;
    const def = (builder as unknown as BuilderInternals).picker.pick1(elem);
    elem.attribs = attribs;
    const format = builder.options.formatters[def.format ?? 'inline'];
    format?.(elem, walk, builder, def.options ?? {});
  });
};

// ---- removed elements, links, images ------------------------------------------------------------------------

type Counter = 'forms' | 'embedded';

/** Drops the element and its text; counts it when `formatOptions.counter` names what it was. */
const formatRemoved: FormatCallback = (_elem, _walk, builder, formatOptions) => {
  const counter = formatOptions.counter as Counter | undefined;
  if (counter) findingsOf(builder)[counter]++;
};

/** Preformatted text bypasses word transforms: hidden text is dropped here instead. */
const formatSafePre: FormatCallback = (elem, walk, builder, formatOptions) => {
  const f = findingsOf(builder);
  if (textHidden(f)) {
    if (hasText(elem)) f.hiddenText = true;
    return;
  }
  builder.options.formatters.pre?.(elem, walk, builder, formatOptions);
};

const SCRIPT_SCHEMES = /^(?:javascript|vbscript|data):/i;

function shownUrl(href: string): string {
  const d = defangUrl(href);
  return d.length > MAX_SHOWN_URL_CHARS ? `${d.slice(0, MAX_SHOWN_URL_CHARS)}…` : d;
}

/** The anchor text is the target written out (`https://x.example/` for https://x.example): shown once. */
function textIsTarget(text: string, href: string): boolean {
  const norm = (s: string) => s.toLowerCase().replace(/\/+$/, '');
  return /^(?:[a-z][a-z0-9+.-]*:\/\/|www\.)/i.test(text) && (norm(text) === norm(href) || `http://${norm(text)}` === norm(href) || `https://${norm(text)}` === norm(href));
}

/** Links are drawn in the link colour unless they declare their own: an inherited text colour does not hide them. */
const formatSafeAnchor: FormatCallback = (elem, walk, builder, formatOptions) => {
  if (parseStyle(attr(elem, 'style') ?? '').has('color')) formatAnchorText(elem, walk, builder, formatOptions);
  else renderWith(builder, (s) => { s.color = undefined; }, () => formatAnchorText(elem, walk, builder, formatOptions));
};

/** Anchor text, then the defanged target in brackets: visible, not clickable. */
const formatAnchorText: FormatCallback = (elem, walk, builder) => {
  const f = findingsOf(builder);
  const href = (attr(elem, 'href') ?? '').trim();
  if (!href || href.startsWith('#') || textHidden(f)) {
    walk(elem.children, builder);
    return;
  }
  if (SCRIPT_SCHEMES.test(href.replace(/[\s\p{Cc}]/gu, ''))) {
    f.scripts++;
    walk(elem.children, builder);
    return;
  }
  let text = '';
  builder.pushWordTransform((word) => {
    text += word;
    return word;
  });
  walk(elem.children, builder);
  builder.popWordTransform();
  if (textIsTarget(text, href)) return; // counted when the text itself is defanged
  f.links++;
  builder.addInline(`${text ? ' ' : ''}[${shownUrl(href)}]`, { noWordTransform: true });
};

/** Images never load: remote ones (web beacons included) are dropped, inline (cid:, data:) ones leave a note. */
const formatDroppedImage: FormatCallback = (elem, _walk, builder) => {
  const f = findingsOf(builder);
  if (f.invisible || f.tinyFont) return; // an image stays visible in text of its background's colour
  const src = (attr(elem, 'src') ?? '').trim();
  const alt = (attr(elem, 'alt') ?? '').replace(/\s+/g, ' ').trim();
  const inline = /^(?:cid|data):/i.test(src);
  if (inline) f.inlineImages++;
  else if (src || attr(elem, 'srcset')) f.remoteImages++;
  if (alt) builder.addInline(`[image: ${alt}]`, { noWordTransform: true });
  else if (inline) builder.addInline('[image]', { noWordTransform: true });
};

// ---- tables -------------------------------------------------------------------------------------------------

function childTags(elem: DomNode, names: readonly string[]): DomNode[] {
  return (elem.children ?? []).filter((c) => c.type === 'tag' && names.includes(c.name ?? ''));
}

function rowsOf(table: DomNode): DomNode[] {
  return childTags(table, ['tr', 'thead', 'tbody', 'tfoot']).flatMap((c) => (c.name === 'tr' ? [c] : childTags(c, ['tr'])));
}

function span(cell: DomNode, name: 'colspan' | 'rowspan'): number {
  const n = Number.parseInt(attr(cell, name) ?? '1', 10);
  return Number.isFinite(n) && n > 1 ? Math.min(n, MAX_TABLE_SPAN) : 1;
}

/** The first table inside `elem` (stops there, so each node is looked at by its nearest table only). */
function containsTable(elem: DomNode): boolean {
  const stack: DomNode[] = [...(elem.children ?? [])];
  for (let n = stack.pop(); n; n = stack.pop()) {
    if (n.type === 'tag' && n.name === 'table') return true;
    for (const c of n.children ?? []) stack.push(c);
  }
  return false;
}

/** Tabular data (rendered aligned) as opposed to page layout (rendered cell by cell, as blocks). */
function isDataTable(table: DomNode, rows: readonly DomNode[]): boolean {
  if (attr(table, 'role') === 'presentation') return false;
  let gridCells = 0;
  let wide = false;
  for (const row of rows) {
    const cells = childTags(row, ['td', 'th']);
    if (cells.length > 1) wide = true;
    for (const cell of cells) gridCells += span(cell, 'colspan') * span(cell, 'rowspan');
  }
  return wide && gridCells <= MAX_ALIGNED_TABLE_CELLS && !containsTable(table);
}

function charWidth(cp: number): number {
  if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || (cp >= 0x300 && cp < 0x370) || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0xfe00 && cp <= 0xfe0f)) return 0;
  if (cp < 0x1100) return [0xa7, 0xa8, 0xb0, 0xb1, 0xb4, 0xb6, 0xd7, 0xf7].includes(cp) || (cp >= 0x391 && cp <= 0x451) ? 2 : 1;
  const wide =
    (cp >= 0x1100 && cp <= 0x115f) ||
    (cp >= 0x2010 && cp <= 0x203b) || // ‐ ― ‘ ’ “ ” † ‥ … ‰ ′ ″ ※: full width in Japanese fonts
    (cp >= 0x2100 && cp <= 0x27bf) || // ℃ № Ⅰ arrows, math, box drawing, ① ■ ○ ★: likewise
    (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) ||
    (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) ||
    (cp >= 0x1f300 && cp <= 0x1faff) ||
    (cp >= 0x20000 && cp <= 0x3fffd);
  return wide ? 2 : 1;
}

/** Columns the text takes in a monospaced Japanese font (East Asian wide and ambiguous characters count two). */
function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) w += charWidth(ch.codePointAt(0)!);
  return w;
}

function padTo(s: string, width: number): string {
  return s + ' '.repeat(Math.max(0, width - displayWidth(s)));
}

/** A line cut to `width` columns, at the last space when there is one (Japanese has none: cut anywhere). */
function wrapLine(line: string, width: number): string[] {
  const out: string[] = [];
  let cur = '';
  let w = 0;
  for (const ch of line) {
    const cw = charWidth(ch.codePointAt(0)!);
    if (w + cw > width && cur) {
      const space = cur.lastIndexOf(' ');
      const cut = space > 0 ? space : cur.length;
      out.push(cur.slice(0, cut).trimEnd());
      cur = cur.slice(cut).trimStart();
      w = displayWidth(cur);
    }
    cur += ch;
    w += cw;
  }
  out.push(cur);
  return out;
}

interface PlacedCell {
  row: number;
  col: number;
  colspan: number;
  rowspan: number;
  lines: string[];
}

/** Gives the spanned columns (or rows) of each cell at least its size, growing the last one it spans. */
function fitSpans(sizes: number[], cells: readonly PlacedCell[], pick: (c: PlacedCell) => [start: number, span: number, need: number], gap: number): void {
  for (const cell of [...cells].sort((a, b) => pick(a)[1] - pick(b)[1])) {
    const [start, n, need] = pick(cell);
    let have = gap * (n - 1);
    for (let i = start; i < start + n; i++) have += sizes[i]!;
    if (need > have) sizes[start + n - 1]! += need - have;
  }
}

/** html-to-text's table printer, but measuring display columns and wrapping wide cells; URLs defanged first. */
function renderAlignedTable(rows: { colspan: number; rowspan: number; text: string }[][], f: Findings): string {
  const grid: (PlacedCell | undefined)[][] = rows.map(() => []);
  const placed: PlacedCell[] = [];
  rows.forEach((cells, r) => {
    let c = 0;
    for (const cell of cells) {
      while (grid[r]![c]) c++;
      const defanged = defangText(cell.text);
      f.links += defanged.count;
      const lines = defanged.text.split('\n').flatMap((l) => wrapLine(l.trimEnd(), TABLE_CELL_COLUMNS));
      const p: PlacedCell = { row: r, col: c, colspan: cell.colspan, rowspan: Math.min(cell.rowspan, rows.length - r), lines: cell.text ? lines : [] };
      for (let y = r; y < r + p.rowspan; y++) for (let x = c; x < c + p.colspan; x++) grid[y]![x] = p;
      placed.push(p);
      c += p.colspan;
    }
  });
  const cols = grid.reduce((m, g) => Math.max(m, g.length), 0);
  const widths = new Array<number>(cols).fill(0);
  const heights = new Array<number>(rows.length).fill(0);
  fitSpans(widths, placed, (p) => [p.col, p.colspan, p.lines.reduce((m, l) => Math.max(m, displayWidth(l)), 0)], TABLE_GAP.length);
  fitSpans(heights, placed, (p) => [p.row, p.rowspan, p.lines.length], 0);
  const area = (widths.reduce((a, b) => a + b, 0) + TABLE_GAP.length * cols) * heights.reduce((a, b) => a + b, 0);
  if (area > MAX_ALIGNED_TABLE_CHARS) return placed.flatMap((p) => p.lines).join('\n');
  const out: string[] = [];
  for (let r = 0; r < rows.length; r++) {
    for (let i = 0; i < heights[r]!; i++) out.push(renderTableLine(grid[r]!, r, i, widths, heights));
  }
  return out.join('\n');
}

/** Line `i` of row `r`: each cell's line at its column, padded to the width of the columns it spans. */
function renderTableLine(gridRow: readonly (PlacedCell | undefined)[], r: number, i: number, widths: readonly number[], heights: readonly number[]): string {
  let line = '';
  for (let c = 0; c < widths.length; c++) {
    const p = gridRow[c];
    if (p && p.col !== c) continue;
    let width = widths[c]!;
    let text = '';
    if (p) {
      for (let x = c + 1; x < c + p.colspan; x++) width += TABLE_GAP.length + widths[x]!;
      let offset = i;
      for (let y = p.row; y < r; y++) offset += heights[y]!;
      text = p.lines[offset] ?? '';
    }
    line += padTo(text, width) + TABLE_GAP;
  }
  return line.trimEnd();
}

/** Data tables aligned; layout tables (nested, one column, role=presentation, huge) as blocks per cell. */
const formatSafeTable: FormatCallback = (elem, walk, builder, formatOptions) => {
  const rows = rowsOf(elem);
  if (!isDataTable(elem, rows)) {
    builder.options.formatters.block?.(elem, walk, builder, formatOptions);
    return;
  }
  const f = findingsOf(builder);
  for (const caption of childTags(elem, ['caption'])) builder.options.formatters.block?.(caption, walk, builder, {});
  builder.openTable();
  for (const row of rows) {
    renderVisible(row, builder, () => {
      builder.openTableRow();
      for (const cell of childTags(row, ['td', 'th'])) {
        builder.openTableCell({ maxColumnWidth: Number.MAX_SAFE_INTEGER });
        renderVisible(cell, builder, () => walk(cell.children, builder));
        builder.closeTableCell({ colspan: span(cell, 'colspan'), rowspan: span(cell, 'rowspan') });
      }
      builder.closeTableRow();
    });
  }
  builder.closeTable({
    tableToString: (cells) => renderAlignedTable(cells, f),
    leadingLineBreaks: formatOptions.leadingLineBreaks ?? 2,
    trailingLineBreaks: formatOptions.trailingLineBreaks ?? 2,
  });
};

// ---- the converter ------------------------------------------------------------------------------------------

const silent = (selector: string) => ({ selector, format: 'removed' });
const counted = (selector: string, counter: Counter) => ({ selector, format: 'removed', options: { counter } as FormatOptions });

const convertHtml = compile({
  wordwrap: false,
  baseElements: { selectors: [], returnDomByDefault: true },
  limits: { maxInputLength: 2 * MAX_HTML_BYTES /* never reached: cut before */, maxDepth: MAX_HTML_DEPTH, maxChildNodes: MAX_CHILD_NODES, ellipsis: '…' },
  formatters: {
    removed: formatRemoved,
    styled: formatStyled,
    safeAnchor: formatSafeAnchor,
    droppedImage: formatDroppedImage,
    safeTable: formatSafeTable,
    safePre: formatSafePre,
  },
  selectors: [
    { selector: 'a', format: 'safeAnchor' },
    { selector: 'img', format: 'droppedImage' },
    { selector: 'table', format: 'safeTable' },
    { selector: 'tr', format: 'block' },
    { selector: 'td', format: 'block' },
    { selector: 'th', format: 'block' },
    { selector: 'pre', format: 'safePre' },
    ...['h1', 'h2', 'h3', 'h4', 'h5', 'h6'].map((selector) => ({ selector, options: { uppercase: false } })),
    ...['title', 'meta', 'link', 'base', 'template', 'svg', 'math', 'canvas', 'audio', 'video', 'source', 'track', 'map', 'area'].map(silent),
    ...['form', 'input', 'button', 'select', 'option', 'optgroup', 'datalist', 'textarea', 'label', 'output', 'fieldset'].map((s) => counted(s, 'forms')),
    ...['iframe', 'frame', 'frameset', 'object', 'embed', 'applet', 'portal'].map((s) => counted(s, 'embedded')),
    // Attribute selectors outrank tag selectors: every element with a style or `hidden` is checked first.
    { selector: '[style]', format: 'styled' },
    { selector: '[hidden]', format: 'styled' },
  ],
}) as unknown as (html: string, metadata: Findings) => string;

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function findingsActions(f: Findings): string[] {
  const actions: string[] = [];
  if (f.scripts) actions.push(`${plural(f.scripts, 'script', 'scripts')} removed`);
  if (f.forms) actions.push(`${plural(f.forms, 'form element', 'form elements')} removed`);
  if (f.embedded) actions.push(`${plural(f.embedded, 'embedded frame or object', 'embedded frames or objects')} removed`);
  if (f.remoteImages) actions.push(`${plural(f.remoteImages, 'remote image', 'remote images')} removed`);
  if (f.inlineImages) actions.push(`${plural(f.inlineImages, 'inline image', 'inline images')} removed`);
  if (f.hiddenText) actions.push('hidden text removed');
  return actions;
}

/** '\n' line ends, no control characters, no trailing blanks on lines or at either end. */
function tidy(text: string, maxBlankLines: number): string {
  const lines = text
    .replace(/\r\n?/g, '\n')
    .replace(/[^\P{Cc}\t\n]/gu, '')
    .replaceAll('\u00a0', ' ')
    .split('\n')
    .map((l) => l.trimEnd());
  const out: string[] = [];
  let blanks = 0;
  for (const l of lines) {
    blanks = l ? 0 : blanks + 1;
    if (blanks <= maxBlankLines) out.push(l);
  }
  return out.join('\n').replace(/^\n+|\n+$/g, '');
}

/**
 * The HTML up to where it nests deeper than MAX_HTML_DEPTH, read with the parser html-to-text uses, and the text
 * of its `<style>` elements (none when it is cut: a rule past the cut could undo one before it). Counts the
 * scripts on the way: html-to-text drops <script> and <style> without passing them to a formatter.
 */
function boundNesting(html: string, f: Findings, actions: string[]): { html: string; styleBlocks: string[] } {
  let depth = 0;
  let cutAt = -1;
  const styleBlocks: string[] = [];
  let style: string | undefined;
  const parser: Parser = new Parser({
    onopentag(name) {
      if (name === 'script') f.scripts++;
      if (name === 'style') style = '';
      if (++depth > MAX_HTML_DEPTH && cutAt < 0) {
        cutAt = parser.startIndex;
        parser.pause();
      }
    },
    ontext(text) {
      if (style !== undefined) style += text;
    },
    onclosetag(name) {
      depth--;
      if (name === 'style' && style !== undefined) styleBlocks.push(style);
      style = undefined;
    },
  });
  parser.write(html);
  if (cutAt < 0) return { html, styleBlocks };
  actions.push(`HTML cut where it nests deeper than ${MAX_HTML_DEPTH} levels`);
  return { html: `${html.slice(0, cutAt)}…`, styleBlocks: [] };
}

/** One HTML leaf as text: nesting bounded, style sheets folded into the elements, converted, tidied. */
function htmlToText(leaf: BodyLeaf, f: Findings, actions: string[]): string {
  const { html, styleBlocks } = boundNesting(readLeaf(leaf, true, actions), f, actions);
  return tidy(convertHtml(foldStyleSheets(html, styleBlocks, actions), f), 1);
}

/**
 * Where to cut bytes near `max` without splitting a character (which would spoil the charset check): after a line
 * end, else after an ASCII byte, which ends a character in every ASCII-compatible charset (looking back at most
 * half), else before a UTF-8 lead byte.
 */
function cutPoint(b: Buffer, max: number): number {
  const lineEnd = b.lastIndexOf(0x0a, max - 1);
  if (lineEnd >= max / 2) return lineEnd + 1;
  for (let i = max; i > max / 2; i--) if (b[i - 1]! < 0x80) return i;
  let i = max;
  while (i > max - 4 && (b[i]! & 0xc0) === 0x80) i--;
  return i;
}

/** The leaf's text; past MAX_HTML_BYTES / MAX_PLAIN_BYTES it is cut, with a note. */
function readLeaf(leaf: BodyLeaf, html: boolean, actions: string[]): string {
  const max = html ? MAX_HTML_BYTES : MAX_PLAIN_BYTES;
  if (leaf.content.length <= max) return decodeText(leaf.content, leaf.charset, { html });
  actions.push(`${html ? 'HTML' : 'text'} body cut after its first ${max / 1024 / 1024} MiB`);
  return `${decodeText(leaf.content.subarray(0, cutPoint(leaf.content, max)), leaf.charset, { html })}\n…`;
}

function isHtml(leaf: BodyLeaf): boolean {
  return leaf.contentType === 'text/html' || leaf.contentType === 'application/xhtml+xml';
}

function newFindings(): Findings {
  return {
    links: 0, remoteImages: 0, inlineImages: 0, scripts: 0, forms: 0, embedded: 0,
    hiddenText: false, invisible: false, tinyFont: false, color: undefined, background: undefined,
  };
}

/** Chooses the body among the message's body leaves (text/plain alternatives are used when present; else text/html is converted) and sanitizes it. */
export function sanitizeBody(leaves: readonly BodyLeaf[]): SanitizedBody {
  const actions: string[] = [];
  const htmlLeaves = leaves.filter(isHtml);
  const plain = leaves
    .filter((l) => l.contentType.startsWith('text/') && !isHtml(l))
    .map((l) => tidy(readLeaf(l, false, actions), Number.POSITIVE_INFINITY))
    .filter((t) => t);
  const f = newFindings();
  let text: string;
  if (plain.length > 0) {
    text = plain.join('\n\n');
    if (htmlLeaves.length > 0) actions.push('HTML alternative dropped (the plain-text one was used)');
  } else {
    text = htmlLeaves.map((l) => htmlToText(l, f, actions)).filter((t) => t).join('\n\n');
    if (htmlLeaves.length > 0) actions.push('HTML converted to text');
  }
  const defanged = defangText(text);
  const links = f.links + defanged.count;
  if (links) actions.push(`${plural(links, 'link', 'links')} defanged`);
  actions.push(...findingsActions(f));
  return { text: defanged.text, actions };
}
