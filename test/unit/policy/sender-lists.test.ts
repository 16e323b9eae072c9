/** Allow/block list entries: each form matches what it says and nothing that merely looks like it. */
import { describe, expect, it } from 'vitest';
import { matchSenderList, parseSenderPattern } from '../../../src/policy/sender-lists.ts';

const sender = (mailFrom: string, headerFrom: string | null = null, clientIp = '198.51.100.7') => ({ mailFrom, headerFrom, clientIp });

describe('sender lists', () => {
  it('parses addresses, domains, *.domains, IPs and CIDR blocks, and refuses anything else', () => {
    for (const ok of ['taro@example.co.jp', 'example.co.jp', '@example.co.jp', '*.example.co.jp', '203.0.113.9', '203.0.113.0/24', '2001:db8::/32', '2001:db8::1']) {
      expect(parseSenderPattern(ok), ok).not.toBeNull();
    }
    for (const bad of ['', 'not a domain', '203.0.113.0/33', '2001:db8::/129', 'a@', '*.', 'example..com', '10.0.0.0/x']) {
      expect(parseSenderPattern(bad), bad).toBeNull();
    }
  });

  it('an address matches the envelope sender or the header From, case-insensitively', () => {
    expect(matchSenderList(['Taro@Example.co.jp'], sender('taro@example.co.jp'))).toBe('Taro@Example.co.jp');
    expect(matchSenderList(['taro@example.co.jp'], sender('', 'TARO@example.co.jp'))).toBe('taro@example.co.jp');
    expect(matchSenderList(['taro@example.co.jp'], sender('jiro@example.co.jp'))).toBeNull();
  });

  it('a domain matches exactly; *.domain matches its subdomains too; look-alikes never', () => {
    expect(matchSenderList(['example.co.jp'], sender('a@example.co.jp'))).not.toBeNull();
    expect(matchSenderList(['example.co.jp'], sender('a@mail.example.co.jp'))).toBeNull();
    expect(matchSenderList(['*.example.co.jp'], sender('a@mail.example.co.jp'))).not.toBeNull();
    expect(matchSenderList(['*.example.co.jp'], sender('a@example.co.jp'))).not.toBeNull();
    for (const evil of ['a@evil-example.co.jp', 'a@example.co.jp.evil.example', 'a@xexample.co.jp']) {
      expect(matchSenderList(['example.co.jp', '*.example.co.jp'], sender(evil)), evil).toBeNull();
    }
  });

  it('an IP or CIDR entry matches the connecting IP only', () => {
    expect(matchSenderList(['198.51.100.0/24'], sender('a@x.example'))).toBe('198.51.100.0/24');
    expect(matchSenderList(['198.51.100.8'], sender('a@x.example'))).toBeNull();
    expect(matchSenderList(['2001:db8::/32'], sender('a@x.example', null, '2001:db8::25'))).not.toBeNull();
    // An IPv4 client seen through an IPv6 socket is the IPv4 address it is.
    expect(matchSenderList(['198.51.100.0/24'], sender('a@x.example', null, '::ffff:198.51.100.7'))).toBe('198.51.100.0/24');
    expect(matchSenderList(['198.51.100.0/24'], sender('a@198.51.100.7', null, '203.0.113.1'))).toBeNull();
  });
});
