/**
 * DSN builder: the output is parsed back — with mailparser for the message and each part, and by hand for the
 * delivery-status fields — and asserted on structure, decoded content and the transport invariants (CRLF, 7bit,
 * line length), including hostile downstream replies, addresses and original headers.
 */
import { describe, expect, it } from 'vitest';
import { simpleParser, type HeaderValue, type ParsedMail } from 'mailparser';
import {
  buildDsn,
  statusFromReply,
  MAX_DIAGNOSTIC_CHARS,
  MAX_ORIGINAL_HEADER_BYTES,
  type DsnInput,
  type DsnRecipient,
} from '../../../src/delivery/dsn.ts';

const NOW = Date.UTC(2025, 0, 6, 0, 2, 0);
const ARRIVAL = Date.UTC(2025, 0, 6, 0, 0, 0);
const LAST_ATTEMPT = Date.UTC(2025, 0, 6, 0, 1, 0);
const RETRY_UNTIL = Date.UTC(2025, 0, 11, 0, 0, 0);

const ORIGINAL_HEADERS =
  'Received: from mail.example.com (mail.example.com [192.0.2.1])\r\n' +
  '\tby mx.pref.example.lg.jp (Sekisho) with ESMTPS id 01HXQ\r\n' +
  'From: Alice <alice@example.com>\r\n' +
  'To: taro@city-a.example.lg.jp\r\n' +
  'Subject: =?UTF-8?B?5Lya6K2w44Gu5qGI5YaF?=\r\n' +
  'Message-ID: <orig-1@example.com>\r\n';

function failedRecipient(over: Partial<DsnRecipient> = {}): DsnRecipient {
  return {
    address: 'taro@city-a.example.lg.jp',
    status: '5.1.1',
    action: 'failed',
    diagnostic: '550 5.1.1 <taro@city-a.example.lg.jp>: Recipient address rejected: User unknown',
    remoteMta: 'mail.city-a.example.lg.jp',
    lastAttemptAt: LAST_ATTEMPT,
    ...over,
  };
}

function input(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mx.pref.example.lg.jp',
    originalMessageId: '01HXQ',
    arrivalDate: ARRIVAL,
    sender: 'alice@example.com',
    recipients: [failedRecipient()],
    originalHeaders: Buffer.from(ORIGINAL_HEADERS, 'latin1'),
    now: NOW,
    ...over,
  };
}

interface Part {
  raw: Buffer;
  parsed: ParsedMail;
  contentType: string;
}

interface Report {
  raw: Buffer;
  message: ParsedMail;
  parts: Part[];
}

function contentTypeOf(value: HeaderValue | undefined): { value: string; params: Record<string, string> } {
  if (value === undefined || typeof value !== 'object' || !('value' in value) || !('params' in value)) {
    throw new Error('no structured Content-Type');
  }
  const params: Record<string, string> = {};
  for (const [k, v] of Object.entries(value.params)) if (typeof v === 'string') params[k] = v;
  return { value: String(value.value), params };
}

/** Parses the DSN and each of its parts (split on the boundary mailparser reports). */
async function parseReport(raw: Buffer): Promise<Report> {
  const message = await simpleParser(raw);
  const { boundary } = contentTypeOf(message.headers.get('content-type')).params;
  if (boundary === undefined) throw new Error('no boundary');
  const text = raw.toString('latin1');
  const body = text.slice(0, text.indexOf(`\r\n--${boundary}--`));
  const chunks = body.split(`\r\n--${boundary}\r\n`).slice(1);
  const parts: Part[] = [];
  for (const chunk of chunks) {
    const partRaw = Buffer.from(chunk, 'latin1');
    const parsed = await simpleParser(partRaw);
    parts.push({ raw: partRaw, parsed, contentType: contentTypeOf(parsed.headers.get('content-type')).value });
  }
  return { raw, message, parts };
}

/** The delivery-status body as field groups: per-message fields first, then one map per recipient. */
function statusGroups(part: Part): Array<Map<string, string>> {
  const raw = part.raw.toString('latin1');
  const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
  return body
    .split(/\r\n\r\n/)
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const fields = new Map<string, string>();
      for (const line of block.replace(/\r\n[ \t]+/g, ' ').split('\r\n')) {
        const colon = line.indexOf(':');
        fields.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
      }
      return fields;
    });
}

