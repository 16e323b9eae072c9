/**
 * `reputation`: the DNS blocklists asked about the connecting IP (`ipZones`) and about the domains of the URLs in
 * the body (`domainZones`), and what each return code means. Empty by default: no lookup leaves the machine until
 * the operator configures a zone (and most lists require a subscription or a local mirror for a site this size).
 *
 * Example:
 *   reputation:
 *     ipZones:
 *       - zone: zen.spamhaus.org
 *         returnCodes: { 127.0.0.2: RBL_LISTED, 127.0.0.3: RBL_LISTED, 127.0.0.4: RBL_LISTED, 127.0.0.10: RBL_POLICY, 127.0.0.11: RBL_POLICY }
 *     domainZones:
 *       - zone: dbl.spamhaus.org
 *         returnCodes: { 127.0.1.2: DBL_LISTED, 127.0.1.4: DBL_LISTED, 127.0.1.5: DBL_LISTED, 127.0.1.6: DBL_LISTED }
 */
import { z } from 'zod';

const zoneName = z
  .string()
  .regex(/^(?=.{1,200}$)([a-zA-Z0-9_-]{1,63}\.)+[a-zA-Z0-9-]{1,63}$/, 'must be a DNS zone like zen.example.org')
  .transform((z) => z.toLowerCase());

/** Answers are addresses in 127.0.0.0/8; 127.255.255.0/24 is reserved for "query refused" and cannot be mapped. */
const returnCode = z
  .string()
  .regex(/^127\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)\.(25[0-5]|2[0-4]\d|1?\d?\d)$/, 'must be an address in 127.0.0.0/8')
  .refine((s) => !s.startsWith('127.255.255.'), '127.255.255.x means "query refused", never a listing');

const atLeastOne = (r: Record<string, string>) => Object.keys(r).length > 0;
const ipReturnCodes = z.record(returnCode, z.enum(['RBL_LISTED', 'RBL_POLICY'])).refine(atLeastOne, 'name at least one return code');
const domainReturnCodes = z.record(returnCode, z.enum(['URIBL_LISTED', 'DBL_LISTED'])).refine(atLeastOne, 'name at least one return code');

export const reputationConfigSchema = z.strictObject({
  /** DNSBLs for the connecting IP; each return code maps to RBL_LISTED or RBL_POLICY. Other codes are ignored. */
  ipZones: z.array(z.strictObject({ zone: zoneName, returnCodes: ipReturnCodes })).default([]),
  /** URIBLs/DBLs for body URL domains; each return code maps to URIBL_LISTED or DBL_LISTED. Other codes are ignored. */
  domainZones: z.array(z.strictObject({ zone: zoneName, returnCodes: domainReturnCodes })).default([]),
  /**
   * Registrable domains of one message looked up (the first ones in body order); the rest are not. Bounds the
   * lookups per message to this × the number of domain zones. Ordinary mail links a handful of domains.
   */
  maxUrlDomains: z.number().int().positive().default(20),
  /** Answers kept (least recently used dropped first); an entry is a name and a few addresses, under 200 bytes. */
  cacheMaxEntries: z.number().int().nonnegative().default(50_000),
  /** Seconds a "not listed" answer (NXDOMAIN) is kept; DNSBLs publish 60–900 s in their SOA. */
  negativeCacheTtlSeconds: z.number().int().nonnegative().default(300),
  /** Longest a listing is kept whatever its TTL says, so that a delisting is seen within this many seconds. */
  maxCacheTtlSeconds: z.number().int().nonnegative().default(3_600),
});

export type ReputationConfig = z.infer<typeof reputationConfigSchema>;
