/**
 * The operators' rule file: header, subject, body and URL regexes with a name, a description and a score.
 *
 * Format: YAML (a list of rules, or a map whose `rules` key holds one) or, for a `.jsonl`/`.ndjson` file, JSON
 * lines (one rule object per line, blank lines and lines starting with `#` ignored). A rule:
 *
 *   - name: INVOICE_ZIP          # UPPER_SNAKE; the symbol is RULE_INVOICE_ZIP
 *     where: subject             # subject | body | url | header:<Name>
 *     pattern: '請求書.{0,20}至急'
 *     flags: i                   # optional: any of i, m, s (u is always on)
 *     description: 請求書を装う至急の依頼
 *     score: 3                   # the symbol's default weight; policy.scores.RULE_INVOICE_ZIP overrides it
 *
 * Patterns are hostile to our CPU even when written in good faith: they are limited to MAX_RULE_PATTERN_CHARS,
 * refused when a quantified group contains a quantifier (`(a+)+`, the catastrophic-backtracking shape) or a
 * backreference, and run on text cut to MAX_RULE_TEXT_CHARS.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/** Pattern length limit: real rules are under 200 characters; longer ones are generated lists, not rules. */
export const MAX_RULE_PATTERN_CHARS = 500;
/** Rules per file: each runs on every message, so this bounds the per-message cost with the text limit. */
export const MAX_RULES = 1_000;
/**
 * Characters of one target (the body text, a header value, a URL) a rule-file regex runs over. With the pattern
 * checks this bounds a regex's worst case to polynomial time in 64 Ki characters.
 */
export const MAX_RULE_TEXT_CHARS = 64 * 1024;

export const RULE_SYMBOL_PREFIX = 'RULE_';

export type RuleTarget = { kind: 'subject' } | { kind: 'body' } | { kind: 'url' } | { kind: 'header'; header: string };

export interface FileRule {
  name: string;
  /** `RULE_<name>`. */
  symbol: string;
  target: RuleTarget;
  regex: RegExp;
  description: string;
  score: number;
}

const ruleSchema = z
  .object({
    name: z
      .string()
      .regex(/^[A-Z][A-Z0-9]{0,30}(?:_[A-Z0-9]{1,30}){0,8}$/, 'must be UPPER_SNAKE_CASE, e.g. INVOICE_ZIP')
      // a name ending in FAIL would read as "a check could not run" (isFailSymbol): tempfail for every match
      .refine((n) => !n.endsWith('FAIL'), 'must not end in FAIL (reserved for checks that could not run)'),
    where: z.string().regex(/^(?:subject|body|url|header:[\x21-\x39\x3b-\x7e]{1,76})$/i, 'must be subject, body, url or header:<Name>'),
    pattern: z.string().min(1).max(MAX_RULE_PATTERN_CHARS),
    flags: z.string().regex(/^[ims]{0,3}$/, 'may only hold i, m and s').default(''),
    description: z.string().trim().min(1),
    score: z.number().finite(),
  })
  .strict();

/** Why a pattern may backtrack catastrophically, or null. A heuristic on the pattern text, not a proof. */
export function riskyPattern(pattern: string): string | null {
  if (/\\[1-9]|\\k</.test(pattern)) return 'backreferences are not allowed';
  /** Per open group: whether it contains a quantifier (directly or in a nested group). */
  const groups: boolean[] = [];
  /** Whether the atom just before the current position is a group containing a quantifier. */
  let afterQuantifiedGroup = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    const wasAfterGroup = afterQuantifiedGroup;
    afterQuantifiedGroup = false;
    if (c === '\\') {
      i++;
    } else if (c === '[') {
      for (i++; i < pattern.length && pattern[i] !== ']'; i++) if (pattern[i] === '\\') i++;
    } else if (c === '(') {
      groups.push(false);
      if (pattern[i + 1] === '?') i++;
    } else if (c === ')') {
      const inner = groups.pop() ?? false;
      if (inner && groups.length > 0) groups[groups.length - 1] = true;
      afterQuantifiedGroup = inner;
    } else if (c === '*' || c === '+' || c === '?' || c === '{') {
      const repeats = c !== '?';
      if (wasAfterGroup && repeats) return 'a repeated group contains a quantifier (catastrophic backtracking)';
      if (groups.length > 0) groups[groups.length - 1] = true;
      if (c === '{') while (i < pattern.length && pattern[i] !== '}') i++;
      if (pattern[i + 1] === '?') i++;
    }
  }
  return null;
}

function targetOf(where: string): RuleTarget {
  const w = where.toLowerCase();
  if (w.startsWith('header:')) return { kind: 'header', header: w.slice('header:'.length) };
  return { kind: w as 'subject' | 'body' | 'url' };
}

function compile(raw: unknown, where: string): FileRule {
  const r = ruleSchema.safeParse(raw);
  if (!r.success) throw new Error(`${where}: ${r.error.issues.map((i) => `${i.path.join('.') || 'rule'}: ${i.message}`).join('; ')}`);
  const risk = riskyPattern(r.data.pattern);
  if (risk) throw new Error(`${where}: rule ${r.data.name}: ${risk}`);
  let regex: RegExp;
  try {
    regex = new RegExp(r.data.pattern, `u${r.data.flags}`);
  } catch (err) {
    throw new Error(`${where}: rule ${r.data.name}: ${(err as Error).message}`, { cause: err });
  }
  return {
    name: r.data.name,
    symbol: `${RULE_SYMBOL_PREFIX}${r.data.name}`,
    target: targetOf(r.data.where),
    regex,
    description: r.data.description,
    score: r.data.score,
  };
}

/** Parses a rule file's text; `file` decides the format (JSON lines for .jsonl/.ndjson, else YAML). Throws on the first bad rule. */
export function parseRuleFile(text: string, file: string): FileRule[] {
  const body = text.replace(/^\uFEFF/, '');
  let entries: { raw: unknown; where: string }[];
  if (/\.(?:jsonl|ndjson)$/i.test(file)) {
    entries = body.split(/\r?\n/).flatMap((line, i) => {
      const l = line.trim();
      if (!l || l.startsWith('#')) return [];
      try {
        return [{ raw: JSON.parse(l) as unknown, where: `line ${i + 1}` }];
      } catch (err) {
        throw new Error(`line ${i + 1}: not JSON: ${(err as Error).message}`, { cause: err });
      }
    });
  } else {
    const doc: unknown = parseYaml(body) ?? [];
    const list: unknown = Array.isArray(doc) ? doc : (doc as { rules?: unknown }).rules;
    if (!Array.isArray(list)) throw new Error('expected a list of rules (or `rules:` holding one)');
    entries = list.map((raw, i) => ({ raw, where: `rule ${i + 1}` }));
  }
  if (entries.length > MAX_RULES) throw new Error(`${entries.length} rules: at most ${MAX_RULES}`);
  const rules = entries.map((e) => compile(e.raw, e.where));
  const names = rules.map((r) => r.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`rule ${dup} is defined twice`);
  return rules;
}

export function readRuleFile(file: string): FileRule[] {
  const abs = path.resolve(file);
  return parseRuleFile(readFileSync(abs, 'utf8'), abs);
}
