/**
 * SqliteMetaStore: the MetaStore contract, plus what only the SQLite driver can get wrong: the database file
 * (WAL, schema version), sharing it between store instances and between processes (the ingress and the worker
 * are separate processes), durability across reopening, refusing a schema newer than the code, and its writer
 * thread: group commit with one savepoint per write, a batch rolled back as a whole, the clock read at the request,
 * closing, a thread that dies, and a process that forgets close(); migrating a version-1 database.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { SekishoError } from '../../../src/errors.ts';
import {
  SqliteMetaStore,
  sqliteMetaStoreTestHooks,
  type SqliteMetaStoreOptions,
} from '../../../src/spool/sqlite-meta-store.ts';
import { newMessage } from '../../helpers/new-message.ts';
import { describeMetaStoreContract } from './meta-store.contract.ts';

function tempDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'sekisho-meta-'));
}

const REPO = path.resolve(import.meta.dirname, '../../..');

/**
 * Runs an ES module with node and tsx, as bin/sekisho.js runs Sekisho; resolves when the process has exited. The
 * test's signal kills it if the test times out (a process that never exits is what some tests look for).
 */
function runNode(code: string, signal: AbortSignal): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
    signal,
  });
  child.on('error', () => undefined); // the abort; the test has failed already
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (exitCode) => resolve({ code: exitCode, stdout, stderr })));
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
  function openStore(opts?: SqliteMetaStoreOptions): SqliteMetaStore {
    const store = new SqliteMetaStore(file, opts);
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

  it('commits 500 concurrent writes, inserts and updates mixed, in a few transactions; a failing one fails alone', async () => {
    const store = openStore();
    const older = Array.from({ length: 200 }, () => newMessage());
    await Promise.all(older.map((m) => store.insertMessage(m)));
    const fresh = Array.from({ length: 167 }, () => newMessage());
    const delivered = { recipients: [{ patch: { state: 'delivered' as const } }], message: { state: 'done' as const } };
    // Per three: insert a message, then update it (same batch: requests are written in order), update an older one.
    const writes = Array.from({ length: 500 }, (_, i) => {
      const k = Math.floor(i / 3);
      const m = fresh[k]!;
      if (i % 3 === 0) return { what: 'insert', write: () => store.insertMessage(m) };
      if (i % 3 === 1) {
        return { what: 'update fresh', write: () => store.updateRecipients(m.id, undefined, { state: 'deferred', nextAttemptAt: k }) };
      }
      return { what: 'update older', write: () => store.update(older[k]!.id, delivered) };
    });
    const nobody = 'nobody@city-a.example.lg.jp';
    writes[251] = { what: 'duplicate', write: () => store.insertMessage(older[199]!) };
    writes[302] = { what: 'no such recipient', write: () => store.updateRecipients(older[198]!.id, [nobody], { state: 'bounced' }) };
    const commitsBefore = sqliteMetaStoreTestHooks.commits(store);

    // Another connection holds the write lock while the 500 requests are made, so none of them can be committed
    // before all are queued: whatever the thread took first waits in BEGIN IMMEDIATE, the rest form the next batches.
    const lock = new Database(file);
    lock.exec('BEGIN IMMEDIATE');
    const settled = Promise.allSettled(writes.map((w) => w.write()));
    lock.exec('COMMIT');
    lock.close();
    const results = await settled;

    const failed = results.flatMap((r, i) => {
      if (r.status === 'fulfilled') return [];
      const { code, message } = r.reason as SekishoError;
      return [[i, writes[i]!.what, code, message]];
    });
    expect(failed).toEqual([
      [251, 'duplicate', 'SEKISHO_ERR_META_DUPLICATE', `message ${older[199]!.id} already exists`],
      [302, 'no such recipient', 'SEKISHO_ERR_META_NOT_FOUND', `message ${older[198]!.id} has no recipient ${nobody}`],
    ]);
    // At most MAX_WRITES_PER_COMMIT (256) per transaction, so at least 2; one per request without group commit.
    const commits = sqliteMetaStoreTestHooks.commits(store) - commitsBefore;
    expect(commits).toBeGreaterThanOrEqual(2);
    expect(commits).toBeLessThanOrEqual(3);

    for (const [k, m] of fresh.entries()) {
      const recipients = await store.getRecipients(m.id);
      expect(recipients.map((r) => [r.state, r.nextAttemptAt])).toEqual([['deferred', k], ['deferred', k]]);
    }
    expect(await store.getMessage(older[199]!.id)).toMatchObject({ state: 'received', updatedAt: expect.any(Number) });
    expect(await store.getRecipients(older[198]!.id)).toMatchObject([{ state: 'pending' }, { state: 'pending' }]);
    expect(await store.countByState()).toMatchObject({ received: 200 - 164 + 167, done: 164 });
  });

  it('rejects every write of a batch that SQLite rolls back as a whole (failed COMMIT, ROLLBACK), resolving none', async () => {
    const store = openStore();
    await store.insertMessage(newMessage());
    // Poison the schema of this test's file: a deferred foreign key fails at COMMIT only; RAISE(ROLLBACK) ends the
    // whole transaction in the middle of a request, taking the requests before it with it.
    const raw = new Database(file);
    raw.exec(`
      CREATE TABLE poison_parent (id TEXT PRIMARY KEY);
      CREATE TABLE poison (ref TEXT REFERENCES poison_parent (id) DEFERRABLE INITIALLY DEFERRED);
      CREATE TRIGGER fail_commit AFTER INSERT ON messages WHEN NEW.subject = 'fail commit'
        BEGIN INSERT INTO poison VALUES ('missing'); END;
      CREATE TRIGGER roll_back AFTER INSERT ON messages WHEN NEW.subject = 'roll back'
        BEGIN SELECT RAISE(ROLLBACK, 'rolled back by a trigger'); END;
    `);
    for (const [subject, error] of [
      ['fail commit', { name: 'SqliteError', code: 'SQLITE_CONSTRAINT_FOREIGNKEY', message: 'FOREIGN KEY constraint failed' }],
      ['roll back', { name: 'SqliteError', code: 'SQLITE_CONSTRAINT_TRIGGER', message: 'rolled back by a trigger' }],
    ] as const) {
      const msgs = Array.from({ length: 20 }, (_, i) => newMessage(i === 10 ? { subject } : {}));
      raw.exec('BEGIN IMMEDIATE');
      const settled = Promise.allSettled(msgs.map((m) => store.insertMessage(m)));
      raw.exec('COMMIT');
      const results = await settled;
      // The requests are split into batches in order: the poisoned one's batch is a run of requests around it.
      const rejected = results.flatMap((r, i) => (r.status === 'rejected' ? [i] : []));
      expect(rejected).toContain(10);
      expect(rejected.length).toBeGreaterThan(1);
      expect(rejected).toEqual(Array.from({ length: rejected.length }, (_, j) => rejected[0]! + j));
      for (const [i, r] of results.entries()) {
        if (r.status === 'rejected') expect(r.reason).toMatchObject(error);
        expect(await store.getMessage(msgs[i]!.id), `message ${i}`).toEqual(r.status === 'rejected' ? undefined : expect.anything());
      }
    }
    raw.close();
  });

  it('stamps a write with the clock read when it was requested, not when it was committed', async () => {
    let clock = 1_000;
    const store = openStore({ now: () => clock });
    const msg = newMessage();
    const inserted = store.insertMessage(msg);
    clock = 2_000;
    const updated = store.updateMessage(msg.id, { state: 'delivering' });
    clock = 3_000;
    await Promise.all([inserted, updated]);
    expect((await store.getMessage(msg.id))?.updatedAt).toBe(2_000);
    expect((await store.getRecipients(msg.id)).map((r) => r.updatedAt)).toEqual([1_000, 1_000]);
  });

  it('shows a write to a read made right after the write resolved', async () => {
    const store = openStore();
    const other = openStore();
    await Promise.all(
      Array.from({ length: 100 }, async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        expect(await store.getMessage(msg.id)).toMatchObject({ state: 'received' });
        await store.update(msg.id, { recipients: [{ patch: { state: 'delivered' } }], message: { state: 'done' } });
        expect(await store.getMessage(msg.id)).toMatchObject({ state: 'done' });
        expect(await other.getRecipients(msg.id)).toMatchObject([{ state: 'delivered' }, { state: 'delivered' }]);
        await store.deleteMessage(msg.id);
        expect(await other.getMessage(msg.id)).toBeUndefined();
      }),
    );
  });

  it('takes concurrent writes of two instances on one file, FULL and NORMAL (ingress, worker), without SQLITE_BUSY', async () => {
    const ingress = openStore({ synchronous: 'full' });
    const worker = openStore({ synchronous: 'normal' });
    const queued = Array.from({ length: 300 }, () => newMessage());
    await Promise.all(queued.map((m) => ingress.insertMessage(m)));
    const arriving = Array.from({ length: 300 }, () => newMessage());
    await Promise.all([
      ...arriving.map((m) => ingress.insertMessage(m)),
      ...queued.map((m) => worker.update(m.id, { recipients: [{ patch: { state: 'delivered', countAttempt: true } }] })),
    ]);
    expect((await worker.countByState()).received).toBe(600);
    for (const m of queued) {
      expect((await ingress.getRecipients(m.id)).map((r) => [r.state, r.attempts])).toEqual([['delivered', 1], ['delivered', 1]]);
    }
  });

  it('commits a durable change with an fsync in a NORMAL store, and the others without', async () => {
    const ingress = openStore({ synchronous: 'full' });
    const worker = openStore({ synchronous: 'normal' });
    const msg = newMessage();
    await ingress.insertMessage(msg);
    expect(sqliteMetaStoreTestHooks.syncedCommits(ingress)).toBe(1);
    const synced = () => sqliteMetaStoreTestHooks.syncedCommits(worker);
    await worker.update(msg.id, { recipients: [{ patch: { state: 'delivered' } }] });
    expect(synced()).toBe(0);
    await worker.update(msg.id, { message: { state: 'done' }, durable: true });
    expect(synced()).toBe(1);
    // Back to NORMAL for what follows.
    await worker.updateMessage(msg.id, { lastError: 'x' });
    expect(synced()).toBe(1);
    expect(sqliteMetaStoreTestHooks.commits(worker)).toBe(3);
    expect(await ingress.getMessage(msg.id)).toMatchObject({ state: 'done', lastError: 'x' });
  });

  it('flushes queued writes before it closes, and refuses writes after (SEKISHO_ERR_META_UNAVAILABLE)', async () => {
    const store = new SqliteMetaStore(file);
    const a = newMessage();
    const b = newMessage();
    const writes = [
      store.insertMessage(a),
      store.insertMessage(b),
      store.updateMessage(a.id, { state: 'delivering' }),
      store.deleteMessage(b.id),
    ];
    const closed = store.close();
    const refused = { code: 'SEKISHO_ERR_META_UNAVAILABLE', message: 'the metadata store is closed' };
    await expect(store.insertMessage(newMessage())).rejects.toMatchObject(refused);
    await closed;
    await Promise.all(writes);
    await expect(store.close()).resolves.toBeUndefined();
    await expect(store.updateMessage(a.id, { state: 'done' })).rejects.toMatchObject(refused);
    await expect(store.updateRecipients(a.id, undefined, { state: 'delivered' })).rejects.toMatchObject(refused);
    await expect(store.update(a.id, {})).rejects.toMatchObject(refused);
    await expect(store.deleteMessage(a.id)).rejects.toMatchObject(refused);
    const again = openStore();
    expect(await again.getMessage(a.id)).toMatchObject({ state: 'delivering' });
    expect(await again.getMessage(b.id)).toBeUndefined();
  });

  it('rejects pending and later writes when the writer thread dies, never hanging, logging nothing', async () => {
    const stderr = vi.spyOn(process.stderr, 'write');
    const consoleError = vi.spyOn(console, 'error');
    const store = openStore();
    await store.insertMessage(newMessage());
    const msgs = Array.from({ length: 50 }, () => newMessage());
    // The write lock held elsewhere keeps the thread from committing any of them before it is killed.
    const lock = new Database(file);
    lock.exec('BEGIN IMMEDIATE');
    const writes = Promise.allSettled(msgs.map((m) => store.insertMessage(m)));
    const terminated = sqliteMetaStoreTestHooks.terminateWriter(store);
    lock.exec('COMMIT');
    lock.close();
    await terminated;
    const stoppedBefore = /^the metadata writer thread stopped \(exit code 1\) before it confirmed this write/;
    expect(await writes).toEqual(
      msgs.map(() => ({
        status: 'rejected',
        reason: expect.objectContaining({ code: 'SEKISHO_ERR_META_UNAVAILABLE', message: expect.stringMatching(stoppedBefore) }),
      })),
    );
    await expect(store.updateMessage(msgs[0]!.id, { state: 'done' })).rejects.toMatchObject({
      code: 'SEKISHO_ERR_META_UNAVAILABLE',
      message: 'the metadata writer thread stopped (exit code 1)',
    });
    expect((await store.countByState()).received).toBe(1);
    await store.close();
    expect(stderr).not.toHaveBeenCalled();
    expect(consoleError).not.toHaveBeenCalled();
  });

  it('lets a process that never closes the store exit once its writes are answered, and not before', async ({ signal }) => {
    const msg = newMessage();
    const moduleUrl = new URL('../../../src/spool/sqlite-meta-store.ts', import.meta.url).href;
    // No await and nothing else pending: only the writer thread's reference keeps the process up until the answer.
    const childCode = `
      import { SqliteMetaStore } from ${JSON.stringify(moduleUrl)};
      new SqliteMetaStore(${JSON.stringify(file)}); // never written to
      const store = new SqliteMetaStore(${JSON.stringify(file)});
      store.insertMessage(${JSON.stringify(msg)}).then(() => process.stdout.write('inserted\\n'));
    `;
    const { code, stdout, stderr } = await runNode(childCode, signal);
    expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: 'inserted\n', stderr: '' });
    expect(await openStore().getMessage(msg.id)).toBeDefined();
  });

  it('creates the parent directory and a WAL database at the current schema version', async () => {
    await openStore().close();
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(2);
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
    const verdict = { symbols: [], unlistedSymbols: [{ name: 'SPF_FAIL' }], failedChecks: [], durationsMs: {}, decisions: {}, scannedAt: 1 };
    await b.updateMessage(msg.id, { state: 'delivering', verdict });
    await b.updateRecipients(msg.id, [msg.recipients[1]!.address], { state: 'delivered' });
    expect(await a.getMessage(msg.id)).toMatchObject({ state: 'delivering', verdict });
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

  it('reads a verdict and actions written by an older version as typed data, and refuses a row that is not one', async () => {
    const store = openStore();
    const msg = newMessage();
    await store.insertMessage(msg);
    // The verdict as versions before the typed StoredVerdict wrote it: every symbol in one list, no unlistedSymbols.
    const old = {
      symbols: [{ name: 'CLAMAV_VIRUS', details: ['Eicar'] }, { name: 'FLAKY_FAIL', details: ['boom'] }],
      failedChecks: ['flaky'],
      durationsMs: { clamav: 3 },
      decisions: { 'city-a': { action: 'deliver-tagged', score: 6, reasons: ['score 6 ≥ tag threshold 5'] } },
      scannedAt: 42,
    };
    const db = new Database(file);
    db.prepare('UPDATE messages SET verdict = ? WHERE id = ?').run(JSON.stringify(old), msg.id);
    db.prepare('UPDATE recipients SET action = ? WHERE message_id = ?').run('deliver-tagged', msg.id);
    expect((await store.getMessage(msg.id))?.verdict).toEqual({
      symbols: [{ name: 'CLAMAV_VIRUS', details: ['Eicar'] }],
      unlistedSymbols: [{ name: 'FLAKY_FAIL', details: ['boom'] }],
      failedChecks: ['flaky'],
      durationsMs: { clamav: 3 },
      decisions: old.decisions,
      scannedAt: 42,
    });
    expect((await store.getRecipients(msg.id)).map((r) => r.action)).toEqual(['deliver-tagged', 'deliver-tagged']);

    db.prepare('UPDATE recipients SET action = ? WHERE message_id = ?').run('deliver-everything', msg.id);
    await expect(store.getRecipients(msg.id)).rejects.toThrow(/stored action "deliver-everything"/);
    db.prepare('UPDATE messages SET verdict = ? WHERE id = ?').run(JSON.stringify({ decisions: { 'city-a': { action: 'send' } } }), msg.id);
    await expect(store.getMessage(msg.id)).rejects.toThrow(/stored action "send"/);
    db.prepare('UPDATE messages SET verdict = ? WHERE id = ?').run('[1,2]', msg.id);
    await expect(store.getMessage(msg.id)).rejects.toThrow(/stored verdict: not an object/);
    db.close();
  });

  it('migrates a version-1 database with its messages: they are found by the new indexes and take attempts', async () => {
    const first = new SqliteMetaStore(file);
    const msg = newMessage({ headerMessageId: '<old@example.net>' });
    await first.insertMessage(msg);
    await first.close();
    // Version 1 is version 2 without migration 2's table and indexes.
    const db = new Database(file);
    db.exec(`DROP TABLE delivery_attempts; DROP INDEX messages_received_at; DROP INDEX messages_header_message_id;
      DROP INDEX recipients_address; PRAGMA user_version = 1;`);
    db.close();
    const store = openStore();
    expect((await store.findMessages({ headerMessageId: 'old@example.net' })).messages.map((m) => m.id)).toEqual([msg.id]);
    expect((await store.findMessages({ recipient: msg.recipients[1]!.address, tenantIds: ['city-b'] })).total).toBe(1);
    await store.updateRecipients(msg.id, undefined, { state: 'delivered', attempt: { at: 1, outcome: 'delivered', response: '250 ok', remote: '' } });
    expect(await store.getAttempts(msg.id)).toHaveLength(2);
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
