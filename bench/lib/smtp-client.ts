/**
 * A minimal SMTP client on a raw socket, for load generation: one reply at a time, no pipelining, no TLS, no
 * dot-stuffing (bench messages never have a line starting with "."). Kept small so that the generator spends
 * its CPU on the wire, not in a mail library, when it shares a 2-core machine with the system under test.
 */
import net from 'node:net';

export interface Reply {
  code: number;
  text: string;
}

/** A reply with an unexpected code, or a broken/timed-out connection. */
export class SmtpError extends Error {
  readonly code: number | null;
  constructor(message: string, code: number | null = null) {
    super(message);
    this.name = 'SmtpError';
    this.code = code;
  }
}

/** A reply longer than this (all lines) means a broken peer, not a mail server. */
const maxReplyBytes = 64 * 1024;

const terminator = Buffer.from('.\r\n', 'latin1');

export class SmtpClient {
  readonly #socket: net.Socket;
  #buffer = '';
  #lines: string[] = [];
  readonly #replies: Reply[] = [];
  #waiter: { resolve: (r: Reply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
  #error: Error | null = null;
  /** Messages accepted on this connection. */
  sent = 0;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('error', (err) => this.#fail(new SmtpError(`socket: ${err.message}`)));
    socket.on('close', () => this.#fail(new SmtpError('connection closed by the server')));
  }

  /** Connects, reads the greeting and says EHLO; throws SmtpError on anything but 220 and 250. */
  static async open(port: number, timeoutMs: number, helo = 'bench-client.localdomain'): Promise<SmtpClient> {
    const socket = net.connect({ host: '127.0.0.1', port });
    const client = new SmtpClient(socket);
    try {
      await client.expect(await client.reply(timeoutMs), 220, 'greeting');
      await client.expect(await client.command(`EHLO ${helo}`, timeoutMs), 250, 'EHLO');
    } catch (err) {
      client.destroy();
      throw err;
    }
    return client;
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    if (this.#buffer.length > maxReplyBytes) {
      this.#fail(new SmtpError('reply too long'));
      this.#socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, nl).replace(/\r$/, '');
      this.#buffer = this.#buffer.slice(nl + 1);
      this.#lines.push(line);
      if (/^\d{3}(?: |$)/.test(line)) {
        const reply = { code: Number(line.slice(0, 3)), text: this.#lines.join(' | ') };
        this.#lines = [];
        const waiter = this.#waiter;
        this.#waiter = null;
        if (waiter) {
          clearTimeout(waiter.timer);
          waiter.resolve(reply);
        } else {
          this.#replies.push(reply);
        }
      }
    }
  }

  #fail(err: Error): void {
    if (this.#error) return;
    this.#error = err;
    const waiter = this.#waiter;
    this.#waiter = null;
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.reject(err);
    }
  }

  /** The next reply, within `timeoutMs`. */
  reply(timeoutMs: number): Promise<Reply> {
    const queued = this.#replies.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        const err = new SmtpError(`no reply within ${timeoutMs} ms`);
        this.#fail(err);
        this.#socket.destroy();
        reject(err);
      }, timeoutMs);
      this.#waiter = { resolve, reject, timer };
    });
  }

  command(line: string, timeoutMs: number): Promise<Reply> {
    if (this.#error) return Promise.reject(this.#error);
    this.#socket.write(`${line}\r\n`);
    return this.reply(timeoutMs);
  }

  expect(reply: Reply, code: number, what: string): Reply {
    if (reply.code !== code) throw new SmtpError(`${what}: ${reply.text}`, reply.code);
    return reply;
  }

  /** Writes the message bytes and the terminating ".", honouring back-pressure; resolves when all is handed off. */
  async writeData(chunks: Iterable<Buffer>): Promise<void> {
    for (const chunk of chunks) {
      if (this.#error) throw this.#error;
      if (!this.#socket.write(chunk)) await this.#drain();
    }
    if (!this.#socket.write(terminator)) await this.#drain();
  }

  #drain(): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        this.#socket.off('drain', onDrain);
        this.#socket.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(this.#error ?? new SmtpError('connection closed while sending'));
      this.#socket.on('drain', onDrain);
      this.#socket.on('close', onClose);
    });
  }

  /** MAIL, RCPT, DATA, the message, and the final reply. Returns the final (2xx) reply. */
  async sendMail(from: string, rcpt: string, chunks: Iterable<Buffer>, timeoutMs: number, dataTimeoutMs: number) {
    this.expect(await this.command(`MAIL FROM:<${from}>`, timeoutMs), 250, 'MAIL FROM');
    this.expect(await this.command(`RCPT TO:<${rcpt}>`, timeoutMs), 250, 'RCPT TO');
    this.expect(await this.command('DATA', timeoutMs), 354, 'DATA');
    await this.writeData(chunks);
    const final = this.expect(await this.reply(dataTimeoutMs), 250, 'end of DATA');
    this.sent += 1;
    return final;
  }

  async reset(timeoutMs: number): Promise<void> {
    this.expect(await this.command('RSET', timeoutMs), 250, 'RSET');
  }

  /** Says QUIT and waits (briefly) for 221, then closes. Never throws. */
  async quit(timeoutMs: number): Promise<void> {
    try {
      if (!this.#error) await this.command('QUIT', timeoutMs);
    } catch {
      // the server may close first; that is fine
    }
    this.destroy();
  }

  destroy(): void {
    this.#fail(new SmtpError('closed by the client'));
    this.#socket.destroy();
  }
}
