/**
 * A small client of clamd's socket protocol (INSTREAM, PING, VERSION, RELOAD), over a unix socket or TCP.
 *
 * Why not the `clamscan` package (2.4.0): for an empty stream it sends the end-of-stream marker without the
 * `zINSTREAM` command (clamd answers `UNKNOWN COMMAND`), it resolves unknown replies such as that one or
 * `COMMAND READ TIMED OUT` as `isInfected: null` instead of failing, it cannot be aborted (no AbortSignal) and it
 * writes socket errors to console.error. Here every operation has a deadline and a signal, and every reply that is
 * not exactly OK or FOUND is an error, so the caller fails closed.
 */
import net from 'node:net';
import { SekishoError } from '../errors.ts';

export type ClamdEndpoint = { socket: string } | { host: string; port: number };

export interface ClamdScanResult {
  /** Signature names clamd reported (empty when clean). */
  found: string[];
}

/** INSTREAM data is sent in chunks of this size; clamd accepts any chunk size, the total is capped by StreamMaxLength. */
const INSTREAM_CHUNK_BYTES = 1024 * 1024;
/** A reply longer than this is not clamd (a one-line verdict or STATS is a few hundred bytes): the connection is dropped. */
const MAX_REPLY_BYTES = 64 * 1024;

export function describeEndpoint(endpoint: ClamdEndpoint): string {
  return 'socket' in endpoint ? `unix:${endpoint.socket}` : `tcp:${endpoint.host}:${endpoint.port}`;
}

export class ClamdClient {
  readonly #endpoint: ClamdEndpoint;
  readonly #timeoutMs: number;

  /** `timeoutMs` bounds each operation (connect, send, clamd's scan, reply). */
  constructor(endpoint: ClamdEndpoint, timeoutMs: number) {
    this.#endpoint = endpoint;
    this.#timeoutMs = timeoutMs;
  }

  get endpoint(): ClamdEndpoint {
    return this.#endpoint;
  }

  async ping(signal?: AbortSignal): Promise<void> {
    const reply = await this.#exchange([Buffer.from('zPING\0')], signal);
    if (reply !== 'PONG') throw this.#error(`unexpected reply to PING: ${JSON.stringify(reply)}`);
  }

  async version(signal?: AbortSignal): Promise<string> {
    return this.#exchange([Buffer.from('zVERSION\0')], signal);
  }

  /** Asks clamd to reload its databases; it answers at once and loads in the background. */
  async reload(signal?: AbortSignal): Promise<void> {
    const reply = await this.#exchange([Buffer.from('zRELOAD\0')], signal);
    if (reply !== 'RELOADING') throw this.#error(`unexpected reply to RELOAD: ${JSON.stringify(reply)}`);
  }

  /** Streams `data` with INSTREAM. Throws SEKISHO_ERR_CLAMAV_UNAVAILABLE unless clamd answers OK or FOUND. */
  async scan(data: Buffer, signal?: AbortSignal): Promise<ClamdScanResult> {
    const frames: Buffer[] = [Buffer.from('zINSTREAM\0')];
    for (let off = 0; off < data.length; off += INSTREAM_CHUNK_BYTES) {
      const chunk = data.subarray(off, off + INSTREAM_CHUNK_BYTES);
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(chunk.length, 0);
      frames.push(len, chunk);
    }
    frames.push(Buffer.alloc(4));
    const reply = await this.#exchange(frames, signal);
    if (reply === 'stream: OK') return { found: [] };
    const m = /^stream: (.+) FOUND$/.exec(reply);
    if (m?.[1]) return { found: [m[1]] };
    throw this.#error(`clamd could not scan: ${reply}`);
  }

  #error(message: string, cause?: unknown): SekishoError {
    return new SekishoError('SEKISHO_ERR_CLAMAV_UNAVAILABLE', `${describeEndpoint(this.#endpoint)}: ${message}`, { cause });
  }

  /** Sends one z-command (with its payload) on a fresh connection and returns the NUL-terminated reply. */
  #exchange(frames: Buffer[], signal?: AbortSignal): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (signal?.aborted) return reject(this.#error('aborted', signal.reason));
      const sock =
        'socket' in this.#endpoint
          ? net.connect({ path: this.#endpoint.socket })
          : net.connect({ host: this.#endpoint.host, port: this.#endpoint.port });
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
      const timer = setTimeout(() => finish(this.#error(`no reply within ${this.#timeoutMs} ms`)), this.#timeoutMs);
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
