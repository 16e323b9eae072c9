/**
 * The disaster-recovery drill: steady mail to two tenants (some of it held by a block list), console accounts and
 * audit rows; a backup taken while mail flows; dataDir destroyed; the backup restored into a new dataDir and
 * Sekisho started on it. Every message accepted before the backup is delivered or held exactly as it was, nothing
 * the backup recorded as delivered is delivered again, the audit chain verifies, and nothing accepted after the
 * backup comes back.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { openAdminStores } from '../../src/admin/admin-stores.ts';
import { hashPassword } from '../../src/admin/auth/passwords.ts';
import { takeBackup } from '../../src/ops/backup.ts';
import { openBackup, restoreBackup } from '../../src/ops/restore.ts';
import { SqliteQuarantineStore } from '../../src/quarantine/sqlite-quarantine-store.ts';
import { Harness, queuedId } from '../helpers/harness.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';
import type { SmtpSink } from '../helpers/smtp-sink.ts';

const harnesses: Harness[] = [];
let work: string | undefined;

afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.stop();
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** city-a holds a blocked sender's mail; town-b sanitizes (text mail: no LibreOffice), keeping each original. */
const TENANT_OPTIONS = { 'city-a': { block: ['spammer.example'] }, 'town-b': { sanitize: true } };
/** Messages sent before the backup, and during plus after it. */
const BEFORE = 40;
const AFTER = 15;

interface Sent {
  n: number;
  mid: string;
  held: boolean;
  /** Acknowledged (250) before the backup started / after it finished; neither when during. */
  phase: 'before' | 'during' | 'after';
}

async function send(h: Harness, n: number, phase: Sent['phase']): Promise<Sent> {
  const held = n % 5 === 0;
  const from = held ? `x${n}@spammer.example` : `s${n}@example.net`;
  const reply = await sendRaw(h.port, from, [`a${n}@city-a.example.lg.jp`, `b${n}@town-b.example.lg.jp`], simpleMessage({ from, subject: `drill-${n}` }));
  return { n, mid: queuedId(reply), held, phase };
}

/** How often each subject reached a sink. */
function arrivals(sink: SmtpSink): Map<string, number> {
  const seen = new Map<string, number>();
  for (const m of sink.messages) {
    const subject = /^Subject: (drill-\d+)\r?$/m.exec(m.raw.toString('latin1'))?.[1];
    if (subject) seen.set(subject, (seen.get(subject) ?? 0) + 1);
  }
  return seen;
}

/** Recipient states of the restored MetaStore, by message id and tenant, read before anything runs on it. */
function restoredStates(dataDir: string): Map<string, Map<string, string>> {
  const db = new Database(path.join(dataDir, 'meta.sqlite'), { readonly: true });
  try {
    const rows = db.prepare('SELECT message_id AS mid, tenant_id AS tenant, state FROM recipients').all() as { mid: string; tenant: string; state: string }[];
    const states = new Map<string, Map<string, string>>();
    for (const r of rows) states.set(r.mid, (states.get(r.mid) ?? new Map<string, string>()).set(r.tenant, r.state));
    return states;
  } finally {
    db.close();
  }
}

