/**
 * `sekisho audit …`: the audit log from the shell.
 *   sekisho audit verify [--config FILE]
 *       recomputes the whole hash chain and checks the anchor; prints each problem; exit 0 intact, 1 not
 *   sekisho audit export [--from ISO] [--to ISO] [--out FILE] [--config FILE]
 *       JSON lines, oldest first, with seq/prevHash/hash so that the SOC can verify them on its own (stdout by default)
 * Rule: both are read-only; `verify` never "repairs" anything — a broken chain is evidence.
 */
import { createWriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { openAdminStores } from '../admin/admin-stores.ts';
import type { AuditQuery } from '../admin/audit/audit-log.ts';
import { runAdminCommand, UsageError, type AdminCommandDeps } from './user.ts';

const USAGE = `usage: sekisho audit verify [--config FILE]
       sekisho audit export [--from ISO-DATE] [--to ISO-DATE] [--out FILE] [--config FILE]`;

export async function runAuditCommand(argv: string[], deps: AdminCommandDeps): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'verify' && sub !== 'export') {
    (deps.err ?? ((l: string) => void process.stderr.write(`${l}\n`)))(USAGE);
    return sub === 'help' || sub === '--help' ? 0 : 2;
  }
  return runAdminCommand('audit', USAGE, deps, () => (sub === 'verify' ? verify(rest, deps) : exportLog(rest, deps)));
}

function outputs(deps: AdminCommandDeps): { out: (l: string) => void; err: (l: string) => void } {
  return {
    out: deps.out ?? ((line: string) => void process.stdout.write(`${line}\n`)),
    err: deps.err ?? ((line: string) => void process.stderr.write(`${line}\n`)),
  };
}

async function verify(argv: string[], deps: AdminCommandDeps): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' } } });
  const { out, err } = outputs(deps);
  const stores = openAdminStores(deps.loadConfig(values.config).config);
  try {
    const v = await stores.audit.verify();
    if (v.ok) {
      out(`audit log OK: ${v.checked} record(s), hash chain and anchor intact`);
      return 0;
    }
    for (const p of v.problems) out(`seq ${p.seq}: ${p.problem}`);
    err(`audit log FAILED (SEKISHO_ERR_AUDIT_CHAIN): ${v.problems.length} problem(s) in ${v.checked} record(s); treat as a security incident`);
    return 1;
  } finally {
    await stores.close();
  }
}

function isoOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UsageError(`${name}: "${value}" is not an ISO 8601 date or time (2026-12-01, 2026-12-01T09:00:00+09:00)`);
  return ms;
}

async function exportLog(argv: string[], deps: AdminCommandDeps): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, from: { type: 'string' }, to: { type: 'string' }, out: { type: 'string', short: 'o' } } });
  const q: AuditQuery = { from: isoOption(values.from, '--from'), to: isoOption(values.to, '--to') };
  const { err } = outputs(deps);
  const stores = openAdminStores(deps.loadConfig(values.config).config);
  try {
    if (values.out === undefined) {
      const stdout = deps.stdout ?? process.stdout;
      // `sekisho audit export | head`: the reader going away ends the export, it is not an error of ours.
      let closed = false;
      stdout.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EPIPE') throw e;
        closed = true;
      });
      try {
        const n = await stores.audit.exportJsonl(stdout, q);
        err(`exported ${n} record(s)`);
      } catch (e) {
        if (!closed) throw e;
      }
      return 0;
    }
    // The export holds who did what to whose mail: readable by its owner only.
    const file = createWriteStream(values.out, { mode: 0o600 });
    const n = await stores.audit.exportJsonl(file, q);
    file.end();
    await finished(file);
    err(`exported ${n} record(s) to ${values.out}`);
    return 0;
  } finally {
    await stores.close();
  }
}
