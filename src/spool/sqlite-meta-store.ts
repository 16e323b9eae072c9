/**
 * The default MetaStore: one SQLite file (better-sqlite3) shared by the ingress, worker and admin processes.
 *
 * WAL lets readers run beside the one writer; `synchronous = FULL` makes a committed row survive a power cut,
 * because the ingress answers 250 right after insertMessage (DESIGN §2); `busy_timeout` makes a second
 * process wait for the write lock instead of failing. The schema is versioned through `PRAGMA user_version`:
 * MIGRATIONS[i] takes version i to i + 1, applied in one IMMEDIATE transaction so two processes starting
 * together migrate once. Keep the SQL portable: a PostgreSQL driver is meant to follow with the same schema.
 *
 * better-sqlite3 is synchronous, and a commit (an fsync with FULL, or sleeping in the busy handler while the other
 * process writes) would block the whole event loop: every SMTP session of the ingress stalled behind it. So the
 * writes run on a worker thread with a connection of its own (sqlite-writer-thread.js, which owns their SQL and
 * commits the writes queued meanwhile together, each in its own savepoint), and only the reads — short, never
 * waiting for a lock in WAL mode — stay on this thread's connection. A write resolves once its transaction is
 * committed, so a read made after it sees it.
 */
import Database from 'better-sqlite3';
import type { Statement } from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { errorCodes, SekishoError, type ErrorCode } from '../errors.ts';
import { parseAction, parseStoredVerdict } from './stored-verdict.ts';
import {
  attemptOutcomes,
  checkActionCountQuery,
  findPage,
  finalMessageStates,
  messageStates,
  type ActionCount,
  type ActionCountQuery,
  type DeliveryAttempt,
  type ListOptions,
  type MessagePage,
  type MessageQuery,
  monotonicMs,
  type MessageChange,
  type MessagePatch,
  type MessageRecord,
  type MessageState,
  type MetaStore,
  type NewMessage,
  type RecipientPatch,
  type RecipientRecord,
} from './meta-store.ts';
import type { FromWriter, MarkRequest, WireError, WireMessagePatch, WriteOp, WriteRequest, WriterOptions } from './sqlite-writer-thread.js';

/**
 * How long a statement waits for another process's write lock before failing with SQLITE_BUSY. A write
 * transaction (one batch of a writer thread, a few milliseconds at its largest) plus one fsync holds the lock, so
 * only a stalled disk or a stuck process holding the lock reaches this; the write then rejects and the ingress
 * answers 451 rather than hang the session. The wait happens on the writer thread, not on the event loop.
 */
const BUSY_TIMEOUT_MS = 10_000;

