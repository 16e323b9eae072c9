/**
 * Configuration of the spoofing check (`antispam.spoofing`). Tenant domains and names are not repeated here: the
 * composition root takes them from `tenants[]`.
 */
import { BlockList } from 'node:net';
import { z } from 'zod';
import { domainName } from '../../../config/domain-name.ts';
import { addIpPattern } from '../../../ip-list.ts';

/** An IPv4/IPv6 address or CIDR block ("192.0.2.10", "198.51.100.0/24", "2001:db8::/32"). */
const ipOrCidr = z.string().refine((s) => addIpPattern(new BlockList(), s), 'must be an IP address or a CIDR block like 198.51.100.0/24');

const domain = domainName();

export const spoofingConfigSchema = z
  .object({
    /**
     * Connecting IPs (or CIDR blocks) of the tenants' own outbound relays, whose mail may legitimately carry a
     * tenant domain in MAIL FROM / From and a tenant's name in a display name. Default: none, i.e. every
     * connection is from the internet.
     */
    trustedRelays: z.array(ipOrCidr).default([]),
    /**
     * Names of officials that phishing impersonates ("山田太郎", "市長 山田太郎"). Matched inside display names
     * after NFKC and with whitespace removed: configure the personal name alone to catch every title with it.
     */
    officials: z.array(z.string().trim().min(2)).default([]),
    /**
     * Domains (and their subdomains) never reported as look-alikes: real neighbours whose names are one edit
     * from a tenant's. Default: none.
     */
    lookalikeIgnoreDomains: z.array(domain).default([]),
    /**
     * Sender domains (and their subdomains) whose display names may name a tenant or an official, e.g. the
     * prefecture's own domain or a tourism association's newsletter. Default: none.
     */
    displayNameAllowedDomains: z.array(domain).default([]),
  })
  .strict();

export type SpoofingConfig = z.infer<typeof spoofingConfigSchema>;
