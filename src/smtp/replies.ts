/**
 * The SMTP reply catalogue: every reply Sekisho itself chooses, with its RFC 3463 enhanced status code. Replies
 * are Error objects (smtp-server's callback contract) carrying `responseCode`; the enhanced code leads the text.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

export interface SmtpReply extends Error {
  responseCode: number;
}

export function reply(code: number, enhanced: string, text: string): SmtpReply {
  const err = new Error(`${enhanced} ${text}`) as SmtpReply;
  err.responseCode = code;
  return err;
}

export const replies = {
  relayDenied: (rcpt: string) => reply(550, '5.7.1', `<${rcpt}>: Relay access denied`),
  tooManyConnectionsFromIp: () => reply(421, '4.7.0', 'Too many connections from your address, try again later'),
  connectionRateExceeded: () => reply(421, '4.7.0', 'Connection rate limit exceeded, try again later'),
  serviceBusy: () => reply(421, '4.3.2', 'Service busy, try again later'),
  shuttingDown: () => reply(421, '4.3.2', 'Service shutting down, try again later'),
  localError: () => reply(451, '4.3.0', 'Temporary local problem, message not accepted, try again later'),
  messageTooBig: (limit: number) => reply(552, '5.3.4', `Message exceeds fixed maximum message size ${limit}`),
  rejectedByPolicy: (reason: string) => reply(550, '5.7.1', `Message rejected: ${reason}`),
  /** The success text of DATA; smtp-server sends it with code 250. */
  queued: (id: string) => `2.0.0 Ok: queued as ${id}`,
} as const;

const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;
let patched = false;

/**
 * smtp-server adds an enhanced status code of its own choosing to every reply (550 always becomes 5.1.1, a
 * successful DATA 2.6.0). Our catalogue chooses the code itself, so a reply text that already begins with one
 * is sent as it is. Idempotent; called once by the ingress.
 */
export function useCatalogueEnhancedCodes(): void {
  if (patched) return;
  patched = true;
  const proto = SMTPConnection.prototype as unknown as { send(code: number, data: unknown, context?: unknown): void };
  const original = proto.send;
  proto.send = function send(code: number, data: unknown, context?: unknown) {
    if (typeof data === 'string' && ENHANCED_PREFIX.test(data)) return original.call(this, code, data, false);
    return original.call(this, code, data, context);
  };
}
