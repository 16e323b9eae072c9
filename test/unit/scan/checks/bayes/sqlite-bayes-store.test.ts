import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteBayesStore, tokenHash } from '../../../../../src/scan/checks/bayes/sqlite-bayes-store.ts';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bayes-store-'));
  file = path.join(dir, 'sub', 'bayes.sqlite');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('SqliteBayesStore', () => {
  it('counts each token once per message and each message once (learning the same message again changes nothing)', async () => {
    const store = new SqliteBayesStore(file);
    expect(await store.learn('m1', 'spam', ['還付金', 'url', '還付金'])).toBe('learned');
    expect(await store.learn('m1', 'spam', ['還付金', 'url'])).toBe('unchanged');
    expect(await store.learn('m2', 'ham', ['url', '会議'])).toBe('learned');
    expect(await store.totals()).toEqual({ spamMessages: 1, hamMessages: 1 });
    const counts = await store.counts(['還付金', 'url', '会議', 'never-seen']);
    expect(Object.fromEntries(counts)).toEqual({ 還付金: { spam: 1, ham: 0 }, url: { spam: 1, ham: 1 }, 会議: { spam: 0, ham: 1 } });
    store.close();
  });

  it('moves a message learned as the other class (a "mark as ham" after training it as spam)', async () => {
    const store = new SqliteBayesStore(file);
    await store.learn('m1', 'spam', ['a1', 'b1']);
    expect(await store.learn('m1', 'ham', ['a1', 'b1'])).toBe('relearned');
    expect(await store.totals()).toEqual({ spamMessages: 0, hamMessages: 1 });
    expect(Object.fromEntries(await store.counts(['a1']))).toEqual({ a1: { spam: 0, ham: 1 } });
    store.close();
  });

  it('looks up more tokens than one statement holds, and keeps the model across reopening (WAL, own file)', async () => {
    const tokens = Array.from({ length: 1_234 }, (_, i) => `tok${i}`);
    const store = new SqliteBayesStore(file);
    await store.learn('m1', 'spam', tokens);
    store.close();
    const again = new SqliteBayesStore(file);
    const counts = await again.counts([...tokens, 'other']);
    expect(counts.size).toBe(1_234);
    expect(counts.get('tok1233')).toEqual({ spam: 1, ham: 0 });
    again.close();
    const db = new Database(file, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    // Tokens are not stored as text: the model is no readable index of the words of the mail it learned.
    expect(db.prepare('SELECT count(*) AS n FROM tokens WHERE id = ?').get(tokenHash('tok7'))).toEqual({ n: 1 });
    expect(JSON.stringify(db.prepare('SELECT * FROM tokens LIMIT 50').all())).not.toContain('tok');
    db.close();
  });

  it('hashes tokens to distinct safe integers', () => {
    const hashes = new Set(Array.from({ length: 100_000 }, (_, i) => tokenHash(`t${i}`)));
    expect(hashes.size).toBe(100_000);
    for (const h of [...hashes].slice(0, 100)) expect(Number.isSafeInteger(h)).toBe(true);
    expect(tokenHash('本人確認')).not.toBe(tokenHash('本人確認 '));
  });
});
