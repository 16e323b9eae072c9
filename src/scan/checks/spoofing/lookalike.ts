/**
 * Is a domain one of ours, or made to look like one of ours? Both sides are reduced to a *skeleton* first
 * (NFKC, lower case, diacritics dropped, Cyrillic/Greek confusables mapped to the Latin letters they imitate,
 * `rn`→`m`, `vv`→`w`, `0`→`o`, `1`/`i`/`l` alike; `xn--` labels decoded with domainToUnicode), then compared
 * label by label: equal skeletons (homoglyphs, IDN), the whole tenant domain or its name part run together
 * (`city-a-example-lgjp.com`, `city-a.example.lg.jp.evil.example`), the same labels in another order, labels
 * dropped, one edit away. A domain that is a tenant domain or below one is *own*, never a look-alike.
 * Every loop is bounded by the label counts of two domains (at most 127 labels, 253 characters).
 */
import { domainToUnicode } from 'node:url';
import { getPublicSuffix } from 'tldts';

export type LookalikeKind = 'homoglyph' | 'idn' | 'variant' | 'swapped' | 'dropped' | 'edit';

export interface LookalikeMatch {
  /** The domain as seen (lower case). */
  candidate: string;
  /** The tenant domain it imitates. */
  imitates: string;
  kind: LookalikeKind;
}

/**
 * Name parts of a tenant domain run together shorter than this are not looked for inside other domains: a
 * tenant `ab.lg.jp` would otherwise match every domain containing "ab". `city.kofu` (8) and `city-a.example`
 * (12) are long enough.
 */
const MIN_STEM_CHARS = 6;
/** Labels shorter than this are not compared by edit distance (one edit turns `ab` into half the internet). */
const MIN_EDIT_LABEL_CHARS = 5;

/** Labels that say nothing about which municipality a domain belongs to. */
const GENERIC_LABELS = new Set(['city', 'town', 'vill', 'village', 'pref', 'ward', 'lg', 'jp', 'go', 'co', 'ac', 'or', 'ne', 'ed', 'gr', 'www', 'mail', 'com', 'net', 'org']);

/** Letters of other scripts that render like a Latin letter (Unicode confusables, the ones seen in phishing). */
const CONFUSABLES: Record<string, string> = {
  // Cyrillic
  а: 'a', в: 'b', с: 'c', ԁ: 'd', е: 'e', ё: 'e', һ: 'h', і: 'i', ї: 'i', ј: 'j', к: 'k', ӏ: 'l', м: 'm', н: 'h',
  о: 'o', п: 'n', р: 'p', ԛ: 'q', ѕ: 's', т: 't', у: 'y', ү: 'y', х: 'x', ԝ: 'w', ь: 'b', ɡ: 'g',
  // Greek
  α: 'a', β: 'b', ε: 'e', η: 'n', ι: 'i', κ: 'k', ν: 'v', ο: 'o', ρ: 'p', τ: 't', υ: 'u', χ: 'x', ω: 'w', γ: 'y',
  // Latin letters without a decomposition
  ı: 'i', ł: 'l', ø: 'o', đ: 'd', ħ: 'h', ŀ: 'l', ß: 'ss',
};

/** The skeleton of one label or domain: what a reader cannot tell apart maps to the same string. */
export function skeleton(s: string): string {
  let out = '';
  for (const ch of s.normalize('NFKC').toLowerCase().normalize('NFD')) {
    if (/\p{M}/u.test(ch)) continue;
    out += CONFUSABLES[ch] ?? ch;
  }
  return out.replace(/[01i|]/g, (c) => (c === '0' ? 'o' : 'l')).replace(/rn/g, 'm').replace(/vv/g, 'w');
}

function compact(labels: readonly string[]): string {
  return labels.join('').replace(/[^\p{L}\p{N}]/gu, '');
}

