/**
 * A small client of clamd's socket protocol (INSTREAM, PING, VERSION, RELOAD), over a unix socket or TCP.
 *
 * Why not the `clamscan` package (2.4.0): for an empty stream it sends the end-of-stream marker without the
 * `zINSTREAM` command (clamd answers `UNKNOWN COMMAND`), it resolves unknown replies such as that one or
 * `COMMAND READ TIMED OUT` as `isInfected: null` instead of failing, it cannot be aborted (no AbortSignal) and it
 * writes socket errors to console.error. Here every operation has a deadline and a signal, and every reply that is
 * not exactly OK or FOUND is an error, so the caller fails closed.
 *
 * Scans go over persistent sessions (clamd(8), IDSESSION): `zIDSESSION\0` once, then one `zINSTREAM\0` at a time on
 * the same connection; clamd prefixes each reply with the number of the request it answers ("3: stream: OK\0",
 * counting from 1) and ends the session on `zEND\0`. That saves the connect / accept / close of a connection per
 * scan on both ends: for a 1 KB stream about a tenth of clamd's CPU (its temporary file and scan set-up remain)
 * and over half of ours. Rules that keep a reused connection from ever producing a wrong verdict:
 *   - one command outstanding per session; a reply must carry exactly the number of that command;
 *   - a session that errors, times out, is aborted, gets a reply other than OK / FOUND (clamd closes the session
 *     after an ERROR reply anyway), a reply too long, bytes while idle or bytes after the reply is destroyed,
 *     never reused;
 *   - clamd ends a session on its own when it restarts, and after its ReadTimeout without a command, announced
 *     with an unnumbered "COMMAND READ TIMED OUT\n" (inside a session that timer also runs while a scan is in
 *     progress: ReadTimeout must be longer than timeoutMs). A scan sent on a *reused* session that dies before
 *     answering it (closed, or that announcement) is sent once more on a fresh connection, within the same
 *     deadline. Any other failure is SEKISHO_ERR_CLAMAV_UNAVAILABLE.
 * PING, VERSION and RELOAD (rare) use a connection of their own, as do scans beyond the session pool.
 */
import net from 'node:net';
import { SekishoError } from '../errors.ts';

export type ClamdEndpoint = { socket: string } | { host: string; port: number };

export interface ClamdScanResult {
  /** Signature names clamd reported (empty when clean). */
  found: string[];
}

export interface ClamdClientOptions {
  /**
   * Sessions (persistent connections) kept open for scans; default DEFAULT_SESSIONS. A scan that finds them all busy
   * uses a connection of its own, closed after its reply, so this bounds idle connections, not concurrency.
   */
  sessions?: number;
}

/** INSTREAM data is sent in chunks of this size; clamd accepts any chunk size, the total is capped by StreamMaxLength. */
const INSTREAM_CHUNK_BYTES = 1024 * 1024;
/** A reply longer than this is not clamd (a one-line verdict or STATS is a few hundred bytes): the connection is dropped. */
const MAX_REPLY_BYTES = 64 * 1024;
/** Sessions kept when the caller does not say: one message's raw scan and a few of its parts at once. */
const DEFAULT_SESSIONS = 4;
/**
 * A session unused for this long is ended (zEND). clamd ends idle sessions itself after its ReadTimeout (default
 * 120 s, Debian's clamd.conf 180 s); ending ours first avoids most of the races with that (the rest are retried)
 * and gives clamd its file descriptors back when mail stops. A gateway that scans a message every few seconds
 * keeps its sessions; a quiet one reconnects, which costs what every scan cost without sessions.
 */
const SESSION_IDLE_MS = 10_000;
/** What clamd writes (newline-terminated, unnumbered) before it closes a connection that sent nothing for ReadTimeout. */
const READ_TIMED_OUT = 'COMMAND READ TIMED OUT';
const NUL = 0x00;
const LF = 0x0a;

export function describeEndpoint(endpoint: ClamdEndpoint): string {
  return 'socket' in endpoint ? `unix:${endpoint.socket}` : `tcp:${endpoint.host}:${endpoint.port}`;
}

function connect(endpoint: ClamdEndpoint): net.Socket {
  return 'socket' in endpoint ? net.connect({ path: endpoint.socket }) : net.connect({ host: endpoint.host, port: endpoint.port });
}

