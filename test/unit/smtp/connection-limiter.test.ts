/**
 * ConnectionLimiter and clientKey: per-IP concurrency cap, sliding one-minute rate window (driven by the injected
 * clock, never by sleeping), and the grouping of addresses into the unit one client controls.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionLimiter, clientKey } from '../../../src/smtp/connection-limiter.ts';

const limiters: ConnectionLimiter[] = [];
afterEach(() => {
  for (const l of limiters.splice(0)) l.stop();
});

/** A limiter on a clock the test moves by hand. */
function limiter(maxPerIp: number, ratePerIpPerMinute: number): { l: ConnectionLimiter; clock: { t: number } } {
  const clock = { t: 1_700_000_000_000 };
  const l = new ConnectionLimiter({ maxPerIp, ratePerIpPerMinute, now: () => clock.t });
  limiters.push(l);
  return { l, clock };
}

describe('clientKey', () => {
  it('keeps an IPv4 address as it is', () => {
    expect(clientKey('192.0.2.1')).toBe('192.0.2.1');
    expect(clientKey('198.51.100.77')).toBe('198.51.100.77');
  });

  it('maps an IPv4-mapped IPv6 address (::ffff:a.b.c.d, any case) to the IPv4 address', () => {
    expect(clientKey('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(clientKey('::FFFF:192.0.2.1')).toBe('192.0.2.1');
  });

  it('groups IPv6 addresses by /64, whatever their spelling (zero compression, leading zeros, case)', () => {
    const k = clientKey('2001:db8:1:2::1');
    expect(k).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe(k);
    expect(clientKey('2001:0DB8:0001:0002:ffff::')).toBe(k);
    expect(clientKey('2001:db8:1:2:0:0:0:1')).toBe(k);
  });

  it('expands "::" inside the first 64 bits', () => {
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientKey('2001:db8:0:0:1::')).toBe('2001:db8:0:0::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey('fe80::1:2:3:4')).toBe('fe80:0:0:0::/64');
  });

  it('keeps different /64 prefixes apart', () => {
    expect(clientKey('2001:db8:1:2::1')).not.toBe(clientKey('2001:db8:1:3::1'));
    expect(clientKey('2001:db8::1')).not.toBe(clientKey('2001:db9::1'));
  });
});

describe('ConnectionLimiter', () => {
  it('admits up to maxPerIp concurrent connections per address, then refuses with ip-concurrency', () => {
    const { l } = limiter(2, 1_000);
    expect(l.admit('s1', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s2', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s3', '192.0.2.1')).toBe('ip-concurrency');
    // Other addresses have their own count.
    expect(l.admit('s4', '192.0.2.2')).toBeUndefined();
  });

  it('frees the slot when an admitted session is released', () => {
    const { l } = limiter(1, 1_000);
    expect(l.admit('s1', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s2', '192.0.2.1')).toBe('ip-concurrency');
    l.release('s1');
    expect(l.admit('s3', '192.0.2.1')).toBeUndefined();
  });

  it('ignores the release of an unknown or refused session, and a second release of the same one', () => {
    const { l } = limiter(2, 1_000);
    expect(l.admit('s1', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s2', '192.0.2.1')).toBeUndefined();
    expect(l.admit('refused', '192.0.2.1')).toBe('ip-concurrency');
    l.release('refused'); // never admitted: must not free s1's or s2's slot
    l.release('never-seen');
    expect(l.admit('s3', '192.0.2.1')).toBe('ip-concurrency');
    l.release('s1');
    l.release('s1'); // twice: frees one slot, not two
    expect(l.admit('s4', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s5', '192.0.2.1')).toBe('ip-concurrency');
  });

  it('counts an IPv4 client and its ::ffff:-mapped form as one address', () => {
    const { l } = limiter(1, 1_000);
    expect(l.admit('s1', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s2', '::ffff:192.0.2.1')).toBe('ip-concurrency');
  });

  it('counts every address of one IPv6 /64 together, and another /64 apart', () => {
    const { l } = limiter(2, 1_000);
    expect(l.admit('s1', '2001:db8:1:2::1')).toBeUndefined();
    expect(l.admit('s2', '2001:db8:1:2::2')).toBeUndefined();
    // Rotating the interface identifier does not escape the cap…
    expect(l.admit('s3', '2001:db8:1:2:dead:beef:0:1')).toBe('ip-concurrency');
    // …but a neighbouring /64 is somebody else.
    expect(l.admit('s4', '2001:db8:1:3::1')).toBeUndefined();
    l.release('s1');
    expect(l.admit('s5', '2001:db8:1:2:ffff::9')).toBeUndefined();
  });

  it('refuses the connection over ratePerIpPerMinute within one minute with ip-rate', () => {
    const { l, clock } = limiter(100, 3);
    for (const id of ['s1', 's2', 's3']) {
      expect(l.admit(id, '192.0.2.1')).toBeUndefined();
      l.release(id); // closed again: the rate counts connections made, not connections open
      clock.t += 1_000;
    }
    expect(l.admit('s4', '192.0.2.1')).toBe('ip-rate');
    expect(l.admit('s5', '192.0.2.2')).toBeUndefined();
  });

  it('slides the window: a connection older than 60 s no longer counts (injected clock)', () => {
    const { l, clock } = limiter(100, 3);
    const t0 = clock.t;
    expect(l.admit('s1', '192.0.2.1')).toBeUndefined(); // t0
    clock.t = t0 + 10_000;
    expect(l.admit('s2', '192.0.2.1')).toBeUndefined();
    clock.t = t0 + 20_000;
    expect(l.admit('s3', '192.0.2.1')).toBeUndefined();
    clock.t = t0 + 59_999;
    expect(l.admit('s4', '192.0.2.1')).toBe('ip-rate');
    clock.t = t0 + 60_000; // s1's connection left the window
    expect(l.admit('s5', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s6', '192.0.2.1')).toBe('ip-rate');
    clock.t = t0 + 80_000; // s2's and s3's left too
    expect(l.admit('s7', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s8', '192.0.2.1')).toBeUndefined();
    expect(l.admit('s9', '192.0.2.1')).toBe('ip-rate');
  });

  it('does not count refused-for-rate attempts: a client hammering while limited is admitted once the window moved on', () => {
    const { l, clock } = limiter(100, 1);
    const t0 = clock.t;
    expect(l.admit('s1', '192.0.2.1')).toBeUndefined();
    for (let i = 0; i < 50; i++) {
      clock.t = t0 + 1_000 * (i + 1);
      expect(l.admit(`r${i}`, '192.0.2.1')).toBe('ip-rate');
    }
    clock.t = t0 + 60_000;
    expect(l.admit('s2', '192.0.2.1')).toBeUndefined();
  });

  it('a session refused for rate takes no concurrency slot', () => {
    const { l, clock } = limiter(1, 1);
    expect(l.admit('s1', '192.0.2.1')).toBeUndefined();
    l.release('s1');
    expect(l.admit('s2', '192.0.2.1')).toBe('ip-rate');
    clock.t += 60_000;
    expect(l.admit('s3', '192.0.2.1')).toBeUndefined();
  });

  it('applies the rate limit to an IPv6 /64 as a whole', () => {
    const { l } = limiter(100, 2);
    expect(l.admit('s1', '2001:db8:1:2::1')).toBeUndefined();
    expect(l.admit('s2', '2001:db8:1:2::2')).toBeUndefined();
    expect(l.admit('s3', '2001:db8:1:2::3')).toBe('ip-rate');
    expect(l.admit('s4', '2001:db8:1:3::1')).toBeUndefined();
  });
});
