/**
 * The default QuarantineStore: a SQLite file of its own (`dataDir/quarantine.sqlite`, better-sqlite3), shared by
 * the worker processes that hold messages and the admin process that searches and releases them.
 *
 * Writes are rare next to the message metadata (one per held message, one per release step), so they run on the
 * calling thread with `synchronous = FULL`: a hold is durable before the sanitized copy leaves. WAL lets readers run
 * beside the writer, `busy_timeout` makes a second process wait for the lock. Schema versioned through
 * `PRAGMA user_version` as in sqlite-meta-store.ts; keep the SQL portable.
 *
 * Rule: the search side tables (quarantine_recipients, quarantine_symbols, the trigram index quarantine_text) and
 * the *_key columns are written in the same transaction as the record, and records are never deleted — so a search
 * never misses a record. Substring filters compare keys, never the raw columns (see search-keys.ts).
 */
import type Database from 'better-sqlite3';
import type { MessagePreview } from './preview.ts';
import { SekishoError } from '../errors.ts';
import { openSqlite, type Migration } from '../sqlite-database.ts';
import {
  liveQuarantineStates,
  MAX_SEARCH_PAGE,
  quarantineStates,
  type NewQuarantineRecord,
  type QuarantineCount,
  type QuarantineCountsQuery,
  type QuarantineQuery,
  type QuarantineRecord,
  type QuarantineSearch,
  type QuarantineSearchResult,
  type QuarantineState,
  type QuarantineStore,
  type QuarantineTransition,
  type TenantScope,
} from './quarantine-store.ts';
import { addressKey, isWholeAddress, reasonsKey, searchKey, subjectKey } from './search-keys.ts';

/** A list page never returns more than this many records, whatever the caller asks. */
const MAX_PAGE = 1_000;
/** A search page when the caller names no limit: one screen of the console. */
const DEFAULT_SEARCH_PAGE = 50;
/** Rows the search-key backfill (schema v3) reads per statement: bounds its memory on a file of millions of records. */
const BACKFILL_BATCH = 5_000;
/** The trigram index finds substrings of at least this many characters; shorter terms scan the keys with LIKE. */
const TRIGRAM_MIN_CHARS = 3;
/**
 * With at least this many matches, a page is read by walking the newest-first index and testing each row (a
 * common term is met every few rows) instead of sorting every match the trigram index returns.
 */
const WALK_PAGE_MIN_MATCHES = 1_000;


/** MIGRATIONS[i] upgrades schema version i to i + 1. Append only; never edit a released entry. */
const MIGRATIONS: readonly Migration[] = [
  `
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
  `,
  // v2: the release workflow's columns; search keys (NFKC, lower-case, subject decoded) and side tables, so that
  // the console's filters and its newest-first pages are index lookups at any size.
  `
  ALTER TABLE quarantine ADD COLUMN requested_by TEXT;
  ALTER TABLE quarantine ADD COLUMN request_reason TEXT;
  ALTER TABLE quarantine ADD COLUMN decided_by TEXT;
  ALTER TABLE quarantine ADD COLUMN decision_reason TEXT;
  ALTER TABLE quarantine ADD COLUMN released_at INTEGER;
  ALTER TABLE quarantine ADD COLUMN release_message_id TEXT;
  ALTER TABLE quarantine ADD COLUMN override_reason TEXT;
  ALTER TABLE quarantine ADD COLUMN subject_key TEXT NOT NULL DEFAULT '';
  ALTER TABLE quarantine ADD COLUMN sender_key TEXT NOT NULL DEFAULT '';
  ALTER TABLE quarantine ADD COLUMN recipients_key TEXT NOT NULL DEFAULT '';
  ALTER TABLE quarantine ADD COLUMN reasons_key TEXT NOT NULL DEFAULT '';
  CREATE TABLE quarantine_recipients (
    address     TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    PRIMARY KEY (address, tenant_id, created_at, message_id)
  ) STRICT, WITHOUT ROWID;
  CREATE TABLE quarantine_symbols (
    symbol      TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    PRIMARY KEY (symbol, tenant_id, created_at, message_id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX quarantine_recipients_order ON quarantine_recipients (address, created_at, message_id, tenant_id);
  CREATE INDEX quarantine_symbols_order ON quarantine_symbols (symbol, created_at, message_id, tenant_id);
  CREATE VIRTUAL TABLE quarantine_text USING fts5 (
    message_id UNINDEXED, tenant_id UNINDEXED, subject, sender, tokenize = 'trigram case_sensitive 1'
  );
  DROP INDEX quarantine_tenant_created;
  DROP INDEX quarantine_created;
  CREATE INDEX quarantine_tenant_order ON quarantine (tenant_id, created_at, message_id);
  CREATE INDEX quarantine_order ON quarantine (created_at, message_id, tenant_id, kind);
  CREATE INDEX quarantine_tenant_state ON quarantine (tenant_id, state, created_at);
  CREATE INDEX quarantine_state_created ON quarantine (state, created_at);
  `,
  backfillSearchKeys,
  `
  CREATE TABLE quarantine_previews (
    message_id TEXT PRIMARY KEY,
    preview    TEXT NOT NULL CHECK (json_valid(preview))
  ) STRICT;
  `,
];

