/**
 * The default MetaStore: one SQLite file (better-sqlite3) shared by the ingress, worker and admin processes.
 *
 * WAL lets readers run beside the one writer; `synchronous = FULL` makes a committed row survive a power cut,
 * because the ingress answers 250 right after insertMessage (DESIGN §2); `busy_timeout` makes a second
 * process wait for the write lock instead of failing. The schema is versioned through `PRAGMA user_version`:
 * MIGRATIONS[i] takes version i to i + 1, applied in one IMMEDIATE transaction so two processes starting
 * together migrate once. Keep the SQL portable: a PostgreSQL driver is meant to follow with the same schema.
 *
 * better-sqlite3 is synchronous; the methods are async only because the MetaStore interface is.
 */
import Database from 'better-sqlite3';
import type { Statement } from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { SekishoError } from '../errors.ts';
import {
  finalMessageStates,
  messageStates,
  type ListOptions,
  type MessageChange,
  type MessagePatch,
  type MessageRecord,
  type MessageState,
  type MetaStore,
  type NewMessage,
  type RecipientPatch,
  type RecipientRecord,
} from './meta-store.ts';

/**
 * How long a statement waits for another process's write lock before failing with SQLITE_BUSY. Our write
 * transactions touch one message and last well under a millisecond plus one fsync, so only a stalled disk or
 * a stuck process holding the lock reaches this; the ingress then answers 451 rather than hang the session.
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
];

const MESSAGE_COLUMNS = `id, origin, received_at AS receivedAt, mail_from AS mailFrom, client_ip AS clientIp, helo, tls,
  size, sha256, header_message_id AS headerMessageId, subject, state, verdict, attempts, last_error AS lastError,
  updated_at AS updatedAt`;

const RECIPIENT_COLUMNS = `message_id AS messageId, address, tenant_id AS tenantId, state, action, attempts, response,
  next_attempt_at AS nextAttemptAt, delay_notice_sent AS delayNoticeSent, updated_at AS updatedAt`;

/** Each nullable field is only written when its `set*` flag is 1, so one cached statement serves every patch. */
const RECIPIENT_SET = `
  state = CASE WHEN @setState THEN @state ELSE state END,
  action = CASE WHEN @setAction THEN @action ELSE action END,
  response = CASE WHEN @setResponse THEN @response ELSE response END,
  next_attempt_at = CASE WHEN @setNextAttemptAt THEN @nextAttemptAt ELSE next_attempt_at END,
  delay_notice_sent = CASE WHEN @setDelayNoticeSent THEN @delayNoticeSent ELSE delay_notice_sent END,
  attempts = attempts + @addAttempt,
  updated_at = @now`;

const unfinishedStates = messageStates.filter((s) => !finalMessageStates.includes(s));

type MessageRow = Omit<MessageRecord, 'verdict'> & { verdict: string | null };
type RecipientRow = Omit<RecipientRecord, 'delayNoticeSent'> & { delayNoticeSent: number };
interface Page {
  limit: number;
  offset: number;
}
type RecipientParams = Record<string, string | number | null>;

function toMessage(row: MessageRow): MessageRecord {
  return { ...row, verdict: row.verdict === null ? null : JSON.parse(row.verdict) };
}

function toRecipient(row: RecipientRow): RecipientRecord {
  return { ...row, delayNoticeSent: row.delayNoticeSent !== 0 };
}

/** SQLite's LIMIT -1 means no limit: without `limit` every row comes back (recovery needs all of them). */
function page(opts: ListOptions): Page {
  return { limit: opts.limit ?? -1, offset: opts.offset ?? 0 };
}

function flag(set: boolean): number {
  return set ? 1 : 0;
}

export interface SqliteMetaStoreOptions {
  /** The clock for `updatedAt` (epoch ms); tests inject a fake one. */
  now?: () => number;
  /**
   * 'full' (default): every commit is fsync'd before it returns — what the ingress needs before its 250.
   * 'normal': commits reach the WAL without an fsync each (WAL checkpoints still fsync); an application crash
   * loses nothing, a power cut may lose the last commits. The stage workers use it: their updates are
   * re-derivable (a lost "delivered" means one more delivery attempt, never a lost message), and an fsync per
   * update blocks the event loop and capped a worker at a few hundred updates a second.
   */
  synchronous?: 'full' | 'normal';
}

/**
 * Inserts that arrive while one is being written share its transaction (group commit): one fsync for all the
 * messages that finished DATA in the same event-loop turn. Bounds how many wait for one commit.
 */
const MAX_INSERTS_PER_COMMIT = 256;

