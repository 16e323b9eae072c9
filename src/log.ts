/**
 * pino JSON logs (STYLE rule 9): object first, then message; child loggers carry `cid` (SMTP connection) and
 * `mid` (message id); secrets are redacted.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    redact: { paths: ['*.password', '*.pass', '*.auth', 'config.tenants[*].deliverTo'], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A logger that drops everything, for tests and library defaults. */
export const silentLogger: Logger = pino({ level: 'silent' });
