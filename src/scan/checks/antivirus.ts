/**
 * The antivirus checks of one installation, built from the config: clamav (with the archive limits) always, the
 * SOC's hash blocklist when clamav.hashBlocklistFile is set. The clamd endpoint comes from the composition root
 * (configuredClamd or the managed clamd, src/services/clamd.ts), never from here.
 */
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.ts';
import type { Check } from '../check.ts';
import type { ClamdEndpoint } from '../clamd-client.ts';
import { createClamavCheck } from './clamav.ts';
import { createHashBlocklistCheck } from './hash-blocklist.ts';

/** Throws SEKISHO_ERR_HASH_BLOCKLIST_INVALID when the blocklist file is missing or malformed at start. */
export function createAntivirusChecks(config: Config, clamd: ClamdEndpoint, log: Logger): Check[] {
  const checks: Check[] = [createClamavCheck({ clamd, timeoutMs: config.clamav.timeoutMs, archive: config.clamav.archive })];
  if (config.clamav.hashBlocklistFile) checks.push(createHashBlocklistCheck({ file: config.clamav.hashBlocklistFile, log }));
  return checks;
}