/** MIGRATIONS[i] upgrades schema version i to i + 1. Append only; never edit a released entry. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE messages (
    id                TEXT PRIMARY KEY,
    origin            TEXT NOT NULL,
    received_at       INTEGER NOT NULL,
    mail_from         TEXT NOT NULL,
    client_ip         TEXT NOT NULL,
    helo              TEXT NOT NULL,
    tls               TEXT,
    size              INTEGER NOT NULL,
    sha256            TEXT NOT NULL,
    header_message_id TEXT,
    subject           TEXT,
    state             TEXT NOT NULL,
    verdict           TEXT CHECK (verdict IS NULL OR json_valid(verdict)),
    attempts          INTEGER NOT NULL DEFAULT 0,
    last_error        TEXT,
    updated_at        INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX messages_state_received_at ON messages (state, received_at);

  CREATE TABLE recipients (
    message_id        TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    address           TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    tenant_id         TEXT NOT NULL,
    state             TEXT NOT NULL,
    action            TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    response          TEXT,
    next_attempt_at   INTEGER,
    delay_notice_sent INTEGER NOT NULL DEFAULT 0,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (message_id, address)
  ) STRICT;
  CREATE INDEX recipients_state_next_attempt_at ON recipients (state, next_attempt_at);
  `,
  // Delivery-attempt history and the console's message tracking (findMessages, countActions).
  `
  CREATE TABLE delivery_attempts (
    id          INTEGER PRIMARY KEY,
    message_id  TEXT NOT NULL,
    address     TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('delivered', 'deferred', 'bounced')),
    response    TEXT NOT NULL,
    remote      TEXT NOT NULL,
    duration_ms INTEGER,
    FOREIGN KEY (message_id, address) REFERENCES recipients (message_id, address) ON DELETE CASCADE
  ) STRICT;
  CREATE INDEX delivery_attempts_message_at ON delivery_attempts (message_id, at);
  CREATE INDEX messages_received_at ON messages (received_at);
  CREATE INDEX messages_header_message_id ON messages (header_message_id);
  CREATE INDEX recipients_address ON recipients (address COLLATE NOCASE);
  `,
];

const MESSAGE_COLUMNS = `id, origin, received_at AS receivedAt, mail_from AS mailFrom, client_ip AS clientIp, helo, tls,
  size, sha256, header_message_id AS headerMessageId, subject, state, verdict, attempts, last_error AS lastError,
  updated_at AS updatedAt`;

const RECIPIENT_COLUMNS = `message_id AS messageId, address, tenant_id AS tenantId, state, action, attempts, response,
  next_attempt_at AS nextAttemptAt, delay_notice_sent AS delayNoticeSent, updated_at AS updatedAt`;

const ATTEMPT_COLUMNS = `message_id AS messageId, address, tenant_id AS tenantId, at, outcome, response, remote,
  duration_ms AS durationMs`;

const unfinishedStates = messageStates.filter((s) => !finalMessageStates.includes(s));

type MessageRow = Omit<MessageRecord, 'verdict'> & { verdict: string | null };
type RecipientRow = Omit<RecipientRecord, 'delayNoticeSent' | 'action'> & { delayNoticeSent: number; action: string | null };
type AttemptRow = Omit<DeliveryAttempt, 'outcome'> & { outcome: string };
type ActionCountRow = Omit<ActionCount, 'action'> & { action: string | null };
interface Page {
  limit: number;
  offset: number;
}

function toMessage(row: MessageRow): MessageRecord {
  return { ...row, verdict: row.verdict === null ? null : parseStoredVerdict(JSON.parse(row.verdict)) };
}

function toRecipient(row: RecipientRow): RecipientRecord {
  return { ...row, action: parseAction(row.action), delayNoticeSent: row.delayNoticeSent !== 0 };
}

function toAttempt(row: AttemptRow): DeliveryAttempt {
  const outcome = attemptOutcomes.find((o) => o === row.outcome);
  if (outcome === undefined) throw new TypeError(`stored attempt outcome ${JSON.stringify(row.outcome)} is unknown`);
  return { ...row, outcome };
}

type SqlParams = Record<string, string | number>;

/** `col IN (@p0, @p1, …)` with the values added to `params` under `prefix`. */
function inList(col: string, values: readonly string[], prefix: string, params: SqlParams): string {
  values.forEach((v, i) => (params[`${prefix}${i}`] = v));
  return `${col} IN (${values.map((_, i) => `@${prefix}${i}`).join(', ')})`;
}