/** `zINSTREAM\0`, the data in length-prefixed chunks, the zero-length end marker. */
function instreamFrames(data: Buffer): Buffer[] {
  const frames: Buffer[] = [Buffer.from('zINSTREAM\0')];
  for (let off = 0; off < data.length; off += INSTREAM_CHUNK_BYTES) {
    const chunk = data.subarray(off, off + INSTREAM_CHUNK_BYTES);
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(chunk.length, 0);
    frames.push(len, chunk);
  }
  frames.push(Buffer.alloc(4));
  return frames;
}

/** The verdict in an INSTREAM reply (without its session number), or null when it is neither OK nor FOUND. */
function parseStreamReply(reply: string): ClamdScanResult | null {
  if (reply === 'stream: OK') return { found: [] };
  const m = /^stream: (.+) FOUND$/.exec(reply);
  return m?.[1] ? { found: [m[1]] } : null;
}

/** A reused session died before answering: the command never ran, so it may be sent again on a fresh connection. */
class StaleSessionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StaleSessionError';
  }
}

type ErrorFactory = (message: string, cause?: unknown) => SekishoError;

interface PendingCommand {
  id: number;
  chunks: Buffer[];
  bytes: number;
  resolve(reply: string): void;
  reject(err: Error): void;
  cleanup(): void;
}

/** One IDSESSION connection. */
class ClamdSession {
  readonly #sock: net.Socket;
  readonly #timeoutMs: number;
  readonly #error: ErrorFactory;
  readonly #onGone: (session: ClamdSession) => void;
  #nextId = 1;
  #answered = 0;
  #pending: PendingCommand | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #gone = false;

  /** `onGone` is called once, synchronously, when the session can no longer be used. */
  constructor(endpoint: ClamdEndpoint, timeoutMs: number, error: ErrorFactory, onGone: (session: ClamdSession) => void) {
    this.#timeoutMs = timeoutMs;
    this.#error = error;
    this.#onGone = onGone;
    this.#sock = connect(endpoint);
    // Queued until connected; the first command follows in the same packet.
    this.#sock.write('zIDSESSION\0');
    this.#sock.on('data', (d: Buffer) => this.#onData(d));
    this.#sock.on('end', () => this.#onClosed('clamd closed the session'));
    this.#sock.on('error', (err) => this.#onClosed(err.message, err));
    this.#sock.on('close', () => this.#onClosed('connection closed'));
  }

  get usable(): boolean {
    return !this.#gone;
  }

  /** Sends one INSTREAM and resolves with clamd's reply without its session number. Rejects with SekishoError or StaleSessionError. */
  instream(frames: Buffer[], budgetMs: number, signal?: AbortSignal): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (this.#gone || this.#pending) return reject(this.#error('session not usable'));
      clearTimeout(this.#idleTimer);
      this.#sock.ref();
      const onAbort = () => this.#fail(this.#error('aborted', signal?.reason));
      const timer = setTimeout(() => this.#fail(this.#error(`no reply within ${this.#timeoutMs} ms`)), Math.max(0, budgetMs));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending = {
        id: this.#nextId++,
        chunks: [],
        bytes: 0,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      this.#sock.cork();
      for (const f of frames) this.#sock.write(f);
      this.#sock.uncork();
    });
  }

