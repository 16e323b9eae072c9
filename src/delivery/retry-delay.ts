/** When a deferred recipient is tried again: delivery.retryInitialDelayMs, doubling each attempt up to retryMaxDelayMs. */
export function retryDelayMs(attempt: number, cfg: { retryInitialDelayMs: number; retryMaxDelayMs: number }): number {
  // 2^30 times any initial delay is past every maximum: the exponent stops there instead of reaching Infinity.
  const exp = Math.min(attempt - 1, 30);
  return Math.min(cfg.retryInitialDelayMs * 2 ** Math.max(0, exp), cfg.retryMaxDelayMs);
}

/** A retry may come this much later than its delay after it was scheduled (timers, a busy worker). */
const SCHEDULE_SLACK_MS = 60_000;

/**
 * When a deferred recipient is really due. Its retry was scheduled retryDelayMs(attempts) after its last attempt, so
 * a time further ahead than that was set before the wall clock stepped back (NTP, a VM restored from a snapshot) and
 * is due now — else a step back of an hour would delay every deferred recipient by that hour.
 */
export function effectiveDueAt(
  r: { nextAttemptAt: number | null; attempts: number },
  now: number,
  cfg: { retryInitialDelayMs: number; retryMaxDelayMs: number },
): number {
  const due = r.nextAttemptAt ?? 0;
  return due > now + retryDelayMs(Math.max(1, r.attempts), cfg) + SCHEDULE_SLACK_MS ? now : due;
}
