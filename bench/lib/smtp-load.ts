/**
 * The load generator: `concurrency` workers share a counter of `total` messages and send them over their own
 * connections, either reusing a connection for up to `perConnection` messages (RSET between them) or opening one
 * per message (what internet MXs mostly do). Records, per message, when its transaction started (MAIL FROM)
 * and when the final 250 came. Bounded by count and by `deadlineMs`; a failed message is counted, not retried.
 */
import type { BenchMessage } from './message.ts';
import { SmtpClient, SmtpError } from './smtp-client.ts';
import { now } from './util.ts';

export interface LoadOptions {
  port: number;
  total: number;
  concurrency: number;
  /** 1 = one message per connection; n > 1 = up to n messages per connection. */
  perConnection: number;
  message: (seq: number) => BenchMessage;
  /** Limit for each command reply. */
  replyTimeoutMs: number;
  /** Limit for the reply after the message data (the system under test fsyncs then). */
  dataTimeoutMs: number;
  /** Wall-clock budget of the whole load; messages not started by then are counted as not sent. */
  deadlineMs: number;
  /** Updated as the load runs, for progress reports. */
  progress?: { accepted: number; failed: number };
}

export interface LoadResult {
  ids: string[];
  /** `now()` when each message's MAIL FROM was sent (NaN when never started). */
  startedAt: Float64Array;
  /** `now()` of each message's final 250 (NaN when not accepted). */
  acceptedAt: Float64Array;
  t0: number;
  lastAccept: number;
  accepted: number;
  failed: number;
  notSent: number;
  connections: number;
  bytes: number;
  /** The first few distinct failure reasons, with counts. */
  failures: Map<string, number>;
}

/** After a connection-level failure a worker pauses this long, so a refusing server is not hammered. */
const failurePauseMs = 50;
/** Distinct failure texts kept for the report. */
const maxFailureKinds = 10;

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const ids: string[] = new Array<string>(opts.total);
  const startedAt = new Float64Array(opts.total).fill(Number.NaN);
  const acceptedAt = new Float64Array(opts.total).fill(Number.NaN);
  const failures = new Map<string, number>();
  let next = 0;
  let failed = 0;
  let connections = 0;
  let bytes = 0;
  const t0 = now();
  const deadline = t0 + opts.deadlineMs;

  const noteFailure = (err: unknown) => {
    failed += 1;
    if (opts.progress) opts.progress.failed += 1;
    const text = err instanceof Error ? err.message : String(err);
    const key = text.replace(/\d{6,}/g, 'N').slice(0, 200);
    if (failures.has(key) || failures.size < maxFailureKinds) failures.set(key, (failures.get(key) ?? 0) + 1);
  };

  const worker = async () => {
    let client: SmtpClient | null = null;
    try {
      while (next < opts.total && now() < deadline) {
        const seq = next++;
        const msg = opts.message(seq);
        ids[seq] = msg.id;
        try {
          if (client !== null && client.sent >= opts.perConnection) {
            await client.quit(opts.replyTimeoutMs);
            client = null;
          }
          if (client === null) {
            client = await SmtpClient.open(opts.port, opts.replyTimeoutMs);
            connections += 1;
          } else {
            await client.reset(opts.replyTimeoutMs);
          }
          startedAt[seq] = now();
          await client.sendMail(msg.from, msg.rcpt, msg.chunks, opts.replyTimeoutMs, opts.dataTimeoutMs);
          acceptedAt[seq] = now();
          bytes += msg.bytes;
          if (opts.progress) opts.progress.accepted += 1;
        } catch (err) {
          noteFailure(err);
          // A rejected message on a healthy connection keeps the connection (RSET follows); a 421, a timeout or
          // a broken socket drops it.
          const keep = err instanceof SmtpError && err.code !== null && err.code >= 400 && err.code !== 421;
          if (!keep && client !== null) {
            client.destroy();
            client = null;
          }
          if (client === null) await new Promise((r) => setTimeout(r, failurePauseMs));
        }
      }
    } finally {
      if (client !== null) await client.quit(opts.replyTimeoutMs);
    }
  };

  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.total) }, worker));

  let accepted = 0;
  let lastAccept = t0;
  for (const t of acceptedAt) {
    if (!Number.isNaN(t)) {
      accepted += 1;
      if (t > lastAccept) lastAccept = t;
    }
  }
  return {
    ids,
    startedAt,
    acceptedAt,
    t0,
    lastAccept,
    accepted,
    failed,
    notSent: opts.total - next,
    connections,
    bytes,
    failures,
  };
}
