/**
 * `dns`: the servers the scan checks query (SPF, DKIM, DMARC, DNSBL). Never the system's resolv.conf: the checks
 * must give the same answers as the resolver the operator chose, and DNSBL operators refuse queries that arrive
 * through large public resolvers. No default: until servers are named (usually a caching resolver on this host,
 * e.g. unbound at 127.0.0.1:53), the checks that need DNS — sender authentication and reputation — are off, so that
 * a machine without a resolver does not hold every message on `_TEMPERROR`.
 */
import { z } from 'zod';

/** "host:port"; IPv6 hosts in brackets ("[::1]:53"). */
const serverAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[0-9.]+):\d{1,5}$/, 'must be "ip:port", e.g. "127.0.0.1:53" or "[::1]:53"')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be 0-65535');

export const dnsConfigSchema = z.strictObject({
  /** Servers asked in order, each "ip:port", e.g. ["127.0.0.1:53"]. Empty: auth and reputation are off. */
  servers: z.array(serverAddress).default([]),
  /**
   * Milliseconds one server is waited for before the next is tried; a lookup that no server answers in time is a
   * temporary error (SPF_TEMPERROR, RBL_TEMPERROR…). A local resolver answers from cache in under a millisecond
   * and recurses in well under a second.
   */
  timeoutMs: z.number().int().positive().default(2_000),
});

export type DnsConfig = z.infer<typeof dnsConfigSchema>;
