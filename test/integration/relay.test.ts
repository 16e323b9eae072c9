/**
 * The relay's guarantees end to end: real SMTP in, real Redis/BullMQ, real SMTP sinks downstream.
 */
import { withoutOurHeaders } from '../helpers/delivered.ts';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { Redis } from 'ioredis';
import { simpleParser } from 'mailparser';
import { afterEach, describe, expect, it } from 'vitest';
import type { Check } from '../../src/scan/check.ts';
import type { Stores } from '../../src/runtime.ts';
import { Harness, override, queuedId } from '../helpers/harness.ts';
import { RawSmtp, sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/mails/${name}`, import.meta.url));

/** Strips the Received header Sekisho prepends (first header, folded over several lines). */

describe('relay', () => {
  it('refuses recipients outside every tenant with 550 5.7.1 (never an open relay), subdomains included', async () => {
    h = await Harness.start();
    const c = await RawSmtp.connect(h.port);
    await c.hello();
    expect(await c.cmd('MAIL FROM:<x@example.net>')).toMatch(/^250/);
    expect(await c.cmd('RCPT TO:<victim@example.com>')).toBe('550 5.7.1 <victim@example.com>: Relay access denied');
    expect(await c.cmd('RCPT TO:<user@sub.city-a.example.lg.jp>')).toMatch(/^550 5\.7\.1 /);
    expect(await c.cmd('RCPT TO:<user@city-a.example.lg.jp.evil.com>')).toMatch(/^550 5\.7\.1 /);
    expect(await c.cmd('RCPT TO:<"user@city-a.example.lg.jp"@evil.com>')).toMatch(/^5\d\d /);
    expect(await c.cmd('RCPT TO:<User@CITY-A.Example.LG.JP>')).toMatch(/^250/);
    expect(await c.cmd('DATA')).toMatch(/^354/);
    c.close();
  });

  it('routes one message with recipients in two tenants: one delivery per tenant, each with its own recipients', async () => {
    h = await Harness.start();
    const reply = await sendRaw(
      h.port,
      'sender@example.net',
      ['a1@city-a.example.lg.jp', 'b1@town-b.example.lg.jp', 'a2@city-a.example.lg.jp', 'b2@town-b.example.jp'],
      simpleMessage(),
    );
    expect(reply).toMatch(/^250 2\.0\.0 Ok: queued as [0-9a-z]{20}$/);
    const [a] = await h.sinks.a.waitFor(1);
    const [b] = await h.sinks.b.waitFor(1);
    expect(a!.to.sort()).toEqual(['a1@city-a.example.lg.jp', 'a2@city-a.example.lg.jp']);
    expect(b!.to.sort()).toEqual(['b1@town-b.example.lg.jp', 'b2@town-b.example.jp']);
    expect(a!.from).toBe('sender@example.net');
    const mid = queuedId(reply);
    await h.waitForState(mid, (_s, m) => m === 'done');
    expect(h.sinks.a.messages).toHaveLength(1);
    expect(h.sinks.b.messages).toHaveLength(1);
    // Delivered and done: the spool no longer holds it.
    expect(await h.stores.store.exists(mid)).toBe(false);
  });

  it('delivers ISO-2022-JP mail byte for byte, apart from the Received and X-Spam headers it adds', async () => {
    h = await Harness.start();
    const original = fixture('iso-2022-jp-plain.eml');
    const reply = await sendRaw(h.port, 'tanaka@example.co.jp', ['soumu@city-a.example.lg.jp'], original);
    expect(reply).toMatch(/^250 /);
    const [got] = await h.sinks.a.waitFor(1);
    expect(Buffer.from(withoutOurHeaders(got!.raw), 'latin1').equals(original)).toBe(true);
    const parsed = await simpleParser(got!.raw);
    expect(parsed.subject).toBe('会議資料の送付について');
    expect(parsed.text).toContain('甲市役所');
  });

  it('retries a downstream 4xx with backoff and delivers once the server accepts', async () => {
    h = await Harness.start();
    let refusals = 2;
    h.sinks.a.behaviour = { data: () => (refusals-- > 0 ? { code: 451, text: '4.3.0 try again later' } : undefined) };
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.sinks.a.waitFor(1);
    await h.waitForState(mid, (s) => s[0] === 'delivered');
    const [r] = await h.stores.meta.getRecipients(mid);
    expect(r!.attempts).toBe(3);
    expect(h.sinks.a.messages).toHaveLength(1);
  });

  it('bounces a downstream 5xx with an RFC 3464 DSN to the envelope sender, and keeps the other recipient', async () => {
    h = await Harness.start();
    h.sinks.a.behaviour = { rcpt: (a) => (a.startsWith('nobody') ? { code: 550, text: '5.1.1 <nobody>: user unknown' } : undefined) };
    const mid = queuedId(
      await sendRaw(h.port, 'sender@example.net', ['nobody@city-a.example.lg.jp', 'ok@city-a.example.lg.jp'], simpleMessage({ subject: 'bounce me' })),
    );
    const [delivered] = await h.sinks.a.waitFor(1);
    expect(delivered!.to).toEqual(['ok@city-a.example.lg.jp']);
    const [dsn] = await h.sinks.outbound.waitFor(1);
    expect(dsn!.from).toBe(''); // null sender: a DSN never causes another DSN
    expect(dsn!.to).toEqual(['sender@example.net']);
    const text = dsn!.raw.toString('latin1');
    expect(text).toMatch(/Content-Type: multipart\/report; report-type=delivery-status/i);
    expect(text).toMatch(/Final-Recipient: rfc822; ?nobody@city-a\.example\.lg\.jp/i);
    expect(text).toMatch(/Action: failed/);
    expect(text).toMatch(/Status: 5\.1\.1/);
    expect(text).toMatch(/Subject: bounce me/); // the original's headers…
    expect(text).not.toContain('\r\nhello\r\n'); // …never its body
    await h.waitForState(mid, (s) => [...s].sort().join() === 'bounced,delivered');
  });

  it('sends no DSN for a bounce of a null-sender message', async () => {
    h = await Harness.start();
    h.sinks.a.behaviour = { rcpt: () => ({ code: 550, text: '5.1.1 user unknown' }) };
    const mid = queuedId(await sendRaw(h.port, '', ['nobody@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, (s, m) => s[0] === 'bounced' && m === 'done');
    // A DSN would be a second message in the MetaStore.
    expect((await h.stores.meta.countByState()).delivering).toBe(0);
    expect(h.sinks.outbound.messages).toHaveLength(0);
  });

  it('loses nothing when Redis is flushed after the 250: the reconciler re-enqueues from the spool', async () => {
    h = await Harness.start({ noWorker: true });
    const mids = [];
    for (let i = 0; i < 3; i++) mids.push(queuedId(await sendRaw(h.port, 's@example.net', [`u${i}@city-a.example.lg.jp`], simpleMessage())));
    const redis = new Redis(h.config.redis.url!);
    await redis.flushall();
    redis.disconnect();
    await h.startWorker();
    await h.sinks.a.waitFor(3);
    for (const mid of mids) await h.waitForState(mid, (_s, m) => m === 'done');
    expect(h.sinks.a.messages).toHaveLength(3);
  });

  it('re-enqueues what Redis lost while the worker is running (periodic reconciliation)', async () => {
    h = await Harness.start();
    h.sinks.a.behaviour = { data: () => ({ code: 451, text: '4.3.0 not now' }) };
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, (s) => s[0] === 'deferred');
    const redis = new Redis(h.config.redis.url!);
    await redis.flushall();
    redis.disconnect();
    h.sinks.a.behaviour = {};
    await h.sinks.a.waitFor(1);
    await h.waitForState(mid, (s) => s[0] === 'delivered');
  });

  it('answers 451 4.3.0 and queues nothing when the spool cannot store the message', async () => {
    let failWrites = true;
    h = await Harness.start({
      wrapStores: (s: Stores) => ({
        ...s,
        meta: s.meta,
        store: override(s.store, {
          write: async (id: string, src: Readable) => {
            if (!failWrites) return s.store.write(id, src);
            src.resume();
            throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
          },
        }),
      }),
    });
    const reply = await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage());
    expect(reply).toBe('451 4.3.0 Temporary local problem, message not accepted, try again later');
    expect(await h.stores.meta.countByState()).toMatchObject({ received: 0, delivering: 0, done: 0 });
    expect(await h.ingress.pipeline.queue('scan').count()).toBe(0);
    failWrites = false;
    expect(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage())).toMatch(/^250 /);
    await h.sinks.a.waitFor(1);
  });

  it('answers 451 and leaves no spooled message when the metadata row cannot be written', async () => {
    h = await Harness.start({
      wrapStores: (s: Stores) => ({
        ...s,
        store: s.store,
        meta: override(s.meta, {
          insertMessage: async () => {
            throw new Error('SQLITE_FULL: database or disk is full');
          },
        }),
      }),
    });
    const reply = await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage());
    expect(reply).toMatch(/^451 4\.3\.0 /);
    const ids = [];
    for await (const id of h.stores.store.list()) ids.push(id);
    expect(ids).toEqual([]);
  });

  it('answers 451 and keeps nothing when Redis refuses the job', async () => {
    h = await Harness.start();
    const pipeline = h.ingress.pipeline as unknown as { enqueueScan: () => Promise<never> };
    pipeline.enqueueScan = async () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
    };
    const reply = await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage());
    expect(reply).toMatch(/^451 4\.3\.0 /);
    expect(await h.stores.meta.countByState()).toMatchObject({ received: 0 });
    const ids = [];
    for await (const id of h.stores.store.list()) ids.push(id);
    expect(ids).toEqual([]);
  });

  it('never delivers while a check fails (fail closed), and delivers once the check works again', async () => {
    let broken = true;
    const flaky: Check = {
      name: 'flaky',
      failSymbol: 'FLAKY_FAIL',
      async run() {
        if (broken) throw new Error('engine unreachable');
        return [];
      },
    };
    h = await Harness.start({ checks: [flaky] });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, (_s, m) => m === 'received');
    // Several retry rounds pass without delivery.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(h.sinks.a.messages).toHaveLength(0);
    const msg = await h.stores.meta.getMessage(mid);
    expect(msg!.state).toBe('received');
    expect(msg!.lastError).toContain('flaky failed');
    expect(JSON.stringify(msg!.verdict)).toContain('FLAKY_FAIL');
    broken = false;
    await h.sinks.a.waitFor(1);
    await h.waitForState(mid, (s) => s[0] === 'delivered');
  });

  it('scans no more message bytes at once than queue.scanMemoryBytes, and delivers everything (a bigger one alone)', async () => {
    let running = 0;
    let most = 0;
    const slow: Check = {
      name: 'slow',
      failSymbol: 'SLOW_FAIL',
      async run() {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 100));
        running--;
        return [];
      },
    };
    // Each message is well over 100 bytes: with this budget the 16 scan slots run one message at a time.
    h = await Harness.start({ checks: [slow], config: { queue: { scanConcurrency: 16, scanMemoryBytes: 100 } } });
    const replies = await Promise.all(
      Array.from({ length: 6 }, (_, i) => sendRaw(h!.port, 's@example.net', [`u${i}@city-a.example.lg.jp`], simpleMessage())),
    );
    for (const r of replies) expect(r).toMatch(/^250 /);
    await h.sinks.a.waitFor(6);
    expect(most).toBe(1);
  });

  it('quarantines instead of delivering when a check keeps failing past scan.failQuarantineAfterMs', async () => {
    const dead: Check = { name: 'dead', failSymbol: 'DEAD_FAIL', run: async () => Promise.reject(new Error('down')) };
    h = await Harness.start({ checks: [dead], config: { scan: { failQuarantineAfterMs: 500, failRetryDelayMs: 200 } } });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, (s, m) => s[0] === 'quarantined' && m === 'done');
    expect(h.sinks.a.messages).toHaveLength(0);
    expect(await h.stores.store.exists(mid)).toBe(true); // the held copy stays in the spool
  });

  it('turns a check that hangs past its deadline into <CHECK>_FAIL', async () => {
    const hang: Check = { name: 'hang', failSymbol: 'HANG_FAIL', run: () => new Promise(() => undefined) };
    h = await Harness.start({ checks: [hang], config: { scan: { checkTimeoutMs: 200, failQuarantineAfterMs: 100_000 } } });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, () => true);
    for (let i = 0; i < 100; i++) {
      const m = await h.stores.meta.getMessage(mid);
      if (JSON.stringify(m?.verdict ?? '').includes('HANG_FAIL')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(JSON.stringify((await h.stores.meta.getMessage(mid))!.verdict)).toContain('did not finish within 200 ms');
    expect(h.sinks.a.messages).toHaveLength(0);
  });

  it('moves a message whose processing keeps crashing to the failed hold after queue.maxAttempts', async () => {
    h = await Harness.start({
      wrapStores: (s: Stores) => ({
        ...s,
        meta: s.meta,
        store: override(s.store, {
          read: async () => {
            throw new Error('EIO: i/o error');
          },
        }),
      }),
    });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, (_s, m) => m === 'failed');
    const msg = await h.stores.meta.getMessage(mid);
    expect(msg!.lastError).toContain('EIO');
    expect(msg!.attempts).toBe(3);
    expect((await h.stores.meta.listByState('failed')).map((m) => m.id)).toEqual([mid]);
    expect(h.sinks.a.messages).toHaveLength(0);
  });

  it('rejects in the session with 550 when the verdict (reject) is ready within smtp.verdictWaitMs', async () => {
    h = await Harness.start({
      config: { smtp: { verdictWaitMs: 10_000 }, policy: { forceActions: { HEADER_MISSING_FROM: 'reject' } } },
    });
    const msg = simpleMessage().replace(/^From: [^\r\n]*\r\n/m, '');
    const reply = await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], msg);
    expect(reply).toMatch(/^550 5\.7\.1 Message rejected: HEADER_MISSING_FROM forces reject/);
    expect(await h.stores.meta.countByState()).toMatchObject({ rejected: 1, delivering: 0 });
    // A clean message in the same setup is accepted after its verdict.
    expect(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage())).toMatch(/^250 /);
    await h.sinks.a.waitFor(1);
  });

  it('holds (never drops) a reject verdict that arrives after the session answered 250', async () => {
    const slow: Check = { name: 'slow', failSymbol: 'SLOW_FAIL', run: () => new Promise((r) => setTimeout(() => r([{ name: 'HEADER_MISSING_FROM' }]), 800)) };
    h = await Harness.start({
      checks: [slow],
      config: { smtp: { verdictWaitMs: 100 }, policy: { forceActions: { HEADER_MISSING_FROM: 'reject' } } },
    });
    const reply = await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage());
    expect(reply).toMatch(/^250 /);
    const mid = queuedId(reply);
    await h.waitForState(mid, (s, m) => s[0] === 'quarantined' && m === 'done');
    expect(await h.stores.store.exists(mid)).toBe(true);
    expect(h.sinks.a.messages).toHaveLength(0);
  });
});
