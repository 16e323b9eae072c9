/**
 * SqliteAuditLog: the AuditLog contract; the table refuses UPDATE and DELETE; verify finds an edited row, a
 * removed middle row, rows removed at the tail and a missing anchor (tampering through a raw connection after
 * dropping the triggers, as an attacker with the file would); appends from two processes keep one chain.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openAdminStores } from '../../../src/admin/admin-stores.ts';
import { SqliteAuditLog } from '../../../src/admin/audit/sqlite-audit-log.ts';
import { describeAuditLogContract, entry, T0 } from './audit-log.contract.ts';

const CHILD = fileURLToPath(new URL('./audit-append-child.ts', import.meta.url));

describeAuditLogContract('sqlite', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-audit-'));
  return { log: new SqliteAuditLog(path.join(dir, 'admin.sqlite')), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('SqliteAuditLog', () => {
  let dir: string;
  let file: string;
  let log: SqliteAuditLog;
  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sekisho-audit-'));
    file = path.join(dir, 'admin.sqlite');
    log = new SqliteAuditLog(file);
    for (let i = 1; i <= 5; i++) await log.append(entry({ at: T0 + i, details: { i } }));
  });
  afterEach(async () => {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A raw connection with the append-only triggers dropped: what someone holding the file can do. */
  function tamper(sql: string): void {
    const raw = new Database(file);
    try {
      raw.exec('DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;');
      raw.exec(sql);
    } finally {
      raw.close();
    }
  }

  it('the table refuses UPDATE and DELETE', () => {
    const raw = new Database(file);
    try {
      expect(() => raw.prepare("UPDATE audit SET actor = 'someone-else' WHERE seq = 2").run()).toThrow(/append-only/);
      expect(() => raw.prepare('DELETE FROM audit WHERE seq = 5').run()).toThrow(/append-only/);
      expect(() => raw.prepare('DELETE FROM audit').run()).toThrow(/append-only/);
    } finally {
      raw.close();
    }
  });

  it('verify finds an edited row', async () => {
    tamper(`UPDATE audit SET reason = '確認なし' WHERE seq = 3`);
    const v = await log.verify();
    expect(v.ok).toBe(false);
    expect(v.checked).toBe(5);
    expect(v.problems).toEqual([{ seq: 3, problem: expect.stringMatching(/hash mismatch/) }]);
  });

  it('verify finds an edited row whose hash was recomputed (the next row no longer links to it)', async () => {
    tamper(`UPDATE audit SET hash = '${'f'.repeat(64)}' WHERE seq = 3`);
    const v = await log.verify();
    expect(v.problems.map((p) => p.seq)).toEqual([3, 4]);
  });

  it('verify finds a removed middle row', async () => {
    tamper('DELETE FROM audit WHERE seq = 3');
    const v = await log.verify();
    expect(v.ok).toBe(false);
    expect(v.checked).toBe(4);
    expect(v.problems).toEqual([
      { seq: 4, problem: expect.stringMatching(/seq gap: records 3\.\.3 are missing/) },
      { seq: 4, problem: expect.stringMatching(/prevHash/) },
    ]);
  });

  it('verify finds rows removed at the tail (through the anchor file)', async () => {
    tamper('DELETE FROM audit WHERE seq >= 4');
    const v = await log.verify();
    expect(v.ok).toBe(false);
    expect(v.problems).toEqual([{ seq: 5, problem: 'rows removed at the tail: the anchor names record 5 but the log ends at 3' }]);
    tamper('DELETE FROM audit');
    expect((await log.verify()).problems).toEqual([{ seq: 5, problem: expect.stringMatching(/ends at 0/) }]);
  });

  it('verify finds a missing or rewritten anchor file', async () => {
    rmSync(path.join(dir, 'audit-anchor.json'));
    expect((await log.verify()).problems).toEqual([{ seq: 5, problem: expect.stringMatching(/anchor file .* missing or unreadable/) }]);
    writeFileSync(path.join(dir, 'audit-anchor.json'), JSON.stringify({ seq: 2, hash: '0'.repeat(64) }));
    expect((await log.verify()).problems).toEqual([{ seq: 2, problem: expect.stringMatching(/another hash/) }]);
    // The next append writes a true anchor again.
    await log.append(entry());
    expect(await log.verify()).toMatchObject({ ok: true, checked: 6 });
  });

  it('two connections appending in turn keep one chain (each reads the other’s last row)', async () => {
    const other = new SqliteAuditLog(file);
    try {
      for (let i = 0; i < 10; i++) await (i % 2 ? log : other).append(entry({ actor: i % 2 ? 'a' : 'b' }));
      expect(await other.verify()).toEqual({ ok: true, checked: 15, problems: [] });
    } finally {
      await other.close();
    }
  });

  it('appends from two processes at once keep one chain', async () => {
    const PER_PROCESS = 40;
    const gate = path.join(dir, 'go');
    const run = (actor: string) =>
      new Promise<number | null>((resolve, reject) => {
        const p = spawn(process.execPath, ['--import', 'tsx', CHILD, file, String(PER_PROCESS), actor, gate], { stdio: ['ignore', 'inherit', 'inherit'] });
        p.once('error', reject);
        p.once('exit', resolve);
      });
    const exits = Promise.all([run('proc-a'), run('proc-b')]);
    // Both processes load first, then start appending together.
    while (!existsSync(`${gate}.proc-a`) || !existsSync(`${gate}.proc-b`)) await new Promise((r) => setTimeout(r, 20));
    writeFileSync(gate, '');
    expect(await exits).toEqual([0, 0]);
    const v = await log.verify();
    expect(v).toEqual({ ok: true, checked: 5 + 2 * PER_PROCESS, problems: [] });
    const { records } = await log.list({ limit: 1_000 });
    expect(records.filter((r) => r.actor === 'proc-a')).toHaveLength(PER_PROCESS);
    expect(records.filter((r) => r.actor === 'proc-b')).toHaveLength(PER_PROCESS);
  });

  it('openAdminStores: accounts and audit log in one dataDir/admin.sqlite, records survive a reopen', async () => {
    const stores = openAdminStores({ dataDir: path.join(dir, 'data') });
    await stores.accounts.create({ username: 'admin', role: 'admin', passwordHash: 'scrypt$32768$8$1$c2FsdA==$aGFzaGhhc2hoYXNoaGFzaA==' });
    await stores.audit.append(entry({ action: 'account.create', target: 'admin' }));
    await stores.close();
    const again = openAdminStores({ dataDir: path.join(dir, 'data') });
    try {
      expect((await again.accounts.byUsername('ADMIN'))?.role).toBe('admin');
      expect(await again.audit.verify()).toEqual({ ok: true, checked: 1, problems: [] });
    } finally {
      await again.close();
    }
  });
});
