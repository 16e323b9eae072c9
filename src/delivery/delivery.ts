/**
 * The delivery client (LGWAN side): one pooled nodemailer SMTP transport per route URL, one SMTP transaction per
 * (message, tenant) carrying all of that tenant's pending recipients, and a per-recipient outcome —
 * delivered / deferred (4xx, connection trouble) / bounced (5xx) — that the deliver stage records.
 *
 * Route URLs (tenant `deliverTo`, `delivery.outboundRelay`):
 *   smtp://host[:25]    plain SMTP, STARTTLS when the server offers it (opportunistic)
 *   smtps://host[:465]  implicit TLS
 *   ?requireTLS=true    with smtp://: refuse to send unless STARTTLS succeeds (a failure is a deferral)
 *   ?verifyTLS=true     verify the server certificate against the system CAs (LGWAN servers often use
 *                       private CAs, hence off by default, as with Postfix's "may"/"encrypt" levels)
 */
import type { Readable } from 'node:stream';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Config } from '../config/schema.ts';
import { installFastDotStuffing } from '../smtp/dot-stuffing.ts';
import { monotonicMs } from '../spool/meta-store.ts';

export interface RecipientOutcome {
  address: string;
  /** The downstream reply, or the connection error, as text for the record and the DSN. */
  response: string;
  code: number | null;
}

export interface DeliveryOutcome {
  delivered: RecipientOutcome[];
  deferred: RecipientOutcome[];
  bounced: RecipientOutcome[];
  /** host:port of the downstream server (for DSN Remote-MTA). */
  remote: string;
  /**
   * When the server's reply to the end of DATA arrived (monotonicMs() of src/spool/meta-store.ts), absent when the
   * transaction got no reply: the start of the window before the deliver stage's delivered mark commits.
   */
  repliedAt?: number;
}

export interface DeliveryRequest {
  route: string;
  from: string;
  to: string[];
  body: Readable | Buffer;
}

/** Anything with a send(); the deliver stage depends on this, tests may wrap it to inject faults. */
export interface Deliverer {
  send(req: DeliveryRequest): Promise<DeliveryOutcome>;
  close(): Promise<void>;
}

interface SmtpError extends Error {
  code?: string;
  responseCode?: number;
  response?: string;
  rejected?: string[];
  rejectedErrors?: SmtpError[];
  recipient?: string;
  command?: string;
}

/**
 * Only a 5xx answer to the transaction itself (MAIL, RCPT, DATA) or an address nodemailer cannot send at all is
 * permanent. A 5xx to the greeting, EHLO or STARTTLS says the downstream server is misconfigured, not that the
 * message is undeliverable: such mail waits (deferred) instead of bouncing a municipality's inbound mail.
 */
const TRANSACTION_COMMANDS = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);

function isPermanent(err: SmtpError): boolean {
  if (err.code === 'EENVELOPE' && err.command === 'API') return true;
  return err.responseCode !== undefined && err.responseCode >= 500 && TRANSACTION_COMMANDS.has(err.command ?? '');
}

/** Greeting budget of a downstream server; the usual MTA greets within a second. */
const GREETING_TIMEOUT_MS = 30_000;
/** One pooled connection is closed after this many messages, as Postfix's smtp_connection_reuse_count_limit. */
const MAX_MESSAGES_PER_CONNECTION = 100;

/** Postfix-style: the reply, and which command it answered ("… (in reply to RCPT TO)"). */
function describe(err: SmtpError): string {
  const context = err.command && err.command !== 'API' && err.command !== 'CONN' ? ` (in reply to ${err.command})` : '';
  if (err.response) return `${err.response}${context}`;
  return `${err.code ?? 'ERROR'} ${err.message}${context}`;
}

export class SmtpDeliverer implements Deliverer {
  readonly #transports = new Map<string, Transporter>();
  readonly #cfg: Config['delivery'];
  readonly #hostname: string;

  constructor(cfg: Config['delivery'], hostname: string) {
    installFastDotStuffing();
    this.#cfg = cfg;
    this.#hostname = hostname;
  }

  #transport(route: string): Transporter {
    let t = this.#transports.get(route);
    if (t) return t;
    const u = new URL(route);
    const secure = u.protocol === 'smtps:';
    const requireTLS = u.searchParams.get('requireTLS') === 'true';
    const verify = u.searchParams.get('verifyTLS') === 'true';
    t = nodemailer.createTransport({
      pool: true,
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: Number(u.port || (secure ? 465 : 25)),
      secure,
      requireTLS: !secure && requireTLS,
      ignoreTLS: false,
      opportunisticTLS: !secure && !requireTLS,
      tls: { rejectUnauthorized: verify },
      name: this.#hostname,
      maxConnections: this.#cfg.maxConnectionsPerRoute,
      maxMessages: MAX_MESSAGES_PER_CONNECTION,
      connectionTimeout: this.#cfg.connectTimeoutMs,
      greetingTimeout: GREETING_TIMEOUT_MS,
      socketTimeout: this.#cfg.socketTimeoutMs,
      disableFileAccess: true,
      disableUrlAccess: true,
      logger: false,
    });
    this.#transports.set(route, t);
    return t;
  }

  async send(req: DeliveryRequest): Promise<DeliveryOutcome> {
    const u = new URL(req.route);
    const remote = `${u.hostname}:${u.port || (u.protocol === 'smtps:' ? 465 : 25)}`;
    const out: DeliveryOutcome = { delivered: [], deferred: [], bounced: [], remote };
    const classify = (address: string, err: SmtpError) => {
      const entry = { address, response: describe(err), code: err.responseCode ?? null };
      if (isPermanent(err)) out.bounced.push(entry);
      else out.deferred.push(entry);
    };
    try {
      const info = (await this.#transport(req.route).sendMail({
        envelope: { from: req.from, to: req.to },
        raw: req.body,
      })) as { accepted: string[]; rejectedErrors?: SmtpError[]; rejected: string[]; response: string };
      out.repliedAt = monotonicMs();
      const rejectedErrors = info.rejectedErrors ?? [];
      for (const address of req.to) {
        const lower = address.toLowerCase();
        const err = rejectedErrors.find((e) => e.recipient?.toLowerCase() === lower);
        if (err) classify(address, err);
        else if (info.accepted.some((a) => a.toLowerCase() === lower)) {
          out.delivered.push({ address, response: info.response, code: 250 });
        } else {
          classify(address, Object.assign(new Error('not accepted by the server'), { code: 'EUNKNOWN' }));
        }
      }
    } catch (e) {
      const err = e as SmtpError;
      if (err.code === 'EENVELOPE' && err.rejectedErrors?.length) {
        for (const address of req.to) {
          const r = err.rejectedErrors.find((x) => x.recipient?.toLowerCase() === address.toLowerCase());
          classify(address, r ?? err);
        }
      } else {
        for (const address of req.to) classify(address, err);
      }
    }
    return out;
  }

  async close(): Promise<void> {
    for (const t of this.#transports.values()) t.close();
    this.#transports.clear();
  }
}
