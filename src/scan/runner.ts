/**
 * The scan runner: runs every registered check on one message, concurrently, each with its own deadline and
 * AbortSignal. A check that throws, rejects, or misses its deadline yields its `failSymbol` (e.g. CLAMAV_FAIL) and
 * is listed in `failedChecks`: "scanner down" is a visible finding, never a silent pass (STYLE rule 2).
 */
import type { Logger } from 'pino';
import type { Check, CheckContext, Envelope, SymbolHit } from './check.ts';
import { parseMessage, type ParsedMessage } from './mime-parts.ts';

export interface Verdict {
  symbols: SymbolHit[];
  /** Names of the checks that failed (their `<CHECK>_FAIL` symbol is in `symbols`). */
  failedChecks: string[];
  /** Milliseconds each check took. */
  durationsMs: Record<string, number>;
}

export interface RunInput {
  messageId: string;
  envelope: Envelope;
  raw: Buffer;
  log: Logger;
}

export interface RunOptions {
  checkTimeoutMs: number;
  /** Aborts every check, e.g. on worker shutdown. */
  signal?: AbortSignal;
  /** Called once per check with its outcome, for metrics. */
  onCheckDone?: (check: string, outcome: 'ok' | 'fail', ms: number) => void;
}

class CheckTimeoutError extends Error {
  constructor(check: string, ms: number) {
    super(`check ${check} did not finish within ${ms} ms`);
    this.name = 'CheckTimeoutError';
  }
}

export async function runChecks(checks: readonly Check[], input: RunInput, opts: RunOptions): Promise<Verdict> {
  let parsedPromise: Promise<ParsedMessage> | undefined;
  const parsed = () => (parsedPromise ??= parseMessage(input.raw));
  const symbols: SymbolHit[] = [];
  const failedChecks: string[] = [];
  const durationsMs: Record<string, number> = {};

  await Promise.all(
    checks.map(async (check) => {
      const controller = new AbortController();
      const onOuterAbort = () => controller.abort(opts.signal?.reason);
      opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
      // An already-aborted signal never fires 'abort': without this the checks ran to the end regardless.
      if (opts.signal?.aborted) onOuterAbort();
      const log = input.log.child({ check: check.name });
      const ctx: CheckContext = {
        messageId: input.messageId,
        envelope: input.envelope,
        raw: input.raw,
        parsed,
        signal: controller.signal,
        log,
      };
      const started = performance.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        const deadline = new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            const err = new CheckTimeoutError(check.name, opts.checkTimeoutMs);
            controller.abort(err);
            reject(err);
          }, opts.checkTimeoutMs);
        });
        const aborted = new Promise<never>((_, reject) => {
          if (controller.signal.aborted) reject(controller.signal.reason);
          controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
        });
        const hits = await Promise.race([check.run(ctx), deadline, aborted]);
        // A check that answers once its signal is aborted (deadline or shutdown) may have cut its work short, e.g.
        // caught the abort and returned []: that must not count as a clean result. It used to, whenever its
        // promise settled before the runner's own abort promise.
        if (controller.signal.aborted) throw controller.signal.reason;
        symbols.push(...hits);
        const ms = Math.round(performance.now() - started);
        durationsMs[check.name] = ms;
        opts.onCheckDone?.(check.name, 'ok', ms);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        const ms = Math.round(performance.now() - started);
        durationsMs[check.name] = ms;
        failedChecks.push(check.name);
        symbols.push({ name: check.failSymbol, details: [reason] });
        log.warn({ err, symbol: check.failSymbol }, 'check failed');
        opts.onCheckDone?.(check.name, 'fail', ms);
      } finally {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onOuterAbort);
      }
    }),
  );
  failedChecks.sort();
  return { symbols: mergeHits(symbols), failedChecks, durationsMs };
}

/**
 * One hit per symbol name, details joined, sorted by name: two checks that find the same thing (clamd's
 * Heuristics.Encrypted.7Zip and the unscannable check both emit ARCHIVE_ENCRYPTED) must not score it twice.
 */
function mergeHits(hits: readonly SymbolHit[]): SymbolHit[] {
  const merged = new Map<string, Set<string>>();
  for (const h of hits) {
    const d = merged.get(h.name) ?? new Set<string>();
    for (const x of h.details ?? []) d.add(x);
    merged.set(h.name, d);
  }
  return [...merged]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, d]) => (d.size ? { name, details: [...d].sort() } : { name }));
}