interface Row {
  message_id: string;
  tenant_id: string;
  kind: string;
  state: string;
  recipients: string;
  mail_from: string;
  subject: string | null;
  symbols: string;
  reasons: string;
  created_at: number;
  expires_at: number;
  updated_at: number;
  requested_by: string | null;
  request_reason: string | null;
  decided_by: string | null;
  decision_reason: string | null;
  released_at: number | null;
  release_message_id: string | null;
  override_reason: string | null;
}

function fromRow(r: Row): QuarantineRecord {
  return {
    messageId: r.message_id,
    tenantId: r.tenant_id,
    kind: r.kind === 'original' ? 'original' : 'held',
    state: isState(r.state) ? r.state : 'held',
    recipients: JSON.parse(r.recipients) as string[],
    mailFrom: r.mail_from,
    subject: r.subject,
    symbols: JSON.parse(r.symbols) as string[],
    reasons: JSON.parse(r.reasons) as string[],
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    updatedAt: r.updated_at,
    requestedBy: r.requested_by,
    requestReason: r.request_reason,
    decidedBy: r.decided_by,
    decisionReason: r.decision_reason,
    releasedAt: r.released_at,
    releaseMessageId: r.release_message_id,
    overrideReason: r.override_reason,
  };
}

function isState(s: string): s is QuarantineState {
  return (quarantineStates as readonly string[]).includes(s);
}

function badQuery(message: string): SekishoError {
  return new SekishoError('SEKISHO_ERR_QUARANTINE_QUERY', message);
}

const LIVE = liveQuarantineStates.map((s) => `'${s}'`).join(', ');
/** States a transition to which records the decision (who, why). */
const DECISIONS: readonly QuarantineState[] = ['approved', 'rejected', 'released', 'deleted'];

type Indexed = Pick<NewQuarantineRecord, 'messageId' | 'tenantId' | 'createdAt' | 'recipients' | 'symbols' | 'mailFrom' | 'subject' | 'reasons'>;

/**
 * Writes the side-table rows and search keys of one record, and its trigram row unless `text` is false (the v2
 * backfill fills that table in one statement afterwards); call inside a transaction.
 */
function recordIndexer(db: Database.Database, opts: { text: boolean }): (rec: Indexed) => void {
  const addRecipient = db.prepare('INSERT OR IGNORE INTO quarantine_recipients (address, tenant_id, created_at, message_id) VALUES (?, ?, ?, ?)');
  const addSymbol = db.prepare('INSERT OR IGNORE INTO quarantine_symbols (symbol, tenant_id, created_at, message_id) VALUES (?, ?, ?, ?)');
  const addText = db.prepare('INSERT INTO quarantine_text (message_id, tenant_id, subject, sender) VALUES (?, ?, ?, ?)');
  const setKeys = db.prepare(
    'UPDATE quarantine SET subject_key = ?, sender_key = ?, recipients_key = ?, reasons_key = ? WHERE message_id = ? AND tenant_id = ?',
  );
  return (rec) => {
    for (const a of rec.recipients) addRecipient.run(addressKey(a), rec.tenantId, rec.createdAt, rec.messageId);
    for (const s of rec.symbols) addSymbol.run(s, rec.tenantId, rec.createdAt, rec.messageId);
    const recipientsKey = rec.recipients.map(addressKey).join('\n');
    const subject = subjectKey(rec.subject);
    const sender = searchKey(rec.mailFrom);
    if (opts.text) addText.run(rec.messageId, rec.tenantId, subject, sender);
    setKeys.run(subject, sender, recipientsKey, reasonsKey(rec.reasons), rec.messageId, rec.tenantId);
  };
}

