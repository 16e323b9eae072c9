/**
 * The admin stores on one SQLite file, `dataDir/admin.sqlite`: accounts (with sessions and API tokens) and the
 * audit log (with its anchor file `dataDir/audit-anchor.json`). Each opens its own connection; close both.
 */
import path from 'node:path';
import type { Config } from '../config/schema.ts';
import type { AccountStore } from './auth/account-store.ts';
import { SqliteAccountStore } from './auth/sqlite-account-store.ts';
import type { AuditLog } from './audit/audit-log.ts';
import { SqliteAuditLog } from './audit/sqlite-audit-log.ts';

export const ADMIN_DB_FILE = 'admin.sqlite';

export interface AdminStores {
  accounts: AccountStore;
  audit: AuditLog;
  close(): Promise<void>;
}

export function openAdminStores(config: Pick<Config, 'dataDir'>, opts: { now?: () => number } = {}): AdminStores {
  const file = path.join(config.dataDir, ADMIN_DB_FILE);
  const accounts = new SqliteAccountStore(file, opts);
  let audit: SqliteAuditLog;
  try {
    audit = new SqliteAuditLog(file);
  } catch (err) {
    void accounts.close();
    throw err;
  }
  return {
    accounts,
    audit,
    async close() {
      await accounts.close();
      await audit.close();
    },
  };
}
