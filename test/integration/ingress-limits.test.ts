/**
 * The ingress's limits and capabilities, end to end over real sockets: message size (SIZE= and streamed, never
 * buffered), the EHLO capability list, STARTTLS, per-IP connection caps and rates, recipients per message, the
 * relay-denied metric, and graceful shutdown.
 */
import { withoutOurMarks } from '../helpers/delivered.ts';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, queuedId } from '../helpers/harness.ts';
import { RawSmtp, sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';
import { WireSmtp, selfSignedCert } from '../helpers/smtp-wire.ts';

let h: Harness | undefined;
const cleanups: (() => void)[] = [];
afterEach(async () => {
  await h?.stop();
  h = undefined;
  for (const c of cleanups.splice(0)) c();
});

const SMALL_LIMIT = 200 * 1024;
const FROM = 'sender@example.net';
const RCPT = 'user@city-a.example.lg.jp';

async function spooledIds(harness: Harness): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of harness.stores.store.list()) ids.push(id);
  return ids;
}

function tmpFiles(harness: Harness): string[] {
  return readdirSync(path.join(harness.dataDir, 'spool', 'tmp'));
}

async function totalMessages(harness: Harness): Promise<number> {
  return Object.values(await harness.stores.meta.countByState()).reduce((a, b) => a + b, 0);
}

/** `n` bytes of message: headers, then 78-byte lines (no line starts with "."), ending in CRLF. */
function messageOfSize(n: number): Buffer {
  const head = Buffer.from(simpleMessage({ body: '' }), 'latin1');
  const line = Buffer.from(`${'A'.repeat(76)}\r\n`, 'latin1');
  const parts: Buffer[] = [head];
  let size = head.length;
  while (size + line.length <= n - 2) {
    parts.push(line);
    size += line.length;
  }
  parts.push(Buffer.from(`${'B'.repeat(n - size - 2)}\r\n`, 'latin1'));
  const out = Buffer.concat(parts);
  if (out.length !== n) throw new Error(`built ${out.length} bytes instead of ${n}`);
  return out;
}

/**
 * V8's collector, so that RSS samples measure what is held, not garbage not yet collected (vitest's forks do
 * not run with --expose-gc; the flag can still be set at run time). A no-op if it cannot be had.
 */
function exposedGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  try {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as () => void;
  } catch {
    return () => undefined;
  }
}

/** The rejected-by-reason counter as Prometheus exposes it. */
async function rejectedCount(harness: Harness, reason: string): Promise<number> {
  const text = await harness.ingress.metrics.registry.metrics();
  const m = new RegExp(`^sekisho_smtp_rejected_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)$`, 'm').exec(text);
  return m?.[1] ? Number(m[1]) : 0;
}

/** Connects and reads the greeting (220, or the 421 of a refused connection). */
async function connectAndGreet(port: number): Promise<{ c: RawSmtp; greeting: string }> {
  const c = await RawSmtp.connect(port);
  return { c, greeting: await c.reply() };
}

