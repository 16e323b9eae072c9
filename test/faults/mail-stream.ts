/**
 * The fault suite's load and its ledger: a sender loop that offers mail to the ingress at a steady rate and
 * remembers which messages got a 250, and the tally of one fault — for every accepted message and each of its two
 * recipients (one per tenant), whether its downstream sink has it (and how many times), or the metadata store
 * holds or bounced it. A recipient that is in neither is lost.
 */
import Database from 'better-sqlite3';
import nodemailer from 'nodemailer';
import type { SmtpSink } from '../helpers/smtp-sink.ts';

export const RECIPIENT_A = 'user@city-a.example.lg.jp';
export const RECIPIENT_B = 'user@city-b.example.lg.jp';
/** The sanitizing tenant's recipient (the converter fault). */
export const RECIPIENT_C = 'user@city-c.example.lg.jp';

export interface StreamOptions {
  /** Default: one recipient of each of the two tenants. */
  recipients?: string[];
  /** Attached to every message (base64). */
  attachment?: { filename: string; contentType: string; content: Buffer };
}
/** In-flight messages of the sender at most: a stalled ingress must not pile up sockets. */
const MAX_IN_FLIGHT = 8;
/** The sender's budget for one message; past it the message counts as not accepted. */
const SEND_TIMEOUT_MS = 15_000;

export class MailStream {
  /** Header Message-IDs of the messages answered 250. */
  readonly accepted: string[] = [];
  /** Replies other than 250, by their first three characters (or the error code when no reply came). */
  readonly refused = new Map<string, number>();
  #n = 0;
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #sends = new Set<Promise<string>>();
  readonly #transport;

  readonly recipients: string[];
  readonly #attachment: StreamOptions['attachment'];

  constructor(
    port: number,
    readonly tag: string,
    opts: StreamOptions = {},
  ) {
    this.recipients = opts.recipients ?? [RECIPIENT_A, RECIPIENT_B];
    this.#attachment = opts.attachment;
    this.#transport = nodemailer.createTransport({
      pool: true,
      host: '127.0.0.1',
      port,
      secure: false,
      ignoreTLS: true,
      maxConnections: 4,
      maxMessages: Infinity,
      connectionTimeout: SEND_TIMEOUT_MS,
      greetingTimeout: SEND_TIMEOUT_MS,
      socketTimeout: SEND_TIMEOUT_MS,
      logger: false,
    });
    // A pooled connection the ingress reset (a killed ingress child): its message fails, nothing else.
    this.#transport.on('error', () => {});
  }

  /** Offers one message every 1000 / perSecond ms (skipped while MAX_IN_FLIGHT are out). */
  start(perSecond: number): void {
    this.#timer = setInterval(() => {
      if (this.#inFlight >= MAX_IN_FLIGHT) return;
      const p = this.#sendOne();
      this.#sends.add(p);
      void p.finally(() => this.#sends.delete(p));
    }, 1000 / perSecond);
  }

  /** Offers exactly one message now; resolves with its reply code ('250' when accepted). */
  async sendOne(): Promise<string> {
    return this.#sendOne();
  }

  async #sendOne(): Promise<string> {
    const mid = `<fault-${this.tag}-${++this.#n}@faults.test>`;
    this.#inFlight++;
    try {
      const info = await this.#transport.sendMail({
        envelope: { from: 'sender@example.net', to: this.recipients },
        raw: this.#raw(mid),
      });
      const code = String(info.response).slice(0, 3);
      if (code === '250') this.accepted.push(mid);
      else this.#refuse(code);
      return code;
    } catch (err) {
      const e = err as { responseCode?: number; code?: string };
      const code = e.responseCode ? String(e.responseCode) : (e.code ?? 'ERROR');
      this.#refuse(code);
      return code;
    } finally {
      this.#inFlight--;
    }
  }

  #raw(mid: string): string {
    const text = `Message ${this.#n} of the fault "${this.tag}". Meeting minutes follow next week.`;
    const head = [
      'From: Sender <sender@example.net>',
      `To: ${this.recipients.join(', ')}`,
      `Subject: fault suite ${this.tag} ${this.#n}`,
      `Message-ID: ${mid}`,
      `Date: ${new Date().toUTCString()}`,
      'MIME-Version: 1.0',
    ];
    const a = this.#attachment;
    if (!a) return [...head, 'Content-Type: text/plain; charset=utf-8', '', text, ''].join('\r\n');
    const b = `b-${this.tag}-${this.#n}`;
    return [
      ...head,
      `Content-Type: multipart/mixed; boundary="${b}"`,
      '',
      `--${b}`,
      'Content-Type: text/plain; charset=utf-8',
      '',
      text,
      `--${b}`,
      `Content-Type: ${a.contentType}; name="${a.filename}"`,
      `Content-Disposition: attachment; filename="${a.filename}"`,
      'Content-Transfer-Encoding: base64',
      '',
      ...(a.content.toString('base64').match(/.{1,76}/g) ?? []),
      `--${b}--`,
      '',
    ].join('\r\n');
  }

  #refuse(code: string): void {
    this.refused.set(code, (this.refused.get(code) ?? 0) + 1);
  }

  /** Stops offering and waits for the messages in flight. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await Promise.allSettled([...this.#sends]);
  }

  close(): void {
    this.#transport.close();
  }
}

/** How many times each (Message-ID, recipient) reached a sink. */
export function sinkCounts(sinks: readonly SmtpSink[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const sink of sinks) {
    for (const m of sink.messages) {
      const mid = /^Message-ID:\s*(<[^>\r\n]+>)/im.exec(m.raw.toString('latin1'))?.[1];
      if (!mid) continue;
      for (const to of m.to) counts.set(`${mid} ${to.toLowerCase()}`, (counts.get(`${mid} ${to.toLowerCase()}`) ?? 0) + 1);
    }
  }
  return counts;
}

