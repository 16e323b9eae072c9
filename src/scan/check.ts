/**
 * The contract between the scan runner and a check. A check reports findings as symbols and nothing else:
 * no SMTP codes, no actions (STYLE rule 1). It must honour `ctx.signal`; the runner enforces the deadline and
 * turns a throw or a timeout into the check's `failSymbol` either way.
 */
import type { Logger } from 'pino';
import type { ParsedMessage } from './mime-parts.ts';
import type { SymbolInfo } from './symbols.ts';

export interface SymbolHit {
  /** A name from the catalogue in symbols.ts. */
  name: string;
  /** Free-form details, e.g. the virus name or the offending header. */
  details?: string[];
}

export interface Envelope {
  mailFrom: string;
  recipients: { address: string; tenantId: string }[];
  clientIp: string;
  helo: string;
  tls: string | null;
}

export interface CheckContext {
  messageId: string;
  envelope: Envelope;
  /** The raw message as spooled (Received header included). */
  raw: Buffer;
  /** Decoded MIME leaves (nested message/rfc822 included) and top-level headers; parsed once, shared by all checks. */
  parsed(): Promise<ParsedMessage>;
  signal: AbortSignal;
  log: Logger;
}

export interface Check {
  /** Short lower-case name, used in logs and metrics ("mime", "clamav"). */
  readonly name: string;
  /** Emitted by the runner when this check throws, times out or cannot reach its engine (e.g. CLAMAV_FAIL). */
  readonly failSymbol: string;
  run(ctx: CheckContext): Promise<SymbolHit[]>;
  /**
   * Group, default score and description of a symbol this check emits that is not in the catalogue (the operators'
   * rule-file rules, RULE_<NAME>); undefined for any other name.
   */
  symbolInfo?(name: string): SymbolInfo | undefined;
  /** Releases what the check holds (file watchers, sockets) when the worker stops. */
  close?(): void | Promise<void>;
}

/** A check that can tell the runner it could not do its job without throwing (engine down). */
export class CheckFailedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CheckFailedError';
  }
}
