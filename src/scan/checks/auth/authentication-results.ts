/**
 * The `Authentication-Results` header (RFC 8601) of a delivered message: built from the auth check's symbols, which
 * are kept with the verdict, so the delivery side needs nothing else (no per-message store, and a message
 * delivered after a restart or a release gets the same header). Each auth symbol names a method and a result
 * (SPF_SOFTFAIL → spf=softfail); each of its details is one result's properties, already in header syntax
 * (`header.d=example.jp header.s=sel1 (comment)`), written by the check with `arProperty` and `arComment`.
 *
 * Also the other half of RFC 8601 §5: headers from outside that claim our authserv-id are removed before ours is
 * added, or a sender could write `Authentication-Results: <our hostname>; dmarc=pass` itself.
 *
 * The rule: nothing taken from the message reaches the header unquoted — no CR/LF, no `;` (which would start a
 * result of the sender's choosing), no unbalanced parentheses.
 */
import type { SymbolHit } from '../../check.ts';
import type { SymbolName } from '../../symbols.ts';

type Method = 'spf' | 'dkim' | 'dmarc' | 'arc';

/** Every auth symbol's method and RFC 8601 result word, in header order (spf, dkim, dmarc, arc). */
const RESULT_OF: Partial<Record<SymbolName, [Method, string]>> = {
  SPF_PASS: ['spf', 'pass'],
  SPF_HARDFAIL: ['spf', 'fail'],
  SPF_SOFTFAIL: ['spf', 'softfail'],
  SPF_NEUTRAL: ['spf', 'neutral'],
  SPF_NONE: ['spf', 'none'],
  SPF_TEMPERROR: ['spf', 'temperror'],
  SPF_PERMERROR: ['spf', 'permerror'],
  DKIM_PASS: ['dkim', 'pass'],
  DKIM_INVALID: ['dkim', 'fail'],
  DKIM_NONE: ['dkim', 'none'],
  DKIM_TEMPERROR: ['dkim', 'temperror'],
  DKIM_PERMERROR: ['dkim', 'permerror'],
  DMARC_PASS: ['dmarc', 'pass'],
  DMARC_POLICY_REJECT: ['dmarc', 'fail'],
  DMARC_POLICY_QUARANTINE: ['dmarc', 'fail'],
  DMARC_POLICY_NONE: ['dmarc', 'fail'],
  DMARC_NONE: ['dmarc', 'none'],
  DMARC_TEMPERROR: ['dmarc', 'temperror'],
  DMARC_PERMERROR: ['dmarc', 'permerror'],
  ARC_PASS: ['arc', 'pass'],
  ARC_INVALID: ['arc', 'fail'],
  ARC_NONE: ['arc', 'none'],
  // RFC 8617 has no temperror for ARC: the chain could not be validated, which is a fail.
  ARC_TEMPERROR: ['arc', 'fail'],
};

const METHOD_ORDER: readonly Method[] = ['spf', 'dkim', 'dmarc', 'arc'];

/** Characters of one property value or comment kept; longer ones are cut (a local-part may be 64, a domain 253). */
const MAX_VALUE_CHARS = 256;
/** Characters that may stand unquoted in a property value: RFC 2045 token characters plus "@" for addresses. */
const BARE_VALUE = /^[A-Za-z0-9!#$%&'*+\-.^_`{|}~@]+$/;

/** Removes what could end a result or the header: controls, `;`, and non-ASCII (the header is 7-bit). */
function clean(s: string): string {
  return s
    .replace(/[\p{Cc};]/gu, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .slice(0, MAX_VALUE_CHARS);
}

/** `ptype.property=value`, the value quoted when it is not a plain token or address. */
export function arProperty(name: string, value: string): string {
  const v = clean(value).trim();
  return `${name}=${BARE_VALUE.test(v) ? v : `"${v.replace(/[\\"]/g, '\\$&')}"`}`;
}

/** `(text)`, with parentheses and backslashes in the text removed so the comment cannot be left early. */
export function arComment(text: string): string {
  return `(${clean(text).replace(/[()\\]/g, ' ').replace(/\s+/g, ' ').trim()})`;
}

/**
 * The value of our `Authentication-Results` header (without the field name), folded between results:
 * `mx.example.jp;\r\n spf=pass smtp.mailfrom=a@example.jp;\r\n dkim=pass header.d=example.jp header.s=s1; …`.
 * Symbols of other checks are ignored; with no auth symbol at all (the check failed) the value says `none`.
 */
export function authenticationResultsHeader(hostname: string, symbols: readonly SymbolHit[]): string {
  const results: string[] = [];
  for (const method of METHOD_ORDER) {
    for (const hit of symbols) {
      const r = RESULT_OF[hit.name as SymbolName];
      if (!r || r[0] !== method) continue;
      const details = hit.details?.length ? hit.details : [''];
      for (const d of details) {
        const props = d.replace(/[\p{Cc};]/gu, ' ').trim();
        results.push(`${method}=${r[1]}${props ? ` ${props}` : ''}`);
      }
    }
  }
  const id = clean(hostname).replace(/\s/g, '');
  return results.length ? `${id};\r\n ${results.join(';\r\n ')}` : `${id}; none`;
}

/** Skips white space and (nested) comments from `i`; returns the index after them. */
function skipCfws(s: string, i: number): number {
  let depth = 0;
  for (; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && depth > 0) i++;
    else if (c === '(') depth++;
    else if (c === ')' && depth > 0) depth--;
    else if (depth === 0 && c !== ' ' && c !== '\t' && c !== '\r' && c !== '\n') break;
  }
  return i;
}

/** The authserv-id of an Authentication-Results value: a token or a quoted string after optional CFWS. */
function authservId(value: string): string {
  let i = skipCfws(value, 0);
  if (value[i] === '"') {
    let out = '';
    for (i++; i < value.length && value[i] !== '"'; i++) out += value[i] === '\\' ? (value[++i] ?? '') : value[i];
    return out;
  }
  const m = /^[^\s;()"]+/.exec(value.slice(i));
  return m?.[0] ?? '';
}

function normHost(h: string): string {
  return h.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * The message without the `Authentication-Results` headers that claim `hostname` as their authserv-id
 * (RFC 8601 §5): only the header block changes, the body's bytes are returned as they were.
 */
export function stripForgedAuthResults(raw: Buffer, hostname: string): Buffer {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const ends = [crlf < 0 ? -1 : crlf + 2, lf < 0 ? -1 : lf + 1].filter((n) => n >= 0);
  const headEnd = ends.length ? Math.min(...ends) : raw.length;
  const head = raw.subarray(0, headEnd).toString('latin1');
  const ours = normHost(hostname);

  const lines = head.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  const fields: string[] = [];
  for (const line of lines) {
    const last = fields.length - 1;
    if ((line.startsWith(' ') || line.startsWith('\t')) && last >= 0) fields[last] += line;
    else fields.push(line);
  }
  let removed = false;
  const kept = fields.filter((f) => {
    const colon = f.indexOf(':');
    if (colon < 0 || f.slice(0, colon).trim().toLowerCase() !== 'authentication-results') return true;
    const forged = normHost(authservId(f.slice(colon + 1))) === ours;
    removed ||= forged;
    return !forged;
  });
  if (!removed) return raw;
  return Buffer.concat([Buffer.from(kept.join(''), 'latin1'), raw.subarray(headEnd)]);
}