export interface Tally {
  accepted: number;
  /** Recipients (two per message unless the row says otherwise). */
  delivered: number;
  duplicated: number;
  lost: number;
  /** Waiting (pending, deferred) or held (failed, quarantined) in the metadata store. */
  held: number;
  bounced: number;
}

/** Recipient states by `${header Message-ID} ${address}`, read from meta.sqlite (a read-only connection). */
export function metaStates(metaFile: string, mids: readonly string[]): Map<string, { recipient: string; message: string }> {
  const out = new Map<string, { recipient: string; message: string }>();
  if (!mids.length) return out;
  const db = new Database(metaFile, { readonly: true, fileMustExist: true, timeout: 5_000 });
  try {
    const stmt = db.prepare<[string, string], { address: string; rstate: string; mstate: string }>(`SELECT r.address, r.state AS rstate, m.state AS mstate
      FROM messages m JOIN recipients r ON r.message_id = m.id WHERE m.header_message_id IN (?, ?)`);
    for (const mid of mids) {
      for (const row of stmt.all(mid, mid.slice(1, -1))) {
        out.set(`${mid} ${row.address.toLowerCase()}`, { recipient: row.rstate, message: row.mstate });
      }
    }
  } finally {
    db.close();
  }
  return out;
}

/** The tally of the accepted messages now; `settled` when no recipient is still on its way (pending, deferred). */
export function tally(
  accepted: readonly string[],
  sinks: readonly SmtpSink[],
  metaFile: string,
  recipients: readonly string[] = [RECIPIENT_A, RECIPIENT_B],
): Tally & { settled: boolean } {
  const counts = sinkCounts(sinks);
  const states = metaStates(metaFile, accepted);
  const t: Tally & { settled: boolean } = { accepted: accepted.length, delivered: 0, duplicated: 0, lost: 0, held: 0, bounced: 0, settled: true };
  for (const mid of accepted) {
    for (const rcpt of recipients) {
      const key = `${mid} ${rcpt}`;
      const n = counts.get(key) ?? 0;
      const state = states.get(key);
      if (n > 0) {
        t.delivered++;
        t.duplicated += n - 1;
      } else if (state?.recipient === 'bounced') t.bounced++;
      else if (state === undefined) t.lost++;
      else {
        t.held++;
        if (state.recipient !== 'quarantined' && state.message !== 'failed') t.settled = false;
      }
    }
  }
  return t;
}
