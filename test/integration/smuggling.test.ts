/**
 * SMTP smuggling (SEC Consult, December 2023): a sender hides a second SMTP transaction behind an end-of-data
 * sequence that one server takes for the end of the message and the next one does not (`\n.\n`, `\r.\r`, …).
 * For each published probe sequence the ingress must answer exactly one 250, spool exactly one message, and the
 * downstream sink must get that one message from the real sender, with the probe text only in its body. The
 * delivered bytes must carry no bare CR or LF, so that a lenient downstream server cannot be smuggled to either.
 *
 * Probe sequences: SEC Consult's SMTP-Smuggling-Tools (inbound and outbound lists), plus the segmented
 * first-line case fixed in smtp-server (a leading ".." that arrives in its own TCP segment).
 */
import { withoutOurHeaders } from '../helpers/delivered.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Harness, queuedId } from '../helpers/harness.ts';
import { RawSmtp } from '../helpers/raw-smtp.ts';

const SENDER = 'real.sender@example.net';
const RCPT = 'user@city-a.example.lg.jp';
const VICTIM = 'victim@city-a.example.lg.jp';
const ATTACKER = 'attacker@evil.example';

/** Each fake end-of-data sequence, named as in the published probe lists. */
const VARIANTS: Record<string, string> = {
  'LF.LF': '\n.\n',
  'LF.CR': '\n.\r',
  'CR.LF': '\r.\n',
  'CR.CR': '\r.\r',
  'LF.CRLF': '\n.\r\n',
  'CR.CRLF': '\r.\r\n',
  'CRLF.CR': '\r\n.\r',
  'CRLF.LF': '\r\n.\n',
  'CRLF.CRCRLF': '\r\n.\r\r\n',
  'CRCRLF.CRCRLF': '\r\r\n.\r\r\n',
  'CRLF NUL.CRLF': '\r\n\x00.\r\n',
  // ".\n" at the start of a line that a bare LF began, followed by CRLF-terminated commands.
  'LF .LF then CRLF': '\n.\n\r\n',
};

/** The smuggled transaction that follows the fake end-of-data sequence. */
const SMUGGLED =
  `MAIL FROM:<${ATTACKER}>\r\n` +
  `RCPT TO:<${VICTIM}>\r\n` +
  'DATA\r\n' +
  'From: spoofed <ceo@city-a.example.lg.jp>\r\n' +
  `To: ${VICTIM}\r\n` +
  'Subject: SMUGGLED\r\n' +
  '\r\n' +
  'smuggled\r\n';

function probeMessage(name: string, seq: string): string {
  return (
    `From: Real Sender <${SENDER}>\r\n` +
    `To: ${RCPT}\r\n` +
    `Subject: smuggling probe ${name}\r\n` +
    'Date: Wed, 25 Nov 2026 10:00:00 +0900\r\n' +
    `Message-ID: <probe-${Math.random().toString(36).slice(2)}@example.net>\r\n` +
    '\r\n' +
    `TESTING ${name} as a fake end-of-data sequence` +
    seq +
    SMUGGLED
  );
}

/** What the delivery client sends for `raw`: every bare CR and bare LF becomes CRLF (and dots get stuffed). */
function normalisedLineEnds(raw: string): string {
  return raw.replace(/\r\n|\r|\n/g, '\r\n');
}

/** Strips the Received header Sekisho prepends (first header, folded over several lines). */

function codes(replies: string[]): string[] {
  return replies.map((r) => r.slice(0, 3));
}

/** Every reply until the server closes the connection; a hang guard, not a timing assertion. */
async function repliesUntilClosed(c: RawSmtp): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    try {
      out.push(await c.reply());
    } catch (err) {
      if (c.closed) return out;
      throw err;
    }
  }
}

let h: Harness;
beforeAll(async () => {
  h = await Harness.start();
});
afterAll(async () => {
  await h?.stop();
});

async function totalMessages(): Promise<number> {
  return Object.values(await h.stores.meta.countByState()).reduce((a, b) => a + b, 0);
}

/**
 * Runs one probe (the body already on the wire via `send`) and checks everything downstream of the ingress:
 * one message in the MetaStore, one delivery to the sink, from the real sender, smuggled text inside its body.
 */
async function expectOneMessage(name: string, body: string, replies: string[], before: { meta: number; sink: number }): Promise<void> {
  const accepted = replies.filter((r) => r.startsWith('250 2.0.0 Ok: queued as'));
  expect(accepted, `exactly one 250 for the transaction: ${JSON.stringify(replies)}`).toHaveLength(1);
  const mid = queuedId(accepted[0]!);
  expect(await totalMessages()).toBe(before.meta + 1);

  await h.sinks.a.waitFor(before.sink + 1);
  await h.waitForState(mid, (s, m) => s[0] === 'delivered' && m === 'done');
  const delivered = h.sinks.a.messages.slice(before.sink);
  expect(delivered).toHaveLength(1);
  const got = delivered[0]!;
  expect(got.from).toBe(SENDER);
  expect(got.to).toEqual([RCPT]);
  const text = withoutOurHeaders(got.raw);
  // Byte for byte the message sent, apart from line ends: the probe and the smuggled commands are body text.
  expect(text).toBe(normalisedLineEnds(body));
  expect(text).toMatch(new RegExp(`^From: Real Sender <${SENDER.replace(/\./g, '\\.')}>\\r\\n`));
  expect(text.indexOf('\r\n\r\n')).toBeLessThan(text.indexOf('MAIL FROM:<attacker@evil.example>'));
  expect(text).toContain('\r\nsmuggled\r\n');
  // Nothing a lenient downstream parser could take for a line end other than CRLF.
  expect(got.raw.toString('latin1')).not.toMatch(/\r(?!\n)|(?<!\r)\n/);
  expect(h.sinks.b.messages).toHaveLength(0);
  expect(h.sinks.outbound.messages, `no DSN or other message for ${name}`).toHaveLength(0);
}

