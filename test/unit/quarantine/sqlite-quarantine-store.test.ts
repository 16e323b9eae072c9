/**
 * SqliteQuarantineStore: the QuarantineStore contract, that records survive reopening the file, that two
 * connections to one file still let exactly one approver win, and that a schema v1 file upgrades with its records
 * searchable.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteQuarantineStore } from '../../../src/quarantine/sqlite-quarantine-store.ts';
import { describeQuarantineStoreContract, record } from './quarantine-store.contract.ts';

describeQuarantineStoreContract('sqlite', async ({ now }) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-q-'));
  return { store: new SqliteQuarantineStore(path.join(dir, 'q.sqlite'), { now }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

/** The schema as version 1 of this store created it, word for word. */
const V1_DDL = `
  CREATE TABLE quarantine (
    message_id  TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    recipients  TEXT NOT NULL CHECK (json_valid(recipients)),
    mail_from   TEXT NOT NULL,
    subject     TEXT,
    symbols     TEXT NOT NULL CHECK (json_valid(symbols)),
    reasons     TEXT NOT NULL CHECK (json_valid(reasons)),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (message_id, tenant_id)
  ) STRICT;
  CREATE INDEX quarantine_tenant_created ON quarantine (tenant_id, created_at);
  CREATE INDEX quarantine_created ON quarantine (created_at);
  CREATE INDEX quarantine_state_expires ON quarantine (state, expires_at);
  PRAGMA user_version = 1;
`;

describe('SqliteQuarantineStore', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sekisho-q-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps its records across a reopen (a second process sees them)', async () => {
    const file = path.join(dir, 'nested', 'q.sqlite');
    const a = new SqliteQuarantineStore(file);
    await a.hold(record());
    const b = new SqliteQuarantineStore(file);
    expect((await b.get('m1', 'city-a'))?.subject).toBe(record().subject);
    await a.close();
    await b.close();
  });

  it('of two approvers on two connections to one file, exactly one releases the record', async () => {
    const file = path.join(dir, 'q.sqlite');
    const a = new SqliteQuarantineStore(file);
    const b = new SqliteQuarantineStore(file);
    await a.hold(record());
    expect(await b.transition('m1', 'city-a', { from: ['held'], to: 'approved', by: 'boss', reason: null, at: 1 })).not.toBeNull();
    const step = (by: string) => ({ from: ['approved'] as const, to: 'released' as const, by, reason: null, at: 2, releaseMessageId: by });
    const results = await Promise.all([a.transition('m1', 'city-a', step('a')), b.transition('m1', 'city-a', step('b'))]);
    expect(results.filter((r) => r !== null)).toHaveLength(1);
    expect((await b.get('m1', 'city-a'))?.releaseMessageId).toBe(results.find((r) => r !== null)?.decidedBy);
    await a.close();
    await b.close();
  });

  it('finds a common subject term the same whether the page comes from the trigram index or a walk of the order', async () => {
    const store = new SqliteQuarantineStore(path.join(dir, 'q.sqlite'));
    for (let i = 0; i < 1_100; i++) {
      await store.hold(record({ messageId: `m${i}`, subject: i % 10 === 9 ? 'other' : `Invoice ${i}`, createdAt: Math.floor(i / 3) }));
    }
    const common = await store.search({ subject: 'invoice', limit: 500 });
    expect(common.total).toBe(990);
    const rare = await store.search({ subject: 'invoice 10', limit: 500 });
    const rareIds = Array.from({ length: 1_100 }, (_, i) => i)
      .filter((i) => i % 10 !== 9 && `invoice ${i}`.includes('invoice 10'))
      .map((i) => `m${i}`);
    expect(rare.records.map((r) => r.messageId).sort()).toEqual(rareIds.sort());
    expect(rare.total).toBe(rareIds.length);
    const seen: string[] = [];
    for (let cursor: string | undefined, pages = 0; pages < 50; pages++) {
      const page = await store.search({ subject: 'nvoi', limit: 100, ...(cursor === undefined ? {} : { cursor }) });
      seen.push(...page.records.map((r) => r.messageId));
      if (page.nextCursor === null) break;
      cursor = page.nextCursor;
    }
    expect(seen).toHaveLength(990);
    expect(new Set(seen).size).toBe(990);
    expect(seen.slice(0, 500)).toEqual(common.records.map((r) => r.messageId));
    await store.close();
  });

  it('upgrades a schema v1 file: its records gain the workflow fields and are found by every filter', async () => {
    const file = path.join(dir, 'q.sqlite');
    const v1 = new Database(file);
    v1.exec(V1_DDL);
    const insert = v1.prepare(`INSERT INTO quarantine VALUES (?, ?, 'original', 'held', ?, 'sender@example.com', ?, ?, ?, ?, ?, ?)`);
    const old = record();
    for (let i = 0; i < 3; i++) {
      insert.run(`m${i}`, 'city-a', JSON.stringify([`u${i}@City-A.example.lg.jp`]), old.subject, JSON.stringify([`SYM_${i}`]), JSON.stringify(old.reasons), i, 99, 7);
    }
    v1.close();

    const store = new SqliteQuarantineStore(file);
    expect(await store.get('m1', 'city-a')).toEqual({
      ...record({ messageId: 'm1', recipients: ['u1@City-A.example.lg.jp'], symbols: ['SYM_1'], createdAt: 1, expiresAt: 99 }),
      state: 'held',
      updatedAt: 7,
      requestedBy: null,
      requestReason: null,
      decidedBy: null,
      decisionReason: null,
      releasedAt: null,
      releaseMessageId: null,
      overrideReason: null,
    });
    const ids = async (q: Parameters<typeof store.search>[0]) => (await store.search(q)).records.map((r) => r.messageId);
    expect(await ids({ recipient: 'u2@city-a.example.lg.jp' })).toEqual(['m2']);
    expect(await ids({ symbol: 'SYM_0' })).toEqual(['m0']);
    expect(await ids({ subject: '報告書', tenantIds: ['city-a'] })).toEqual(['m2', 'm1', 'm0']);
    expect(await ids({ sender: 'SENDER@', reason: 'sanitizes' })).toEqual(['m2', 'm1', 'm0']);
    await store.close();

    const after = new Database(file, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(4);
    after.close();
  });
});
