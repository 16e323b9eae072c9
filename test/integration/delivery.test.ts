/**
 * Delivery details: TLS per route (STARTTLS when offered, requireTLS, smtps), give-up after
 * delivery.giveUpAfterMs with a DSN, one "delayed" notice, the history of attempts, and DSNs to a sender inside a
 * tenant.
 */
import { readFileSync, rmSync } from 'node:fs';
import { SMTPServer } from 'smtp-server';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Harness, queuedId } from '../helpers/harness.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';
import { selfSignedCert } from '../helpers/smtp-wire.ts';

let h: Harness | undefined;
let certDir: string;
let key: Buffer;
let cert: Buffer;

beforeAll(() => {
  const made = selfSignedCert();
  certDir = made.dir;
  key = readFileSync(made.key);
  cert = readFileSync(made.cert);
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

interface TlsSink {
  port: number;
  got: { secure: boolean; to: string[] }[];
  close(): Promise<void>;
}

async function tlsSink(mode: 'starttls' | 'implicit' | 'plain-only'): Promise<TlsSink> {
  const got: TlsSink['got'] = [];
  const server = new SMTPServer({
    secure: mode === 'implicit',
    key,
    cert,
    authOptional: true,
    disabledCommands: mode === 'plain-only' ? ['AUTH', 'STARTTLS'] : ['AUTH'],
    disableReverseLookup: true,
    logger: false,
    onData(stream, session, cb) {
      stream.resume();
      stream.on('end', () => {
        got.push({ secure: session.secure, to: session.envelope.rcptTo.map((r) => r.address) });
        cb(null, 'ok');
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const addr = server.server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : 0, got, close: () => new Promise((r) => server.close(() => r())) };
}

function tenantTo(url: string) {
  return { tenants: [{ id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: url }] };
}

describe('delivery', () => {
  it('uses STARTTLS when the downstream server offers it (smtp://)', async () => {
    const sink = await tlsSink('starttls');
    try {
      h = await Harness.start({ config: tenantTo(`smtp://127.0.0.1:${sink.port}`) });
      const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
      await h.waitForState(mid, (s) => s[0] === 'delivered');
      expect(sink.got).toEqual([{ secure: true, to: ['u@city-a.example.lg.jp'] }]);
    } finally {
      await h?.stop();
      h = undefined;
      await sink.close();
    }
  });

  it('delivers over implicit TLS (smtps://)', async () => {
    const sink = await tlsSink('implicit');
    try {
      h = await Harness.start({ config: tenantTo(`smtps://127.0.0.1:${sink.port}`) });
      const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
      await h.waitForState(mid, (s) => s[0] === 'delivered');
      expect(sink.got[0]?.secure).toBe(true);
    } finally {
      await h?.stop();
      h = undefined;
      await sink.close();
    }
  });

  it('defers (never sends in clear) when requireTLS=true and the server has no STARTTLS', async () => {
    const sink = await tlsSink('plain-only');
    try {
      h = await Harness.start({ config: tenantTo(`smtp://127.0.0.1:${sink.port}?requireTLS=true`) });
      const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
      await h.waitForState(mid, (s) => s[0] === 'deferred');
      const [r] = await h.stores.meta.getRecipients(mid);
      expect(r!.response).toMatch(/STARTTLS|TLS/i);
      expect(sink.got).toEqual([]);
    } finally {
      await h?.stop();
      h = undefined;
      await sink.close();
    }
  });

  it('refuses an unverifiable certificate when verifyTLS=true', async () => {
    const sink = await tlsSink('starttls');
    try {
      h = await Harness.start({ config: tenantTo(`smtp://127.0.0.1:${sink.port}?requireTLS=true&verifyTLS=true`) });
      const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
      await h.waitForState(mid, (s) => s[0] === 'deferred');
      expect(sink.got).toEqual([]);
    } finally {
      await h?.stop();
      h = undefined;
      await sink.close();
    }
  });

  it('gives up after delivery.giveUpAfterMs and bounces with a DSN', async () => {
    h = await Harness.start({ config: { delivery: { giveUpAfterMs: 1_000, retryInitialDelayMs: 200, retryMaxDelayMs: 300 } } });
    h.sinks.a.behaviour = { data: () => ({ code: 421, text: '4.3.2 busy' }) };
    const mid = queuedId(await sendRaw(h.port, 'sender@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, (s, m) => s[0] === 'bounced' && m === 'done');
    const [dsn] = await h.sinks.outbound.waitFor(1);
    const text = dsn!.raw.toString('latin1');
    expect(text).toMatch(/Action: failed/);
    expect(text).toMatch(/Status: 5\.3\.2/); // the deferral's detail, made permanent
    expect(text).toMatch(/gave up after/);
    const attempts = await h.stores.meta.getAttempts(mid);
    expect(attempts.slice(0, -1).every((a) => a.outcome === 'deferred' && a.response.startsWith('421 4.3.2'))).toBe(true);
    expect(attempts.at(-1)).toMatchObject({ outcome: 'bounced', response: expect.stringMatching(/^421 4\.3\.2 busy.*gave up after/) });
  });

  it('sends exactly one "delayed" notice while it keeps retrying', async () => {
    h = await Harness.start({ config: { delivery: { delayNoticeAfterMs: 1, retryInitialDelayMs: 150, retryMaxDelayMs: 150 } } });
    let refusals = 4;
    h.sinks.a.behaviour = { data: () => (refusals-- > 0 ? { code: 451, text: '4.3.0 later' } : undefined) };
    const mid = queuedId(await sendRaw(h.port, 'sender@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.sinks.a.waitFor(1);
    await h.waitForState(mid, (s) => s[0] === 'delivered');
    await new Promise((r) => setTimeout(r, 500));
    expect(h.sinks.outbound.messages).toHaveLength(1);
    const text = h.sinks.outbound.messages[0]!.raw.toString('latin1');
    expect(text).toMatch(/Action: delayed/);
    expect(text).toMatch(/Will-Retry-Until: /);
  });

  it('keeps each attempt of a deferred-then-delivered recipient, with its reply and the downstream host:port', async () => {
    h = await Harness.start({ config: { delivery: { retryInitialDelayMs: 150, retryMaxDelayMs: 150 } } });
    let refusals = 1;
    h.sinks.a.behaviour = { data: () => (refusals-- > 0 ? { code: 451, text: '4.3.0 later' } : undefined) };
    const mid = queuedId(await sendRaw(h.port, 'sender@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
    await h.waitForState(mid, (s) => s[0] === 'delivered');
    const attempts = await h.stores.meta.getAttempts(mid);
    const remote = `127.0.0.1:${h.sinks.a.port}`;
    expect(attempts.map((a) => [a.address, a.tenantId, a.outcome, a.remote])).toEqual([
      ['u@city-a.example.lg.jp', 'city-a', 'deferred', remote],
      ['u@city-a.example.lg.jp', 'city-a', 'delivered', remote],
    ]);
    expect(attempts[0]!.response).toMatch(/^451 4\.3\.0 later/);
    expect(attempts[1]!.response).toMatch(/^250 /);
    expect(attempts.every((a) => a.durationMs !== null && a.durationMs >= 0)).toBe(true);
    expect((await h.stores.meta.getRecipients(mid))[0]).toMatchObject({ attempts: 2, response: attempts[1]!.response });
  });

  it('routes a DSN for a sender inside a tenant to that tenant, not to the outbound relay', async () => {
    h = await Harness.start();
    h.sinks.a.behaviour = { rcpt: () => ({ code: 550, text: '5.1.1 unknown' }) };
    await sendRaw(h.port, 'clerk@town-b.example.lg.jp', ['nobody@city-a.example.lg.jp'], simpleMessage());
    const [dsn] = await h.sinks.b.waitFor(1);
    expect(dsn!.to).toEqual(['clerk@town-b.example.lg.jp']);
    expect(h.sinks.outbound.messages).toHaveLength(0);
  });
});