  /** Parks the session: it no longer keeps the process alive, and ends itself after SESSION_IDLE_MS. */
  idle(): void {
    this.#sock.unref();
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => this.end(), SESSION_IDLE_MS);
    this.#idleTimer.unref();
  }

  /** Ends an idle session politely (clamd closes its side on END). */
  end(): void {
    if (this.#gone) return;
    if (this.#pending) return this.destroy();
    this.#markGone();
    this.#sock.unref();
    this.#sock.end('zEND\0');
  }

  destroy(): void {
    const p = this.#settle();
    this.#markGone();
    this.#sock.destroy();
    p?.reject(this.#error('connection dropped'));
  }

  #markGone(): void {
    if (this.#gone) return;
    this.#gone = true;
    clearTimeout(this.#idleTimer);
    this.#onGone(this);
  }

  #settle(): PendingCommand | undefined {
    const p = this.#pending;
    this.#pending = undefined;
    p?.cleanup();
    return p;
  }

  #fail(err: Error): void {
    this.#settle()?.reject(err);
    this.destroy();
  }

  #onData(d: Buffer): void {
    const p = this.#pending;
    if (!p) {
      // Idle: nothing may come. clamd announcing its ReadTimeout ends here too.
      this.destroy();
      return;
    }
    p.chunks.push(d);
    p.bytes += d.length;
    if (p.bytes > MAX_REPLY_BYTES) return this.#fail(this.#error(`reply longer than ${MAX_REPLY_BYTES} bytes`));
    if (!d.includes(NUL) && !d.includes(LF)) return;
    const all = Buffer.concat(p.chunks);
    const nul = all.indexOf(NUL);
    const lf = all.indexOf(LF);
    const end = nul < 0 ? lf : lf < 0 ? nul : Math.min(nul, lf);
    const line = all.subarray(0, end).toString('utf8');
    if (end === lf) {
      // Replies to z-commands end with NUL; a newline-terminated line is clamd talking about the connection.
      const text = line.trim();
      return this.#fail(
        text === READ_TIMED_OUT && this.#answered > 0
          ? new StaleSessionError(`clamd had ended the idle session: ${text}`)
          : this.#error(`clamd ended the session: ${text}`),
      );
    }
    const m = /^(\d+): ([^]*)$/.exec(line);
    if (!m || Number(m[1]) !== p.id) return this.#fail(this.#error(`unexpected reply to request ${p.id} of the session: ${JSON.stringify(line)}`));
    this.#answered++;
    this.#settle()?.resolve((m[2] ?? '').trim());
    if (all.length > end + 1) this.destroy();
  }

  #onClosed(reason: string, cause?: unknown): void {
    const p = this.#pending;
    if (p) {
      // clamd may answer and close before it has read everything (e.g. "INSTREAM size limit exceeded"):
      // a reply that arrived wins over the write error that follows.
      if (p.bytes > 0) this.#fail(this.#error(`clamd could not scan: ${Buffer.concat(p.chunks).toString('utf8').replace(/\0[^]*$/, '').trim()}`));
      else if (this.#answered > 0) this.#fail(new StaleSessionError(`reused session closed before replying: ${reason}`, { cause }));
      else this.#fail(this.#error(reason, cause));
      return;
    }
    this.destroy();
  }
}

export class ClamdClient {
  readonly #endpoint: ClamdEndpoint;
  readonly #timeoutMs: number;
  readonly #maxSessions: number;
  /** Sessions waiting for a scan, most recently used last (reused first: the others may age out). */
  readonly #idle: ClamdSession[] = [];
  /** Sessions open, idle or busy. */
  #open = 0;
  #closed = false;

  /** `timeoutMs` bounds each operation (connect, send, clamd's scan, reply; for a scan, its one retry included). */
  constructor(endpoint: ClamdEndpoint, timeoutMs: number, options: ClamdClientOptions = {}) {
    this.#endpoint = endpoint;
    this.#timeoutMs = timeoutMs;
    this.#maxSessions = options.sessions ?? DEFAULT_SESSIONS;
  }

  get endpoint(): ClamdEndpoint {
    return this.#endpoint;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    const reply = await this.#exchange([Buffer.from('zPING\0')], this.#timeoutMs, signal);
    if (reply !== 'PONG') throw this.#error(`unexpected reply to PING: ${JSON.stringify(reply)}`);
  }

  async version(signal?: AbortSignal): Promise<string> {
    return this.#exchange([Buffer.from('zVERSION\0')], this.#timeoutMs, signal);
  }

  /** Asks clamd to reload its databases; it answers at once and loads in the background. */
  async reload(signal?: AbortSignal): Promise<void> {
    const reply = await this.#exchange([Buffer.from('zRELOAD\0')], this.#timeoutMs, signal);
    if (reply !== 'RELOADING') throw this.#error(`unexpected reply to RELOAD: ${JSON.stringify(reply)}`);
  }

