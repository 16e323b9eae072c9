/**
 * Hostile SMTP clients against the ingress: commands out of order, overlong lines, streams of unknown commands,
 * idle and slowloris connections, clients that vanish in the middle of DATA. Each gets a clear 4xx/5xx and, where
 * it has to, a disconnect; the process keeps serving everybody else meanwhile and keeps nothing of theirs.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../helpers/harness.ts';
import { RawSmtp, sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
const clients: RawSmtp[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await h?.stop();
  h = undefined;
});

const FROM = 'sender@example.net';
const RCPT = 'user@city-a.example.lg.jp';

async function connect(port: number): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  clients.push(c);
  return c;
}

/** A client that has said EHLO, MAIL, RCPT and DATA (354), ready to send the message. */
async function inData(port: number): Promise<RawSmtp> {
  const c = await connect(port);
  await c.hello();
  await c.cmd(`MAIL FROM:<${FROM}>`);
  await c.cmd(`RCPT TO:<${RCPT}>`);
  expect(await c.cmd('DATA')).toMatch(/^354/);
  return c;
}

/**
 * The rest of a transaction whose MAIL FROM was accepted: RCPT (250), DATA (354), the message and its dot;
 * returns the reply to the dot.
 */
async function finishMessage(c: RawSmtp): Promise<string> {
  expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^250 /);
  expect(await c.cmd('DATA')).toMatch(/^354/);
  c.write(simpleMessage());
  c.write('.\r\n');
  return c.reply();
}

/** A well-behaved client completes a whole transaction. */
async function wellBehaved(port: number): Promise<string> {
  return sendRaw(port, FROM, [RCPT], simpleMessage({ subject: 'bystander' }));
}

async function spoolIsEmpty(harness: Harness): Promise<void> {
  const ids: string[] = [];
  for await (const id of harness.stores.store.list()) ids.push(id);
  expect(ids).toEqual([]);
  expect(readdirSync(path.join(harness.dataDir, 'spool', 'tmp'))).toEqual([]);
  expect(Object.values(await harness.stores.meta.countByState()).reduce((a, b) => a + b, 0)).toBe(0);
}

