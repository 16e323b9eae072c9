// @ts-check
/**
 * The writer thread of SqliteMetaStore (sqlite-meta-store.ts): every write of the store runs here, on a
 * better-sqlite3 connection of its own, so that a commit — an fsync with `synchronous = FULL`, or a wait in the
 * busy handler while the other process holds the write lock — blocks this thread, not the event loop of the
 * ingress or the worker.
 *
 * Group commit: the requests that queued up while a batch was being written go into one BEGIN IMMEDIATE … COMMIT
 * (at most MAX_WRITES_PER_COMMIT of them), each inside its own SAVEPOINT, in the order they were made. A request
 * that fails (duplicate id, unknown message or recipient) is rolled back to its savepoint alone, and only its own
 * result carries the error. The results of a batch are posted after COMMIT returned, so a write the store reports
 * done is durable (with FULL) and visible to every reader. When BEGIN or COMMIT fails, or SQLite rolls the whole
 * transaction back itself (disk full, I/O error), every request of the batch gets that error: none of it is written.
 *
 * Delivered marks (MetaStore.markDelivered) come on a port of their own and go first: whenever the thread is
 * about to start a transaction it commits the marks waiting on that port, in one small transaction ahead of the
 * queued writes. A mark thus waits at most for the one transaction being committed when it arrived.
 *
 * Plain JavaScript with JSDoc types (checked by `tsc`: allowJs and @ts-check), because a worker thread is loaded
 * by Node's own module loader — under tsx, vitest and plain node alike — which does not compile TypeScript. It owns
 * the SQL of every write; the store owns the reads and the schema migrations, which run before this thread starts.
 * It logs nothing: errors go back to the store, and an uncaught one ends the thread, which the store turns into
 * SEKISHO_ERR_META_UNAVAILABLE for every pending and later write.
 */
import Database from 'better-sqlite3';
import process from 'node:process';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';

/**
 * @typedef {import('./meta-store.ts').NewMessage} NewMessage
 * @typedef {import('./meta-store.ts').RecipientPatch} RecipientPatch
 * @typedef {Omit<import('./meta-store.ts').MessagePatch, 'verdict'> & { verdict?: string | null }} WireMessagePatch
 *   A MessagePatch whose verdict is JSON text already (serialised by the store, in the caller).
 * @typedef {{ op: 'insert', msg: NewMessage, now: number }
 *   | { op: 'update', messageId: string, message?: WireMessagePatch,
 *       recipients: readonly { addresses?: readonly string[], patch: RecipientPatch }[], now: number,
 *       durable?: boolean }
 *   | { op: 'delete', messageId: string }} WriteOp
 *   What to write; `now` is the caller's clock, read when the write was requested.
 * @typedef {{ op: 'mark', messageId: string, addresses: readonly string[], patch: RecipientPatch, now: number }} MarkOp
 *   A delivered mark: the patch is applied with state `delivered`.
 * @typedef {WriteOp & { id: number }} WriteRequest
 * @typedef {MarkOp & { id: number }} MarkRequest
 * @typedef {WriteRequest[] | { op: 'close' }} ToWriter
 *   `close`: write what came before it, close the connection, end the thread.
 * @typedef {{ name: string, message: string, code?: string, cause?: WireError }} WireError
 * @typedef {{ id: number, error?: WireError }} WriteResult
 * @typedef {{ committed: boolean, results: WriteResult[], synced?: boolean, committedAt?: number }} FromWriter
 *   One per batch, after its COMMIT (committed) or its rollback (every result has an error); `synced`: the COMMIT
 *   ran with synchronous = FULL (an fsync of the WAL); `committedAt`: when COMMIT returned (monotonic ms, the
 *   clock of monotonicMs() in meta-store.ts).
 * @typedef {{ file: string, synchronous: 'full' | 'normal', busyTimeoutMs: number,
 *   markPort: import('node:worker_threads').MessagePort }} WriterOptions
 *   `markPort`: where delivered marks (MarkRequest[]) arrive.
 */

