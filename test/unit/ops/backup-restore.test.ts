/**
 * `sekisho backup` / `sekisho restore` on real stores in a temporary dataDir: the order of the backup (a message
 * that finishes between the MetaStore snapshot and the spool copy, one accepted after the snapshot), the manifest
 * checks and the refusals of a restore, file modes, and the command line. The drill under load is
 * test/integration/backup-drill.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackupCommand, runRestoreCommand } from '../../../src/cli/backup.ts';
import { loadConfig, validateConfig } from '../../../src/config/load.ts';
import type { Config } from '../../../src/config/schema.ts';
import { takeBackup } from '../../../src/ops/backup.ts';
import { openBackup, restoreBackup } from '../../../src/ops/restore.ts';
import { SqliteQuarantineStore } from '../../../src/quarantine/sqlite-quarantine-store.ts';
import { FileMessageStore } from '../../../src/spool/file-message-store.ts';
import { SqliteMetaStore } from '../../../src/spool/sqlite-meta-store.ts';
import { newMessage, T0 } from '../../helpers/new-message.ts';

let dir: string;
let config: Config;
let meta: SqliteMetaStore;
let store: FileMessageStore;
let quarantine: SqliteQuarantineStore;
const children: ChildProcess[] = [];

function configFor(dataDir: string): Config {
  const r = validateConfig({
    hostname: 'mx.pref.example.lg.jp',
    dataDir,
    tenants: [{ id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:25' }],
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-backup-'));
  config = configFor(path.join(dir, 'data'));
  meta = new SqliteMetaStore(path.join(config.dataDir, 'meta.sqlite'));
  store = new FileMessageStore(config.dataDir);
  quarantine = new SqliteQuarantineStore(path.join(config.dataDir, 'quarantine.sqlite'));
});

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
  await meta.close();
  await store.close();
  await quarantine.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A message accepted for one city-a recipient: bytes in the spool, then its row, as the ingress does. */
async function accept(receivedAt: number): Promise<string> {
  const msg = newMessage({ receivedAt, recipients: [{ address: 'taro@city-a.example.lg.jp', tenantId: 'city-a' }] });
  await store.write(msg.id, Readable.from([Buffer.from(`Subject: m\r\n\r\n${msg.id}\r\n`)]));
  await meta.insertMessage(msg);
  await meta.updateMessage(msg.id, { state: 'delivering' });
  return msg.id;
}

function hold(messageId: string) {
  return quarantine.hold({ messageId, tenantId: 'city-a', kind: 'held', recipients: ['taro@city-a.example.lg.jp'], mailFrom: 'x@spammer.example', subject: 'm', symbols: [], reasons: ['block list'], createdAt: T0, expiresAt: T0 + 86_400_000 });
}

describe('takeBackup', () => {
  it('takes a message that finished during the spool copy as finished, and leaves out what came after the MetaStore snapshot', async () => {
    const finishing = await accept(T0);
    const inFlight = await accept(T0 + 1);
    const target = path.join(dir, 'backup');
    let late = '';
    const r = await takeBackup({
      config,
      to: target,
      onStep: async (step) => {
        if (step !== 'meta') return;
        // After the snapshot: one message is delivered and its bytes leave the spool; a new one is accepted and held.
        await meta.update(finishing, { recipients: [{ patch: { state: 'delivered', response: '250 ok' } }], message: { state: 'done' }, durable: true });
        await store.delete(finishing);
        late = await accept(T0 + 2);
        await hold(late);
      },
    });
    expect(r.manifest).toMatchObject({ rolledForward: 1, quarantineAfterPoint: 1, spoolFiles: 1, backupPoint: { id: inFlight, receivedAt: T0 + 1 } });

    const restored = path.join(dir, 'restored');
    const opened = openBackup(target, dir);
    const result = await restoreBackup(opened, { dataDir: restored });
    opened.close();
    expect(result).toMatchObject({ messages: { done: 1, delivering: 1 }, openRecipients: 1, quarantine: {}, audit: null });
    const m2 = new SqliteMetaStore(path.join(restored, 'meta.sqlite'));
    const s2 = new FileMessageStore(restored);
    try {
      expect((await m2.getRecipients(finishing)).map((x) => x.state)).toEqual(['delivered']);
      expect(await m2.getMessage(late)).toBeUndefined();
      expect(await s2.exists(inFlight)).toBe(true);
      expect(await s2.exists(late)).toBe(false);
    } finally {
      await m2.close();
      await s2.close();
    }
  });

  it('writes files 0600 and directories 0700, and never overwrites a target', async () => {
    await accept(T0);
    const target = path.join(dir, 'backup');
    await takeBackup({ config, to: target });
    const walk = (d: string): void => {
      expect(statSync(d).mode & 0o777, d).toBe(0o700);
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else expect(statSync(path.join(d, e.name)).mode & 0o777, e.name).toBe(0o600);
      }
    };
    walk(target);
    await expect(takeBackup({ config, to: target })).rejects.toMatchObject({ code: 'SEKISHO_ERR_BACKUP_FAILED' });
  });
});

