/**
 * The SMTP ingress (upstream MX side). Thin on purpose: envelope checks (tenant domains only — never an open
 * relay), connection limits, and a DATA path that streams into the spool and answers 250 only after the message,
 * its metadata row and its queue job are all durable. It never parses the message body (DESIGN §6: untrusted
 * bytes are parsed in workers only); it reads at most the first HEADER_PEEK_BYTES to note Message-ID and Subject.
 */
import type { Socket } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';
import type { Logger } from 'pino';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { socketTimeout } from 'smtp-server/lib/smtp-connection.js';
import { readFileSync } from 'node:fs';
import type { Metrics } from '../metrics.ts';
import type { Config } from '../config/schema.ts';
import type { TenantIndex } from '../config/tenants.ts';
import type { Pipeline } from '../queue/pipeline.ts';
import type { MessageStore } from '../spool/message-store.ts';
import { SizeLimitError } from '../spool/message-store.ts';
import type { MetaStore } from '../spool/meta-store.ts';
import { newMessageId } from '../spool/message-id.ts';
import { receivedHeader } from './received.ts';
import { type Bound, listenOn } from '../listen.ts';
import { endWithReply, limitBadCommands, replies, useCatalogueEnhancedCodes } from './replies.ts';
import { ConnectionLimiter } from './connection-limiter.ts';
import { greetPauseOption, useConfigurableGreetPause } from './greet-pause.ts';

/** Bytes of the header section the ingress looks at for Message-ID and Subject (operators' search fields). */
const HEADER_PEEK_BYTES = 64 * 1024;
/** After the verdict wait times out and the worker won the claim race, its result is at most this far away. */
const CLAIM_RACE_WAIT_MS = 5_000;
/** Longest Subject/Message-ID kept in the metadata row. */
const MAX_HEADER_FIELD_CHARS = 998;
/** Line feed: a DATA chunk that contains one completed a line (bare LFs included). */
const LF = 0x0a;
/**
 * A "record" of DATA for the per-record deadline: a line, or this many bytes of an overlong one (Postfix's
 * line_length_limit), so that a message with a multi-megabyte line (broken, but real) from a slow sender is not cut
 * off while its bytes keep flowing.
 */
const DATA_RECORD_BYTES = 2048;

export interface IngressDeps {
  config: Config;
  tenants: TenantIndex;
  store: MessageStore;
  meta: MetaStore;
  pipeline: Pick<Pipeline, 'enqueueScan' | 'waitForScan' | 'claimSession'>;
  log: Logger;
  metrics: Metrics;
  /**
   * Connections come from the main process (src/smtp/ingress-dispatcher.ts, smtp.ingressProcesses > 1) through
   * `connect()`, which has applied the connection limits already; this ingress does not listen.
   */
  external?: boolean;
}

interface SessionState {
  log: Logger;
  recipients: Map<string, string>; // address → tenant id
}

/** Keeps a copy of the first bytes that pass through. */
class HeadPeek extends Transform {
  readonly chunks: Buffer[] = [];
  #kept = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#kept < HEADER_PEEK_BYTES) {
      const part = chunk.subarray(0, HEADER_PEEK_BYTES - this.#kept);
      this.chunks.push(Buffer.from(part));
      this.#kept += part.length;
    }
    cb(null, chunk);
  }
}

function headerField(head: Buffer, name: string): string | null {
  const text = head.toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const block = end < 0 ? text : text.slice(0, end);
  const m = new RegExp(`^${name}:[ \\t]*((?:.*)(?:\\r?\\n[ \\t].*)*)`, 'im').exec(block);
  if (!m?.[1]) return null;
  return Buffer.from(m[1].replace(/\r?\n[ \t]+/g, ' ').trim(), 'latin1').toString('utf8').slice(0, MAX_HEADER_FIELD_CHARS);
}

/** A stream that emits `prefix` and then everything `source` emits; errors of `source` propagate. */
function prefixed(prefix: Buffer, source: NodeJS.ReadableStream, peek: HeadPeek): HeadPeek {
  peek.write(prefix);
  source.on('error', (err) => peek.destroy(err as Error));
  source.pipe(peek);
  return peek;
}