/** v3: fills the side tables, search keys and trigram index of the records written before v2 (the JSON columns hold everything). */
function backfillSearchKeys(db: Database.Database): void {
  const index = recordIndexer(db, { text: false });
  const page = db.prepare(
    `SELECT rowid AS rid, message_id, tenant_id, created_at, recipients, symbols, mail_from, subject, reasons
     FROM quarantine WHERE rowid > ? ORDER BY rowid LIMIT ?`,
  );
  for (let after = 0; ; ) {
    const rows = page.all(after, BACKFILL_BATCH) as (Row & { rid: number })[];
    for (const r of rows) {
      index({
        messageId: r.message_id,
        tenantId: r.tenant_id,
        createdAt: r.created_at,
        recipients: JSON.parse(r.recipients) as string[],
        symbols: JSON.parse(r.symbols) as string[],
        mailFrom: r.mail_from,
        subject: r.subject,
        reasons: JSON.parse(r.reasons) as string[],
      });
    }
    if (rows.length < BACKFILL_BATCH) break;
    after = rows.at(-1)!.rid;
  }
  db.exec('INSERT INTO quarantine_text (message_id, tenant_id, subject, sender) SELECT message_id, tenant_id, subject_key, sender_key FROM quarantine');
}

/** `%term%` for LIKE … ESCAPE '\', the term's own wildcards taken literally. */
function contains(term: string): string {
  return `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** `*term*` for GLOB (what the trigram index serves), the term's own wildcards taken literally. */
function globContains(term: string): string {
  return `*${term.replace(/[*?[]/g, (c) => `[${c}]`)}*`;
}

/**
 * A substring filter on the subject or sender key: through the trigram index when the term is long enough and
 * `useIndex` (the tenant scope applied inside, so that the list holds only the caller's records), else a LIKE
 * test of each row (same matches: both compare the same lower-cased key).
 */
function substringSql(column: 'subject' | 'sender', term: string, useIndex: boolean, scope: TenantScope): { sql: string; args: unknown[]; trigram: boolean } {
  const key = searchKey(term);
  if (!useIndex || [...key].length < TRIGRAM_MIN_CHARS) return { sql: `q.${column}_key LIKE ? ESCAPE '\\'`, args: [contains(key)], trigram: false };
  const args: unknown[] = [globContains(key)];
  const scoped = scopeSql('tenant_id', scope, args);
  return {
    sql: `(q.message_id, q.tenant_id) IN (SELECT message_id, tenant_id FROM quarantine_text WHERE ${column} GLOB ?${scoped ? ` AND ${scoped}` : ''})`,
    args,
    trigram: true,
  };
}

type Cursor = [createdAt: number, messageId: string, tenantId: string];

function encodeCursor(r: QuarantineRecord): string {
  return Buffer.from(JSON.stringify([r.createdAt, r.messageId, r.tenantId] satisfies Cursor)).toString('base64url');
}

function decodeCursor(s: string): Cursor {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  } catch {
    throw badQuery('the paging cursor is not one this store returned');
  }
  if (!Array.isArray(v) || v.length !== 3 || !Number.isSafeInteger(v[0]) || typeof v[1] !== 'string' || typeof v[2] !== 'string') {
    throw badQuery('the paging cursor is not one this store returned');
  }
  return v as Cursor;
}

/** SQL for "column is in the scope": nothing for every tenant, a false condition for none. */
function scopeSql(column: string, scope: TenantScope, args: unknown[]): string | undefined {
  if (scope === undefined) return undefined;
  if (scope.length === 0) return '1 = 0';
  args.push(...scope);
  return scope.length === 1 ? `${column} = ?` : `${column} IN (${scope.map(() => '?').join(', ')})`;
}

function statesOf(state: QuarantineSearch['state']): readonly QuarantineState[] | undefined {
  if (state === undefined) return undefined;
  const states: readonly string[] = typeof state === 'string' ? [state] : state;
  for (const s of states) if (!isState(s)) throw badQuery(`unknown quarantine state ${JSON.stringify(s)}`);
  return states as readonly QuarantineState[];
}

interface SearchSql {
  from: string;
  where: string[];
  args: unknown[];
  /** The alias whose (created_at, message_id, tenant_id) orders the page: the side table driving the query, or q. */
  order: 'd' | 'q';
  /** Whether a substring filter goes through the trigram index. */
  trigrams: boolean;
}

const JOIN_RECORD = 'JOIN quarantine q ON q.message_id = d.message_id AND q.tenant_id = d.tenant_id';

/**
 * The side table an exact filter (symbol, whole recipient address) drives the query from (`d`): its keys
 * (…, tenant_id, created_at, message_id) and (…, created_at, message_id, tenant_id) give the page order, for one
 * tenant or all, without a sort. A second exact filter joins its table as `r`.
 */
function drivingSql(q: QuarantineSearch, sql: SearchSql): void {
  const exact: [table: string, column: string, value: string][] = [];
  if (q.symbol !== undefined) exact.push(['quarantine_symbols', 'symbol', q.symbol]);
  if (q.recipient !== undefined && isWholeAddress(q.recipient)) exact.push(['quarantine_recipients', 'address', addressKey(q.recipient)]);
  const [first, second] = exact;
  if (first) {
    sql.from = `${first[0]} d ${JOIN_RECORD}`;
    sql.order = 'd';
    sql.where.push(`d.${first[1]} = ?`);
    sql.args.push(first[2]);
  }
  if (second) {
    sql.from += ` JOIN ${second[0]} r ON r.message_id = q.message_id AND r.tenant_id = q.tenant_id`;
    sql.where.push(`r.${second[1]} = ?`);
    sql.args.push(second[2]);
  }
}

/** FROM and WHERE of a search; substring filters through the trigram index only if `useTrigrams`. */
function searchSql(q: QuarantineSearch, useTrigrams: boolean): SearchSql {
  const sql: SearchSql = { from: 'quarantine q', where: [], args: [], order: 'q', trigrams: false };
  const push = (clause: string | undefined, ...a: unknown[]) => {
    if (clause === undefined) return;
    sql.where.push(clause);
    sql.args.push(...a);
  };
  drivingSql(q, sql);
  const { order } = sql;
  if (q.recipient !== undefined && !isWholeAddress(q.recipient)) push(`q.recipients_key LIKE ? ESCAPE '\\'`, contains(addressKey(q.recipient)));
  for (const column of ['subject', 'sender'] as const) {
    const term = q[column];
    if (term === undefined) continue;
    const s = substringSql(column, term, useTrigrams, q.tenantIds);
    sql.trigrams ||= s.trigram;
    push(s.sql, ...s.args);
  }
  // Scoped inside the trigram list already: scoping the outer rows too would make SQLite walk the tenant's rows.
  if (!sql.trigrams || order === 'd') {
    const scopeArgs: unknown[] = [];
    push(scopeSql(`${order}.tenant_id`, q.tenantIds, scopeArgs), ...scopeArgs);
  }
  if (q.reason !== undefined) push(`q.reasons_key LIKE ? ESCAPE '\\'`, contains(searchKey(q.reason)));
  const states = statesOf(q.state);
  if (states !== undefined) push(states.length === 0 ? '1 = 0' : `q.state IN (${states.map(() => '?').join(', ')})`, ...states);
  if (q.kind !== undefined) push('q.kind = ?', q.kind);
  if (q.from !== undefined) push(`${order}.created_at >= ?`, q.from);
  if (q.to !== undefined) push(`${order}.created_at < ?`, q.to);
  return sql;
}

export class SqliteQuarantineStore implements QuarantineStore {
  readonly #db: Database.Database;
  readonly #now: () => number;
  readonly #index: (rec: Indexed) => void;

  constructor(file: string, opts: { now?: () => number } = {}) {
    this.#now = opts.now ?? Date.now;
    this.#db = openSqlite(file, MIGRATIONS);
    this.#index = recordIndexer(this.#db, { text: true });
  }


  async hold(rec: NewQuarantineRecord): Promise<void> {
    this.#db
      .transaction(() => {
        const { changes } = this.#db
          .prepare(
            `INSERT INTO quarantine (message_id, tenant_id, kind, state, recipients, mail_from, subject, symbols, reasons,
                                     created_at, expires_at, updated_at)
             VALUES (?, ?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (message_id, tenant_id) DO NOTHING`,
          )
          .run(
            rec.messageId,
            rec.tenantId,
            rec.kind,
            JSON.stringify(rec.recipients),
            rec.mailFrom,
            rec.subject,
            JSON.stringify(rec.symbols),
            JSON.stringify(rec.reasons),
            rec.createdAt,
            rec.expiresAt,
            this.#now(),
          );
        if (changes === 1) this.#index(rec);
        if (rec.preview) {
          this.#db.prepare('INSERT INTO quarantine_previews (message_id, preview) VALUES (?, ?) ON CONFLICT (message_id) DO NOTHING').run(rec.messageId, JSON.stringify(rec.preview));
        }
      })
      .immediate();
  }

  async preview(messageId: string): Promise<MessagePreview | null> {
    const r = this.#db.prepare('SELECT preview FROM quarantine_previews WHERE message_id = ?').get(messageId) as { preview: string } | undefined;
    return r ? (JSON.parse(r.preview) as MessagePreview) : null;
  }

  async get(messageId: string, tenantId: string): Promise<QuarantineRecord | undefined> {
    const r = this.#db.prepare('SELECT * FROM quarantine WHERE message_id = ? AND tenant_id = ?').get(messageId, tenantId) as Row | undefined;
    return r && fromRow(r);
  }

  async ofMessage(messageId: string): Promise<QuarantineRecord[]> {
    return (this.#db.prepare('SELECT * FROM quarantine WHERE message_id = ? ORDER BY tenant_id').all(messageId) as Row[]).map(fromRow);
  }

  async list(q: QuarantineQuery = {}): Promise<QuarantineRecord[]> {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.tenantId !== undefined) {
      where.push('tenant_id = ?');
      args.push(q.tenantId);
    }
    if (q.state !== undefined) {
      where.push('state = ?');
      args.push(q.state);
    }
    const limit = Math.min(Math.max(0, q.limit ?? 100), MAX_PAGE);
    const sql = `SELECT * FROM quarantine ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY created_at DESC, message_id DESC LIMIT ? OFFSET ?`;
    return (this.#db.prepare(sql).all(...args, limit, Math.max(0, q.offset ?? 0)) as Row[]).map(fromRow);
  }

  async search(q: QuarantineSearch): Promise<QuarantineSearchResult> {
    const counted = searchSql(q, true);
    const whereOf = (w: readonly string[]) => (w.length ? `WHERE ${w.join(' AND ')}` : '');
    const { n: total } = this.#db.prepare(`SELECT COUNT(*) AS n FROM ${counted.from} ${whereOf(counted.where)}`).get(...counted.args) as { n: number };
    const { from, where, args, order } = counted.trigrams && total >= WALK_PAGE_MIN_MATCHES ? searchSql(q, false) : counted;
    const limit = Math.min(Math.max(0, Math.trunc(q.limit ?? DEFAULT_SEARCH_PAGE)), MAX_SEARCH_PAGE);
    const pageWhere = [...where];
    const pageArgs = [...args];
    if (q.cursor !== undefined) {
      pageWhere.push(`(${order}.created_at, ${order}.message_id, ${order}.tenant_id) < (?, ?, ?)`);
      pageArgs.push(...decodeCursor(q.cursor));
    }
    const offset = q.cursor === undefined ? Math.max(0, Math.trunc(q.offset ?? 0)) : 0;
    const rows = this.#db
      .prepare(
        `SELECT q.* FROM ${from} ${whereOf(pageWhere)}
         ORDER BY ${order}.created_at DESC, ${order}.message_id DESC, ${order}.tenant_id DESC LIMIT ? OFFSET ?`,
      )
      .all(...pageArgs, limit + 1, offset) as Row[];
    const records = rows.slice(0, limit).map(fromRow);
    const last = records.at(-1);
    return { records, total, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  async transition(messageId: string, tenantId: string, step: QuarantineTransition): Promise<QuarantineRecord | null> {
    const from = statesOf(step.from)!;
    const [to] = statesOf(step.to)!;
    if (from.length === 0) return null;
    const set = ['state = @to', 'updated_at = @at'];
    if (to === 'release-requested') set.push('requested_by = @by', 'request_reason = @reason');
    if (DECISIONS.includes(to!)) set.push('decided_by = @by', 'decision_reason = @reason');
    if (to === 'released') set.push('released_at = @at', 'release_message_id = @releaseMessageId');
    if (step.overrideReason !== undefined) set.push('override_reason = @overrideReason');
    const states = Object.fromEntries(from.map((s, i) => [`s${i}`, s]));
    const r = this.#db
      .prepare(
        `UPDATE quarantine SET ${set.join(', ')}
         WHERE message_id = @messageId AND tenant_id = @tenantId AND state IN (${from.map((_, i) => `@s${i}`).join(', ')})
         RETURNING *`,
      )
      .get({
        ...states,
        messageId,
        tenantId,
        to,
        at: step.at,
        by: step.by,
        reason: step.reason,
        releaseMessageId: step.releaseMessageId ?? null,
        overrideReason: step.overrideReason ?? null,
      }) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  async countsOverTime(q: QuarantineCountsQuery): Promise<QuarantineCount[]> {
    if (!(Number.isSafeInteger(q.bucketMs) && q.bucketMs > 0)) throw badQuery(`bucketMs must be a positive integer, not ${q.bucketMs}`);
    const args: unknown[] = [q.bucketMs, q.bucketMs, q.from, q.to];
    const scope = scopeSql('tenant_id', q.tenantIds, args);
    const rows = this.#db
      .prepare(
        `SELECT (created_at / CAST(? AS INTEGER)) * CAST(? AS INTEGER) AS bucket, tenant_id AS tenantId, kind, COUNT(*) AS n
         FROM quarantine WHERE created_at >= ? AND created_at < ? ${scope ? `AND ${scope}` : ''}
         GROUP BY bucket, tenant_id, kind ORDER BY bucket, tenant_id, kind`,
      )
      .all(...args) as QuarantineCount[];
    return rows;
  }

  async expireDue(now: number, limit: number): Promise<QuarantineRecord[]> {
    return this.#db
      .transaction(() => {
        const due = this.#db
          .prepare(`SELECT * FROM quarantine WHERE state IN (${LIVE}) AND expires_at <= ? ORDER BY expires_at LIMIT ?`)
          .all(now, limit) as Row[];
        const mark = this.#db.prepare(`UPDATE quarantine SET state = 'expired', updated_at = ? WHERE message_id = ? AND tenant_id = ?`);
        for (const r of due) mark.run(this.#now(), r.message_id, r.tenant_id);
        return due.map((r) => ({ ...fromRow(r), state: 'expired' as const }));
      })
      .immediate();
  }

  async countByState(tenantId?: string | readonly string[]): Promise<Record<QuarantineState, number>> {
    const args: unknown[] = [];
    const scope = scopeSql('tenant_id', typeof tenantId === 'string' ? [tenantId] : tenantId, args);
    const rows = this.#db.prepare(`SELECT state, COUNT(*) AS n FROM quarantine ${scope ? `WHERE ${scope}` : ''} GROUP BY state`).all(...args) as {
      state: string;
      n: number;
    }[];
    const out = Object.fromEntries(quarantineStates.map((s) => [s, 0])) as Record<QuarantineState, number>;
    for (const r of rows) if (isState(r.state)) out[r.state] = r.n;
    return out;
  }

  async close(): Promise<void> {
    this.#db.close();
  }
}
