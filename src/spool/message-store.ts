/**
 * MessageStore: where message bytes live (DESIGN §5). The spool is the source of truth: a message the ingress
 * acknowledged with 250 is in here, fsync'd, before the reply. Drivers: file-message-store (default).
 */
import type { Readable } from 'node:stream';

/**
 * raw: the message as received (with our Received header); { sanitized: tenantId }: the rebuilt, harmless version
 * made for one tenant (two sanitizing tenants of one message may have different options, so each has its own).
 */
export type MessageKind = 'raw' | { sanitized: string };

/** Tenant ids as the config allows them; anything else (e.g. "../x") could escape the spool directory. */
const SANITIZED_KEY_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Whether `key` may name a sanitized copy (a tenant id): safe to use as a directory or object name. */
export function isSanitizedKey(key: string): boolean {
  return SANITIZED_KEY_PATTERN.test(key);
}

/** The kind as a short label for errors and logs: "raw" or "sanitized:<tenant>". Throws on a key a path could abuse. */
export function kindLabel(kind: MessageKind): string {
  if (kind === 'raw') return 'raw';
  if (!isSanitizedKey(kind.sanitized)) {
    throw new TypeError(`a sanitized copy's key must be a tenant id, not ${JSON.stringify(kind.sanitized.slice(0, 80))}`);
  }
  return `sanitized:${kind.sanitized}`;
}

export interface WriteResult {
  size: number;
  /** Lower-case hex SHA-256 of the stored bytes. */
  sha256: string;
}

export interface WriteOptions {
  kind?: MessageKind;
  /** Abort with SizeLimitError once more than this many bytes arrive; nothing is left behind. */
  maxBytes?: number;
}

export class SizeLimitError extends Error {
  constructor(readonly limitBytes: number) {
    super(`message exceeds ${limitBytes} bytes`);
    this.name = 'SizeLimitError';
  }
}

export interface MessageStore {
  /**
   * Streams `source` into the store under `id`. Resolves only once the bytes and the directory entry are
   * durable (fsync'd). On any error (including SizeLimitError) nothing is left under `id` and `source` is
   * drained or destroyed so the caller's protocol can go on.
   */
  write(id: string, source: Readable, opts?: WriteOptions): Promise<WriteResult>;
  createReadStream(id: string, kind?: MessageKind): Readable;
  read(id: string, kind?: MessageKind): Promise<Buffer>;
  exists(id: string, kind?: MessageKind): Promise<boolean>;
  /** Removes every kind stored under id (the raw message and every tenant's sanitized copy); no error when nothing is there. */
  delete(id: string): Promise<void>;
  /** Every id that has a raw message. */
  list(): AsyncIterable<string>;
  close(): Promise<void>;
}