/** Damerau-Levenshtein distance ≤ 1 (one insertion, deletion, substitution or swap of neighbours). */
function withinOneEdit(a: string, b: string): boolean {
  if (a === b) return true;
  if (Math.abs(a.length - b.length) > 1) return false;
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  if (a.length === b.length) {
    if (a.slice(i + 1) === b.slice(i + 1)) return true;
    return a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2);
  }
  return a.length > b.length ? a.slice(i + 1) === b.slice(i) : a.slice(i) === b.slice(i + 1);
}

function isSubsequence(short: readonly string[], long: readonly string[]): boolean {
  let j = 0;
  for (const l of long) if (j < short.length && short[j] === l) j++;
  return j === short.length;
}

interface Tenant {
  domain: string;
  labels: string[];
  compact: string;
  /** The labels left of the public suffix, run together ('' when too short to look for). */
  stem: string;
  distinctive: Set<string>;
}

function tenantOf(domain: string): Tenant {
  const labels = domain.split('.').map(skeleton);
  const suffix = getPublicSuffix(domain) ?? '';
  const nameLabels = suffix && domain.endsWith(`.${suffix}`) ? labels.slice(0, labels.length - suffix.split('.').length) : labels.slice(0, -1);
  const stem = compact(nameLabels);
  return {
    domain,
    labels,
    compact: compact(labels),
    stem: stem.length >= MIN_STEM_CHARS ? stem : '',
    distinctive: new Set(domain.split('.').filter((l) => !GENERIC_LABELS.has(l)).map(skeleton)),
  };
}

function normalise(domain: string): string {
  return domain.trim().toLowerCase().replace(/\.+$/, '');
}

/** Whether `domain` equals `parent` or lies below it. */
export function isWithin(domain: string, parent: string): boolean {
  return domain === parent || domain.endsWith(`.${parent}`);
}

export class DomainMatcher {
  readonly #tenants: Tenant[];
  readonly #ignored: string[];

  /** `ignored`: domains (and everything below them) that are never reported as look-alikes. */
  constructor(tenantDomains: readonly string[], ignored: readonly string[] = []) {
    this.#tenants = [...new Set(tenantDomains.map(normalise))].map(tenantOf);
    this.#ignored = ignored.map(normalise);
  }

  /** The tenant domain that `domain` is (or lies below), if any. */
  own(domain: string): string | undefined {
    const d = normalise(domain);
    return this.#tenants.find((t) => isWithin(d, t.domain))?.domain;
  }

  /** How `domain` imitates a tenant domain, if it does and is not one. */
  lookalike(domain: string): LookalikeMatch | undefined {
    const candidate = normalise(domain);
    if (!candidate || this.own(candidate) || this.#ignored.some((i) => isWithin(candidate, i))) return undefined;
    const unicode = candidate.includes('xn--') ? domainToUnicode(candidate) || candidate : candidate;
    const labels = unicode.split('.').map(skeleton);
    for (const t of this.#tenants) {
      const kind = compare(labels, t, unicode !== candidate);
      if (kind) return { candidate, imitates: t.domain, kind };
    }
    return undefined;
  }
}

function compare(labels: readonly string[], t: Tenant, idn: boolean): LookalikeKind | undefined {
  const joined = labels.join('.');
  const tJoined = t.labels.join('.');
  if (joined === tJoined || joined.endsWith(`.${tJoined}`)) return idn ? 'idn' : 'homoglyph';
  const c = compact(labels);
  if (c.includes(t.compact) || (t.stem && c.includes(t.stem))) return 'variant';
  if (labels.length === t.labels.length && [...labels].sort().join('.') === [...t.labels].sort().join('.')) return 'swapped';
  if (labels.length >= 2 && labels.length < t.labels.length && labels.some((l) => t.distinctive.has(l)) && isSubsequence(labels, t.labels)) return 'dropped';
  if (labels.length === t.labels.length) {
    const differing = labels.flatMap((l, i) => (l === t.labels[i] ? [] : [i]));
    const i = differing[0];
    const theirs = i === undefined ? undefined : t.labels[i];
    if (differing.length === 1 && theirs && t.distinctive.has(theirs) && theirs.length >= MIN_EDIT_LABEL_CHARS && withinOneEdit(labels[i!]!, theirs)) return 'edit';
  }
  return undefined;
}
