/** When a deferred recipient is tried again: delivery.retryInitialDelayMs, doubling each attempt up to retryMaxDelayMs. */
export function retryDelayMs(attempt: number, cfg: { retryInitialDelayMs: number; retryMaxDelayMs: number }): number {
  // 2^30 times any initial delay is past every maximum: the exponent stops there instead of reaching Infinity.
  const exp = Math.min(attempt - 1, 30);
  return Math.min(cfg.retryInitialDelayMs * 2 ** Math.max(0, exp), cfg.retryMaxDelayMs);
}