/**
 * Bounds one transaction. A request writes one message row and its recipients (at most smtp.maxRecipients, 100 by
 * default), so a full batch holds the write lock for a few milliseconds plus one fsync: the other process waits no
 * longer than that, and the first request of the batch is answered no later. Ordinary load makes batches of a few
 * to a few dozen requests.
 */
const MAX_WRITES_PER_COMMIT = 256;

/** Each nullable field is only written when its `set*` flag is 1, so one cached statement serves every patch. */
const RECIPIENT_SET = `
  state = CASE WHEN @setState THEN @state ELSE state END,
  action = CASE WHEN @setAction THEN @action ELSE action END,
  response = CASE WHEN @setResponse THEN @response ELSE response END,
  next_attempt_at = CASE WHEN @setNextAttemptAt THEN @nextAttemptAt ELSE next_attempt_at END,
  delay_notice_sent = CASE WHEN @setDelayNoticeSent THEN @delayNoticeSent ELSE delay_notice_sent END,
  attempts = attempts + @addAttempt,
  updated_at = @now`;

/** An error that belongs to one request; its code is one of the catalogue in src/errors.ts. */
class RequestError extends Error {
  /**
   * @param {'SEKISHO_ERR_META_NOT_FOUND' | 'SEKISHO_ERR_META_DUPLICATE'} code
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(code, message, cause) {
    super(message, { cause });
    this.name = 'SekishoError';
    this.code = code;
  }
}

/** @param {string} id */
function notFound(id) {
  return new RequestError('SEKISHO_ERR_META_NOT_FOUND', `no message ${id}`);
}

/** @param {boolean} set */
function flag(set) {
  return set ? 1 : 0;
}

/**
 * Errors cross the thread boundary as plain data: structured cloning keeps neither their class nor their `code`.
 * @param {unknown} err
 * @returns {WireError}
 */
function toWire(err) {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  /** @type {WireError} */
  const wire = { name: err.name, message: err.message };
  const code = /** @type {{ code?: unknown }} */ (err).code;
  if (typeof code === 'string') wire.code = code;
  if (err.cause !== undefined) wire.cause = toWire(err.cause);
  return wire;
}

/** @param {WriterOptions} opts */
function openWriter(opts) {
  const db = new Database(opts.file, { timeout: opts.busyTimeoutMs, fileMustExist: true });
  db.pragma(`synchronous = ${opts.synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
  db.pragma('foreign_keys = ON');

  const stmt = {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    savepoint: db.prepare('SAVEPOINT request'),
    release: db.prepare('RELEASE request'),
    rollbackToSavepoint: db.prepare('ROLLBACK TO request'),
    insertMessage: db.prepare(`INSERT INTO messages (id, origin, received_at, mail_from, client_ip, helo, tls, size,
        sha256, header_message_id, subject, state, updated_at)
      VALUES (@id, @origin, @receivedAt, @mailFrom, @clientIp, @helo, @tls, @size, @sha256,
        @headerMessageId, @subject, 'received', @now)`),
    // A client may give the same RCPT TO twice; it is one recipient.
    insertRecipient: db.prepare(`INSERT INTO recipients (message_id, address, seq, tenant_id, state, updated_at)
      VALUES (@messageId, @address, @seq, @tenantId, 'pending', @now)
      ON CONFLICT (message_id, address) DO NOTHING`),
    messageExists: db.prepare('SELECT 1 FROM messages WHERE id = ?').pluck(),
    updateMessage: db.prepare(`UPDATE messages SET
        state = CASE WHEN @setState THEN @state ELSE state END,
        verdict = CASE WHEN @setVerdict THEN @verdict ELSE verdict END,
        last_error = CASE WHEN @setLastError THEN @lastError ELSE last_error END,
        attempts = attempts + @addAttempt,
        updated_at = @now
      WHERE id = @id`),
    updateAllRecipients: db.prepare(`UPDATE recipients SET ${RECIPIENT_SET} WHERE message_id = @id`),
    updateOneRecipient: db.prepare(`UPDATE recipients SET ${RECIPIENT_SET}
      WHERE message_id = @id AND address = @address`),
    // tenant_id is copied from the recipient: the console filters attempts by tenant without a join.
    insertAllAttempts: db.prepare(`INSERT INTO delivery_attempts
        (message_id, address, tenant_id, at, outcome, response, remote, duration_ms)
      SELECT message_id, address, tenant_id, @at, @outcome, @response, @remote, @durationMs
      FROM recipients WHERE message_id = @id ORDER BY seq`),
    insertOneAttempt: db.prepare(`INSERT INTO delivery_attempts
        (message_id, address, tenant_id, at, outcome, response, remote, duration_ms)
      SELECT message_id, address, tenant_id, @at, @outcome, @response, @remote, @durationMs
      FROM recipients WHERE message_id = @id AND address = @address`),
    deleteMessage: db.prepare('DELETE FROM messages WHERE id = ?'),
  };

  /** @param {NewMessage} msg @param {number} now */
  function insert(msg, now) {
    const { recipients, ...fields } = msg;
    try {
      stmt.insertMessage.run({ ...fields, now });
    } catch (err) {
      // Recipients never conflict (ON CONFLICT DO NOTHING): a primary-key violation is the message id.
      if (/** @type {{ code?: unknown }} */ (err).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new RequestError('SEKISHO_ERR_META_DUPLICATE', `message ${msg.id} already exists`, err);
      }
      throw err;
    }
    recipients.forEach((r, seq) =>
      stmt.insertRecipient.run({ messageId: msg.id, address: r.address, seq, tenantId: r.tenantId, now }),
    );
  }

  /**
   * Patches the named recipients (all when `addresses` is undefined) and records the patch's delivery attempt for
   * each; an unknown one throws, and the savepoint of the request takes back the recipients already patched: a
   * patch applies to all named or to none.
   * @param {string} id
   * @param {readonly string[] | undefined} addresses
   * @param {RecipientPatch} patch
   * @param {number} now
   */
  function updateRecipients(id, addresses, patch, now) {
    if (!stmt.messageExists.get(id)) throw notFound(id);
    const params = {
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
      now,
    };
    const attempt = patch.attempt && {
      id,
      at: patch.attempt.at,
      outcome: patch.attempt.outcome,
      response: patch.attempt.response,
      remote: patch.attempt.remote,
      durationMs: patch.attempt.durationMs === undefined ? null : Math.round(patch.attempt.durationMs),
    };
    if (addresses === undefined) {
      stmt.updateAllRecipients.run(params);
      if (attempt) stmt.insertAllAttempts.run(attempt);
      return;
    }
    for (const address of new Set(addresses)) {
      if (stmt.updateOneRecipient.run({ ...params, address }).changes === 0) {
        throw new RequestError('SEKISHO_ERR_META_NOT_FOUND', `message ${id} has no recipient ${address}`);
      }
      if (attempt) stmt.insertOneAttempt.run({ ...attempt, address });
    }
  }

  /** @param {string} id @param {WireMessagePatch} patch @param {number} now */
  function updateMessage(id, patch, now) {
    const { changes } = stmt.updateMessage.run({
      id,
      setState: flag(patch.state !== undefined),
      state: patch.state ?? null,
      setVerdict: flag(patch.verdict !== undefined),
      verdict: patch.verdict ?? null,
      setLastError: flag(patch.lastError !== undefined),
      lastError: patch.lastError ?? null,
      addAttempt: flag(patch.countAttempt === true),
      now,
    });
    if (changes === 0) throw notFound(id);
  }

  /** @param {WriteOp | MarkOp} request */
  function apply(request) {
    switch (request.op) {
      case 'mark':
        updateRecipients(request.messageId, request.addresses, { ...request.patch, state: 'delivered' }, request.now);
        return;
      case 'insert':
        insert(request.msg, request.now);
        return;
      case 'update':
        for (const r of request.recipients) updateRecipients(request.messageId, r.addresses, r.patch, request.now);
        if (request.message) updateMessage(request.messageId, request.message, request.now);
        else if (!stmt.messageExists.get(request.messageId)) throw notFound(request.messageId);
        return;
      case 'delete':
        stmt.deleteMessage.run(request.messageId);
        return;
    }
  }

  /**
   * Writes the batch in one transaction, each request in its own savepoint.
   * @param {(WriteRequest | MarkRequest)[]} batch
   * @returns {FromWriter}
   */
  function writeBatch(batch) {
    /** @type {WriteResult[]} */
    const results = [];
    // A durable request (MessageChange.durable) makes its whole batch commit with an fsync of the WAL, which also
    // makes every earlier commit of this connection durable.
    const syncThisBatch = opts.synchronous === 'normal' && batch.some((r) => r.op === 'update' && r.durable);
    if (syncThisBatch) db.pragma('synchronous = FULL');
    try {
      stmt.begin.run();
      for (const request of batch) {
        stmt.savepoint.run();
        try {
          apply(request);
          stmt.release.run();
          results.push({ id: request.id });
        } catch (err) {
          // SQLite rolled the whole transaction back itself: the requests before this one are gone too.
          if (!db.inTransaction) throw err;
          stmt.rollbackToSavepoint.run();
          stmt.release.run();
          results.push({ id: request.id, error: toWire(err) });
        }
      }
      const synced = db.pragma('synchronous', { simple: true }) === 2;
      stmt.commit.run();
      return { committed: true, results, synced, committedAt: Number(process.hrtime.bigint()) / 1e6 };
    } catch (err) {
      if (db.inTransaction) stmt.rollback.run();
      const error = toWire(err);
      return { committed: false, results: batch.map((r) => ({ id: r.id, error })) };
    } finally {
      if (syncThisBatch) db.pragma('synchronous = NORMAL');
    }
  }

  return { writeBatch, close: () => db.close() };
}

/** @returns {import('node:worker_threads').MessagePort} */
function storePort() {
  if (parentPort === null) throw new Error('sqlite-writer-thread.js runs as the worker thread of a SqliteMetaStore');
  return parentPort;
}

const port = storePort();
const options = /** @type {WriterOptions} */ (workerData);
const writer = openWriter(options);
const markPort = options.markPort;

/** @returns {ToWriter | undefined} */
function nextQueued() {
  return /** @type {{ message: ToWriter } | undefined} */ (receiveMessageOnPort(port))?.message;
}

/** The delivered marks waiting on markPort (behind `first`, the one an event handed over). */
function takeMarks(/** @type {MarkRequest[]} */ first = []) {
  const marks = [...first];
  for (let m = receiveMessageOnPort(markPort); m !== undefined; m = receiveMessageOnPort(markPort)) {
    marks.push(.../** @type {MarkRequest[]} */ (m.message));
  }
  return marks;
}

/** Commits the waiting delivered marks in one transaction; called before any other transaction begins. */
function commitMarks(/** @type {MarkRequest[]} */ first = []) {
  const marks = takeMarks(first);
  if (marks.length > 0) port.postMessage(writer.writeBatch(marks));
}

/**
 * Runs when requests arrive on an idle thread (the store posts the writes of one event-loop turn as one array),
 * and then takes, synchronously, every request that queued up meanwhile: while one batch is being committed the
 * next one collects in the port.
 * @param {ToWriter} first
 */
function onRequest(first) {
  /** @type {WriteRequest[]} */
  let batch = [];
  const flush = () => {
    commitMarks();
    if (batch.length > 0) port.postMessage(writer.writeBatch(batch));
    batch = [];
  };
  for (let next = /** @type {ToWriter | undefined} */ (first); next !== undefined; next = nextQueued()) {
    if (!Array.isArray(next)) {
      flush();
      writer.close();
      // With no listener left the ports let the thread end; the results posted above still reach the store.
      port.off('message', onRequest);
      markPort.close();
      return;
    }
    for (const req of next) {
      batch.push(req);
      if (batch.length === MAX_WRITES_PER_COMMIT) flush();
    }
  }
  flush();
}

port.on('message', onRequest);
markPort.on('message', commitMarks);