it('restores a backup taken under load: delivered stays delivered, in flight is delivered once, held stays held, the audit chain verifies', async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'sekisho-drill-'));
  const h1 = await Harness.start({ tenantOptions: TENANT_OPTIONS });
  harnesses.push(h1);
  // town-b's server is slow: its deliveries lag, so the backup catches messages half delivered.
  h1.sinks.b.behaviour = { beforeReply: () => new Promise((r) => setTimeout(r, 150)) };
  const configFile = path.join(work, 'sekisho.json');
  writeFileSync(configFile, JSON.stringify(h1.config)); // JSON is YAML

  const admin = openAdminStores(h1.config);
  await admin.accounts.create({ username: 'pref-admin', role: 'admin', passwordHash: await hashPassword('関所-drill-password-2026') });
  const audit = (action: string) => admin.audit.append({ at: Date.now(), actor: 'pref-admin', role: 'admin', tenantId: null, ip: null, action, target: null, reason: null, outcome: 'ok', details: {} });
  for (const action of ['login', 'list.add', 'account.create']) await audit(action);

  const sent: Sent[] = [];
  for (let n = 0; n < BEFORE; n++) sent.push(await send(h1, n, 'before'));
  // Mail and audit appends go on while the backup runs.
  let phase: Sent['phase'] = 'during';
  let n = BEFORE;
  const load = (async () => {
    while (n < BEFORE + AFTER) {
      const s = await send(h1, n++, phase);
      sent.push(s);
      if (n % 3 === 0) await audit('quarantine.request');
    }
  })();
  const target = path.join(work, 'backup.tar.gz');
  const backup = await takeBackup({ config: h1.config, configFile, to: target });
  phase = 'after';
  await load;
  await admin.close();
  expect(backup.audit?.ok).toBe(true);
  expect(statSync(target).mode & 0o777).toBe(0o600);
  const run1 = { a: arrivals(h1.sinks.a), b: arrivals(h1.sinks.b) };

  // Disaster: the first instance goes, with its dataDir.
  await h1.stop();
  harnesses.splice(0);
  expect(existsSync(h1.dataDir)).toBe(false);

  const dataDir = path.join(work, 'new-data');
  const opened = openBackup(target, work);
  const restored = await restoreBackup(opened, { dataDir });
  opened.close();
  expect(restored.audit).toMatchObject({ ok: true });
  expect(restored.audit!.checked).toBeGreaterThanOrEqual(3);
  const states = restoredStates(dataDir);

  const h2 = await Harness.start({ tenantOptions: TENANT_OPTIONS, dataDir });
  harnesses.push(h2);
  const inBackup = sent.filter((s) => states.has(s.mid));
  for (const s of inBackup) await h2.waitForState(s.mid, (_r, m) => m === 'done', 60_000);
  const run2 = { a: arrivals(h2.sinks.a), b: arrivals(h2.sinks.b) };
  const quarantine = new SqliteQuarantineStore(path.join(dataDir, 'quarantine.sqlite'));

  const table = { accepted: sent.length, inBackup: inBackup.length, deliveredBefore: 0, deliveredAfterRestore: 0, deliveredTwice: 0, held: 0, originalsKept: 0, absentAfterBackup: 0 };
  try {
    for (const s of sent) {
      const subject = `drill-${s.n}`;
      const rs = states.get(s.mid);
      if (s.phase === 'before') expect(rs, `${subject} was accepted before the backup`).toBeDefined();
      if (!rs) {
        // Accepted after the backup point: not restored, not delivered by the restored instance.
        expect(s.phase).not.toBe('before');
        expect(await h2.stores.meta.getMessage(s.mid)).toBeUndefined();
        expect(run2.a.get(subject) ?? 0).toBe(0);
        expect(run2.b.get(subject) ?? 0).toBe(0);
        table.absentAfterBackup++;
        continue;
      }
      for (const [tenant, key] of [['city-a', 'a'], ['town-b', 'b']] as const) {
        const before = rs.get(tenant);
        const first = run1[key].get(subject) ?? 0;
        const second = run2[key].get(subject) ?? 0;
        if (s.held && tenant === 'city-a') {
          // Held exactly as it was: never delivered, the quarantine record restored (or re-made) as held.
          expect(first + second).toBe(0);
          expect((await quarantine.get(s.mid, tenant))?.state).toBe('held');
          table.held++;
        } else if (before === 'delivered') {
          if (tenant === 'town-b') {
            // A sanitized message's original stays in quarantine, with its bytes.
            expect((await quarantine.get(s.mid, tenant))?.kind).toBe('original');
            expect(await h2.stores.store.exists(s.mid)).toBe(true);
            table.originalsKept++;
          }
          expect(first, `${subject} ${tenant}`).toBe(1);
          expect(second, `${subject} ${tenant} delivered again after the restore`).toBe(0);
          table.deliveredBefore++;
        } else {
          // In flight at the backup point: delivered once by the restored instance (and maybe once before).
          expect(second, `${subject} ${tenant}`).toBe(1);
          table.deliveredAfterRestore++;
          if (first > 0) table.deliveredTwice++;
        }
      }
    }
  } finally {
    await quarantine.close();
  }
  console.log('backup drill (recipients):');
  console.table(table);
  expect(table.deliveredAfterRestore + table.held).toBeGreaterThan(0);
}, 180_000);