describe('restoreBackup', () => {
  it('refuses a damaged backup, a non-empty dataDir and one a process has open; --force moves the old one aside', async () => {
    await accept(T0);
    const target = path.join(dir, 'backup.tar');
    await takeBackup({ config, to: target });
    expect(statSync(target).mode & 0o777).toBe(0o600);

    const copy = path.join(dir, 'damaged');
    const opened = openBackup(target, dir);
    cpSync(opened.dir, copy, { recursive: true });
    const spoolFile = opened.manifest.files.find((f) => f.path.startsWith('data/spool/'))!;
    writeFileSync(path.join(copy, spoolFile.path), 'changed');
    expect(() => openBackup(copy, dir)).toThrow(expect.objectContaining({ code: 'SEKISHO_ERR_RESTORE_CHECKSUM' }));

    const occupied = path.join(dir, 'occupied');
    mkdirSync(occupied);
    writeFileSync(path.join(occupied, 'meta.sqlite'), 'old');
    await expect(restoreBackup(opened, { dataDir: occupied })).rejects.toMatchObject({ code: 'SEKISHO_ERR_RESTORE_TARGET' });

    const holder = spawn(process.execPath, ['-e', "require('fs').openSync(process.argv[1], 'r'); console.log('open'); setTimeout(() => {}, 60000)", path.join(occupied, 'meta.sqlite')]);
    children.push(holder);
    await new Promise((resolve) => holder.stdout.once('data', resolve));
    await expect(restoreBackup(opened, { dataDir: occupied, force: true })).rejects.toMatchObject({ code: 'SEKISHO_ERR_RESTORE_TARGET', message: expect.stringContaining(String(holder.pid)) });
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));

    const r = await restoreBackup(opened, { dataDir: occupied, force: true });
    opened.close();
    expect(r.movedAside).toMatch(/occupied\.before-restore-/);
    expect(existsSync(path.join(r.movedAside!, 'meta.sqlite'))).toBe(true);
    expect(r.messages).toEqual({ delivering: 1 });
    expect(existsSync(opened.dir)).toBe(false);
  });

  it('sekisho backup / restore: a fresh machine gets the config file and the data back', async () => {
    await accept(T0);
    const configFile = path.join(dir, 'sekisho.json');
    writeFileSync(configFile, JSON.stringify({ hostname: 'mx.pref.example.lg.jp', dataDir: config.dataDir, tenants: [{ id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:25' }] }));
    const lines: string[] = [];
    const deps = { loadConfig, out: (l: string) => lines.push(l), err: (l: string) => lines.push(l) };
    const archive = path.join(dir, 'b.tar.gz');
    expect(await runBackupCommand(['--to', archive, '--config', configFile], deps)).toBe(0);
    expect(lines.join('\n')).toContain('backup point: 2025-');

    const freshConfig = path.join(dir, 'fresh', 'sekisho.json');
    const freshData = path.join(dir, 'fresh', 'data');
    expect(await runRestoreCommand(['--from', archive, '--config', freshConfig, '--data-dir', freshData], deps)).toBe(0);
    expect(existsSync(freshConfig)).toBe(true);
    expect(statSync(freshConfig).mode & 0o777).toBe(0o600);
    expect(lines.join('\n')).toContain('recipients to deliver at the next start: 1');
    expect(await runRestoreCommand(['--from', archive, '--data-dir', freshData, '--config', freshConfig], deps)).toBe(1);
    expect(lines.at(-1)).toContain('SEKISHO_ERR_RESTORE_TARGET');
  });
});
