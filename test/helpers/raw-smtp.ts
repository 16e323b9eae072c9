/**
 * A byte-exact SMTP client over a plain socket, for tests that must send what a well-behaved client library
 * never would (smuggling sequences, overlong lines, commands out of order) and read the server's exact replies.
 */
import net from 'node:net';

/** Splits one complete (possibly multi-line) SMTP reply off the front of `buffer`, if one is there. */
export function takeReply(buffer: string): { reply: string; rest: string } | undefined {
  const m = /^((?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n)/.exec(buffer);
  return m?.[1] ? { reply: m[1].trimEnd(), rest: buffer.slice(m[1].length) } : undefined;
}

export class RawSmtp {
  #socket: net.Socket;
  #buffer = '';
  #waiters: (() => void)[] = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buffer += d.toString('latin1');
      this.#waiters.splice(0).forEach((w) => w());
    });
    socket.on('close', () => {
      this.closed = true;
      this.#waiters.splice(0).forEach((w) => w());
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => resolve(new RawSmtp(s)));
      s.once('error', reject);
    });
  }

  /** Reads one complete (possibly multi-line) reply; rejects on close or after timeoutMs (a hang guard). */
  async reply(timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const taken = takeReply(this.#buffer);
      if (taken) {
        this.#buffer = taken.rest;
        return taken.reply;
      }
      if (this.closed) throw new Error(`connection closed; unread: ${JSON.stringify(this.#buffer)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms; buffer: ${JSON.stringify(this.#buffer)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  write(data: string | Buffer): void {
    this.#socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Sends a command line (CRLF added) and returns its reply. */
  async cmd(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Greeting + EHLO. */
  async hello(name = 'client.example.net'): Promise<string> {
    await this.reply();
    return this.cmd(`EHLO ${name}`);
  }

  /** Resolves when the server closed the connection. */
  async waitClosed(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Sends one message in one session; returns the reply to the final dot (or the first refusal). */
export async function sendRaw(port: number, from: string, to: string[], message: Buffer | string): Promise<string> {
  const c = await RawSmtp.connect(port);
  try {
    await c.hello();
    let r = await c.cmd(`MAIL FROM:<${from}>`);
    if (!r.startsWith('250')) return r;
    let accepted = 0;
    for (const rcpt of to) {
      r = await c.cmd(`RCPT TO:<${rcpt}>`);
      if (r.startsWith('250')) accepted++;
    }
    if (!accepted) return r;
    r = await c.cmd('DATA');
    if (!r.startsWith('354')) return r;
    const body = typeof message === 'string' ? Buffer.from(message, 'latin1') : message;
    // Dot-stuffing: a line starting with "." gets another one.
    const stuffed = Buffer.from(body.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
    c.write(stuffed);
    c.write(body.subarray(-2).toString() === '\r\n' ? '.\r\n' : '\r\n.\r\n');
    const final = await c.reply();
    await c.cmd('QUIT').catch(() => '');
    return final;
  } finally {
    c.close();
  }
}

/** A small RFC 5322 message with CRLF line ends. */
export function simpleMessage(opts: { from?: string; to?: string; subject?: string; body?: string; extraHeaders?: string[] } = {}): string {
  const lines = [
    `From: ${opts.from ?? 'sender@example.net'}`,
    `To: ${opts.to ?? 'user@city-a.example.lg.jp'}`,
    `Subject: ${opts.subject ?? 'test'}`,
    'Date: Wed, 25 Nov 2026 10:00:00 +0900',
    `Message-ID: <${Math.random().toString(36).slice(2)}@example.net>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    ...(opts.extraHeaders ?? []),
    '',
    opts.body ?? 'hello',
    '',
  ];
  return lines.join('\r\n');
}
