/** The answer cache: entries expire with their TTL on the injected clock, and the size bound drops the least recently used. */
import { describe, expect, it } from 'vitest';
import { TtlCache } from '../../../../src/scan/dns/ttl-cache.ts';

describe('TtlCache', () => {
  it('serves an entry until its TTL has passed', () => {
    let now = 0;
    const cache = new TtlCache<string>(10, () => now);
    cache.set('a', 'x', 1_000);
    now = 999;
    expect(cache.get('a')).toBe('x');
    now = 1_000;
    expect(cache.get('a')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('does not keep a TTL of 0', () => {
    const cache = new TtlCache<string>(10, () => 0);
    cache.set('a', 'x', 0);
    expect(cache.get('a')).toBeUndefined();
  });

  it('holds at most maxEntries, dropping the least recently used', () => {
    const cache = new TtlCache<number>(3, () => 0);
    for (const k of ['a', 'b', 'c']) cache.set(k, 1, 60_000);
    expect(cache.get('a')).toBe(1); // a is now the most recently used
    cache.set('d', 1, 60_000);
    expect(cache.size).toBe(3);
    expect(cache.get('b')).toBeUndefined();
    expect([cache.get('a'), cache.get('c'), cache.get('d')]).toEqual([1, 1, 1]);
  });
});