/** LIKE's wildcards (and the escape character '\\') taken literally. */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * The WHERE clause of a MessageQuery over `messages` (unaliased); null when it can match nothing (an empty tenant
 * scope). id, headerMessageId, recipient and the time range use indexes; mailFrom and the tenant scope are checked
 * on the rows those leave (the scope by the recipients' primary key). No index has the tenant first: each would
 * cost every insert of the ingress, and the console's searches come with a time range.
 */
function messageFilter(q: MessageQuery): { where: string; params: SqlParams } | null {
  if (q.tenantIds?.length === 0) return null;
  const params: SqlParams = {};
  const where: string[] = [];
  const scope = q.tenantIds && inList('tenant_id', q.tenantIds, 't', params);
  if (q.id !== undefined) {
    where.push('id = @id');
    params.id = q.id;
  }
  if (q.headerMessageId !== undefined) {
    const bare = q.headerMessageId.trim().replace(/^<(.*)>$/, '$1');
    where.push('header_message_id IN (@headerId, @bracketedHeaderId)');
    Object.assign(params, { headerId: bare, bracketedHeaderId: `<${bare}>` });
  }
  if (q.mailFrom) {
    where.push(`mail_from LIKE @mailFrom ESCAPE '\\'`);
    params.mailFrom = `%${likeLiteral(q.mailFrom)}%`;
  }
  if (q.recipient !== undefined) {
    where.push(`id IN (SELECT message_id FROM recipients WHERE address = @recipient COLLATE NOCASE${scope ? ` AND ${scope}` : ''})`);
    params.recipient = q.recipient;
  } else if (scope) {
    where.push(`EXISTS (SELECT 1 FROM recipients WHERE message_id = messages.id AND ${scope})`);
  }
  if (q.from !== undefined) {
    where.push('received_at >= @from');
    params.from = q.from;
  }
  if (q.to !== undefined) {
    where.push('received_at < @to');
    params.to = q.to;
  }
  return { where: where.length ? `WHERE ${where.join(' AND ')}` : '', params };
}

/** SQLite's LIMIT -1 means no limit: without `limit` every row comes back (recovery needs all of them). */
function page(opts: ListOptions): Page {
  return { limit: opts.limit ?? -1, offset: opts.offset ?? 0 };
}

export interface SqliteMetaStoreOptions {
  /** The clock for `updatedAt` (epoch ms), read when a write is requested; tests inject a fake one. */
  now?: () => number;
  /**
   * 'full' (default): every commit is fsync'd before it returns — what the ingress needs before its 250.
   * 'normal': commits reach the WAL without an fsync each (WAL checkpoints still fsync); an application crash
   * loses nothing, a power cut may lose the last commits. The stage workers use it: their updates are
   * re-derivable (a lost "delivered" means one more delivery attempt, never a lost message), and an fsync per
   * commit made their writes wait for the disk.
   */
  synchronous?: 'full' | 'normal';
}

/** Set by the class's static block, which alone reaches the private fields: see sqliteMetaStoreTestHooks. */
let writerOf: (store: SqliteMetaStore) => Worker;
let commitsOf: (store: SqliteMetaStore) => number;
let syncedCommitsOf: (store: SqliteMetaStore) => number;

interface PendingWrite {
  /** With the commit time (monotonic ms) when the thread reports one. */
  resolve: (committedAt: number) => void;
  reject: (err: Error) => void;
}

export class SqliteMetaStore implements MetaStore {
  readonly #db: Database.Database;
  readonly #now: () => number;
  readonly #stmt: {
    getMessage: Statement<[string], MessageRow>;
    getRecipients: Statement<[string], RecipientRow>;
    listUnfinished: Statement<[...string[], Page], MessageRow>;
    listByState: Statement<[{ state: MessageState } & Page], MessageRow>;
    countByState: Statement<[], { state: MessageState; n: number }>;
    getAttempts: Statement<[string], AttemptRow>;
  };
  readonly #writer: Worker;
  /** Delivered marks go to the writer thread on this port, which it empties before any other transaction. */
  readonly #markPort: MessagePort;
  readonly #writerExited: Promise<void>;
  /** Writes posted to the thread and not answered yet, by request id. */
  readonly #pending = new Map<number, PendingWrite>();
  readonly #outbox: WriteRequest[] = [];
  #lastRequestId = 0;
  #commits = 0;
  #syncedCommits = 0;
  #closing: Promise<void> | undefined;
  /** Why writes are refused: set by close() or when the writer thread stopped. */
  #refusal: string | undefined;
  #writerError: Error | undefined;

  /**
   * Opens (creating it and its directory if needed) and migrates the database at `file`, then starts the writer
   * thread. The thread does not keep the process alive while no write is pending; close() ends it.
   */
  constructor(file: string, opts: SqliteMetaStoreOptions = {}) {
    this.#now = opts.now ?? Date.now;
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
    this.#db = db;
    try {
      db.pragma('journal_mode = WAL');
      // This connection writes only the migrations; they must survive a power cut like any commit.
      db.pragma('synchronous = FULL');
      db.transaction(() => migrate(db, file)).immediate();
    } catch (err) {
      db.close();
      throw err;
    }

    this.#stmt = {
      getMessage: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ?`),
      getRecipients: db.prepare(`SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? ORDER BY seq`),
      listUnfinished: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages
        WHERE state IN (${unfinishedStates.map(() => '?').join(', ')})
        ORDER BY received_at, id LIMIT @limit OFFSET @offset`),
      listByState: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE state = @state
        ORDER BY received_at DESC, id DESC LIMIT @limit OFFSET @offset`),
      countByState: db.prepare('SELECT state, COUNT(*) AS n FROM messages GROUP BY state'),
      getAttempts: db.prepare(`SELECT ${ATTEMPT_COLUMNS} FROM delivery_attempts WHERE message_id = ? ORDER BY at, id`),
    };

    const marks = new MessageChannel();
    this.#markPort = marks.port1;
    const workerData: WriterOptions = {
      file: path.resolve(file),
      synchronous: opts.synchronous ?? 'full',
      busyTimeoutMs: BUSY_TIMEOUT_MS,
      markPort: marks.port2,
    };
    // execArgv: [] — the thread is plain JavaScript and needs none of the parent's loaders (tsx, vitest's).
    this.#writer = new Worker(new URL('./sqlite-writer-thread.js', import.meta.url), {
      workerData,
      transferList: [marks.port2],
      execArgv: [],
      name: 'sekisho-meta-writer',
    });
    this.#writer.on('message', (m: FromWriter) => this.#settle(m));
    // Listening keeps an uncaught error of the thread from crashing this process or reaching the console.
    this.#writer.on('error', (err) => (this.#writerError ??= err));
    this.#writerExited = new Promise((resolve) =>
      this.#writer.once('exit', (code: number) => resolve(this.#writerStopped(code))),
    );
    // After the listeners: adding a 'message' listener references the thread's port again.
    this.#writer.unref();
  }

  insertMessage(msg: NewMessage): Promise<void> {
    return this.#write({ op: 'insert', msg, now: this.#now() });
  }

  async getMessage(id: string): Promise<MessageRecord | undefined> {
    const row = this.#stmt.getMessage.get(id);
    return row && toMessage(row);
  }

  async getRecipients(id: string): Promise<RecipientRecord[]> {
    return this.#stmt.getRecipients.all(id).map(toRecipient);
  }

  updateMessage(id: string, patch: MessagePatch): Promise<void> {
    return this.update(id, { message: patch });
  }

  /** Rejects with SEKISHO_ERR_META_NOT_FOUND, changing nothing, if the message or a named recipient is missing. */
  updateRecipients(id: string, addresses: readonly string[] | undefined, patch: RecipientPatch): Promise<void> {
    return this.update(id, { recipients: [addresses === undefined ? { patch } : { addresses, patch }] });
  }

  /**
   * Posted at once (not with the writes of this event-loop turn) on the thread's mark port; the thread commits it
   * in a transaction of its own before the writes queued ahead of it. With synchronous = NORMAL the commit is in the
   * WAL, so a process death keeps it; a power cut may take it back (one more delivery, never a lost message).
   */
  markDelivered(id: string, addresses: readonly string[], patch: Omit<RecipientPatch, 'state'>): Promise<number> {
    if (this.#refusal !== undefined) {
      return Promise.reject(new SekishoError('SEKISHO_ERR_META_UNAVAILABLE', this.#refusal));
    }
    // The thread applies the patch with state `delivered`, whatever the caller's object carries.
    const request: MarkRequest = { op: 'mark', id: ++this.#lastRequestId, messageId: id, addresses, patch, now: this.#now() };
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) this.#writer.ref();
      this.#pending.set(request.id, { resolve, reject });
      try {
        this.#markPort.postMessage([request]);
      } catch (err) {
        this.#pending.delete(request.id);
        reject(err as Error);
      }
    });
  }

  async update(id: string, change: MessageChange): Promise<void> {
    const now = this.#now();
    return this.#write({
      op: 'update',
      messageId: id,
      ...(change.message && { message: wirePatch(change.message) }),
      recipients: change.recipients ?? [],
      ...(change.durable && { durable: true }),
      now,
    });
  }

  async listUnfinished(opts: ListOptions = {}): Promise<MessageRecord[]> {
    return this.#stmt.listUnfinished.all(...unfinishedStates, page(opts)).map(toMessage);
  }

  async listByState(state: MessageState, opts: ListOptions = {}): Promise<MessageRecord[]> {
    return this.#stmt.listByState.all({ state, ...page(opts) }).map(toMessage);
  }

  async countByState(): Promise<Record<MessageState, number>> {
    const counts = Object.fromEntries(messageStates.map((s) => [s, 0])) as Record<MessageState, number>;
    for (const { state, n } of this.#stmt.countByState.all()) counts[state] = n;
    return counts;
  }

  async getAttempts(messageId: string): Promise<DeliveryAttempt[]> {
    return this.#stmt.getAttempts.all(messageId).map(toAttempt);
  }

  /** The page and the total are read in one transaction: one snapshot of the database. */
  async findMessages(q: MessageQuery): Promise<MessagePage> {
    const { limit, offset } = findPage(q);
    const filter = messageFilter(q);
    if (!filter) return { messages: [], total: 0 };
    const { where, params } = filter;
    const db = this.#db;
    return db.transaction(() => {
      const rows = db
        .prepare<[SqlParams], MessageRow>(`SELECT ${MESSAGE_COLUMNS} FROM messages ${where}
          ORDER BY received_at DESC, id DESC LIMIT @limit OFFSET @offset`)
        .all({ ...params, limit, offset });
      const total = db.prepare<[SqlParams], number>(`SELECT COUNT(*) FROM messages ${where}`).pluck().get(params) ?? 0;
      return { messages: rows.map(toMessage), total };
    })();
  }

  /** Scans the messages received in [from, to) (an index range) and their recipients. */
  async countActions(q: ActionCountQuery): Promise<ActionCount[]> {
    checkActionCountQuery(q);
    if (q.tenantIds?.length === 0) return [];
    const params: SqlParams = { from: q.from, to: q.to, bucketMs: q.bucketMs };
    const scope = q.tenantIds ? `AND ${inList('r.tenant_id', q.tenantIds, 't', params)}` : '';
    // better-sqlite3 binds a JS number as REAL: the casts make the division an integer one.
    const rows = this.#db
      .prepare<[SqlParams], ActionCountRow>(`SELECT
          CAST(@from AS INTEGER) + (m.received_at - CAST(@from AS INTEGER)) / CAST(@bucketMs AS INTEGER)
            * CAST(@bucketMs AS INTEGER) AS bucket,
          r.tenant_id AS tenantId, r.action AS action, COUNT(*) AS n
        FROM messages m JOIN recipients r ON r.message_id = m.id
        WHERE m.received_at >= @from AND m.received_at < @to ${scope}
        GROUP BY bucket, r.tenant_id, r.action
        ORDER BY bucket, r.tenant_id, r.action`)
      .all(params);
    return rows.map((row) => ({ ...row, action: parseAction(row.action) }));
  }

  /** Deletes the message and (by cascade) its recipients and their attempts; no error when the id is unknown. */
  deleteMessage(id: string): Promise<void> {
    return this.#write({ op: 'delete', messageId: id });
  }

  /** Commits the writes already requested, ends the writer thread, closes the database. Later writes reject. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#refusal ??= 'the metadata store is closed';
    // The thread writes what was posted before `close` (one port, in order), then ends; a thread that stopped
    // already ignores the message.
    this.#writer.ref();
    this.#postOutbox();
    this.#writer.postMessage({ op: 'close' });
    await this.#writerExited;
    this.#markPort.close();
    this.#db.close();
  }

  /** Posts one write to the thread; it settles when the thread answers, or when the thread stops. */
  #write(op: WriteOp): Promise<void> {
    return this.#request(op).then(() => undefined);
  }

  #request(op: WriteOp): Promise<number> {
    if (this.#refusal !== undefined) {
      return Promise.reject(new SekishoError('SEKISHO_ERR_META_UNAVAILABLE', this.#refusal));
    }
    const id = ++this.#lastRequestId;
    return new Promise((resolve, reject) => {
      // Referenced while a write is pending: the process must not exit before the answer.
      if (this.#pending.size === 0) this.#writer.ref();
      this.#pending.set(id, { resolve, reject });
      // The writes of one turn of the event loop go to the thread in one message: a postMessage (clone and
      // wake-up) costs tens of microseconds, and the pipeline makes several writes per message.
      this.#outbox.push({ ...op, id });
      if (this.#outbox.length === 1) setImmediate(() => this.#postOutbox());
    });
  }

  #postOutbox(): void {
    const batch = this.#outbox.splice(0);
    if (!batch.length) return;
    try {
      this.#writer.postMessage(batch);
    } catch {
      // One request cannot be cloned: send them one by one, so that only that one fails.
      for (const req of batch) {
        try {
          this.#writer.postMessage([req]);
        } catch (err) {
          this.#pending.get(req.id)?.reject(err as Error);
          this.#pending.delete(req.id);
        }
      }
    }
  }

  #settle(batch: FromWriter): void {
    if (batch.committed) this.#commits++;
    if (batch.committed && batch.synced) this.#syncedCommits++;
    for (const { id, error } of batch.results) {
      const p = this.#pending.get(id);
      if (!p) continue;
      this.#pending.delete(id);
      if (error) p.reject(fromWire(error));
      else p.resolve(batch.committedAt ?? monotonicMs());
    }
    // While closing, stay referenced until the thread has ended: close() must get to close the database.
    if (this.#pending.size === 0 && this.#closing === undefined) this.#writer.unref();
  }

  /** The thread ended (close(), a crash, terminate()): pending writes reject, and every later one. */
  #writerStopped(code: number): void {
    const cause = this.#writerError;
    const why = `the metadata writer thread stopped (exit code ${code}${cause ? `: ${cause.message}` : ''})`;
    this.#refusal ??= why;
    for (const p of this.#pending.values()) {
      const message = `${why} before it confirmed this write, which may or may not be committed`;
      p.reject(new SekishoError('SEKISHO_ERR_META_UNAVAILABLE', message, { cause }));
    }
    this.#pending.clear();
  }

  static {
    writerOf = (store) => store.#writer;
    commitsOf = (store) => store.#commits;
    syncedCommitsOf = (store) => store.#syncedCommits;
  }
}

/** For tests only: the writer thread's count of committed batches, and a way to kill the thread. */
export const sqliteMetaStoreTestHooks = {
  commits: (store: SqliteMetaStore): number => commitsOf(store),
  /** Commits made with synchronous = FULL (an fsync of the WAL each). */
  syncedCommits: (store: SqliteMetaStore): number => syncedCommitsOf(store),
  terminateWriter: async (store: SqliteMetaStore): Promise<void> => {
    await writerOf(store).terminate();
  },
};

/** The verdict goes as JSON text: JSON's rules apply, and one that cannot be serialised fails here, in the caller. */
function wirePatch({ verdict, ...rest }: MessagePatch): WireMessagePatch {
  return verdict === undefined ? rest : { ...rest, verdict: verdict === null ? null : JSON.stringify(verdict) };
}

/** Rebuilds an error the writer thread sent: a SekishoError when its code is in the catalogue (src/errors.ts). */
function fromWire(wire: WireError): Error {
  const cause = wire.cause && fromWire(wire.cause);
  if (wire.code !== undefined && Object.hasOwn(errorCodes, wire.code)) {
    return new SekishoError(wire.code as ErrorCode, wire.message, { cause });
  }
  const err = new Error(wire.message, { cause });
  err.name = wire.name;
  return wire.code === undefined ? err : Object.assign(err, { code: wire.code });
}

/** Brings the schema to MIGRATIONS.length; run inside an IMMEDIATE transaction. */
function migrate(db: Database.Database, file: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    throw new SekishoError(
      'SEKISHO_ERR_META_SCHEMA',
      `${file} has schema version ${version}, this Sekisho knows up to ${MIGRATIONS.length}: upgrade Sekisho`,
    );
  }
  for (const sql of MIGRATIONS.slice(version)) db.exec(sql);
  db.pragma(`user_version = ${MIGRATIONS.length}`);
}
