/**
 * HTML for the console's server-rendered pages. `html` is a tagged template that escapes every interpolated value
 * unless it is already `SafeHtml` (the result of another `html`): text from a message — a subject with
 * `<script>`, a file name with `onerror=` — can only ever become text. The rule: never build markup by string
 * concatenation; `unsafeRaw` exists for the few constant snippets and is never given data.
 */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"'`]/g, (c) => ESCAPES[c] ?? c);
}

type Value = SafeHtml | string | number | boolean | null | undefined | readonly Value[];

function render(v: Value): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return (v as readonly Value[]).map(render).join('');
  return escapeHtml(String(v));
}

export function html(strings: TemplateStringsArray, ...values: Value[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]) + (strings[i + 1] ?? '');
  return new SafeHtml(out);
}

/** A constant snippet of markup (never data from a message, a user or a request). */
export function unsafeRaw(constant: string): SafeHtml {
  return new SafeHtml(constant);
}
