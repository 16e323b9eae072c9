/**
 * SqliteMetaStore: the MetaStore contract, plus what only the SQLite driver can get wrong: the database file
 * (WAL, schema version), sharing it between store instances and between processes (the ingress and the worker
 * are separate processes), durability across reopening, and refusing a schema newer than the code.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../../src/spool/sqlite-meta-store.ts';
import { describeMetaStoreContract, newMessage } from './meta-store.contract.ts';

function tempDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'sekisho-meta-'));
}

describeMetaStoreContract('SqliteMetaStore', async ({ now }) => {
  const dir = tempDir();
  return {
    store: new SqliteMetaStore(path.join(dir, 'meta.db'), { now }),
    cleanup: async () => rmSync(dir, { recursive: true, force: true }),
  };
});

describe('SqliteMetaStore', () => {
  let dir: string;
  let file: string;
  const open: SqliteMetaStore[] = [];
  function openStore(): SqliteMetaStore {
    const store = new SqliteMetaStore(file);
    open.push(store);
    return store;
  }

  beforeEach(() => {
    dir = tempDir();
    file = path.join(dir, 'nested', 'db', 'meta.db');
  });
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    rmSync(dir, { recursive: true, force: true });
  });


  it('commits inserts of one event-loop turn together, and a duplicate id fails alone (group commit)', async () => {
    const store = openStore();
    const dup = newMessage();
    await store.insertMessage(dup);
    const fresh = Array.from({ length: 20 }, () => newMessage());
    const results = await Promise.allSettled([...fresh.slice(0, 10), dup, ...fresh.slice(10)].map((m) => store.insertMessage(m)));
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    expect((results[10] as PromiseRejectedResult).reason).toMatchObject({ code: 'SEKISHO_ERR_META_DUPLICATE' });
    for (const m of fresh) expect(await store.getMessage(m.id)).toBeDefined();
    expect((await store.countByState()).received).toBe(21);
  });

  it('flushes queued inserts before it closes', async () => {
    const store = new SqliteMetaStore(file);
    const m = newMessage();
    const inserted = store.insertMessage(m);
    await store.close();
    await inserted;
    const again = openStore();
    expect(await again.getMessage(m.id)).toBeDefined();
  });

  it('creates the parent directory and a WAL database at the current schema version', async () => {
    await openStore().close();
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(1);
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    } finally {
      db.close();
    }
  });

  it('lets two instances on the same file see each other’s writes', async () => {
    const a = openStore();
    const b = openStore();
    const msg = newMessage();
    await a.insertMessage(msg);
    expect(await b.getMessage(msg.id)).toMatchObject({ id: msg.id, state: 'received' });
    await b.updateMessage(msg.id, { state: 'delivering', verdict: { symbols: ['SPF_FAIL'] } });
    await b.updateRecipients(msg.id, [msg.recipients[1]!.address], { state: 'delivered' });
    expect(await a.getMessage(msg.id)).toMatchObject({ state: 'delivering', verdict: { symbols: ['SPF_FAIL'] } });
    expect((await a.getRecipients(msg.id)).map((r) => r.state)).toEqual(['pending', 'delivered']);
    await expect(b.insertMessage(msg)).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_DUPLICATE' });
    await a.deleteMessage(msg.id);
    expect(await b.listUnfinished()).toEqual([]);
  });

  it('keeps everything after close and reopen', async () => {
    const first = new SqliteMetaStore(file);
    const msg = newMessage();
    await first.insertMessage(msg);
    await first.updateRecipients(msg.id, undefined, { state: 'deferred', nextAttemptAt: 123, delayNoticeSent: true });
    const before = { message: await first.getMessage(msg.id), recipients: await first.getRecipients(msg.id) };
    await first.close();
    const second = openStore();
    expect({ message: await second.getMessage(msg.id), recipients: await second.getRecipients(msg.id) }).toEqual(before);
  });

  it('refuses a database whose schema is newer than this code (SEKISHO_ERR_META_SCHEMA)', async () => {
    await openStore().close();
    open.length = 0;
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    expect(() => new SqliteMetaStore(file)).toThrow(expect.objectContaining({ code: 'SEKISHO_ERR_META_SCHEMA' }));
  });

  it('takes concurrent writes from another process without SQLITE_BUSY errors', async () => {
    const PER_PROCESS = 150;
    const store = openStore();
    const moduleUrl = new URL('../../../src/spool/sqlite-meta-store.ts', import.meta.url).href;
    const childCode = `
      import { SqliteMetaStore } from ${JSON.stringify(moduleUrl)};
      const store = new SqliteMetaStore(${JSON.stringify(file)});
      process.stdout.write('ready\\n');
      for (let i = 0; i < ${PER_PROCESS}; i++) {
        const id = 'child' + String(i).padStart(8, '0');
        await store.insertMessage({ id, origin: 'smtp', receivedAt: i, mailFrom: '', clientIp: '192.0.2.1', helo: 'h',
          tls: null, size: 1, sha256: 'b'.repeat(64), headerMessageId: null, subject: null,
          recipients: [{ address: 'a@city-a.example.lg.jp', tenantId: 'city-a' }] });
        await store.updateRecipients(id, undefined, { state: 'delivered', countAttempt: true });
      }
      await store.close();
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', childCode], {
      cwd: path.resolve(import.meta.dirname, '../../..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      child.on('close', () => reject(new Error(`child exited before it was ready: ${stderr}`)));
    });

    for (let i = 0; i < PER_PROCESS; i++) {
      const msg = newMessage({ id: `parent${String(i).padStart(8, '0')}` });
      await store.insertMessage(msg);
      await store.updateMessage(msg.id, { state: 'delivering', countAttempt: true });
    }
    expect(await exited, stderr).toBe(0);
    expect(await store.countByState()).toMatchObject({ received: PER_PROCESS, delivering: PER_PROCESS });
    expect((await store.getRecipients(`child${String(PER_PROCESS - 1).padStart(8, '0')}`))[0]).toMatchObject({
      state: 'delivered',
      attempts: 1,
    });
  });
});