function partText(part: Part): string {
  if (part.parsed.text !== undefined) return part.parsed.text;
  const attachment = part.parsed.attachments[0];
  if (attachment === undefined) throw new Error('empty part');
  return attachment.content.toString('utf8');
}

function expectTransportSafe(raw: Buffer): void {
  for (const byte of raw) expect(byte).toBeLessThan(0x80);
  const text = raw.toString('latin1');
  expect(text.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
  expect(text.endsWith('\r\n')).toBe(true);
  for (const line of text.split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
}

/** Top-level header names, in order, from the raw header block (unfolded). */
function topHeaderNames(raw: Buffer): string[] {
  const text = raw.toString('latin1');
  const head = text.slice(0, text.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ');
  return head.split('\r\n').map((line) => line.slice(0, line.indexOf(':')).toLowerCase());
}

describe('buildDsn: failed delivery', () => {
  it('is a multipart/report of report-type delivery-status with the three parts in order', async () => {
    const report = await parseReport(buildDsn(input()));
    const ct = contentTypeOf(report.message.headers.get('content-type'));
    expect(ct.value).toBe('multipart/report');
    expect(ct.params['report-type']).toBe('delivery-status');
    expect(report.parts.map((p) => p.contentType)).toEqual(['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
  });

  it('has the envelope headers of a mailer-daemon reply, with a bilingual subject', async () => {
    const { message } = await parseReport(buildDsn(input()));
    expect(message.from?.value).toEqual([{ name: 'Mail Delivery System', address: 'MAILER-DAEMON@mx.pref.example.lg.jp' }]);
    expect(message.to).toMatchObject({ value: [{ address: 'alice@example.com' }] });
    expect(message.subject).toBe('配送不能通知 / Undelivered Mail Returned to Sender');
    expect(message.date?.getTime()).toBe(NOW);
    expect(message.messageId).toMatch(/^<[^<>@\s]+@mx\.pref\.example\.lg\.jp>$/);
    expect(message.headers.get('auto-submitted')).toBe('auto-replied');
    expect(message.headers.get('mime-version')).toBe('1.0');
  });

  it('uses messageIdDomain for the Message-ID when given', async () => {
    const { message } = await parseReport(buildDsn(input({ messageIdDomain: 'pref.example.lg.jp' })));
    expect(message.messageId).toMatch(/@pref\.example\.lg\.jp>$/);
  });

  it('explains in Japanese first, then English, and lists each recipient with the reply', async () => {
    const { parts } = await parseReport(buildDsn(input()));
    const text = partText(parts[0]!);
    const ja = text.indexOf('お送りいただいたメールは、以下の宛先に配送できませんでした。');
    const en = text.indexOf('Your message could not be delivered');
    expect(ja).toBeGreaterThanOrEqual(0);
    expect(en).toBeGreaterThan(ja);
    expect(text).toContain('宛先 / Recipient: <taro@city-a.example.lg.jp>');
    expect(text).toContain('(5.1.1)');
    expect(text).toContain('550 5.1.1 <taro@city-a.example.lg.jp>: Recipient address rejected: User unknown');
    expect(text).toContain('mail.city-a.example.lg.jp');
    expect(text).toContain('01HXQ');
    expect(parts[0]!.parsed.headers.get('content-type')).toMatchObject({ params: { charset: 'UTF-8' } });
  });

  it('carries the per-message and per-recipient delivery-status fields', async () => {
    const { parts } = await parseReport(buildDsn(input()));
    const [perMessage, perRecipient, ...rest] = statusGroups(parts[1]!);
    expect(rest).toEqual([]);
    expect(perMessage!.get('reporting-mta')).toBe('dns; mx.pref.example.lg.jp');
    expect(Date.parse(perMessage!.get('arrival-date')!)).toBe(ARRIVAL);
    expect(perRecipient!.get('final-recipient')).toBe('rfc822; taro@city-a.example.lg.jp');
    expect(perRecipient!.get('action')).toBe('failed');
    expect(perRecipient!.get('status')).toBe('5.1.1');
    expect(perRecipient!.get('remote-mta')).toBe('dns; mail.city-a.example.lg.jp');
    expect(perRecipient!.get('diagnostic-code')).toBe(
      'smtp; 550 5.1.1 <taro@city-a.example.lg.jp>: Recipient address rejected: User unknown',
    );
    expect(Date.parse(perRecipient!.get('last-attempt-date')!)).toBe(LAST_ATTEMPT);
    expect(perRecipient!.has('will-retry-until')).toBe(false);
  });

  it('gives a connection error (not an SMTP reply) its own diagnostic type and omits absent fields', async () => {
    const dsn = buildDsn(
      input({
        recipients: [failedRecipient({ status: '5.4.1', diagnostic: 'connect to 10.1.2.3:25: Connection refused', remoteMta: null, lastAttemptAt: null })],
      }),
    );
    const [, recipient] = statusGroups((await parseReport(dsn)).parts[1]!);
    expect(recipient!.get('diagnostic-code')).toBe('X-Sekisho; connect to 10.1.2.3:25: Connection refused');
    expect(recipient!.has('remote-mta')).toBe(false);
    expect(recipient!.has('last-attempt-date')).toBe(false);
  });

  it('has one block per recipient', async () => {
    const dsn = buildDsn(
      input({ recipients: [failedRecipient(), failedRecipient({ address: 'hanako@city-a.example.lg.jp', status: '5.2.2', diagnostic: '552 5.2.2 mailbox full' })] }),
    );
    const report = await parseReport(dsn);
    const groups = statusGroups(report.parts[1]!);
    expect(groups.slice(1).map((g) => [g.get('final-recipient'), g.get('status')])).toEqual([
      ['rfc822; taro@city-a.example.lg.jp', '5.1.1'],
      ['rfc822; hanako@city-a.example.lg.jp', '5.2.2'],
    ]);
    expect(partText(report.parts[0]!)).toContain('<hanako@city-a.example.lg.jp>');
  });

  it('returns the original headers and never the body', async () => {
    const withBody = Buffer.from(`${ORIGINAL_HEADERS}\r\nSECRET BODY LINE\r\nX-Not-A-Header: body\r\n`, 'latin1');
    const report = await parseReport(buildDsn(input({ originalHeaders: withBody })));
    const headers = partText(report.parts[2]!);
    expect(headers).toBe(ORIGINAL_HEADERS);
    expect(report.raw.toString('latin1')).not.toContain('SECRET BODY LINE');
    expect(report.raw.toString('latin1')).not.toContain('X-Not-A-Header');
  });

  it('is CRLF-only, 7bit and has no line over 998 octets', () => {
    expectTransportSafe(buildDsn(input()));
  });

  it('refuses to build a DSN without recipients', () => {
    expect(() => buildDsn(input({ recipients: [] }))).toThrow(RangeError);
  });
});

describe('buildDsn: delayed delivery', () => {
  const delayed = input({
    recipients: [failedRecipient({ status: '4.4.1', action: 'delayed', diagnostic: '421 4.4.1 try again later' })],
    willRetryUntil: RETRY_UNTIL,
  });

  it('has Action: delayed, a 4.x.x status and Will-Retry-Until', async () => {
    const report = await parseReport(buildDsn(delayed));
    const [, recipient] = statusGroups(report.parts[1]!);
    expect(recipient!.get('action')).toBe('delayed');
    expect(recipient!.get('status')).toBe('4.4.1');
    expect(Date.parse(recipient!.get('will-retry-until')!)).toBe(RETRY_UNTIL);
  });

  it('says so in the subject and the text, and that nothing needs resending', async () => {
    const report = await parseReport(buildDsn(delayed));
    expect(report.message.subject).toBe('配送遅延通知 / Delayed Mail (still being retried)');
    const text = partText(report.parts[0]!);
    expect(text).toContain('再送していただく必要はありません');
    expect(text).toContain('you do not need to send it again');
    expect(text.indexOf('まだ配送できていません')).toBeLessThan(text.indexOf('has not yet been delivered'));
    expectTransportSafe(report.raw);
  });

  it('never reports a delayed recipient with a permanent (5.x.x) status', async () => {
    const dsn = buildDsn(input({ recipients: [failedRecipient({ status: '5.2.2', action: 'delayed' })] }));
    const [, recipient] = statusGroups((await parseReport(dsn)).parts[1]!);
    expect(recipient!.get('status')).toBe('4.2.2');
  });
});

describe('buildDsn: hostile input', () => {
  it('a diagnostic with CRLF cannot inject a header or a delivery-status field', async () => {
    const dsn = buildDsn(
      input({ recipients: [failedRecipient({ diagnostic: '550 no\r\nX-Injected: yes\r\n\r\nFinal-Recipient: rfc822; evil@example.net' })] }),
    );
    const report = await parseReport(dsn);
    const groups = statusGroups(report.parts[1]!);
    expect(groups).toHaveLength(2);
    expect(groups[1]!.has('x-injected')).toBe(false);
    expect(groups[1]!.get('final-recipient')).toBe('rfc822; taro@city-a.example.lg.jp');
    expect(groups[1]!.get('diagnostic-code')).toBe('smtp; 550 no X-Injected: yes Final-Recipient: rfc822; evil@example.net');
    expect(report.message.headers.has('x-injected')).toBe(false);
    expectTransportSafe(report.raw);
  });

  it('a sender or remote host with CRLF cannot inject a header', async () => {
    const dsn = buildDsn(
      input({
        sender: 'alice@example.com>\r\nBcc: victim@example.net',
        reportingMta: 'mx.example\r\nX-Evil: 1',
        recipients: [failedRecipient({ address: 'taro@x.jp\r\nBcc: v@example.net', remoteMta: 'host\r\nX-Evil: 2' })],
      }),
    );
    const report = await parseReport(dsn);
    expect(topHeaderNames(report.raw)).toEqual([
      'from',
      'to',
      'subject',
      'date',
      'message-id',
      'auto-submitted',
      'mime-version',
      'content-type',
    ]);
    expect(report.message.headers.has('bcc')).toBe(false);
    expect(report.message.headers.has('x-evil')).toBe(false);
    const [perMessage, recipient] = statusGroups(report.parts[1]!);
    expect([...perMessage!.keys()]).toEqual(['reporting-mta', 'x-sekisho-queue-id', 'arrival-date']);
    expect([...recipient!.keys()]).not.toContain('bcc');
    expect([...recipient!.keys()]).not.toContain('x-evil');
    expectTransportSafe(report.raw);
  });

  it('a huge unbroken diagnostic is capped and keeps every line within 998 octets', async () => {
    const dsn = buildDsn(input({ recipients: [failedRecipient({ diagnostic: `550 ${'A'.repeat(50_000)}` })] }));
    expectTransportSafe(dsn);
    const [, recipient] = statusGroups((await parseReport(dsn)).parts[1]!);
    expect(recipient!.get('diagnostic-code')!.length).toBeLessThanOrEqual('smtp; '.length + MAX_DIAGNOSTIC_CHARS);
  });

  it('a non-ASCII diagnostic stays readable in the text part and 7bit in delivery-status', async () => {
    const report = await parseReport(buildDsn(input({ recipients: [failedRecipient({ diagnostic: '550 5.1.1 宛先が存在しません' })] })));
    expect(partText(report.parts[0]!)).toContain('550 5.1.1 宛先が存在しません');
    const [, recipient] = statusGroups(report.parts[1]!);
    expect(recipient!.get('diagnostic-code')).toMatch(/^smtp; 550 5\.1\.1 \?+$/);
    expectTransportSafe(report.raw);
  });

  it('8-bit original headers are sent quoted-printable and decode back', async () => {
    const eightBit = Buffer.from('From: alice@example.com\r\nSubject: 生の日本語の件名\r\n', 'utf8');
    const report = await parseReport(buildDsn(input({ originalHeaders: eightBit })));
    expect(report.parts[2]!.parsed.headers.get('content-transfer-encoding')).toBe('quoted-printable');
    expect(partText(report.parts[2]!)).toBe('From: alice@example.com\r\nSubject: 生の日本語の件名\r\n');
    expectTransportSafe(report.raw);
  });

  it('original headers with bare LF and an over-long line are normalised and still 7bit-safe', async () => {
    const longValue = 'x'.repeat(3_000);
    const messy = Buffer.from(`From: alice@example.com\nX-Long: ${longValue}\nTo: taro@city-a.example.lg.jp\n\nbody\n`, 'latin1');
    const report = await parseReport(buildDsn(input({ originalHeaders: messy })));
    expect(partText(report.parts[2]!)).toBe(`From: alice@example.com\r\nX-Long: ${longValue}\r\nTo: taro@city-a.example.lg.jp\r\n`);
    expectTransportSafe(report.raw);
  });

  it('a header block built to make the bounce large is cut at MAX_ORIGINAL_HEADER_BYTES', async () => {
    const line = `X-Filler: ${'y'.repeat(1_000)}\r\n`;
    const huge = Buffer.from(line.repeat(1_000), 'latin1');
    const report = await parseReport(buildDsn(input({ originalHeaders: huge })));
    const returned = partText(report.parts[2]!);
    expect(returned.length).toBeLessThanOrEqual(MAX_ORIGINAL_HEADER_BYTES);
    expect(returned.length).toBeGreaterThan(MAX_ORIGINAL_HEADER_BYTES - line.length);
    expect(returned.endsWith('\r\n')).toBe(true);
    expect(returned.split('\r\n').filter((l) => l !== '').every((l) => l === line.slice(0, -2))).toBe(true);
  });

  it('non-ASCII (SMTPUTF8) addresses keep the message 7bit: utf-8-addr-xtext and an encoded group name', async () => {
    const dsn = buildDsn(input({ sender: '山田@例え.jp', recipients: [failedRecipient({ address: '太郎@city-a.example.lg.jp' })] }));
    const report = await parseReport(dsn);
    expectTransportSafe(report.raw);
    expect(report.message.to).toMatchObject({ value: [{ name: '山田@例え.jp', group: [] }] });
    const [, recipient] = statusGroups(report.parts[1]!);
    expect(recipient!.get('final-recipient')).toBe('utf-8; \\x{592A}\\x{90CE}@city-a.example.lg.jp');
    expect(partText(report.parts[0]!)).toContain('<太郎@city-a.example.lg.jp>');
  });
});

describe('statusFromReply', () => {
  const cases: Array<[code: number | null, enhanced: string | null, permanent: boolean, expected: string, why: string]> = [
    [550, '5.1.1', true, '5.1.1', 'the enhanced code is used as sent'],
    [550, '5.1.1', false, '5.1.1', 'a 5xx reply is permanent whatever the caller says'],
    [450, '4.2.1', false, '4.2.1', 'a transient reply stays transient'],
    [452, '4.2.2', true, '5.2.2', 'given up on: class 5, subject and detail kept'],
    [550, '4.1.1', true, '5.1.1', 'the basic code decides the class, the enhanced code only subject.detail'],
    [451, '5.7.1', false, '4.7.1', 'same, the other way round'],
    [550, '2.0.0', true, '5.0.0', 'a success enhanced code on a refusal is ignored'],
    [550, '5.1.1 extra', true, '5.0.0', 'a malformed enhanced code is ignored'],
    [550, '5.1234.1', true, '5.0.0', 'subject longer than 3 digits is malformed'],
    [552, null, true, '5.0.0', '552 is used for too many things to guess: X.0.0'],
    [554, null, true, '5.0.0', 'same for 554'],
    [550, null, true, '5.0.0', 'same for 550'],
    [421, null, false, '4.4.1', '421: the host did not take the call'],
    [421, null, true, '5.4.1', '421 given up on'],
    [null, null, false, '4.4.1', 'connection refused / timed out: no answer from host'],
    [null, null, true, '5.4.1', 'no answer until the retry window expired'],
    [null, '4.7.5', false, '4.7.5', 'a local enhanced code for a connection-level failure (TLS) is honoured'],
    [501, null, true, '5.5.4', 'syntax error in arguments'],
    [502, null, true, '5.5.1', 'command not implemented'],
    [530, null, true, '5.7.0', 'STARTTLS/AUTH required'],
    [451, null, false, '4.0.0', 'other 4xx: X.0.0'],
    [250, null, false, '4.5.0', 'a success reply where a refusal was met is a protocol error'],
    [999, null, true, '5.5.0', 'an impossible reply code is a protocol error'],
  ];
  it.each(cases)('%s %s permanent=%s → %s (%s)', (code, enhanced, permanent, expected) => {
    expect(statusFromReply(code, enhanced, permanent)).toBe(expected);
  });
});
