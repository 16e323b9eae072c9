import { describe, expect, it } from 'vitest';
import { RouteHealth } from '../../../src/queue/route-health.ts';

describe('RouteHealth', () => {
  it('lets the scan stage try a route until it defers, then not for holdMs after its last deferral', () => {
    let now = 1_000_000;
    const h = new RouteHealth(60_000, () => now);
    expect(h.answering('city-a')).toBe(true);
    h.record('city-a', false);
    expect(h.answering('city-a')).toBe(false);
    expect(h.answering('city-b')).toBe(true); // per route
    now += 59_999;
    expect(h.answering('city-a')).toBe(false);
    h.record('city-a', false); // a retry from the deliver stage deferred again: the hold starts over
    now += 30_000;
    expect(h.answering('city-a')).toBe(false);
    now += 30_000;
    expect(h.answering('city-a')).toBe(true);
    h.record('city-a', false);
    h.record('city-a', true); // a delivery went through: the route answers again at once
    expect(h.answering('city-a')).toBe(true);
  });
});
