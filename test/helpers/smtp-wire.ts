/**
 * Byte-level SMTP client (RawSmtp in raw-smtp.ts builds on it), able switch the same connection to TLS after
 * STARTTLS, and send very large payloads with backpressure (a 50 MB DATA must not be buffered in the test
 * process either, since the test measures that process's RSS). Also: read every reply until the server closes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

/** Splits one complete (possibly multi-line) SMTP reply off the front of `buffer`, if one is there. */
export function takeReply(buffer: string): { reply: string; rest: string } | undefined {
  const m = /^((?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n)/.exec(buffer);
  return m?.[1] ? { reply: m[1].trimEnd(), rest: buffer.slice(m[1].length) } : undefined;
}

export class WireSmtp {
  #socket: net.Socket | tls.TLSSocket;
  #buffer = '';
  #waiters: (() => void)[] = [];
  closed = false;

  /** Use connect(); public only so that subclasses inherit it. */
  constructor(socket: net.Socket) {
    this.#socket = socket;
    this.#attach(socket);
  }

  #attach(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (d: Buffer) => {
      this.#buffer += d.toString('latin1');
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  #wake(): void {
    this.#waiters.splice(0).forEach((w) => w());
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  static connect<T extends WireSmtp>(this: new (socket: net.Socket) => T, port: number, host = '127.0.0.1'): Promise<T> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, host, () => {
        s.off('error', reject);
        resolve(new this(s));
      });
      s.once('error', reject);
    });
  }

  get secure(): boolean {
    return this.#socket instanceof tls.TLSSocket;
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
      await this.#sleep(Math.min(left, 200));
    }
  }

  /** Every reply until the server closes the connection (hang guard: timeoutMs). */
  async repliesUntilClosed(timeoutMs = 15_000): Promise<string[]> {
    const out: string[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        out.push(await this.reply(Math.max(1, deadline - Date.now())));
      } catch (err) {
        if (this.closed && this.#buffer === '') return out;
        throw err;
      }
    }
  }

  /** Writes and resolves once the socket accepted more (backpressure): at most one chunk waits in memory. */
  write(data: string | Buffer): Promise<void> {
    const buf = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    return new Promise((resolve, reject) => {
      if (this.#socket.destroyed) return reject(new Error('socket destroyed'));
      if (this.#socket.write(buf)) return resolve();
      const onDrain = () => {
        this.#socket.off('close', onClose);
        resolve();
      };
      const onClose = () => {
        this.#socket.off('drain', onDrain);
        reject(new Error('connection closed while writing'));
      };
      this.#socket.once('drain', onDrain);
      this.#socket.once('close', onClose);
    });
  }

  async cmd(line: string): Promise<string> {
    await this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Greeting + EHLO. */
  async hello(name = 'client.example.net'): Promise<string> {
    await this.reply();
    return this.cmd(`EHLO ${name}`);
  }

  /** STARTTLS, then the TLS handshake on the same connection (certificate verified against `ca`). */
  async startTls(opts: { ca: Buffer; servername: string }): Promise<string> {
    const r = await this.cmd('STARTTLS');
    if (!r.startsWith('220')) throw new Error(`STARTTLS refused: ${r}`);
    const raw = this.#socket as net.Socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: raw, ca: opts.ca, servername: opts.servername }, () => resolve(s));
      s.once('error', reject);
    });
    this.#socket = secure;
    this.#attach(secure);
    return secure.getCipher().name;
  }

  async waitClosed(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await this.#sleep(200);
    }
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** A throwaway self-signed certificate for "localhost"/127.0.0.1 (openssl), valid one day. */
export function selfSignedCert(): { dir: string; cert: string; key: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  readFileSync(cert); // fails loudly if openssl wrote nothing
  return { dir, cert, key };
}