describe('message size', () => {
  it('advertises SIZE <limit>, 8BITMIME, SMTPUTF8, PIPELINING, ENHANCEDSTATUSCODES, and no STARTTLS without smtp.tls', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { maxMessageBytes: SMALL_LIMIT } } });
    const c = await RawSmtp.connect(h.port);
    const ehlo = await c.hello();
    const lines = ehlo.split(/\r?\n/).map((l) => l.slice(4));
    expect(ehlo).toMatch(/^250-mx\.pref\.test\.lg\.jp /);
    expect(lines).toEqual(expect.arrayContaining([`SIZE ${SMALL_LIMIT}`, '8BITMIME', 'SMTPUTF8', 'PIPELINING', 'ENHANCEDSTATUSCODES']));
    expect(lines).not.toContain('STARTTLS');
    expect(lines.some((l) => l.startsWith('AUTH'))).toBe(false);
    expect(await c.cmd('STARTTLS')).toMatch(/^5\d\d /);
    c.close();
  });

  it('refuses MAIL FROM with SIZE= above smtp.maxMessageBytes with 552 5.3.4, and takes SIZE= at the limit', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { maxMessageBytes: SMALL_LIMIT } } });
    const c = await RawSmtp.connect(h.port);
    await c.hello();
    expect(await c.cmd(`MAIL FROM:<${FROM}> SIZE=${SMALL_LIMIT + 1}`)).toMatch(/^552 5\.3\.4 /);
    expect(await c.cmd(`MAIL FROM:<${FROM}> SIZE=${SMALL_LIMIT}`)).toMatch(/^250 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
    c.close();
  });

  it('refuses a streamed DATA over the limit with 552 5.3.4, keeps nothing, and the session takes the next message', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { maxMessageBytes: SMALL_LIMIT } } });
    const c = await RawSmtp.connect(h.port);
    await c.hello();
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    // No SIZE= was declared: the limit has to be enforced on the stream itself.
    c.write(messageOfSize(SMALL_LIMIT * 3));
    c.write('.\r\n');
    expect(await c.reply()).toMatch(/^552 5\.3\.4 /);

    expect(await spooledIds(h)).toEqual([]);
    expect(tmpFiles(h)).toEqual([]);
    expect(await totalMessages(h)).toBe(0);
    expect(await h.ingress.pipeline.queue('scan').count()).toBe(0);
    expect(await rejectedCount(h, 'size')).toBe(1);

    // Same connection, next transaction: a small message is accepted (and is then the only one anywhere).
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    c.write(simpleMessage());
    c.write('.\r\n');
    const mid = queuedId(await c.reply());
    expect(await spooledIds(h)).toEqual([mid]);
    expect(await h.ingress.pipeline.queue('scan').count()).toBe(1);
    c.close();
  });

  it('takes a message of exactly smtp.maxMessageBytes and refuses one byte more (no off-by-one, header not counted)', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { maxMessageBytes: SMALL_LIMIT } } });
    expect(await sendRaw(h.port, FROM, [RCPT], messageOfSize(SMALL_LIMIT))).toMatch(/^250 2\.0\.0 /);
    expect(await sendRaw(h.port, FROM, [RCPT], messageOfSize(SMALL_LIMIT + 1))).toMatch(/^552 5\.3\.4 /);
    expect(await spooledIds(h)).toHaveLength(1);
    expect(tmpFiles(h)).toEqual([]);
  });

  it('accepts a 50 MB message while RSS grows by less than 64 MB: DATA is streamed to the spool, never buffered', { timeout: 180_000 }, async () => {
    const total = 50 * 1024 * 1024;
    h = await Harness.start({ noWorker: true, config: { smtp: { maxMessageBytes: 60 * 1024 * 1024 } } });
    // Warm up (first use of every code path allocates), then take the baseline.
    expect(await sendRaw(h.port, FROM, [RCPT], simpleMessage())).toMatch(/^250 /);
    const c = await WireSmtp.connect(h.port);
    await c.hello();
    expect(await c.cmd(`MAIL FROM:<${FROM}> SIZE=${total}`)).toMatch(/^250 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);

    const gc = exposedGc();
    gc();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
      gc(); // keep floating garbage out of the next sample: what is measured is what the ingress holds on to
    }, 50);
    let reply: string;
    try {
      const head = Buffer.from(simpleMessage({ subject: 'big', body: '' }), 'latin1');
      // One reusable 64 KB block of 78-byte lines: the client holds nothing more than that.
      const block = Buffer.from(`${'Q'.repeat(76)}\r\n`.repeat(840), 'latin1');
      await c.write(head);
      let sent = head.length;
      while (sent + block.length <= total) {
        await c.write(block);
        sent += block.length;
      }
      await c.write(Buffer.from(`${'R'.repeat(total - sent - 2)}\r\n`, 'latin1'));
      await c.write('.\r\n');
      reply = await c.reply(120_000);
    } finally {
      clearInterval(sampler);
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const growthMb = (peak - baseline) / (1024 * 1024);
    expect(growthMb, `RSS grew by ${growthMb.toFixed(1)} MB`).toBeLessThan(64);
    const msg = await h.stores.meta.getMessage(queuedId(reply));
    expect(msg!.size).toBeGreaterThan(total); // the whole message plus our Received header
    c.close();
  });
});

