/**
 * Received: trace header: the Postfix-like layout, folding under 78 columns, and that hostile HELO names,
 * rDNS names, recipients and cipher strings can neither add a header nor forge a clause of the trace.
 */
import { describe, expect, it } from 'vitest';
import {
  formatRfc5322Date,
  receivedHeader,
  MAX_HOST_NAME_CHARS,
  type ReceivedOptions,
} from '../../../src/smtp/received.ts';

const DATE = new Date(Date.UTC(2025, 0, 6, 0, 0, 0));

function options(over: Partial<ReceivedOptions> = {}): ReceivedOptions {
  return {
    heloName: 'mail.example.com',
    clientHostname: 'mail.example.com',
    clientIp: '192.0.2.1',
    byHost: 'mx.pref.example.lg.jp',
    protocol: 'ESMTPS',
    queueId: '01HXQ7',
    tlsCipher: 'TLS_AES_256_GCM_SHA384',
    recipient: 'taro@city-a.example.lg.jp',
    date: DATE,
    ...over,
  };
}

/** Asserts the folding invariants and returns the header unfolded to one line. */
function checkAndUnfold(header: string): string {
  expect(header.endsWith('\r\n')).toBe(true);
  const lines = header.slice(0, -2).split('\r\n');
  expect(header.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
  expect(lines[0]).toMatch(/^Received: /);
  for (const line of lines.slice(1)) expect(line).toMatch(/^\t\S/);
  for (const line of lines) expect(line.length).toBeLessThanOrEqual(998);
  return lines.join(' ').replace(/\t/g, '');
}

describe('receivedHeader', () => {
  it('is laid out like Postfix: from, TLS comment, by … with … id, for …; date', () => {
    expect(receivedHeader(options())).toBe(
      'Received: from mail.example.com (mail.example.com [192.0.2.1])\r\n' +
        '\t(using TLS_AES_256_GCM_SHA384)\r\n' +
        '\tby mx.pref.example.lg.jp (Sekisho) with ESMTPS id 01HXQ7\r\n' +
        `\tfor <taro@city-a.example.lg.jp>; ${formatRfc5322Date(DATE)}\r\n`,
    );
  });

  it('without a single recipient or TLS: no "for" clause, no TLS comment, the date after the semicolon', () => {
    expect(receivedHeader(options({ recipient: null, tlsCipher: null, protocol: 'ESMTP' }))).toBe(
      'Received: from mail.example.com (mail.example.com [192.0.2.1])\r\n' +
        '\tby mx.pref.example.lg.jp (Sekisho) with ESMTP id 01HXQ7;\r\n' +
        `\t${formatRfc5322Date(DATE)}\r\n`,
    );
  });

  it('writes "unknown" for a client without rDNS and for an empty HELO', () => {
    const unfolded = checkAndUnfold(receivedHeader(options({ heloName: '', clientHostname: null })));
    expect(unfolded).toMatch(/^Received: from unknown \(unknown \[192\.0\.2\.1\]\)/);
  });

  it('writes IPv6 clients as RFC 5321 address literals and IPv4-mapped ones as IPv4', () => {
    expect(receivedHeader(options({ clientIp: '2001:db8::25' }))).toContain('(mail.example.com [IPv6:2001:db8::25])');
    expect(receivedHeader(options({ clientIp: '::ffff:192.0.2.7' }))).toContain('(mail.example.com [192.0.2.7])');
  });

  it('keeps address-literal HELO names', () => {
    expect(receivedHeader(options({ heloName: '[192.0.2.1]' }))).toMatch(/^Received: from \[192\.0\.2\.1\] \(/);
    expect(receivedHeader(options({ heloName: '[IPv6:2001:db8::1]' }))).toMatch(/^Received: from \[IPv6:2001:db8::1\] \(/);
  });

  it('a HELO with CRLF, parentheses and a fake "by" clause cannot inject a header or forge the trace', () => {
    const header = receivedHeader(
      options({ heloName: 'evil.example\r\nX-Injected: yes\r\n (by trusted.example.lg.jp) by trusted.example.lg.jp' }),
    );
    const unfolded = checkAndUnfold(header);
    expect(header).not.toMatch(/\r\nX-Injected/);
    // The HELO is one token: everything up to the rDNS comment, with no space, parenthesis or colon-space in it.
    const helo = /^Received: from (\S+) \(mail\.example\.com \[192\.0\.2\.1\]\)/.exec(unfolded)?.[1];
    expect(helo).toBe('evil.exampleX-Injected:yesbytrusted.example.lg.jpbytrusted.example.lg.jp');
    expect(unfolded.match(/ by /g)).toHaveLength(1);
    expect(unfolded).toContain(' by mx.pref.example.lg.jp (Sekisho) with ESMTPS id 01HXQ7 ');
  });

  it('a hostile rDNS name, recipient or cipher cannot close a comment, the path or the header', () => {
    const header = receivedHeader(
      options({
        clientHostname: 'ptr.example) by trusted.example (x',
        recipient: 'taro@city-a.example.lg.jp>\r\nBcc: <victim@example.net',
        tlsCipher: 'AES) by trusted.example (\r\nX-Evil: 1',
      }),
    );
    const unfolded = checkAndUnfold(header);
    expect(unfolded).toContain('(ptr.examplebytrusted.examplex [192.0.2.1])');
    expect(unfolded).toContain('for <taro@city-a.example.lg.jpBcc:victim@example.net>;');
    expect(unfolded).toContain('(using AES by trusted.example X-Evil: 1)');
    expect(unfolded.match(/\(/g)).toHaveLength(unfolded.match(/\)/g)!.length);
    expect(header).not.toMatch(/\r\n(Bcc|X-Evil)/);
  });

  it('caps a 10 000-character HELO and keeps every line within 998 octets', () => {
    const header = receivedHeader(options({ heloName: 'a'.repeat(10_000) }));
    expect(checkAndUnfold(header)).toContain(`from ${'a'.repeat(MAX_HOST_NAME_CHARS)} (`);
    expect(header).not.toContain('a'.repeat(MAX_HOST_NAME_CHARS + 1));
  });

  it('folds to lines under 78 columns whenever no single name is longer than that', () => {
    const header = receivedHeader(
      options({
        heloName: 'a-rather-long-helo-name.mail-gateway.example.com',
        clientHostname: 'a-rather-long-ptr-name.mail-gateway.example.com',
        clientIp: '2001:db8:1234:5678:9abc:def0:1234:5678',
        recipient: 'a.very.long.local.part.for.testing@city-a.example.lg.jp',
        protocol: 'UTF8SMTPS',
      }),
    );
    for (const line of header.slice(0, -2).split('\r\n')) expect(line.length).toBeLessThan(78);
    expect(checkAndUnfold(header)).toContain(
      'from a-rather-long-helo-name.mail-gateway.example.com (a-rather-long-ptr-name.mail-gateway.example.com ' +
        '[IPv6:2001:db8:1234:5678:9abc:def0:1234:5678])',
    );
  });

  it('ends with a date that parses back to the given instant', () => {
    const unfolded = checkAndUnfold(receivedHeader(options()));
    expect(Date.parse(unfolded.slice(unfolded.lastIndexOf(';') + 1).trim())).toBe(DATE.getTime());
  });
});

describe('formatRfc5322Date', () => {
  it('formats in the given offset, east positive, west negative', () => {
    expect(formatRfc5322Date(DATE, 540)).toBe('Mon, 6 Jan 2025 09:00:00 +0900');
    expect(formatRfc5322Date(DATE, 0)).toBe('Mon, 6 Jan 2025 00:00:00 +0000');
    expect(formatRfc5322Date(DATE, -330)).toBe('Sun, 5 Jan 2025 18:30:00 -0530');
  });

  it('defaults to the local zone and always denotes the same instant', () => {
    expect(Date.parse(formatRfc5322Date(DATE))).toBe(DATE.getTime());
  });
});
