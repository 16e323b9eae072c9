/**
 * The checks every message goes through, in one list. A new check is added here and nowhere else; the runner
 * gives each a deadline and turns its failure into its `<CHECK>_FAIL` symbol.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { Check } from './check.ts';
import type { ClamdEndpoint } from './clamd-client.ts';
import { createAntivirusChecks } from './checks/antivirus.ts';
import { createMimeStructureCheck } from './checks/mime-structure.ts';
import { createAuthCheck } from './checks/auth/index.ts';
import { createBayesCheck, openBayesStore } from './checks/bayes/index.ts';
import { createReputationCheck } from './checks/reputation/index.ts';
import { createRspamdCheck } from './checks/rspamd/index.ts';
import { createRulesCheck } from './checks/rules/index.ts';
import { createDnsResolver, type DnsResolver } from './dns/resolver.ts';
import { createSpoofingCheck } from './checks/spoofing/index.ts';
import { createUnscannableCheck } from './checks/unscannable.ts';

/** Network endpoints of the scan engines, resolved by the composition root (managed or configured). */
export interface ScanEngines {
  clamd: ClamdEndpoint;
  /** The resolver of the DNS checks; by default one on antispam.dns.servers (none named: those checks are off). */
  dns?: DnsResolver;
}

export function createChecks(config: Config, engines: ScanEngines, log: Logger): Check[] {
  const { dns: dnsConfig, auth, reputation, rspamd } = config.antispam;
  const dns = engines.dns ?? (dnsConfig.servers.length ? createDnsResolver(dnsConfig) : undefined);
  if (!dns) log.warn('antispam.dns.servers is not set: sender authentication (SPF, DKIM, DMARC, ARC) and DNSBL checks are off');
  return [
    ...createLocalChecks(config, log),
    ...createAntivirusChecks(config, engines.clamd, log),
    ...(dns ? [createAuthCheck({ config: auth, resolver: dns, hostname: config.hostname }), createReputationCheck({ config: reputation, resolver: dns })] : []),
    ...(config.antispam.bayes.enabled ? [createStoredBayesCheck(config)] : []),
    ...(rspamd.url ? [createRspamdCheck({ config: { ...rspamd, url: rspamd.url } })] : []),
  ];
}

/** The checks that need neither the network nor a store: what `sekisho spam classify` runs besides Bayes. */
export function createLocalChecks(config: Config, log: Logger): Check[] {
  const domains = config.tenants.flatMap((t) => t.domains);
  return [
    createMimeStructureCheck(),
    createUnscannableCheck({ archive: config.clamav.archive }),
    createSpoofingCheck({ ...config.antispam.spoofing, domains, names: config.tenants.map((t) => t.name) }),
    createRulesCheck({ ...config.antispam.rules, domains, log }),
  ];
}

/** The Bayes check on its model store (antispam.bayes.dbFile), which it closes when the worker stops. */
function createStoredBayesCheck(config: Config): Check {
  const store = openBayesStore(config.dataDir, config.antispam.bayes);
  return { ...createBayesCheck({ store, config: config.antispam.bayes }), close: () => store.close() };
}
