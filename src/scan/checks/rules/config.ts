/**
 * Configuration of the rules check (`antispam.rules`). Tenant domains are not repeated here: the composition root
 * passes them (links to them never make phishing wording a finding).
 */
import { z } from 'zod';
import { domainName } from '../../../config/domain-name.ts';

const domain = domainName('bit.ly');

/** Public URL shorteners: a link through one hides where it goes. */
export const DEFAULT_SHORTENER_DOMAINS = [
  'bit.ly', 'bitly.com', 't.co', 'tinyurl.com', 'is.gd', 'v.gd', 'goo.gl', 'ow.ly', 'x.gd', 'buff.ly', 'rebrand.ly',
  'cutt.ly', 't.ly', 'shorturl.at', 'rb.gy', 'tiny.cc', 's.id', 'lnkd.in', 'ur0.jp', 'urx.nu', 'qq4q.biz',
];

/** Link targets that do not turn phishing wording into a finding: governments and the real carriers. */
export const DEFAULT_OFFICIAL_DOMAINS = ['lg.jp', 'go.jp', 'japanpost.jp', 'kuronekoyamato.co.jp', 'sagawa-exp.co.jp'];

export const rulesConfigSchema = z
  .object({
    /**
     * The operators' own rules: a YAML file (a list of rules, or `rules:` holding one) or JSON lines (`.jsonl`,
     * one rule per line). Each rule: name, where, pattern, optional flags, description, score. Absent → the
     * built-in rules only. Read at start (an invalid file stops the start) and by `reload()`.
     */
    ruleFile: z.string().min(1).optional(),
    /** Hosts (and their subdomains) reported as URL_SHORTENER. Default: the common public shorteners. */
    shortenerDomains: z.array(domain).default(DEFAULT_SHORTENER_DOMAINS),
    /**
     * Hosts (and their subdomains) whose links do not make Japanese phishing wording a finding, besides the
     * tenant domains. Default: lg.jp, go.jp and the three big parcel carriers.
     */
    officialDomains: z.array(domain).default(DEFAULT_OFFICIAL_DOMAINS),
  })
  .strict();

export type RulesConfig = z.infer<typeof rulesConfigSchema>;
