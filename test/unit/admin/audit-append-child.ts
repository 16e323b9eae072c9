/**
 * A second process appending to an audit log (sqlite-audit-log.test.ts): argv = database file, count, actor, gate.
 * Creates `<gate>.<actor>` once loaded, then waits for `<gate>` so that both processes append at the same time.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SqliteAuditLog } from '../../../src/admin/audit/sqlite-audit-log.ts';

const [file, count, actor, gate] = process.argv.slice(2);
const log = new SqliteAuditLog(file!);
writeFileSync(`${gate}.${actor}`, '');
while (!existsSync(gate!)) await sleep(5);
for (let i = 0; i < Number(count); i++) {
  // A pause between appends: SQLite's busy handler favours the process that holds the lock, so without one the
  // first process would do all its appends before the other gets a turn.
  if (i > 0) await sleep(1);
  await log.append({ at: Date.UTC(2026, 11, 1) + i, actor: actor!, role: null, tenantId: null, ip: null, action: 'login', target: null, reason: null, outcome: 'ok', details: { i } });
}
await log.close();