describe('SMTP smuggling', () => {
  for (const [name, seq] of Object.entries(VARIANTS)) {
    it(`${name}: one transaction, one 250, one delivered message from the real sender`, async () => {
      const before = { meta: await totalMessages(), sink: h.sinks.a.messages.length };
      const body = probeMessage(name, seq);
      const c = await RawSmtp.connect(h.port);
      try {
        await c.hello();
        expect(await c.cmd(`MAIL FROM:<${SENDER}>`)).toMatch(/^250 /);
        expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
        expect(await c.cmd('DATA')).toMatch(/^354 /);
        c.write(body);
        c.write('.\r\nQUIT\r\n');
        const replies = await repliesUntilClosed(c);
        expect(codes(replies)).toEqual(['250', '221']);
        await expectOneMessage(name, body, replies, before);
      } finally {
        c.close();
      }
    });

    it(`${name}, pipelined in one write: the same single transaction`, async () => {
      const before = { meta: await totalMessages(), sink: h.sinks.a.messages.length };
      const body = probeMessage(`${name} pipelined`, seq);
      const c = await RawSmtp.connect(h.port);
      try {
        expect(await c.reply()).toMatch(/^220 /);
        c.write(`EHLO client.example.net\r\nMAIL FROM:<${SENDER}>\r\nRCPT TO:<${RCPT}>\r\nDATA\r\n${body}.\r\nQUIT\r\n`);
        const replies = await repliesUntilClosed(c);
        expect(codes(replies)).toEqual(['250', '250', '250', '354', '250', '221']);
        await expectOneMessage(name, body, replies, before);
      } finally {
        c.close();
      }
    });
  }

  it('a fake sequence split across TCP segments (LF | .LF) does not end the message either', async () => {
    const before = { meta: await totalMessages(), sink: h.sinks.a.messages.length };
    const body = probeMessage('segmented LF.LF', '\n.\n');
    const cut = body.indexOf('\n.\n') + 1;
    const c = await RawSmtp.connect(h.port);
    try {
      await c.hello();
      await c.cmd(`MAIL FROM:<${SENDER}>`);
      await c.cmd(`RCPT TO:<${RCPT}>`);
      expect(await c.cmd('DATA')).toMatch(/^354 /);
      c.write(body.slice(0, cut));
      await new Promise((r) => setTimeout(r, 100)); // separate segments, not a timing assertion
      c.write(body.slice(cut));
      c.write('.\r\nQUIT\r\n');
      const replies = await repliesUntilClosed(c);
      expect(codes(replies)).toEqual(['250', '221']);
      await expectOneMessage('segmented', body, replies, before);
    } finally {
      c.close();
    }
  });

  it('a dot-stuffed first line ("..") arriving in its own segment is content, not the end of DATA (smtp-server fix)', async () => {
    const before = { meta: await totalMessages(), sink: h.sinks.a.messages.length };
    const c = await RawSmtp.connect(h.port);
    try {
      await c.hello();
      await c.cmd(`MAIL FROM:<${SENDER}>`);
      await c.cmd(`RCPT TO:<${RCPT}>`);
      expect(await c.cmd('DATA')).toMatch(/^354 /);
      // The client sends a first line consisting of ".", stuffed as "..", then the smuggled transaction.
      c.write('..');
      await new Promise((r) => setTimeout(r, 100));
      c.write(`\r\n${SMUGGLED}`);
      await new Promise((r) => setTimeout(r, 100));
      c.write('.\r\nQUIT\r\n');
      const replies = await repliesUntilClosed(c);
      expect(codes(replies)).toEqual(['250', '221']);
      const mid = queuedId(replies[0]!);
      expect(await totalMessages()).toBe(before.meta + 1);
      await h.sinks.a.waitFor(before.sink + 1);
      await h.waitForState(mid, (_s, m) => m === 'done');
      const delivered = h.sinks.a.messages.slice(before.sink);
      expect(delivered).toHaveLength(1);
      expect(delivered[0]!.from).toBe(SENDER);
      expect(delivered[0]!.to).toEqual([RCPT]);
      expect(withoutOurHeaders(delivered[0]!.raw)).toBe(`.\r\n${SMUGGLED}`);
    } finally {
      c.close();
    }
  });
});
