/**
 * `auth`: sender authentication (SPF, DKIM, DMARC, ARC). The DNS servers it asks are the shared `dns` section
 * (src/scan/dns/config.ts); the authserv-id of the Authentication-Results header is the top-level `hostname`.
 */
import { z } from 'zod';

export const authConfigSchema = z.strictObject({
  /**
   * Smallest RSA key, in bits, that a DKIM or ARC signature may use; a shorter key is a failed signature
   * (DKIM_INVALID "weak key"). 1024 is RFC 8301's floor; large senders use 2048.
   */
  minKeyBits: z.number().int().min(512).max(8192).default(1024),
});

export type AuthConfig = z.infer<typeof authConfigSchema>;
