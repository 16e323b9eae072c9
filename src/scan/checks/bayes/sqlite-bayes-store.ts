/**
 * The Bayes model in its own SQLite file (`dataDir/bayes.sqlite`, WAL): worker processes read it while
 * `sekisho spam train` writes. Tokens are stored as a 53-bit hash, not as text: the model must not become a
 * readable index of the words of municipal mail (names, addresses), and an integer key is smaller and faster.
 * At 53 bits, a million tokens collide with a probability of about one in 10,000, and a collision merely merges
 * the counts of two tokens.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Statement } from 'better-sqlite3';
import type { BayesClass, BayesStore, BayesTotals, LearnOutcome, TokenCounts } from './bayes-store.ts';

/** A writer (training) holds the lock for one message's transaction, milliseconds; readers in WAL never wait. */
const BUSY_TIMEOUT_MS = 10_000;
/** Tokens looked up per statement (SQLite allows 32,766 parameters; this keeps the statement small and cached). */
const LOOKUP_CHUNK_TOKENS = 250;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tokens (id INTEGER PRIMARY KEY, spam INTEGER NOT NULL, ham INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY CHECK (id = 1), spam INTEGER NOT NULL, ham INTEGER NOT NULL);
INSERT OR IGNORE INTO totals (id, spam, ham) VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS learned (hash TEXT PRIMARY KEY, class TEXT NOT NULL CHECK (class IN ('spam', 'ham')), learned_at INTEGER NOT NULL) WITHOUT ROWID;
`;

/** cyrb53: a fast 53-bit string hash (a safe JavaScript integer, an SQLite INTEGER key). */
export function tokenHash(token: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < token.length; i++) {
    const ch = token.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

export class SqliteBayesStore implements BayesStore {
  readonly #db: Database.Database;
  readonly #lookup: Statement<number[], { id: number; spam: number; ham: number }>;
  readonly #totals: Statement<[], { spam: number; ham: number }>;
  readonly #learnTx: (hash: string, cls: BayesClass, ids: number[]) => LearnOutcome;

  constructor(file: string) {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
    try {
      db.pragma('journal_mode = WAL');
      // The model can be rebuilt from mail; losing the last transactions in a power cut costs nothing.
      db.pragma('synchronous = NORMAL');
      db.exec(SCHEMA);
    } catch (err) {
      db.close();
      throw err;
    }
    this.#db = db;
    this.#lookup = db.prepare(`SELECT id, spam, ham FROM tokens WHERE id IN (${Array(LOOKUP_CHUNK_TOKENS).fill('?').join(',')})`);
    this.#totals = db.prepare('SELECT spam, ham FROM totals WHERE id = 1');
    const seen = db.prepare<[string], { class: BayesClass }>('SELECT class FROM learned WHERE hash = ?');
    const remember = db.prepare('INSERT INTO learned (hash, class, learned_at) VALUES (?, ?, ?) ON CONFLICT (hash) DO UPDATE SET class = excluded.class, learned_at = excluded.learned_at');
    const add = db.prepare('INSERT INTO tokens (id, spam, ham) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET spam = spam + excluded.spam, ham = ham + excluded.ham');
    const sub = db.prepare('UPDATE tokens SET spam = max(0, spam - ?), ham = max(0, ham - ?) WHERE id = ?');
    const total = db.prepare('UPDATE totals SET spam = max(0, spam + ?), ham = max(0, ham + ?) WHERE id = 1');
    this.#learnTx = db.transaction((hash: string, cls: BayesClass, ids: number[]): LearnOutcome => {
      const before = seen.get(hash)?.class;
      if (before === cls) return 'unchanged';
      const [s, h] = cls === 'spam' ? [1, 0] : [0, 1];
      if (before !== undefined) {
        for (const id of ids) sub.run(h, s, id);
        total.run(-h, -s);
      }
      for (const id of ids) add.run(id, s, h);
      total.run(s, h);
      remember.run(hash, cls, Date.now());
      return before === undefined ? 'learned' : 'relearned';
    });
  }

  async totals(): Promise<BayesTotals> {
    const row = this.#totals.get();
    return { spamMessages: row?.spam ?? 0, hamMessages: row?.ham ?? 0 };
  }

  async counts(tokens: readonly string[]): Promise<Map<string, TokenCounts>> {
    const byId = new Map<number, string>();
    for (const t of tokens) byId.set(tokenHash(t), t);
    const ids = [...byId.keys()];
    const out = new Map<string, TokenCounts>();
    for (let i = 0; i < ids.length; i += LOOKUP_CHUNK_TOKENS) {
      const chunk = ids.slice(i, i + LOOKUP_CHUNK_TOKENS);
      // Padded with a repeat of its first id: one prepared statement serves every chunk.
      while (chunk.length < LOOKUP_CHUNK_TOKENS) chunk.push(chunk[0]!);
      for (const row of this.#lookup.all(...chunk)) {
        const token = byId.get(row.id);
        if (token !== undefined) out.set(token, { spam: row.spam, ham: row.ham });
      }
    }
    return out;
  }

  async learn(messageHash: string, cls: BayesClass, tokens: readonly string[]): Promise<LearnOutcome> {
    const ids = [...new Set(tokens.map(tokenHash))];
    return this.#learnTx(messageHash, cls, ids);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
