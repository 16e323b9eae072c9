/**
 * `sekisho backup` and `sekisho restore` (src/ops/backup.ts, src/ops/restore.ts) from the shell.
 *   sekisho backup --to DIR|FILE.tar[.gz] [--config FILE]
 *       an online backup of dataDir while Sekisho runs; prints the backup point and the counts; exit 0, or 1
 *   sekisho restore --from DIR|FILE.tar[.gz] [--config FILE] [--data-dir DIR] [--force]
 *       onto an empty dataDir (config.dataDir, or --data-dir); --force moves a non-empty one aside. A --config FILE
 *       that does not exist yet receives the backup's config file first (a fresh machine).
 * Rule: restore refuses while any process has a file of the target dataDir open.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { takeBackup } from '../ops/backup.ts';
import { openBackup, restoreBackup, restoreConfigFile } from '../ops/restore.ts';
import { runAdminCommand, UsageError, type AdminCommandDeps } from './user.ts';

const BACKUP_USAGE = 'usage: sekisho backup --to DIR|FILE.tar|FILE.tar.gz [--config FILE]';
const RESTORE_USAGE = 'usage: sekisho restore --from DIR|FILE.tar|FILE.tar.gz [--config FILE] [--data-dir DIR] [--force]';

function outputs(deps: AdminCommandDeps): { out: (l: string) => void; err: (l: string) => void } {
  return {
    out: deps.out ?? ((line: string) => void process.stdout.write(`${line}\n`)),
    err: deps.err ?? ((line: string) => void process.stderr.write(`${line}\n`)),
  };
}

export async function runBackupCommand(argv: string[], deps: AdminCommandDeps): Promise<number> {
  return runAdminCommand('backup', BACKUP_USAGE, deps, async () => {
    const { values } = parseArgs({ args: argv, options: { to: { type: 'string' }, config: { type: 'string', short: 'c' } } });
    if (!values.to) throw new UsageError('--to is required');
    const { out, err } = outputs(deps);
    const loaded = deps.loadConfig(values.config);
    const r = await takeBackup({ config: loaded.config, configFile: loaded.file, to: values.to, now: deps.now });
    const m = r.manifest;
    const point = m.backupPoint ? `${new Date(m.backupPoint.receivedAt).toISOString()} (message ${m.backupPoint.id})` : 'no messages';
    out(`backup written to ${r.target}`);
    out(`  backup point: ${point}`);
    out(`  files: ${m.files.length} (${m.spoolFiles} spool), ${m.files.reduce((s, f) => s + f.size, 0)} bytes`);
    out(`  messages finished during the backup (taken as finished): ${m.rolledForward}`);
    for (const [db, tables] of Object.entries(m.rowCounts)) out(`  ${db}: ${Object.entries(tables).map(([t, n]) => `${t} ${n}`).join(', ')}`);
    if (r.audit && !r.audit.ok) {
      err(`audit log FAILED in the backup (SEKISHO_ERR_AUDIT_CHAIN): ${r.audit.problems.length} problem(s); the live log is damaged — treat as a security incident`);
      return 1;
    }
    if (r.audit) out(`  audit log: ${r.audit.checked} record(s), chain and anchor intact`);
    return 0;
  });
}

export async function runRestoreCommand(argv: string[], deps: AdminCommandDeps): Promise<number> {
  return runAdminCommand('restore', RESTORE_USAGE, deps, async () => {
    const { values } = parseArgs({
      args: argv,
      options: { from: { type: 'string' }, config: { type: 'string', short: 'c' }, 'data-dir': { type: 'string' }, force: { type: 'boolean' } },
    });
    if (!values.from) throw new UsageError('--from is required');
    const { out, err } = outputs(deps);
    const backup = openBackup(values.from, os.tmpdir());
    try {
      if (values.config && !existsSync(values.config) && restoreConfigFile(backup, values.config)) {
        out(`config file restored to ${values.config} (check hostnames, listen addresses and paths for this machine)`);
      }
      const dataDir = values['data-dir'] ?? deps.loadConfig(values.config).config.dataDir;
      const r = await restoreBackup(backup, { dataDir, force: values.force, now: deps.now });
      const point = backup.manifest.backupPoint;
      out(`restored ${r.files} file(s) of the backup of ${backup.manifest.createdAt} (${backup.manifest.hostname}) into ${r.dataDir}`);
      if (r.movedAside) out(`  the old dataDir was moved to ${r.movedAside}`);
      out(`  backup point: ${point ? `${new Date(point.receivedAt).toISOString()} (message ${point.id})` : 'no messages'}; mail accepted after it is not in this backup`);
      out(`  messages: ${fmt(r.messages)}; recipients to deliver at the next start: ${r.openRecipients}`);
      out(`  quarantine: ${fmt(r.quarantine)}`);
      out('  Redis is not restored: the next start queues every unfinished message again from the spool');
      if (r.audit && !r.audit.ok) {
        for (const p of r.audit.problems) out(`  audit seq ${p.seq}: ${p.problem}`);
        err(`audit log FAILED after restore (SEKISHO_ERR_AUDIT_CHAIN): ${r.audit.problems.length} problem(s)`);
        return 1;
      }
      if (r.audit) out(`  audit log: ${r.audit.checked} record(s), chain and anchor intact`);
      return 0;
    } finally {
      backup.close();
    }
  });
}

function fmt(counts: Record<string, number>): string {
  const parts = Object.entries(counts).map(([k, n]) => `${k} ${n}`);
  return parts.length ? parts.join(', ') : 'none';
}