/**
 * The per-record deadline of DATA (as Postfix's smtpd_per_record_deadline): every line of the message (or every
 * DATA_RECORD_BYTES of an overlong one) must arrive within `timeoutMs`. smtp-server's idle timeout is reset by every
 * byte, so without this a slowloris client trickling a byte every few seconds would hold its connection, a temp
 * file and a slot of smtp.maxConnectionsPerIp for as long as it likes. Ordinary mail sends a line in microseconds.
 * Time during which the client is held back by us (the spool not reading: backpressure) does not count.
 * `onExpired` runs at most once.
 */
function watchDataRecords(stream: SMTPServerDataStream, timeoutMs: number, onExpired: () => void): void {
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (stream.writableNeedDrain || stream.readableLength > 0) return arm(); // waiting for us, not the client
      stop();
      onExpired();
    }, timeoutMs);
    timer.unref();
  };
  let bytes = 0;
  const onData = (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes >= DATA_RECORD_BYTES || chunk.includes(LF)) {
      bytes = 0;
      arm();
    }
  };
  const stop = () => {
    clearTimeout(timer);
    stream.off('data', onData);
  };
  stream.on('data', onData);
  stream.once('end', stop);
  stream.once('close', stop);
  arm();
}

export class Ingress {
  readonly #deps: IngressDeps;
  readonly #server: SMTPServer;
  readonly #limiter: ConnectionLimiter | undefined;
  readonly #sessions = new Map<string, SessionState>();
  #closing = false;

