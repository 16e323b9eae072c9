/**
 * A real SMTP server on an OS-chosen loopback port standing in for a municipality's mail server (or the
 * outbound relay). Records every accepted message; its answers can be scripted per RCPT and per DATA.
 */
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export interface SinkMessage {
  from: string;
  to: string[];
  raw: Buffer;
  at: number;
}

export interface SinkReply {
  code: number;
  text: string;
}

export interface SinkBehaviour {
  /** Return a reply to refuse a recipient. */
  rcpt?: (address: string) => SinkReply | undefined;
  /** Return a reply to refuse a message after DATA. */
  data?: (msg: SinkMessage) => SinkReply | undefined;
  /** Called once the whole message arrived, before the reply; may delay the reply. */
  beforeReply?: (msg: SinkMessage, session: SMTPServerSession) => Promise<void>;
  /** Return true to close the connection after DATA without any reply (the message is not recorded). */
  drop?: (msg: SinkMessage) => boolean;
}

/** smtp-server's own list of open connections (not in its types): the drop behaviour closes one. */
interface ServerConnections {
  connections: Set<{ session: SMTPServerSession; _socket: { destroy(): void } }>;
}

export interface SmtpSinkOptions {
  /** How long close() lets open connections finish before it drops them (smtp-server's closeTimeout). */
  closeTimeoutMs?: number;
}

export class SmtpSink {
  readonly messages: SinkMessage[] = [];
  behaviour: SinkBehaviour = {};
  #server: SMTPServer;
  #waiters: (() => void)[] = [];
  readonly #closed = new Set<string>();
  /** Connection errors (a client that reset its connection, e.g. a killed worker): kept, never thrown. */
  readonly errors: Error[] = [];
  port = 0;

  constructor(opts: SmtpSinkOptions = {}) {
    this.#server = new SMTPServer({
      ...(opts.closeTimeoutMs !== undefined && { closeTimeout: opts.closeTimeoutMs }),
      authOptional: true,
      disabledCommands: ['AUTH', 'STARTTLS'],
      disableReverseLookup: true,
      logger: false,
      size: 100 * 1024 * 1024,
      onClose: (session) => {
        this.#closed.add(session.id);
      },
      onRcptTo: (addr, _s, cb) => {
        const r = this.behaviour.rcpt?.(addr.address);
        cb(r ? Object.assign(new Error(r.text), { responseCode: r.code }) : undefined);
      },
      onData: (stream, session, cb) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const msg: SinkMessage = {
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks),
            at: Date.now(),
          };
          if (this.behaviour.drop?.(msg)) {
            const conns = (this.#server as unknown as ServerConnections).connections;
            for (const c of conns) if (c.session === session) c._socket.destroy();
            return;
          }
          const finish = () => {
            // A client that vanished before our reply never learnt of the acceptance: like an MTA that only
            // commits when it can answer, such a transaction does not count as delivered.
            if (this.#closed.has(session.id)) return cb(new Error('client gone'));
            const r = this.behaviour.data?.(msg);
            if (r) return cb(Object.assign(new Error(r.text), { responseCode: r.code }));
            this.messages.push(msg);
            this.#waiters.splice(0).forEach((w) => w());
            cb(null, 'ok');
          };
          const hook = this.behaviour.beforeReply;
          if (hook) hook(msg, session).then(finish, finish);
          else finish();
        });
      },
    });
  }

  /** Listens on `port` (default: one the OS chooses). */
  async start(port = 0): Promise<this> {
    this.#server.on('error', (err: Error) => this.errors.push(err));
    await new Promise<void>((resolve) => this.#server.listen(port, '127.0.0.1', () => resolve()));
    const addr = this.#server.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
    return this;
  }

  get url(): string {
    return `smtp://127.0.0.1:${this.port}`;
  }

  /** Resolves once at least `n` messages were accepted; rejects after `timeoutMs` (a hang guard, not a speed test). */
  async waitFor(n: number, timeoutMs = 30_000): Promise<SinkMessage[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`sink has ${this.messages.length} of ${n} messages after ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 500));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.messages;
  }

  /** Whether the SMTP session with this id has ended. */
  isClosed(sessionId: string): boolean {
    return this.#closed.has(sessionId);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
