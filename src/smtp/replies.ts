/**
 * The SMTP reply catalogue: every reply Sekisho itself chooses, with its RFC 3463 enhanced status code. Replies
 * are Error objects (smtp-server's callback contract) carrying `responseCode`; the enhanced code leads the text.
 */
import type { Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
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
  tooManyBadCommands: () => reply(421, '4.7.0', 'Too many errors, closing connection'),
  dataLineTimeout: () => reply(421, '4.4.2', 'Timeout waiting for the rest of a message line, closing connection'),
  /** The success text of DATA; smtp-server sends it with code 250. */
  queued: (id: string) => `2.0.0 Ok: queued as ${id}`,
} as const;

/**
 * Answers a connection that no SMTP session will serve (refused before one starts) with one reply line and closes
 * it. Its errors are ignored: the client may already be gone.
 */
export function endWithReply(socket: Socket, r: SmtpReply): void {
  socket.on('error', () => undefined);
  socket.end(`${r.responseCode} ${r.message}\r\n`);
}

const ENHANCED_PREFIX = /^[245]\.\d{1,3}\.\d{1,3} /;
let patched = false;

/**
 * Replies that mean "the client sent a command it should not have": unrecognised (500), bad syntax (501, 504),
 * not implemented (502), out of sequence (503). smtp-server only limits unrecognised commands (a fixed 10) and
 * never out-of-sequence ones, so smtp.maxBadCommands is enforced here, where every reply passes.
 */
const BAD_COMMAND_CODES: ReadonlySet<number> = new Set([500, 501, 502, 503, 504]);

/**
 * Commands that do nothing towards a delivery (Postfix's "junk commands"). A client that sends one every few
 * seconds would hold its connection past every idle timeout: beyond smtp.maxJunkCommands, each counts as a bad
 * command, so such a session ends after maxJunkCommands + maxBadCommands of them.
 */
const JUNK_COMMANDS: ReadonlySet<string> = new Set(['NOOP', 'RSET', 'VRFY', 'EXPN', 'HELP', 'ETRN']);

export interface BadCommandLimit {
  /** Bad-command replies one connection may draw (between two accepted messages) before it is closed. */
  max: number;
  /** Junk commands (JUNK_COMMANDS) one connection may send between two accepted messages before each is bad. */
  maxJunk: number;
  /** Called once when a connection reaches `max`, just before it gets 421 4.7.0. */
  onExceeded: (sessionId: string) => void;
}

interface ConnectionInternals {
  id: string;
  _server: SMTPServer;
}

/** Per server (only the ingress registers one: the test sinks in the same process have no limit). */
const badCommandLimits = new WeakMap<SMTPServer, BadCommandLimit>();
/** Bad-command replies drawn so far, per connection. */
const badCommandCounts = new WeakMap<ConnectionInternals, number>();
/** Junk commands sent so far, per connection. */
const junkCommandCounts = new WeakMap<ConnectionInternals, number>();

/**
 * Closes a connection of `server` with `421 4.7.0` once it has drawn `limit.max` bad-command replies. The count
 * starts again after an accepted message, as Postfix's smtpd_hard_error_limit counts errors "without delivering
 * mail": a long session of a real MTA is not cut off for a stray error per message. Needs the patch below.
 */
export function limitBadCommands(server: SMTPServer, limit: BadCommandLimit): void {
  useCatalogueEnhancedCodes();
  badCommandLimits.set(server, limit);
}

function countBadCommand(conn: ConnectionInternals, code: number, context: unknown, send: (code: number, data: string) => void): void {
  const limit = badCommandLimits.get(conn._server);
  if (!limit) return;
  if (code === 250 && context === 'DATA_OK') {
    badCommandCounts.delete(conn);
    junkCommandCounts.delete(conn);
    return;
  }
  if (BAD_COMMAND_CODES.has(code)) addBadCommand(conn, limit, send);
}

/** Counts one bad command; at the limit, sends 421 4.7.0 (smtp-server then closes) and returns true. */
function addBadCommand(conn: ConnectionInternals, limit: BadCommandLimit, send: (code: number, data: string) => void): boolean {
  const n = (badCommandCounts.get(conn) ?? 0) + 1;
  badCommandCounts.set(conn, n);
  if (n < limit.max) return false;
  badCommandCounts.delete(conn);
  limit.onExceeded(conn.id);
  const r = replies.tooManyBadCommands();
  send(r.responseCode, r.message); // a 421 makes smtp-server close the connection
  return true;
}

/** Whether the command is a junk command past the limit that ended the session (it is then not processed). */
function junkEndsSession(conn: ConnectionInternals, command: unknown, send: (code: number, data: string) => void): boolean {
  const limit = badCommandLimits.get(conn._server);
  if (!limit) return false;
  const verb = String(command ?? '').split(' ', 1)[0]?.toUpperCase() ?? '';
  if (!JUNK_COMMANDS.has(verb)) return false;
  const n = (junkCommandCounts.get(conn) ?? 0) + 1;
  junkCommandCounts.set(conn, n);
  return n > limit.maxJunk && addBadCommand(conn, limit, send);
}

/**
 * smtp-server adds an enhanced status code of its own choosing to every reply (550 always becomes 5.1.1, a
 * successful DATA 2.6.0). Our catalogue chooses the code itself, so a reply text that already begins with one
 * is sent as it is. Every reply also goes through the bad-command count, and every command through the
 * junk-command count (limitBadCommands). Idempotent.
 */
export function useCatalogueEnhancedCodes(): void {
  if (patched) return;
  patched = true;
  const proto = SMTPConnection.prototype as unknown as {
    send(code: number, data: unknown, context?: unknown): void;
    _onCommand(command: unknown, callback?: () => void): void;
  };
  const original = proto.send;
  proto.send = function send(this: ConnectionInternals, code: number, data: unknown, context?: unknown) {
    if (typeof data === 'string' && ENHANCED_PREFIX.test(data)) original.call(this, code, data, false);
    else original.call(this, code, data, context);
    countBadCommand(this, code, context, (c, d) => original.call(this, c, d, false));
  };
  const onCommand = proto._onCommand;
  proto._onCommand = function _onCommand(this: ConnectionInternals, command: unknown, callback?: () => void) {
    if (junkEndsSession(this, command, (c, d) => original.call(this, c, d, false))) return callback?.();
    onCommand.call(this, command, callback);
  };
}
