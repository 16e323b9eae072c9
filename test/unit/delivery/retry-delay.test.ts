/**
 * retryDelayMs: the delay before the next delivery attempt of a deferred recipient. It starts at
 * delivery.retryInitialDelayMs, doubles per attempt and never exceeds delivery.retryMaxDelayMs.
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load.ts';
import { retryDelayMs } from '../../../src/delivery/retry-delay.ts';

const MINUTE = 60_000;

function defaults() {
  const r = validateConfig({ hostname: 'mx', tenants: [{ id: 'a', name: 'A', domains: ['a.example.lg.jp'], deliverTo: 'smtp://10.0.0.1' }] });
  if (!r.ok) throw new Error('invalid test config');
  return r.config.delivery;
}

describe('retryDelayMs', () => {
  it('with the defaults: 5 min, doubling, up to 1 h', () => {
    const cfg = defaults();
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((a) => retryDelayMs(a, cfg) / MINUTE)).toEqual([5, 10, 20, 40, 60, 60, 60, 60]);
  });

  it('attempt 1 waits the initial delay', () => {
    expect(retryDelayMs(1, { retryInitialDelayMs: 1234, retryMaxDelayMs: 10_000 })).toBe(1234);
  });

  it('attempt 0 or below (never counted yet) also waits the initial delay, not less', () => {
    expect(retryDelayMs(0, { retryInitialDelayMs: 1000, retryMaxDelayMs: 10_000 })).toBe(1000);
    expect(retryDelayMs(-3, { retryInitialDelayMs: 1000, retryMaxDelayMs: 10_000 })).toBe(1000);
  });

  it('never exceeds retryMaxDelayMs, even for huge attempt counts', () => {
    const cfg = { retryInitialDelayMs: 300_000, retryMaxDelayMs: 3_600_000 };
    for (let attempt = 1; attempt <= 10_000; attempt += 7) {
      const d = retryDelayMs(attempt, cfg);
      expect(Number.isFinite(d)).toBe(true);
      expect(d).toBeLessThanOrEqual(cfg.retryMaxDelayMs);
      expect(d).toBeGreaterThanOrEqual(cfg.retryInitialDelayMs);
    }
  });

  it('is never shorter for a later attempt', () => {
    const cfg = { retryInitialDelayMs: 7_000, retryMaxDelayMs: 1_000_000 };
    let last = 0;
    for (let attempt = 1; attempt < 40; attempt++) {
      const d = retryDelayMs(attempt, cfg);
      expect(d).toBeGreaterThanOrEqual(last);
      last = d;
    }
    expect(last).toBe(1_000_000);
  });

  it('a maximum below the initial delay wins', () => {
    expect(retryDelayMs(1, { retryInitialDelayMs: 60_000, retryMaxDelayMs: 10_000 })).toBe(10_000);
  });
});