export class SqliteMetaStore implements MetaStore {
  readonly #db: Database.Database;
  readonly #now: () => number;
  readonly #stmt: {
    insertMessage: Statement<[Omit<NewMessage, 'recipients'> & { state: MessageState; updatedAt: number }]>;
    insertRecipient: Statement<[Record<string, string | number>]>;
    getMessage: Statement<[string], MessageRow>;
    getRecipients: Statement<[string], RecipientRow>;
    messageExists: Statement<[string], { one: number }>;
    updateMessage: Statement<[Record<string, unknown>]>;
    updateAllRecipients: Statement<[RecipientParams]>;
    updateOneRecipient: Statement<[RecipientParams]>;
    listUnfinished: Statement<[...string[], Page], MessageRow>;
    listByState: Statement<[{ state: MessageState } & Page], MessageRow>;
    countByState: Statement<[], { state: MessageState; n: number }>;
    deleteMessage: Statement<[string]>;
  };
  readonly #insert: (msg: NewMessage) => void;
  readonly #insertMany: (msgs: NewMessage[]) => void;
  #pending: { msg: NewMessage; resolve: () => void; reject: (err: unknown) => void }[] = [];
  readonly #updateRecipients: (id: string, addresses: ReadonlySet<string> | undefined, params: RecipientParams) => void;
  readonly #update: (id: string, change: MessageChange) => void;

  /** Opens (creating it and its directory if needed) and migrates the database at `file`. */
  constructor(file: string, opts: SqliteMetaStoreOptions = {}) {
    this.#now = opts.now ?? Date.now;
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const db = new Database(file, { timeout: BUSY_TIMEOUT_MS });
    this.#db = db;
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
      db.pragma('foreign_keys = ON');
      db.transaction(() => migrate(db, file)).immediate();
    } catch (err) {
      db.close();
      throw err;
    }

    this.#stmt = {
      insertMessage: db.prepare(`INSERT INTO messages (id, origin, received_at, mail_from, client_ip, helo, tls, size, sha256,
          header_message_id, subject, state, updated_at)
        VALUES (@id, @origin, @receivedAt, @mailFrom, @clientIp, @helo, @tls, @size, @sha256,
          @headerMessageId, @subject, @state, @updatedAt)`),
      // A client may give the same RCPT TO twice; it is one recipient.
      insertRecipient: db.prepare(`INSERT INTO recipients (message_id, address, seq, tenant_id, state, updated_at)
        VALUES (@messageId, @address, @seq, @tenantId, 'pending', @updatedAt)
        ON CONFLICT (message_id, address) DO NOTHING`),
      getMessage: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ?`),
      getRecipients: db.prepare(`SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? ORDER BY seq`),
      messageExists: db.prepare('SELECT 1 AS one FROM messages WHERE id = ?'),
      updateMessage: db.prepare(`UPDATE messages SET
          state = CASE WHEN @setState THEN @state ELSE state END,
          verdict = CASE WHEN @setVerdict THEN @verdict ELSE verdict END,
          last_error = CASE WHEN @setLastError THEN @lastError ELSE last_error END,
          attempts = attempts + @addAttempt,
          updated_at = @now
        WHERE id = @id`),
      updateAllRecipients: db.prepare(`UPDATE recipients SET ${RECIPIENT_SET} WHERE message_id = @id`),
      updateOneRecipient: db.prepare(`UPDATE recipients SET ${RECIPIENT_SET} WHERE message_id = @id AND address = @address`),
      listUnfinished: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages
        WHERE state IN (${unfinishedStates.map(() => '?').join(', ')})
        ORDER BY received_at, id LIMIT @limit OFFSET @offset`),
      listByState: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE state = @state
        ORDER BY received_at DESC, id DESC LIMIT @limit OFFSET @offset`),
      countByState: db.prepare('SELECT state, COUNT(*) AS n FROM messages GROUP BY state'),
      deleteMessage: db.prepare('DELETE FROM messages WHERE id = ?'),
    };

    const insertOne = (msg: NewMessage) => {
      const updatedAt = this.#now();
      const { recipients, ...fields } = msg;
      this.#stmt.insertMessage.run({ ...fields, state: 'received', updatedAt });
      recipients.forEach((r, seq) =>
        this.#stmt.insertRecipient.run({ messageId: msg.id, address: r.address, seq, tenantId: r.tenantId, updatedAt }),
      );
    };
    this.#insert = db.transaction(insertOne).immediate;
    this.#insertMany = db.transaction((msgs: NewMessage[]) => msgs.forEach(insertOne)).immediate;

    const updateRecipients = (id: string, addresses: ReadonlySet<string> | undefined, params: RecipientParams) => {
      if (!this.#stmt.messageExists.get(id)) throw notFound(id);
      if (addresses === undefined) {
        this.#stmt.updateAllRecipients.run(params);
        return;
      }
      for (const address of addresses) {
        // Throwing rolls back the recipients already updated: a patch applies to all named or to none.
        if (this.#stmt.updateOneRecipient.run({ ...params, address }).changes === 0) {
          throw new SekishoError('SEKISHO_ERR_META_NOT_FOUND', `message ${id} has no recipient ${address}`);
        }
      }
    };
    this.#updateRecipients = db.transaction(updateRecipients).immediate;
    this.#update = db.transaction((id: string, change: MessageChange) => {
      for (const r of change.recipients ?? []) updateRecipients(id, r.addresses && new Set(r.addresses), this.#recipientParams(id, r.patch));
      if (change.message) this.#updateMessageRow(id, change.message);
      else if (!this.#stmt.messageExists.get(id)) throw notFound(id);
    }).immediate;
  }

  insertMessage(msg: NewMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ msg, resolve, reject });
      if (this.#pending.length === 1) setImmediate(() => this.#flushInserts());
    });
  }

  #insertAlone(msg: NewMessage): void {
    try {
      this.#insert(msg);
    } catch (err) {
      // Recipients never conflict (ON CONFLICT DO NOTHING): a primary-key violation is the message id.
      if ((err as { code?: unknown }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new SekishoError('SEKISHO_ERR_META_DUPLICATE', `message ${msg.id} already exists`, { cause: err });
      }
      throw err;
    }
  }

  /** Commits every queued insert in one transaction; if that fails, each alone, so an error names its message. */
  #flushInserts(): void {
    while (this.#pending.length) {
      const batch = this.#pending.splice(0, MAX_INSERTS_PER_COMMIT);
      try {
        if (batch.length === 1) this.#insertAlone(batch[0]!.msg);
        else this.#insertMany(batch.map((p) => p.msg));
        batch.forEach((p) => p.resolve());
      } catch (batchErr) {
        if (batch.length === 1) {
          batch[0]!.reject(batchErr);
          continue;
        }
        for (const p of batch) {
          try {
            this.#insertAlone(p.msg);
            p.resolve();
          } catch (err) {
            p.reject(err);
          }
        }
      }
    }
  }

  async getMessage(id: string): Promise<MessageRecord | undefined> {
    const row = this.#stmt.getMessage.get(id);
    return row && toMessage(row);
  }

  async getRecipients(id: string): Promise<RecipientRecord[]> {
    return this.#stmt.getRecipients.all(id).map(toRecipient);
  }

  async updateMessage(id: string, patch: MessagePatch): Promise<void> {
    this.#updateMessageRow(id, patch);
  }

  #updateMessageRow(id: string, patch: MessagePatch): void {
    const { changes } = this.#stmt.updateMessage.run({
      id,
      setState: flag(patch.state !== undefined),
      state: patch.state ?? null,
      setVerdict: flag(patch.verdict !== undefined),
      verdict: patch.verdict === undefined || patch.verdict === null ? null : JSON.stringify(patch.verdict),
      setLastError: flag(patch.lastError !== undefined),
      lastError: patch.lastError ?? null,
      addAttempt: flag(patch.countAttempt === true),
      now: this.#now(),
    });
    if (changes === 0) throw notFound(id);
  }

  /** Rejects with SEKISHO_ERR_META_NOT_FOUND, changing nothing, if the message or a named recipient is missing. */
  async updateRecipients(id: string, addresses: readonly string[] | undefined, patch: RecipientPatch): Promise<void> {
    this.#updateRecipients(id, addresses && new Set(addresses), this.#recipientParams(id, patch));
  }

  async update(id: string, change: MessageChange): Promise<void> {
    this.#update(id, change);
  }

  #recipientParams(id: string, patch: RecipientPatch): RecipientParams {
    return {
      id,
      setState: flag(patch.state !== undefined),
      state: patch.state ?? null,
      setAction: flag(patch.action !== undefined),
      action: patch.action ?? null,
      setResponse: flag(patch.response !== undefined),
      response: patch.response ?? null,
      setNextAttemptAt: flag(patch.nextAttemptAt !== undefined),
      nextAttemptAt: patch.nextAttemptAt ?? null,
      setDelayNoticeSent: flag(patch.delayNoticeSent !== undefined),
      delayNoticeSent: flag(patch.delayNoticeSent === true),
      addAttempt: flag(patch.countAttempt === true),
      now: this.#now(),
    };
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

  /** Deletes the message and (by cascade) its recipients; no error when the id is unknown. */
  async deleteMessage(id: string): Promise<void> {
    this.#stmt.deleteMessage.run(id);
  }

  async close(): Promise<void> {
    this.#flushInserts();
    this.#db.close();
  }
}

function notFound(id: string): SekishoError {
  return new SekishoError('SEKISHO_ERR_META_NOT_FOUND', `no message ${id}`);
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
