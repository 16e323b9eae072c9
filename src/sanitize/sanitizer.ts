/**
 * The sanitizer as the pipeline sees it (types only): the `sanitize` stage hands it one message for one tenant
 * and stores what it returns as that tenant's sanitized copy. A throw fails the job (BullMQ retries it; after
 * queue.maxAttempts the message goes to the failed hold): the raw bytes are never delivered instead.
 */
import type { Logger } from 'pino';
import type { TenantConfig } from '../config/schema.ts';
import type { StoredVerdict } from '../spool/stored-verdict.ts';
import type { RemovalReason } from './types.ts';

export interface SanitizeRequest {
  mid: string;
  raw: Buffer;
  tenant: TenantConfig;
  recipients: string[];
  verdict: StoredVerdict;
  /** Aborted at sanitize.messageTimeoutMs. */
  signal: AbortSignal;
  log: Logger;
}

export interface SanitizeResult {
  message: Buffer;
  /** One line per part for logs, e.g. '報告書.docx: converted to PDF (3 pages)'. */
  summary: string[];
  /** The X-Sekisho-Sanitized value, added in front of the message by the stage. */
  header: string;
  /** Each attachment's outcome, for the metrics: converted, or removed with its reason. */
  parts: { outcome: 'converted' | 'removed'; reason?: RemovalReason }[];
}

export interface Sanitizer {
  sanitize(req: SanitizeRequest): Promise<SanitizeResult>;
  close(): Promise<void>;
}