describe('STARTTLS', () => {
  it('is offered only with smtp.tls; a message sent over it is marked ESMTPS in Received and in the metadata row', async () => {
    const cert = selfSignedCert();
    cleanups.push(() => rmSync(cert.dir, { recursive: true, force: true }));
    h = await Harness.start({ config: { smtp: { tls: { cert: cert.cert, key: cert.key } } } });
    const c = await WireSmtp.connect(h.port);
    const ehlo = await c.hello();
    expect(ehlo).toMatch(/^250[- ]STARTTLS$/m);
    const cipher = await c.startTls({ ca: readFileSync(cert.cert), servername: 'localhost' });
    expect(c.secure).toBe(true);
    // RFC 3207: the session starts over; STARTTLS is not offered again.
    const ehlo2 = await c.cmd('EHLO client.example.net');
    expect(ehlo2).toMatch(/^250[- ]PIPELINING$/m);
    expect(ehlo2).not.toMatch(/STARTTLS/);
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    await c.write(simpleMessage({ subject: 'over tls' }));
    await c.write('.\r\n');
    const mid = queuedId(await c.reply());
    await c.cmd('QUIT');
    c.close();

    const [got] = await h.sinks.a.waitFor(1);
    const received = /^Received: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*/.exec(withoutOurMarks(got!.raw))![0];
    expect(received).toMatch(/\bwith ESMTPS\b/);
    expect(received).toContain(cipher);
    const row = await h.stores.meta.getMessage(mid);
    expect(row!.tls).toBe(cipher);
  });

  it('marks a plaintext message ESMTP with no TLS in the metadata row', async () => {
    h = await Harness.start();
    const mid = queuedId(await sendRaw(h.port, FROM, [RCPT], simpleMessage()));
    const [got] = await h.sinks.a.waitFor(1);
    expect(withoutOurMarks(got!.raw)).toMatch(/^Received: [\s\S]*?\bwith ESMTP id /);
    expect((await h.stores.meta.getMessage(mid))!.tls).toBeNull();
  });
});

