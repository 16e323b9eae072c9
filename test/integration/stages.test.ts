/**
 * The list of stages and the sanitize stage, through the real pipeline (Redis, SQLite, the spool, SMTP sinks).
 * A stage added to a test list gets its queue, its worker, its recovery and its metrics with no other change;
 * mail for a sanitizing tenant reaches it only as the sanitizer's copy, the original stays in the spool and is
 * handed to the quarantine hook; a sanitizer that throws or is missing never lets the raw bytes through.
 *
 * The sanitizer here is a small real implementation of the Sanitizer interface (it writes a fixed text message
 * with src/mime/compose.ts): these tests are about the stage around it, not about sanitizing.
 */
import { Readable } from 'node:stream';
import { simpleParser } from 'mailparser';
import { afterEach, describe, expect, it } from 'vitest';
import { composeMessage } from '../../src/mime/compose.ts';
import type { AnyStage } from '../../src/queue/stage.ts';
import { stages } from '../../src/queue/stages.ts';
import type { KeptMessage, QuarantineKeeper } from '../../src/quarantine/keeper.ts';
import type { SanitizeRequest, Sanitizer } from '../../src/sanitize/sanitizer.ts';
import { Harness, queuedId } from '../helpers/harness.ts';
import { newMessage } from '../helpers/new-message.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

/** Rebuilds every message as one line of text naming the tenant; or throws, when told to. */
class TextSanitizer implements Sanitizer {
  readonly calls: SanitizeRequest[] = [];
  constructor(readonly fail = false) {}
  async sanitize(req: SanitizeRequest) {
    this.calls.push(req);
    if (this.fail) throw new Error('converter crashed');
    const message = composeMessage([{ name: 'Subject', value: '無害化済み' }], {
      kind: 'leaf',
      contentType: 'text/plain; charset=utf-8',
      body: `sanitized for ${req.tenant.id}`,
    });
    return { message, summary: ['body: text only'], header: 'text; parts=1', parts: [] };
  }
  async close() {}
}

class KeptOriginals implements QuarantineKeeper {
  readonly kept: [string, string, string, readonly string[]][] = [];
  async keep(msg: KeptMessage, tenantId: string, kind: string, reasons: readonly string[]) {
    this.kept.push([msg.id, tenantId, kind, reasons]);
  }
  async holds(mid: string) {
    return this.kept.some(([m]) => m === mid);
  }
}

const SECRET = 'ORIGINAL-BODY-7f3a';

describe('the list of stages', () => {
  it('gives a stage added to the list a queue, a worker, recovery and metrics, with no other change', async () => {
    const ran: string[] = [];
    const audit: AnyStage = {
      name: 'audit',
      concurrency: () => 1,
      jobId: ({ mid }: { mid: string }) => `audit-${mid}`,
      async process(job: { data: { mid: string } }) {
        ran.push(job.data.mid);
        return { handOffs: [] };
      },
      async recover(msg) {
        return { handOffs: msg.state === 'delivering' ? [{ stage: 'audit', data: { mid: msg.id }, delayMs: 0 }] : [] };
      },
    };
    h = await Harness.start({ noWorker: true, stages: [...stages, audit] });
    // An unfinished message whose jobs Redis lost: a recipient deferred for 30 s after one attempt (within its retry
    // schedule plus slack, see effectiveDueAt), nothing in the queues.
    const msg = newMessage({ recipients: [{ address: 'u@city-a.example.lg.jp', tenantId: 'city-a' }] });
    const written = await h.stores.store.write(msg.id, Readable.from([Buffer.from(simpleMessage())]));
    await h.stores.meta.insertMessage({ ...msg, receivedAt: Date.now(), ...written });
    await h.stores.meta.update(msg.id, {
      recipients: [{ patch: { action: 'deliver', state: 'deferred', nextAttemptAt: Date.now() + 30_000, countAttempt: true } }],
      message: { state: 'delivering' },
    });

    const worker = await h.startWorker(); // recovers on start
    expect(Object.keys(await worker.pipeline.counts())).toEqual(['scan', 'sanitize', 'deliver', 'audit']);
    for (let i = 0; i < 100 && !ran.length; i++) await new Promise((r) => setTimeout(r, 50));
    expect(ran).toEqual([msg.id]);
    // The stages before it recovered as before: the deferred delivery waits in its queue.
    expect(await worker.pipeline.queue('deliver').getJobState(`deliver-${msg.id}-city-a`)).toBe('delayed');
    const metrics = await worker.metrics.registry.metrics();
    for (const stage of ['scan', 'sanitize', 'deliver', 'audit']) expect(metrics).toContain(`stage="${stage}"`);
  });
});

