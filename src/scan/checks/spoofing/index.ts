/**
 * spoofing — mail from the internet that pretends to come from one of our own municipalities.
 *
 * What: the envelope MAIL FROM and every header From address are compared with the tenant domains. A tenant
 * domain (or one below it) from a connection that is not a configured trusted relay is SPOOF_OWN_DOMAIN; a
 * look-alike of one (lookalike.ts: homoglyphs, IDN, `lg-jp` variants, swapped or dropped labels, one edit away)
 * is SPOOF_LOOKALIKE_DOMAIN, whoever relays it; a display name that names a tenant (甲市, or a tenant domain)
 * or a configured official over an address outside our domains is SPOOF_DISPLAY_NAME.
 * Why: impersonating the city hall or the mayor is how phishing and invoice fraud reach municipal staff.
 *
 * The body is never read: a newsletter that mentions the city is not a spoof. Details name the field, the
 * address and what it imitates, e.g. `header From: x@city-a.exarnple.lg.jp imitates city-a.example.lg.jp (homoglyph)`.
 */
import { BlockList } from 'node:net';
import { addIpPattern, inIpList } from '../../../ip-list.ts';
import type { Check, CheckContext, SymbolHit } from '../../check.ts';
import type { SymbolName } from '../../symbols.ts';
import type { SpoofingConfig } from './config.ts';
import { DomainMatcher, isWithin } from './lookalike.ts';
import { domainOf, headerValues, parseAddresses, type MailAddress } from './mail-address.ts';

export { spoofingConfigSchema, type SpoofingConfig } from './config.ts';

export interface SpoofingCheckOptions extends Partial<SpoofingConfig> {
  /** Every tenant's mail domains. */
  domains: readonly string[];
  /** Every tenant's name as staff and citizens write it (甲市, 乙町). */
  names?: readonly string[];
}

/** From addresses looked at per message; a From header listing more is hostile and the rest is ignored. */
const MAX_FROM_ADDRESSES = 20;

/** Display-name form used for matching: NFKC (full-width folded), lower case, no whitespace. */
function squeeze(s: string): string {
  return s.normalize('NFKC').toLowerCase().replace(/[\s\u200b-\u200d\u2060\ufeff]/gu, '');
}

function trustedRelays(list: readonly string[]): BlockList {
  const blocks = new BlockList();
  for (const entry of list) addIpPattern(blocks, entry); // validated by the config schema
  return blocks;
}

export function createSpoofingCheck(opts: SpoofingCheckOptions): Check {
  const matcher = new DomainMatcher(opts.domains, opts.lookalikeIgnoreDomains ?? []);
  const relays = trustedRelays(opts.trustedRelays ?? []);
  const allowed = opts.displayNameAllowedDomains ?? [];
  const named = [
    ...(opts.names ?? []).map((n) => ({ key: squeeze(n), label: n })),
    ...opts.domains.map((d) => ({ key: squeeze(d), label: d.toLowerCase() })),
    ...(opts.officials ?? []).map((n) => ({ key: squeeze(n), label: n })),
  ].filter((n) => n.key.length >= 2);

  /** What a display name names among tenants and officials. */
  const namesIn = (displayName: string): string[] => {
    const s = squeeze(displayName);
    return s ? named.filter((n) => s.includes(n.key)).map((n) => n.label) : [];
  };

  return {
    name: 'spoofing',
    failSymbol: 'SPOOFING_FAIL',
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const parsed = await ctx.parsed();
      const fromInternet = !inIpList(relays, ctx.envelope.clientIp);
      const found = new Map<SymbolName, Set<string>>();
      const add = (name: SymbolName, detail: string) => found.set(name, (found.get(name) ?? new Set<string>()).add(detail));

      const judgeDomain = (field: string, address: string, domain: string) => {
        if (!domain) return;
        if (matcher.own(domain)) {
          if (fromInternet) add('SPOOF_OWN_DOMAIN', `${field}: ${address} from ${ctx.envelope.clientIp}`);
          return;
        }
        const look = matcher.lookalike(domain);
        if (look) add('SPOOF_LOOKALIKE_DOMAIN', `${field}: ${address} imitates ${look.imitates} (${look.kind})`);
      };

      const mailFrom = ctx.envelope.mailFrom.trim().replace(/^<|>$/g, '').toLowerCase();
      judgeDomain('MAIL FROM', mailFrom, domainOf(mailFrom));

      const from: MailAddress[] = headerValues(parsed, 'from').flatMap(parseAddresses).slice(0, MAX_FROM_ADDRESSES);
      for (const a of from) {
        judgeDomain('header From', a.address, a.domain);
        const outside = !a.domain || (!matcher.own(a.domain) && !allowed.some((d) => isWithin(a.domain, d)));
        if (!fromInternet || !outside || !a.name) continue;
        for (const label of namesIn(a.name)) add('SPOOF_DISPLAY_NAME', `"${a.name}" <${a.address}> names ${label}`);
      }
      return [...found].map(([name, details]) => ({ name, details: [...details].sort() }));
    },
  };
}