describe('connection and recipient limits', () => {
  it('smtp.maxConnectionsPerIp: the third concurrent connection gets 421 4.7.0 and is closed; after one closes a new one is admitted', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { maxConnectionsPerIp: 2 } } });
    const first = await connectAndGreet(h.port);
    const second = await connectAndGreet(h.port);
    expect(first.greeting).toMatch(/^220 /);
    expect(second.greeting).toMatch(/^220 /);
    const third = await connectAndGreet(h.port);
    expect(third.greeting).toMatch(/^421 4\.7\.0 /);
    await third.c.waitClosed();
    expect(await rejectedCount(h, 'ip-concurrency')).toBe(1);

    // The two admitted sessions still work.
    expect(await first.c.cmd('EHLO client.example.net')).toMatch(/^250/);
    expect(await second.c.cmd('NOOP')).toMatch(/^250/);

    expect(await first.c.cmd('QUIT')).toMatch(/^221/);
    await first.c.waitClosed();
    // The slot is released when the server has processed the close; retry briefly (hang guard, not timing).
    let next: { c: RawSmtp; greeting: string } | undefined;
    for (let i = 0; i < 50; i++) {
      next = await connectAndGreet(h.port);
      if (next.greeting.startsWith('220')) break;
      next.c.close();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(next!.greeting).toMatch(/^220 /);
    expect(await sendRawOn(next!.c)).toMatch(/^250 /);
    second.c.close();
    next!.c.close();
  });

  it('smtp.connectionRatePerIpPerMinute: the 4th connection within the minute gets 421 4.7.0', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { connectionRatePerIpPerMinute: 3 } } });
    for (let i = 0; i < 3; i++) {
      const { c, greeting } = await connectAndGreet(h.port);
      expect(greeting).toMatch(/^220 /);
      expect(await c.cmd('QUIT')).toMatch(/^221/);
      c.close();
    }
    const { c, greeting } = await connectAndGreet(h.port);
    expect(greeting).toMatch(/^421 4\.7\.0 /);
    await c.waitClosed();
    expect(await rejectedCount(h, 'ip-rate')).toBe(1);
  });

  it('smtp.maxRecipients: the 4th RCPT gets 452 and the message goes to the first three only', async () => {
    h = await Harness.start({ config: { smtp: { maxRecipients: 3 } } });
    const c = await RawSmtp.connect(h.port);
    await c.hello();
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
    for (const n of [1, 2, 3]) expect(await c.cmd(`RCPT TO:<u${n}@city-a.example.lg.jp>`)).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<u4@city-a.example.lg.jp>')).toMatch(/^452 /);
    // Re-sending an accepted recipient is not a new one.
    expect(await c.cmd('RCPT TO:<u1@city-a.example.lg.jp>')).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    c.write(simpleMessage());
    c.write('.\r\n');
    expect(await c.reply()).toMatch(/^250 /);
    c.close();
    const [got] = await h.sinks.a.waitFor(1);
    expect([...got!.to].sort()).toEqual(['u1@city-a.example.lg.jp', 'u2@city-a.example.lg.jp', 'u3@city-a.example.lg.jp']);
  });

  it('counts each refused relay attempt in sekisho_smtp_rejected_total{reason="relay-denied"}', async () => {
    h = await Harness.start({ noWorker: true });
    expect(await rejectedCount(h, 'relay-denied')).toBe(0);
    const c = await RawSmtp.connect(h.port);
    await c.hello();
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
    expect(await c.cmd('RCPT TO:<victim@example.com>')).toMatch(/^550 5\.7\.1 /);
    expect(await c.cmd('RCPT TO:<victim@sub.city-a.example.lg.jp>')).toMatch(/^550 5\.7\.1 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
    c.close();
    expect(await rejectedCount(h, 'relay-denied')).toBe(2);
  });
});

describe('graceful shutdown', () => {
  it('lets a client in the middle of DATA finish (250, delivered) after stop(), and refuses new connections', async () => {
    h = await Harness.start({ config: { smtp: { closeTimeoutMs: 10_000 } } });
    const port = h.port;
    const c = await RawSmtp.connect(port);
    await c.hello();
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    const msg = simpleMessage({ subject: 'in flight at shutdown', body: 'first half\r\nsecond half' });
    const cut = msg.indexOf('second half');
    c.write(msg.slice(0, cut));

    const stopped = h.ingress.stop();
    // The listener closes at once: a new client is refused (connection error, or a 421 if it got in).
    const late = await RawSmtp.connect(port).then(
      async (l) => {
        const r = await l.reply().catch(() => 'closed');
        l.close();
        return r;
      },
      (err: NodeJS.ErrnoException) => err.code ?? 'error',
    );
    expect(late).toMatch(/^(ECONNREFUSED|ECONNRESET|closed|421 )/);

    c.write(msg.slice(cut));
    c.write('.\r\n');
    const mid = queuedId(await c.reply());
    c.close();
    await stopped;
    const [got] = await h.sinks.a.waitFor(1);
    expect(got!.raw.toString('latin1')).toContain('first half\r\nsecond half');
    await h.waitForState(mid, (s) => s[0] === 'delivered');
  });
});

/** One small message on an already greeted connection. */
async function sendRawOn(c: RawSmtp): Promise<string> {
  await c.cmd('EHLO client.example.net');
  await c.cmd(`MAIL FROM:<${FROM}>`);
  await c.cmd(`RCPT TO:<${RCPT}>`);
  await c.cmd('DATA');
  c.write(simpleMessage());
  c.write('.\r\n');
  return c.reply();
}