describe('the sanitize stage', () => {
  it('delivers only the sanitized copy to a sanitizing tenant, the original to the others, and keeps the original', async () => {
    const sanitizer = new TextSanitizer();
    const quarantine = new KeptOriginals();
    h = await Harness.start({ sanitizer, quarantine, tenantOptions: { 'town-b': { sanitize: true } } });
    const raw = simpleMessage({ subject: 'hello', body: SECRET });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp', 'v@town-b.example.lg.jp'], raw));
    await h.waitForState(mid, (s, m) => m === 'done' && s.every((x) => x === 'delivered'));

    expect(h.sinks.a.messages).toHaveLength(1);
    expect(h.sinks.a.messages[0]!.raw.toString('latin1')).toContain(SECRET);
    expect(h.sinks.b.messages).toHaveLength(1);
    const out = h.sinks.b.messages[0]!.raw;
    expect(out.toString('latin1')).not.toContain(SECRET);
    const mail = await simpleParser(out);
    expect(mail.text?.trim()).toBe('sanitized for town-b');
    expect(mail.headers.get('x-sekisho-sanitized')).toBe('text; parts=1');

    expect(sanitizer.calls.map((c) => [c.mid, c.tenant.id, c.recipients])).toEqual([[mid, 'town-b', ['v@town-b.example.lg.jp']]]);
    expect(sanitizer.calls[0]!.verdict.decisions['town-b']?.action).toBe('sanitize');
    expect(quarantine.kept).toEqual([[mid, 'town-b', 'original', ['tenant town-b sanitizes every message']]]);
    // The original stays (the quarantine's copy); the sanitized copy is in the spool under the tenant's key.
    expect((await h.stores.store.read(mid)).toString('latin1')).toContain(SECRET);
    expect(await h.stores.store.exists(mid, { sanitized: 'town-b' })).toBe(true);
    const rcpts = await h.stores.meta.getRecipients(mid);
    expect(rcpts.map((r) => [r.tenantId, r.action])).toEqual([
      ['city-a', 'deliver'],
      ['town-b', 'sanitize'],
    ]);
  });

  it('never delivers the raw bytes when the sanitizer throws: retried, then held as failed', async () => {
    const sanitizer = new TextSanitizer(true);
    h = await Harness.start({ sanitizer, tenantOptions: { 'town-b': { sanitize: true } } });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['v@town-b.example.lg.jp'], simpleMessage({ body: SECRET })));
    await h.waitForState(mid, (_s, m) => m === 'failed');
    expect(sanitizer.calls.length).toBe(h.config.queue.maxAttempts);
    expect(h.sinks.b.messages).toHaveLength(0);
    const msg = await h.stores.meta.getMessage(mid);
    expect(msg?.lastError).toBe('sanitize: converter crashed');
    expect(await h.stores.store.exists(mid)).toBe(true);
    expect(await h.stores.store.exists(mid, { sanitized: 'town-b' })).toBe(false);
  });

  it('holds mail for a sanitizing tenant when no sanitizer is configured', async () => {
    h = await Harness.start({ sanitizer: null, tenantOptions: { 'town-b': { sanitize: true } } });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['v@town-b.example.lg.jp'], simpleMessage({ body: SECRET })));
    await h.waitForState(mid, (s, m) => m === 'done' && s[0] === 'quarantined');
    expect(h.sinks.b.messages).toHaveLength(0);
    const [r] = await h.stores.meta.getRecipients(mid);
    expect(r?.response).toBe('quarantined: sanitizer not available; tenant town-b sanitizes every message');
    expect(await h.stores.store.exists(mid)).toBe(true);
  });

  it('recovers a sanitize job Redis lost, and does not sanitize twice once the copy exists', async () => {
    const sanitizer = new TextSanitizer();
    h = await Harness.start({ sanitizer, noWorker: true, tenantOptions: { 'town-b': { sanitize: true } } });
    const mid = queuedId(await sendRaw(h.port, 's@example.net', ['v@town-b.example.lg.jp'], simpleMessage({ body: SECRET })));
    // As if a worker had scanned it and died before its hand-off reached Redis.
    await h.stores.meta.update(mid, {
      recipients: [{ patch: { action: 'sanitize', state: 'pending' } }],
      message: {
        state: 'delivering',
        verdict: {
          symbols: [],
          unlistedSymbols: [],
          failedChecks: [],
          durationsMs: {},
          decisions: { 'town-b': { action: 'sanitize', score: 0, reasons: ['x'] } },
          scannedAt: Date.now(),
        },
      },
    });
    await h.ingress.pipeline.queue('scan').obliterate({ force: true });
    await h.startWorker();
    await h.waitForState(mid, (s, m) => m === 'done' && s[0] === 'delivered');
    expect(sanitizer.calls).toHaveLength(1);
    expect((await simpleParser(h.sinks.b.messages[0]!.raw)).text?.trim()).toBe('sanitized for town-b');
    // A second pass finds the copy and the message done: nothing is sanitized or sent again.
    await h.worker!.reconciler.run();
    await new Promise((r) => setTimeout(r, 300));
    expect(sanitizer.calls).toHaveLength(1);
    expect(h.sinks.b.messages).toHaveLength(1);
  });
});
