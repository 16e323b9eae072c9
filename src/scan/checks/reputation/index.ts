/**
 * reputation — DNS blocklists: the connecting IP against the configured IP zones (DNSBL: octets reversed,
 * IPv6 as 32 nibbles), the registrable domains of the body's URLs against the domain zones (URIBL/DBL). What a
 * return code means comes from config (`127.0.0.2: RBL_LISTED`); a code it does not name is ignored.
 *
 * Fail closed: a lookup without an answer (timeout, SERVFAIL) is RBL_TEMPERROR / URIBL_TEMPERROR, and so is an
 * answer that is not a listing at all: 127.255.255.x (the zone refuses us: public resolver, over quota) or an
 * address outside 127.0.0.0/8 (a resolver that rewrites NXDOMAIN). Neither is ever read as "listed" or "clean".
 *
 * Answers are cached for their TTL (at most reputation.maxCacheTtlSeconds), "not listed" for
 * reputation.negativeCacheTtlSeconds; failures are not cached. Concurrent messages share one lookup per name.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Check, CheckContext, SymbolHit } from '../../check.ts';
import { DnsTempError, type DnsResolver } from '../../dns/resolver.ts';
import { TtlCache } from '../../dns/ttl-cache.ts';
import type { SymbolName } from '../../symbols.ts';
import type { ReputationConfig } from './config.ts';
import { urlDomains } from './url-domains.ts';

export { reputationConfigSchema, type ReputationConfig } from './config.ts';

export interface ReputationCheckOptions {
  config: ReputationConfig;
  /** The configured resolver (tests: the loopback test server). */
  resolver: DnsResolver;
  /** Clock for cache expiry, epoch ms. */
  now?: () => number;
}

interface Zone {
  zone: string;
  returnCodes: Record<string, SymbolName>;
}

interface Query {
  zone: Zone;
  /** The IP or domain asked about, for details. */
  subject: string;
  /** `<reversed ip or domain>.<zone>` */
  name: string;
  errorSymbol: 'RBL_TEMPERROR' | 'URIBL_TEMPERROR';
}

/** Hex groups of one side of an IPv6 "::"; an embedded IPv4 tail (::ffff:192.0.2.1) becomes two groups. */
function ipv6Groups(part: string): string[] {
  if (!part) return [];
  return part.split(':').flatMap((g) => {
    if (!g.includes('.')) return [g];
    const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
    return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
  });
}

/** "192.0.2.1" → "1.2.0.192"; "2001:db8::1" → its 32 nibbles, reversed; IPv4-mapped IPv6 as IPv4. Undefined if not an IP. */
export function reverseIp(ip: string): string | undefined {
  const bare = ip.replace(/%.*$/, '');
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare)?.[1] ?? (isIPv4(bare) ? bare : undefined);
  if (v4 !== undefined) return isIPv4(v4) ? v4.split('.').reverse().join('.') : undefined;
  if (!isIPv6(bare)) return undefined;
  const [head = '', tail] = bare.split('::');
  const h = ipv6Groups(head);
  const t = tail === undefined ? [] : ipv6Groups(tail);
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.map((g) => g.padStart(4, '0')).join('').split('').reverse().join('.');
}

/** Why an answer address is not a listing but an error, or undefined when it is a (possibly unnamed) return code. */
function answerError(address: string): string | undefined {
  if (address.startsWith('127.255.255.')) return `query refused (${address})`;
  if (!address.startsWith('127.')) return `not a blocklist answer (${address}): does the resolver rewrite NXDOMAIN?`;
  return undefined;
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export function createReputationCheck(opts: ReputationCheckOptions): Check {
  const { config, resolver } = opts;
  const cache = new TtlCache<string[]>(config.cacheMaxEntries, opts.now ?? Date.now);
  const inFlight = new Map<string, Promise<string[]>>();

  /** The answer addresses for `name` ([] = not listed), from the cache or one shared lookup. */
  const lookup = (name: string): Promise<string[]> => {
    const cached = cache.get(name);
    if (cached) return Promise.resolve(cached);
    let pending = inFlight.get(name);
    if (!pending) {
      // Not tied to one message's signal: another message may be waiting for the same name. The resolver's
      // timeout bounds it.
      pending = resolver
        .a(name)
        .then((answers) => {
          const ttlSeconds = answers.length ? Math.min(...answers.map((a) => a.ttlSeconds), config.maxCacheTtlSeconds) : config.negativeCacheTtlSeconds;
          const addresses = answers.map((a) => a.address).sort();
          cache.set(name, addresses, ttlSeconds * 1000);
          return addresses;
        })
        .finally(() => inFlight.delete(name));
      inFlight.set(name, pending);
    }
    return pending;
  };

  const ipZones: Zone[] = config.ipZones;
  const domainZones: Zone[] = config.domainZones;

  return {
    name: 'reputation',
    failSymbol: 'REPUTATION_FAIL',
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const queries: Query[] = [];
      const reversed = ipZones.length ? reverseIp(ctx.envelope.clientIp) : undefined;
      if (ipZones.length && reversed === undefined) ctx.log.warn({ clientIp: ctx.envelope.clientIp }, 'client IP is not an IP address: no DNSBL lookup');
      for (const zone of reversed === undefined ? [] : ipZones) {
        queries.push({ zone, subject: ctx.envelope.clientIp, name: `${reversed}.${zone.zone}`, errorSymbol: 'RBL_TEMPERROR' });
      }
      if (domainZones.length) {
        for (const domain of urlDomains(await ctx.parsed(), config.maxUrlDomains)) {
          for (const zone of domainZones) queries.push({ zone, subject: domain, name: `${domain}.${zone.zone}`, errorSymbol: 'URIBL_TEMPERROR' });
        }
      }

      const found = new Map<SymbolName, string[]>();
      const add = (name: SymbolName, detail: string) => found.set(name, [...(found.get(name) ?? []), detail]);
      await Promise.all(
        queries.map(async (q) => {
          let addresses: string[];
          try {
            addresses = await abortable(lookup(q.name), ctx.signal);
          } catch (err) {
            if (!(err instanceof DnsTempError)) throw err;
            add(q.errorSymbol, `${q.zone.zone}: ${q.subject}: ${err.code}`);
            return;
          }
          for (const address of addresses) {
            const error = answerError(address);
            const symbol = error ? undefined : q.zone.returnCodes[address];
            if (error) add(q.errorSymbol, `${q.zone.zone}: ${q.subject}: ${error}`);
            else if (symbol) add(symbol, `${q.zone.zone}: ${q.subject} (${address})`);
            else ctx.log.debug({ zone: q.zone.zone, subject: q.subject, address }, 'blocklist return code not configured: ignored');
          }
        }),
      );
      return [...found].map(([name, details]) => ({ name, details }));
    },
  };
}
