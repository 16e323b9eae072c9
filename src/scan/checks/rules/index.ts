/**
 * rules — header, body and URL rules: the built-ins (builtin.ts) and the operators' rule file (rule-file.ts).
 *
 * Built-in rules emit catalogue symbols. A rule-file rule emits `RULE_<NAME>`, a symbol the catalogue does not
 * list (the stored verdict keeps it among the unlisted symbols); its group is `rules` and its default score is the
 * file's, both answered by `symbolInfo()` of this check, and policy.scores.RULE_<NAME> overrides the score like
 * any other. Details say where the rule matched and what: `subject: 請求書…至急`.
 *
 * Subject and body rules see decoded text (RFC 2047 and body charsets decoded) after NFKC, so a rule written with
 * half-width ASCII and full-width katakana matches the full-width and half-width forms too; header rules see each
 * value of the header with its encoded-words decoded; url rules see each http(s) URL of the body as written.
 */
import type { Logger } from 'pino';
import { SekishoError } from '../../../errors.ts';
import type { Check, CheckContext, SymbolHit } from '../../check.ts';
import type { ParsedMessage } from '../../mime-parts.ts';
import type { SymbolInfo } from '../../symbols.ts';
import { decodeHeaderWords, headerValues } from '../spoofing/mail-address.ts';
import { runBuiltins } from './builtin.ts';
import { DEFAULT_OFFICIAL_DOMAINS, DEFAULT_SHORTENER_DOMAINS, type RulesConfig } from './config.ts';
import { viewOf, type MessageView } from './message-view.ts';
import { MAX_RULE_TEXT_CHARS, readRuleFile, type FileRule } from './rule-file.ts';

export { rulesConfigSchema, type RulesConfig } from './config.ts';
export { RULE_SYMBOL_PREFIX } from './rule-file.ts';

export interface RulesCheckOptions extends Partial<RulesConfig> {
  /** Every tenant's mail domains: links to them are official. */
  domains: readonly string[];
  log: Logger;
}

export interface RulesCheck extends Check {
  /** Group, default score and description of a rule-file symbol (RULE_<NAME>) in force; undefined for others. */
  symbolInfo(name: string): SymbolInfo | undefined;
  /** Rule-file rules in force. */
  readonly fileRules: readonly FileRule[];
  /** Reads the rule file again; on error keeps the rules in force, logs, and returns false. */
  reload(): boolean;
}

/** Characters of a match quoted in details. */
const MAX_MATCH_CHARS = 60;

function bounded(s: string): string {
  return s.length > MAX_RULE_TEXT_CHARS ? s.slice(0, MAX_RULE_TEXT_CHARS) : s;
}

function targetsOf(rule: FileRule, parsed: ParsedMessage, view: MessageView): string[] {
  switch (rule.target.kind) {
    case 'subject':
      return [view.subject.normalize('NFKC')];
    case 'body':
      return [view.bodyText.normalize('NFKC')];
    case 'url':
      return view.urls;
    case 'header':
      return headerValues(parsed, rule.target.header).map(decodeHeaderWords);
  }
}

function runFileRules(rules: readonly FileRule[], parsed: ParsedMessage, view: MessageView): SymbolHit[] {
  const hits: SymbolHit[] = [];
  for (const rule of rules) {
    for (const text of targetsOf(rule, parsed, view)) {
      const m = rule.regex.exec(bounded(text));
      if (!m) continue;
      const where = rule.target.kind === 'header' ? `header ${rule.target.header}` : rule.target.kind;
      const match = m[0].length > MAX_MATCH_CHARS ? `${m[0].slice(0, MAX_MATCH_CHARS)}…` : m[0];
      hits.push({ name: rule.symbol, details: [`${where}: ${match}`] });
      break;
    }
  }
  return hits;
}

export function createRulesCheck(opts: RulesCheckOptions): RulesCheck {
  const file = opts.ruleFile;
  let rules: readonly FileRule[] = [];
  if (file) {
    try {
      rules = readRuleFile(file);
    } catch (err) {
      throw new SekishoError('SEKISHO_ERR_CONFIG_INVALID', `antispam.rules.ruleFile ${file}: ${(err as Error).message}`, { cause: err });
    }
    opts.log.info({ file, rules: rules.length }, 'rule file loaded');
  }
  const builtinOptions = {
    officialDomains: [...opts.domains.map((d) => d.toLowerCase()), ...(opts.officialDomains ?? DEFAULT_OFFICIAL_DOMAINS)],
    shortenerDomains: opts.shortenerDomains ?? DEFAULT_SHORTENER_DOMAINS,
  };

  return {
    name: 'rules',
    failSymbol: 'RULES_FAIL',
    get fileRules() {
      return rules;
    },
    symbolInfo(name: string): SymbolInfo | undefined {
      const rule = rules.find((r) => r.symbol === name);
      return rule && { group: 'rules', score: rule.score, description: rule.description };
    },
    reload(): boolean {
      if (!file) return false;
      try {
        rules = readRuleFile(file);
      } catch (err) {
        opts.log.error({ err, file }, 'rule file invalid: keeping the rules in force');
        return false;
      }
      opts.log.info({ file, rules: rules.length }, 'rule file reloaded');
      return true;
    },
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const parsed = await ctx.parsed();
      const view = viewOf(parsed);
      ctx.signal.throwIfAborted();
      return [...runBuiltins(parsed, view, builtinOptions), ...runFileRules(rules, parsed, view)];
    },
  };
}