  constructor(deps: IngressDeps) {
    useCatalogueEnhancedCodes();
    useConfigurableGreetPause();
    this.#deps = deps;
    const { smtp, hostname } = deps.config;
    this.#limiter = deps.external
      ? undefined
      : new ConnectionLimiter({ maxPerIp: smtp.maxConnectionsPerIp, ratePerIpPerMinute: smtp.connectionRatePerIpPerMinute });
    this.#server = new SMTPServer({
      name: hostname,
      banner: 'Sekisho ESMTP',
      size: smtp.maxMessageBytes,
      maxRecipients: smtp.maxRecipients,
      maxClients: smtp.maxConnections,
      socketTimeout: smtp.socketTimeoutMs,
      closeTimeout: smtp.closeTimeoutMs,
      disableReverseLookup: !smtp.reverseLookup,
      authOptional: true,
      disabledCommands: smtp.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      hideSize: false,
      hide8BITMIME: false,
      hideSMTPUTF8: false,
      hidePIPELINING: false,
      useXClient: false,
      useXForward: false,
      logger: false,
      ...greetPauseOption(smtp.greetPauseMs),
      ...(smtp.tls ? { key: readFileSync(smtp.tls.key), cert: readFileSync(smtp.tls.cert) } : {}),
      onConnect: (session, cb) => this.#onConnect(session, cb),
      onMailFrom: (_address, session, cb) => {
        this.#state(session).recipients.clear();
        cb();
      },
      onRcptTo: (address, session, cb) => this.#onRcptTo(address.address, session, cb),
      onData: (stream, session, cb) => {
        this.#onData(stream, session).then(
          (text) => cb(null, text),
          (err: Error) => cb(err),
        );
      },
      onClose: (session) => this.#onClose(session),
    });
    this.#server.on('error', (err) => deps.log.warn({ err }, 'smtp server error'));
    limitBadCommands(this.#server, {
      max: smtp.maxBadCommands,
      maxJunk: smtp.maxJunkCommands,
      onExceeded: (sessionId) => {
        this.#reject('bad-commands');
        deps.log.info({ cid: sessionId, limit: smtp.maxBadCommands }, 'too many bad commands; closing connection');
      },
    });
  }

  /** Sends `reply` (a 421) on the connection of `sessionId`, which makes smtp-server close it. */
  #closeSession(sessionId: string, r: { responseCode: number; message: string }): void {
    for (const conn of this.#server.connections) {
      if (conn.id === sessionId) return conn.send(r.responseCode, r.message);
    }
  }

  #state(session: SMTPServerSession): SessionState {
    let s = this.#sessions.get(session.id);
    if (!s) {
      s = { log: this.#deps.log.child({ cid: session.id }), recipients: new Map() };
      this.#sessions.set(session.id, s);
    }
    return s;
  }

  #reject(reason: string): void {
    this.#deps.metrics.smtpRejected.inc({ reason });
  }

  #onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    if (this.#closing) return cb(replies.shuttingDown());
    const refusal = this.#limiter?.admit(session.id, session.remoteAddress);
    if (refusal) {
      this.#reject(refusal);
      this.#deps.log.info({ cid: session.id, ip: session.remoteAddress, reason: refusal }, 'connection refused');
      return cb(refusal === 'ip-concurrency' ? replies.tooManyConnectionsFromIp() : replies.connectionRateExceeded());
    }
    this.#state(session).log.debug({ ip: session.remoteAddress }, 'connect');
    cb();
  }

  #onRcptTo(address: string, session: SMTPServerSession, cb: (err?: Error | null) => void): void {
    const tenant = this.#deps.tenants.forAddress(address);
    const st = this.#state(session);
    if (!tenant) {
      this.#reject('relay-denied');
      st.log.info({ rcpt: address, ip: session.remoteAddress }, 'relay denied');
      return cb(replies.relayDenied(address));
    }
    st.recipients.set(address, tenant.id);
    cb();
  }

  #onClose(session: SMTPServerSession): void {
    this.#limiter?.release(session.id);
    this.#sessions.delete(session.id);
  }

  async #onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const { config, store, meta, pipeline, metrics } = this.#deps;
    const started = performance.now();
    const st = this.#state(session);
    const mid = newMessageId();
    const log = st.log.child({ mid });
    const rcpts = session.envelope.rcptTo.map((r) => r.address);
    const recipients = rcpts.map((address) => ({ address, tenantId: st.recipients.get(address) ?? '' }));
    if (recipients.some((r) => !r.tenantId)) {
      // Cannot happen through onRcptTo; refuse rather than guess a route.
      stream.resume();
      this.#reject('no-route');
      throw replies.localError();
    }
    const tlsCipher = session.secure ? ((session as { tlsOptions?: { name?: string } }).tlsOptions?.name ?? 'TLS') : null;
    const header = receivedHeader({
      heloName: session.hostNameAppearsAs || 'unknown',
      clientHostname: config.smtp.reverseLookup ? session.clientHostname : null,
      clientIp: session.remoteAddress,
      byHost: config.hostname,
      protocol: (session.transmissionType as 'ESMTP') || 'ESMTP',
      queueId: mid,
      tlsCipher,
      recipient: rcpts.length === 1 ? (rcpts[0] ?? null) : null,
      date: new Date(),
    });
    // The client vanished, or was cut off, in the middle of DATA: smtp-server then fails the stream.
    let clientGone = false;
    stream.once('error', () => {
      clientGone = true;
    });
    const peek = prefixed(Buffer.from(header, 'latin1'), stream, new HeadPeek());
    // The same value smtp-server's idle timeout uses (0 there means its default).
    const lineTimeoutMs = socketTimeout({ socketTimeout: config.smtp.socketTimeoutMs });
    watchDataRecords(stream, lineTimeoutMs, () => {
      this.#reject('data-timeout');
      log.info({ timeoutMs: lineTimeoutMs, bytes: stream.byteLength }, 'DATA line not completed in time; closing connection');
      this.#closeSession(session.id, replies.dataLineTimeout());
    });

    let written: { size: number; sha256: string };
    try {
      written = await store.write(mid, peek, { maxBytes: config.smtp.maxMessageBytes + Buffer.byteLength(header) });
    } catch (err) {
      stream.resume();
      if (err instanceof SizeLimitError || stream.sizeExceeded) {
        this.#reject('size');
        log.info({ limit: config.smtp.maxMessageBytes }, 'message too big');
        throw replies.messageTooBig(config.smtp.maxMessageBytes);
      }
      if (clientGone) {
        // Not a spool failure (operators alert on those): store.write removed its temp file, and nobody is left
        // to read a reply.
        log.info({ err }, 'connection lost during DATA; nothing kept');
        throw replies.localError();
      }
      this.#reject('spool-error');
      log.error({ err }, 'spool write failed; answering 451');
      throw replies.localError();
    }
    if (stream.sizeExceeded) {
      await store.delete(mid).catch(() => undefined);
      this.#reject('size');
      throw replies.messageTooBig(config.smtp.maxMessageBytes);
    }

    const head = Buffer.concat(peek.chunks);
    try {
      await meta.insertMessage({
        id: mid,
        origin: 'smtp',
        receivedAt: Date.now(),
        mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        clientIp: session.remoteAddress,
        helo: session.hostNameAppearsAs || '',
        tls: tlsCipher,
        size: written.size,
        sha256: written.sha256,
        headerMessageId: headerField(head.subarray(header.length), 'message-id'),
        subject: headerField(head.subarray(header.length), 'subject'),
        recipients,
      });
    } catch (err) {
      await store.delete(mid).catch(() => undefined);
      this.#reject('meta-error');
      log.error({ err }, 'metadata insert failed; answering 451');
      throw replies.localError();
    }

    const waitMs = config.smtp.verdictWaitMs;
    let job;
    try {
      job = await pipeline.enqueueScan(mid, waitMs > 0 ? Date.now() + waitMs : 0);
    } catch (err) {
      await meta.deleteMessage(mid).catch(() => undefined);
      await store.delete(mid).catch(() => undefined);
      this.#reject('queue-error');
      log.error({ err }, 'enqueue failed; answering 451');
      throw replies.localError();
    }

    if (waitMs > 0) {
      let result = await pipeline.waitForScan(job, waitMs);
      if (!result) {
        let claimed: boolean;
        try {
          claimed = await pipeline.claimSession(mid, 'ingress');
        } catch (err) {
          // We cannot tell the worker that we answer 250, so it might still reject and drop the message: make
          // the client retry instead (at worst a duplicate, never a loss).
          log.error({ err }, 'in-session claim failed; answering 451');
          this.#reject('queue-error');
          throw replies.localError();
        }
        if (!claimed) result = await pipeline.waitForScan(job, CLAIM_RACE_WAIT_MS);
      }
      if (result?.outcome === 'rejected') {
        this.#reject('policy');
        log.info({ reply: result.reply }, 'message rejected in session');
        throw replies.rejectedByPolicy(result.reply);
      }
    }

    metrics.received.inc();
    metrics.stageSeconds.observe({ stage: 'ingress' }, (performance.now() - started) / 1000);
    log.info(
      { from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', rcpt: rcpts.length, size: written.size, ip: session.remoteAddress },
      'message accepted',
    );
    return replies.queued(mid);
  }

  listen(): Promise<Bound> {
    return listenOn(this.#server.server, this.#deps.config.smtp.listen);
  }

  /** Runs the SMTP session of a connection the main process accepted (`external`); resolves when it closes. */
  connect(socket: Socket): Promise<void> {
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    if (this.#closing) endWithReply(socket, replies.shuttingDown());
    else this.#server.connect(socket, {});
    return closed;
  }

  /** Stops accepting connections; open sessions may finish within smtp.closeTimeoutMs, then get 421. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#limiter?.stop();
    if (!this.#deps.external) return new Promise((resolve) => this.#server.close(() => resolve()));
    // Nothing listens here, so smtp-server's close() would return at once: wait for the sessions as it does.
    const deadline = Date.now() + this.#deps.config.smtp.closeTimeoutMs;
    while (this.#server.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const conn of this.#server.connections) {
      conn.send(421, replies.shuttingDown().message);
      conn.close();
    }
  }
}
