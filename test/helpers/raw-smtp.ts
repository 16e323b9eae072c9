/**
 * A byte-exact SMTP client over a plain socket, for tests that must send what a well-behaved client library
 * never would (smuggling sequences, overlong lines, commands out of order) and read the server's exact replies.
 */
import { WireSmtp } from './smtp-wire.ts';

/**
 * WireSmtp whose write() may be left un-awaited (fire-and-forget bytes, as hostile-client tests send them): a write
 * to a connection the server already closed is not an error here.
 */
export class RawSmtp extends WireSmtp {
  override write(data: string | Buffer): Promise<void> {
    const done = super.write(data);
    done.catch(() => undefined);
    return done;
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
