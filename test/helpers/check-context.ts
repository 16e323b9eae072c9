/**
 * A CheckContext for running one check on its own, as the runner would: the raw message, a memoised parse, a
 * signal, and a logger that keeps what it was given (so tests can assert on logged errors).
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import type { CheckContext } from '../../src/scan/check.ts';
import { parseMessage, type ParsedMessage } from '../../src/scan/mime-parts.ts';

export const FIXTURES_DIR = new URL('../../fixtures/mails/', import.meta.url);

export function fixture(name: string): Buffer {
  return readFileSync(new URL(name, FIXTURES_DIR));
}

export interface CapturedLog {
  log: Logger;
  /** Every record logged so far, parsed. */
  records: { level: number; msg: string; [k: string]: unknown }[];
}

export function captureLog(): CapturedLog {
  const records: CapturedLog['records'] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      records.push(JSON.parse(chunk.toString('utf8')) as CapturedLog['records'][number]);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), records };
}

export function checkContext(raw: Buffer, opts: { signal?: AbortSignal; log?: Logger } = {}): CheckContext {
  let parsed: Promise<ParsedMessage> | undefined;
  return {
    messageId: 'test-message',
    envelope: { mailFrom: 'sender@example.com', recipients: [{ address: 'staff@city.example.lg.jp', tenantId: 'city' }], clientIp: '127.0.0.1', helo: 'test', tls: null },
    raw,
    parsed: () => (parsed ??= parseMessage(raw)),
    signal: opts.signal ?? new AbortController().signal,
    log: opts.log ?? pino({ level: 'silent' }),
  };
}

/** The EICAR test file: every antivirus engine reports it; harmless. */
export const EICAR = Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*');
