/**
 * Our Authentication-Results header, and the removal of incoming ones that claim our authserv-id (RFC 8601 §5):
 * a pure function over the header block that leaves every other byte of the message as it was.
 */
import { describe, expect, it } from 'vitest';
import {
  arComment,
  arProperty,
  authenticationResultsHeader,
  stripForgedAuthResults,
} from '../../../../../src/scan/checks/auth/authentication-results.ts';

const HOST = 'mx.pref.example.lg.jp';

function raw(...headers: string[]): Buffer {
  return Buffer.from(`${headers.join('\r\n')}\r\nSubject: x\r\n\r\nbody line\r\nAuthentication-Results: ${HOST}; spf=pass\r\n`);
}

describe('stripForgedAuthResults', () => {
  it('removes a header claiming our hostname, folded lines included, and keeps the body byte for byte', () => {
    const input = raw('Received: from a', `Authentication-Results: ${HOST};`, '\tdkim=pass header.d=city-a.example.lg.jp;', '  dmarc=pass', 'From: a@b.test');
    const out = stripForgedAuthResults(input, HOST);
    expect(out.toString()).toBe(`Received: from a\r\nFrom: a@b.test\r\nSubject: x\r\n\r\nbody line\r\nAuthentication-Results: ${HOST}; spf=pass\r\n`);
  });

  it.each([
    [`Authentication-Results: MX.Pref.Example.LG.JP; spf=pass`, 'case differs'],
    [`Authentication-Results: ${HOST}.; spf=pass`, 'trailing dot'],
    [`authentication-results:${HOST} 1; spf=pass`, 'lower-case name, version, no space'],
    [`Authentication-Results: (forged) ${HOST}; dmarc=pass`, 'comment first'],
    [`Authentication-Results: "${HOST}"; dmarc=pass`, 'quoted'],
    [`Authentication-Results : ${HOST}; dmarc=pass`, 'space before the colon'],
    [`Authentication-Results: ${HOST}; none`, 'no result'],
  ])('removes %s (%s)', (header) => {
    const out = stripForgedAuthResults(raw('From: a@b.test', header), HOST).toString();
    expect(out.split('\r\n\r\n')[0]).toBe('From: a@b.test\r\nSubject: x');
  });

  it.each([
    ['Authentication-Results: mx.other.example; spf=pass', 'another authserv-id'],
    [`Authentication-Results: sub.${HOST}; spf=pass`, 'a subdomain of ours'],
    [`Authentication-Results: ${HOST}x; spf=pass`, 'a longer name'],
    [`ARC-Authentication-Results: i=1; ${HOST}; spf=pass`, 'ARC (signed, part of the chain)'],
    [`X-Authentication-Results: ${HOST}; spf=pass`, 'another header'],
    [`X-Note: Authentication-Results: ${HOST}; spf=pass`, 'the text in another header'],
  ])('keeps %s (%s), returning the same bytes', (header) => {
    const input = raw('From: a@b.test', header);
    expect(stripForgedAuthResults(input, HOST)).toBe(input);
  });

  it('handles LF-only messages and messages without a body', () => {
    expect(stripForgedAuthResults(Buffer.from(`From: a\nAuthentication-Results: ${HOST}; spf=pass\n\nbody\n`), HOST).toString()).toBe('From: a\n\nbody\n');
    expect(stripForgedAuthResults(Buffer.from(`From: a\r\nAuthentication-Results: ${HOST}; spf=pass`), HOST).toString()).toBe('From: a\r\n');
  });

  it('keeps 8-bit bytes in other headers and the body as they were', () => {
    const body = Buffer.from([0x1b, 0x24, 0x42, 0x46, 0x7c, 0xff, 0x0d, 0x0a]);
    const input = Buffer.concat([Buffer.from(`Subject: \xe7\x94\xb2\r\nAuthentication-Results: ${HOST}; spf=pass\r\n\r\n`, 'latin1'), body]);
    const out = stripForgedAuthResults(input, HOST);
    expect(out.equals(Buffer.concat([Buffer.from('Subject: \xe7\x94\xb2\r\n\r\n', 'latin1'), body]))).toBe(true);
  });
});

describe('authenticationResultsHeader', () => {
  it('says none when there is no auth symbol (the check failed), and ignores other checks’ symbols', () => {
    expect(authenticationResultsHeader(HOST, [{ name: 'AUTH_FAIL' }, { name: 'CLAMAV_VIRUS', details: ['Eicar'] }])).toBe(`${HOST}; none`);
  });

  it('orders spf, dkim, dmarc, arc; one dkim result per detail; DMARC policy symbols are dmarc=fail', () => {
    const header = authenticationResultsHeader(HOST, [
      { name: 'ARC_TEMPERROR' },
      { name: 'DMARC_POLICY_QUARANTINE', details: ['header.from=a.test (p=quarantine)'] },
      { name: 'DKIM_INVALID', details: ['header.d=a.test header.s=s1 (bad signature)', 'header.d=b.test header.s=s2'] },
      { name: 'SPF_TEMPERROR', details: ['smtp.mailfrom=x@a.test'] },
    ]);
    expect(header.split(';\r\n ')).toEqual([
      HOST,
      'spf=temperror smtp.mailfrom=x@a.test',
      'dkim=fail header.d=a.test header.s=s1 (bad signature)',
      'dkim=fail header.d=b.test header.s=s2',
      'dmarc=fail header.from=a.test (p=quarantine)',
      'arc=fail',
    ]);
  });

  it('a detail that was tampered with cannot add a line or a result', () => {
    const header = authenticationResultsHeader(HOST, [{ name: 'SPF_HARDFAIL', details: ['smtp.mailfrom=a@b.test\r\nX-Evil: 1; dmarc=pass'] }]);
    expect(header).not.toMatch(/[\r\n]X-Evil/);
    expect(header.split(';')).toHaveLength(2);
  });
});

describe('arProperty / arComment', () => {
  it('quotes what is not a token and strips what would end a result or a comment', () => {
    expect(arProperty('smtp.mailfrom', 'a.b@example.jp')).toBe('smtp.mailfrom=a.b@example.jp');
    expect(arProperty('smtp.mailfrom', 'a b"c\\;@x')).toBe('smtp.mailfrom="a b\\"c\\\\ @x"');
    expect(arProperty('header.from', '甲市.jp')).toBe('header.from="??.jp"');
    expect(arComment('nested (parens) and \\ and ; here')).toBe('(nested parens and and here)');
  });
});