  /** Streams `data` with INSTREAM. Throws SEKISHO_ERR_CLAMAV_UNAVAILABLE unless clamd answers OK or FOUND. */
  async scan(data: Buffer, signal?: AbortSignal): Promise<ClamdScanResult> {
    if (signal?.aborted) throw this.#error('aborted', signal.reason);
    const frames = instreamFrames(data);
    const deadline = performance.now() + this.#timeoutMs;
    const reused = this.#takeIdle();
    if (reused) {
      try {
        return await this.#onSession(reused, frames, deadline, signal);
      } catch (err) {
        if (!(err instanceof StaleSessionError)) throw err;
        if (signal?.aborted) throw this.#error('aborted', signal.reason);
        // The session had died while idle: the scan was never run. Once more, on a fresh connection.
      }
    }
    if (!this.#closed && this.#open < this.#maxSessions) return this.#onSession(this.#openSession(), frames, deadline, signal);
    const reply = await this.#exchange(frames, deadline - performance.now(), signal);
    const result = parseStreamReply(reply);
    if (!result) throw this.#error(`clamd could not scan: ${reply}`);
    return result;
  }

  /** Ends the idle sessions; busy ones end when their scan is done. Later scans use one connection each. */
  close(): void {
    this.#closed = true;
    for (const s of this.#idle.splice(0)) s.end();
  }

  #takeIdle(): ClamdSession | undefined {
    for (let s = this.#idle.pop(); s; s = this.#idle.pop()) if (s.usable) return s;
    return undefined;
  }

  #openSession(): ClamdSession {
    this.#open++;
    return new ClamdSession(this.#endpoint, this.#timeoutMs, (message, cause) => this.#error(message, cause), (gone) => {
      this.#open--;
      const i = this.#idle.indexOf(gone);
      if (i >= 0) this.#idle.splice(i, 1);
    });
  }

  async #onSession(session: ClamdSession, frames: Buffer[], deadline: number, signal?: AbortSignal): Promise<ClamdScanResult> {
    const reply = await session.instream(frames, deadline - performance.now(), signal);
    const result = parseStreamReply(reply);
    if (!result) {
      session.destroy();
      throw this.#error(`clamd could not scan: ${reply}`);
    }
    if (!session.usable) return result;
    if (this.#closed) {
      session.end();
    } else {
      session.idle();
      this.#idle.push(session);
    }
    return result;
  }

  #error(message: string, cause?: unknown): SekishoError {
    return new SekishoError('SEKISHO_ERR_CLAMAV_UNAVAILABLE', `${describeEndpoint(this.#endpoint)}: ${message}`, { cause });
  }

  /** Sends one z-command (with its payload) on a fresh connection and returns the NUL-terminated reply. */
  #exchange(frames: Buffer[], budgetMs: number, signal?: AbortSignal): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (signal?.aborted) return reject(this.#error('aborted', signal.reason));
      const sock = connect(this.#endpoint);
      const chunks: Buffer[] = [];
      let replyBytes = 0;
      let settled = false;
      const finish = (err: Error | null, reply?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        sock.destroy();
        if (err) reject(err);
        else resolve(reply ?? '');
      };
      const replyText = () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const nul = text.indexOf('\0');
        return (nul < 0 ? text : text.slice(0, nul)).trim();
      };
      const onAbort = () => finish(this.#error('aborted', signal?.reason));
      const timer = setTimeout(() => finish(this.#error(`no reply within ${this.#timeoutMs} ms`)), Math.max(0, budgetMs));
      signal?.addEventListener('abort', onAbort, { once: true });

      sock.on('connect', () => {
        sock.cork();
        for (const f of frames) sock.write(f);
        sock.uncork();
      });
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        replyBytes += d.length;
        if (replyBytes > MAX_REPLY_BYTES) return finish(this.#error(`reply longer than ${MAX_REPLY_BYTES} bytes`));
        if (d.includes(0)) finish(null, replyText());
      });
      // clamd may answer and close before it has read everything (e.g. "INSTREAM size limit exceeded"):
      // a reply that arrived wins over the write error that follows.
      sock.on('error', (err) => (replyBytes > 0 ? finish(null, replyText()) : finish(this.#error(err.message, err))));
      sock.on('end', () => (replyBytes > 0 ? finish(null, replyText()) : finish(this.#error('connection closed without a reply'))));
    });
  }
}
