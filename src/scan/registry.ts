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
import { createUnscannableCheck } from './checks/unscannable.ts';

/** Network endpoints of the scan engines, resolved by the composition root (managed or configured). */
export interface ScanEngines {
  clamd: ClamdEndpoint;
}

export function createChecks(config: Config, engines: ScanEngines, log: Logger): Check[] {
  return [
    createMimeStructureCheck(),
    ...createAntivirusChecks(config, engines.clamd, log),
    createUnscannableCheck({ archive: config.clamav.archive }),
  ];
}
