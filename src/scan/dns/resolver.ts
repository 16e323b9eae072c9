/**
 * The DNS resolver the scan checks are given (SPF, DKIM, DMARC, DNSBL): a `node:dns/promises` Resolver with its
 * own configured servers, never the system's (a test passes its loopback server; production a local caching
 * resolver). Answers come in two kinds only: records (an empty list for NXDOMAIN and NODATA: "there is none"), or
 * a `DnsTempError` for everything else (timeout, SERVFAIL, REFUSED, network errors, malformed answers): "we do not
 * know", which a check must report as a temporary error and never read as "there is none".
 */
import { Resolver } from 'node:dns/promises';

/** A lookup that did not get an answer: the caller does not know whether a record exists. */
export class DnsTempError extends Error {
  /** c-ares code as Node reports it (ETIMEOUT, ESERVFAIL, EREFUSED, ECONNREFUSED…), or EABORTED. */
  readonly code: string;
  readonly query: string;
  readonly rrtype: string;
  constructor(query: string, rrtype: string, code: string, options?: { cause?: unknown }) {
    super(`DNS ${rrtype} ${query}: ${code}`, options);
    this.name = 'DnsTempError';
    this.code = code;
    this.query = query;
    this.rrtype = rrtype;
  }
}

export interface AddressRecord {
  address: string;
  ttlSeconds: number;
}

export interface MxRecord {
  exchange: string;
  priority: number;
}

export interface DnsResolver {
  /** A records with their TTLs. */
  a(name: string, signal?: AbortSignal): Promise<AddressRecord[]>;
  /** AAAA records with their TTLs. */
  aaaa(name: string, signal?: AbortSignal): Promise<AddressRecord[]>;
  /** TXT records, each as its character-strings (join them to read the record). */
  txt(name: string, signal?: AbortSignal): Promise<string[][]>;
  mx(name: string, signal?: AbortSignal): Promise<MxRecord[]>;
  ptr(name: string, signal?: AbortSignal): Promise<string[]>;
}

export interface DnsResolverOptions {
  /** "host:port" of each server, tried in order ("127.0.0.1:53", "[::1]:53"). At least one. */
  servers: readonly string[];
  /** How long one server is waited for before the next is tried (or the lookup fails). */
  timeoutMs: number;
}

/**
 * Codes meaning "the name has no such record": an answer, not a failure. EBADNAME (a name DNS cannot carry, e.g. a
 * DKIM selector with a space in it) is one too: no record can exist under it, and a sender must not be able to turn
 * its own malformed name into a temporary error that defers its mail.
 */
const NO_RECORD_CODES = new Set(['ENOTFOUND', 'ENODATA', 'EBADNAME']);

/**
 * Tries per server. One: the check's own deadline bounds the whole lookup, and a retry on the same server mostly
 * repeats a loss that the next server (if configured) avoids.
 */
const TRIES_PER_SERVER = 1;

export function createDnsResolver(opts: DnsResolverOptions): DnsResolver {
  if (opts.servers.length === 0) throw new Error('the DNS resolver needs at least one server (dns.servers)');
  const resolver = new Resolver({ timeout: opts.timeoutMs, tries: TRIES_PER_SERVER });
  resolver.setServers([...opts.servers]);

  const ask = async <T>(name: string, rrtype: string, signal: AbortSignal | undefined, query: () => Promise<T[]>): Promise<T[]> => {
    if (signal?.aborted) throw new DnsTempError(name, rrtype, 'EABORTED', { cause: signal.reason });
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new DnsTempError(name, rrtype, 'EABORTED', { cause: signal?.reason }));
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([query(), aborted]);
    } catch (err) {
      if (err instanceof DnsTempError) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      if (NO_RECORD_CODES.has(code)) return [];
      throw new DnsTempError(name, rrtype, code, { cause: err });
    } finally {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  };

  const addresses = (recs: { address: string; ttl: number }[]): AddressRecord[] => recs.map((r) => ({ address: r.address, ttlSeconds: r.ttl }));
  return {
    a: (name, signal) => ask(name, 'A', signal, async () => addresses(await resolver.resolve4(name, { ttl: true }))),
    aaaa: (name, signal) => ask(name, 'AAAA', signal, async () => addresses(await resolver.resolve6(name, { ttl: true }))),
    txt: (name, signal) => ask(name, 'TXT', signal, () => resolver.resolveTxt(name)),
    mx: (name, signal) => ask(name, 'MX', signal, () => resolver.resolveMx(name)),
    ptr: (name, signal) => ask(name, 'PTR', signal, () => resolver.resolvePtr(name)),
  };
}