async function rejectedCount(harness: Harness, reason: string): Promise<number> {
  const text = await harness.ingress.metrics.registry.metrics();
  const m = new RegExp(`^sekisho_smtp_rejected_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)$`, 'm').exec(text);
  return m?.[1] ? Number(m[1]) : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('hostile clients', () => {
  it('refuses a client that talks before the greeting (smtp.greetPauseMs) and greets one that waits', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { greetPauseMs: 500 } } });
    const early = await connect(h.port);
    early.write('EHLO spambot.example.net\r\n');
    const replies = await early.repliesUntilClosed();
    expect(replies.join('\n')).toMatch(/^421 .*talk too soon/m);
    expect(replies.join('\n')).not.toMatch(/^250/m);
    // A patient client on the same server is greeted and served.
    expect(await wellBehaved(h.port)).toMatch(/^250 2\.0\.0 /);
  });

  it('greets at once with smtp.greetPauseMs 0 (the default) ', async () => {
    h = await Harness.start({ noWorker: true });
    expect(h.config.smtp.greetPauseMs).toBe(0);
    const c = await connect(h.port);
    expect(await c.reply()).toMatch(/^220 /);
    expect(await c.cmd('EHLO client.example.net')).toMatch(/^250/);
  });

  it('answers MAIL, RCPT and DATA before EHLO with 503, and the session goes on', async () => {
    h = await Harness.start({ noWorker: true });
    const c = await connect(h.port);
    expect(await c.reply()).toMatch(/^220 /);
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^503 5\.5\.1 /);
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^503 5\.5\.1 /);
    expect(await c.cmd('DATA')).toMatch(/^503 5\.5\.1 /);
    expect(await c.cmd('EHLO client.example.net')).toMatch(/^250/);
    // Out of order after EHLO too: RCPT before MAIL, DATA before RCPT.
    expect(await c.cmd(`RCPT TO:<${RCPT}>`)).toMatch(/^503 /);
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
    expect(await c.cmd('DATA')).toMatch(/^503 /);
    expect(await finishMessage(c)).toMatch(/^250 2\.0\.0 /);
    expect(c.closed).toBe(false);
  });

  it('closes a connection whose command line exceeds 16 KB with an error, and serves the next client', async () => {
    h = await Harness.start({ noWorker: true });
    const bystander = await connect(h.port);
    await bystander.hello();

    const c = await connect(h.port);
    await c.hello();
    c.write(`NOOP ${'x'.repeat(17 * 1024)}\r\n`);
    expect(await c.reply()).toMatch(/^421 .*too long/i);
    await c.waitClosed();

    // Without a line end at all: the partial line is bounded too.
    const d = await connect(h.port);
    await d.hello();
    for (let i = 0; i < 20; i++) d.write('y'.repeat(1024));
    expect(await d.reply()).toMatch(/^421 /);
    await d.waitClosed();

    expect(await bystander.cmd('NOOP')).toMatch(/^250/);
    expect(await wellBehaved(h.port)).toMatch(/^250 2\.0\.0 /);
  });

  it('disconnects a client after ten unknown commands with 421', async () => {
    h = await Harness.start({ noWorker: true });
    const c = await connect(h.port);
    await c.hello();
    for (let i = 0; i < 9; i++) expect(await c.cmd(`XYZZY${i}`)).toMatch(/^500 /);
    expect(await c.cmd('XYZZY9')).toMatch(/^421 /);
    await c.waitClosed();
    expect(await wellBehaved(h.port)).toMatch(/^250 /);
  });

  it('smtp.maxBadCommands: closes the connection with 421 4.7.0 after that many unknown or out-of-sequence commands', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { maxBadCommands: 3 } } });
    const c = await connect(h.port);
    expect(await c.reply()).toMatch(/^220 /);
    expect(await c.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^503 /); // before EHLO
    expect(await c.cmd('XYZZY')).toMatch(/^500 /);
    expect(await c.cmd('DATA')).toMatch(/^503 /);
    expect(await c.reply()).toMatch(/^421 4\.7\.0 /);
    await c.waitClosed();
    expect(await rejectedCount(h, 'bad-commands')).toBe(1);

    // Malformed commands count too (501), after EHLO as before it.
    const d = await connect(h.port);
    await d.hello();
    expect(await d.cmd('MAIL FROM:nobody')).toMatch(/^501 /);
    expect(await d.cmd('RCPT TO:<x@city-a.example.lg.jp>')).toMatch(/^503 /);
    expect(await d.cmd('MAIL FROM:<a@@b>')).toMatch(/^501 /);
    expect(await d.reply()).toMatch(/^421 4\.7\.0 /);
    await d.waitClosed();

    // The count starts again after an accepted message: a long session with a stray error per message goes on.
    const ok = await connect(h.port);
    await ok.hello();
    for (let i = 0; i < 3; i++) {
      expect(await ok.cmd('XYZZY')).toMatch(/^500 /);
      expect(await ok.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
      expect(await ok.cmd('DATA')).toMatch(/^503 /);
      expect(await finishMessage(ok)).toMatch(/^250 /);
    }
    expect(ok.closed).toBe(false);
    expect(await rejectedCount(h, 'bad-commands')).toBe(2);
  });

  it('smtp.maxJunkCommands: NOOPs past the limit count as bad commands, so a NOOP keep-alive ends; a message resets it', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { maxJunkCommands: 4, maxBadCommands: 3 } } });
    const c = await connect(h.port);
    await c.hello();
    for (const junk of ['NOOP', 'RSET', 'NOOP', 'NOOP']) expect(await c.cmd(junk)).toMatch(/^250 /);
    // Two more are answered (bad commands 1 and 2); the third past the limit ends the session.
    expect(await c.cmd('NOOP')).toMatch(/^250 /);
    expect(await c.cmd('NOOP')).toMatch(/^250 /);
    expect(await c.cmd('NOOP')).toMatch(/^421 4\.7\.0 /);
    await c.waitClosed();
    expect(await rejectedCount(h, 'bad-commands')).toBe(1);

    // A real MTA's long session: an RSET and a NOOP per message never reach the limit.
    const ok = await connect(h.port);
    await ok.hello();
    for (let i = 0; i < 5; i++) {
      expect(await ok.cmd('RSET')).toMatch(/^250 /);
      expect(await ok.cmd('NOOP')).toMatch(/^250 /);
      expect(await ok.cmd(`MAIL FROM:<${FROM}>`)).toMatch(/^250 /);
      expect(await finishMessage(ok)).toMatch(/^250 /);
    }
    expect(ok.closed).toBe(false);
    expect(await rejectedCount(h, 'bad-commands')).toBe(1);
  });

  it('disconnects an idle client with 421 after smtp.socketTimeoutMs, before and after EHLO', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { socketTimeoutMs: 500 } } });
    const silent = await connect(h.port);
    expect(await silent.reply()).toMatch(/^220 /);
    const afterEhlo = await connect(h.port);
    await afterEhlo.hello();
    expect(await silent.reply()).toMatch(/^421 4\.4\.2 /);
    expect(await afterEhlo.reply()).toMatch(/^421 4\.4\.2 /);
    await silent.waitClosed();
    await afterEhlo.waitClosed();
    expect(await wellBehaved(h.port)).toMatch(/^250 /);
  });

  it('ends a DATA that stalls on the idle timeout, keeps nothing of it, and serves others meanwhile', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { socketTimeoutMs: 500 } } });
    const c = await inData(h.port);
    c.write(simpleMessage().slice(0, 100));
    expect(await c.reply()).toMatch(/^421 4\.4\.2 /);
    await c.waitClosed();
    // The abandoned message is gone, and it is not counted as a spool failure (operators alert on those).
    for (let i = 0; i < 50 && readdirSync(path.join(h.dataDir, 'spool', 'tmp')).length; i++) await sleep(100);
    await spoolIsEmpty(h);
    expect(await rejectedCount(h, 'spool-error')).toBe(0);
    expect(await wellBehaved(h.port)).toMatch(/^250 /);
  });

  it('ends a slowloris DATA that trickles bytes faster than the idle timeout but never finishes a line', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { socketTimeoutMs: 1_000 } } });
    const c = await inData(h.port);
    c.write('Subject: slow\r\n\r\n');
    // One byte every 100 ms: smtp-server's idle timer is reset by every byte and would never fire.
    let sent = 0;
    let bystander: Promise<string> | undefined;
    while (!c.closed && sent < 300) {
      c.write('z');
      sent++;
      if (sent === 3) bystander = wellBehaved(h.port); // others are served meanwhile
      await sleep(100);
    }
    expect(c.closed, `still open after ${sent} trickled bytes`).toBe(true);
    expect(await c.reply()).toMatch(/^421 4\.4\.2 /);
    expect(await rejectedCount(h, 'data-timeout')).toBe(1);
    expect(await bystander).toMatch(/^250 /);
    for (let i = 0; i < 50 && readdirSync(path.join(h.dataDir, 'spool', 'tmp')).length; i++) await sleep(100);
    expect(readdirSync(path.join(h.dataDir, 'spool', 'tmp'))).toEqual([]);
    // Only the bystander's message was kept.
    expect((await h.stores.meta.countByState()).received).toBe(1);
    expect(await rejectedCount(h, 'spool-error')).toBe(0);
  });

  it('does not cut off a slow sender whose bytes keep flowing, even inside one overlong line', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { socketTimeoutMs: 500 } } });
    const c = await inData(h.port);
    c.write(simpleMessage({ body: '' }));
    // 8 KB every 100 ms for 2 s, all of it one line: longer than the timeout without a line end, never idle.
    for (let i = 0; i < 20; i++) {
      c.write('w'.repeat(8 * 1024));
      await sleep(100);
    }
    c.write('\r\n.\r\n');
    expect(await c.reply()).toMatch(/^250 2\.0\.0 /);
    expect(await rejectedCount(h, 'data-timeout')).toBe(0);
  });

  it('keeps nothing of a client that disconnects in the middle of DATA', async () => {
    h = await Harness.start({ noWorker: true });
    const c = await inData(h.port);
    c.write(`${simpleMessage()}${'more body\r\n'.repeat(10_000)}`);
    await sleep(100);
    c.close();
    for (let i = 0; i < 50 && readdirSync(path.join(h.dataDir, 'spool', 'tmp')).length; i++) await sleep(100);
    await spoolIsEmpty(h);
    expect(await rejectedCount(h, 'spool-error')).toBe(0);
    expect(await wellBehaved(h.port)).toMatch(/^250 /);
  });

  it('refuses an HTTP request sent to the SMTP port (cross-protocol) with 421', async () => {
    h = await Harness.start({ noWorker: true });
    const c = await connect(h.port);
    expect(await c.reply()).toMatch(/^220 /);
    expect(await c.cmd('POST /submit HTTP/1.1')).toMatch(/^421 /);
    await c.waitClosed();
  });

  it('serves well-behaved clients while several hostile ones are connected at once', async () => {
    h = await Harness.start({ noWorker: true, config: { smtp: { socketTimeoutMs: 1_500 } } });
    const hostile = await Promise.all([0, 1, 2, 3, 4].map(() => connect(h!.port)));
    for (const c of hostile) await c.reply();
    hostile[0]!.write('x'.repeat(8 * 1024)); // half an overlong line
    hostile[1]!.write(`MAIL FROM:<${FROM}>\r\n`); // before EHLO
    hostile[2]!.write('EHLO a\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<u@city-a.example.lg.jp>\r\nDATA\r\nSubject: x\r\n'); // stalls in DATA
    const results = await Promise.all([0, 1, 2, 3, 4].map(() => wellBehaved(h!.port)));
    for (const r of results) expect(r).toMatch(/^250 2\.0\.0 /);
    expect((await h.stores.meta.countByState()).received).toBe(5);
  });
});
