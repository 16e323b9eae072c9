/**
 * The admin app's operations side: health (Redis, MetaStore), Prometheus metrics of the ingress and worker behind a
 * login or token, the failed hold, message tracking; and that nothing but /healthz answers without a session.
 */
import { afterEach, expect, it } from 'vitest';
import { buildAdminApp } from '../../src/admin/app.ts';
import { adminContext } from '../../src/runtime.ts';
import { hashPassword } from '../../src/admin/auth/passwords.ts';
import { TEST_PASSWORD, type AdminUnderTest } from '../helpers/admin.ts';
import { Harness, override, queuedId } from '../helpers/harness.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
let admin: AdminUnderTest | undefined;
afterEach(async () => {
  await admin?.close();
  await h?.stop();
  h = undefined;
  admin = undefined;
});

it('reports health, metrics, messages per state and the path of a message', async () => {
  h = await Harness.start();
  const { ctx, close } = adminContext(
    h.config,
    { stores: h.stores, pipeline: h.ingress.pipeline, metrics: h.ingress.metrics, remoteMetrics: async () => [await h!.worker!.metrics.registry.getMetricsAsJSON()] },
    h.log,
  );
  const app = buildAdminApp(ctx);
  admin = { app, ctx, close: async () => (await app.close(), await close()) } as AdminUnderTest;
  await ctx.accounts.create({ username: 'ops', role: 'operator', passwordHash: await hashPassword(TEST_PASSWORD) });
  const { token } = await ctx.accounts.createToken({ accountId: (await ctx.accounts.byUsername('ops'))!.id, name: 'prometheus', now: Date.now(), expiresAt: null });
  const auth = { authorization: `Bearer ${token}` };

  const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
  await sendRaw(h.port, 's@example.net', ['x@example.org'], simpleMessage());
  await h.waitForState(mid, (_s, m) => m === 'done');

  const health = await app.inject('/healthz');
  expect(health.statusCode).toBe(200);
  expect(health.json()).toEqual({ status: 'ok', redis: true, metaStore: true });

  expect((await app.inject('/metrics')).statusCode).toBe(401);
  const metrics = (await app.inject({ url: '/metrics', headers: auth })).body;
  expect(metrics).toMatch(/^sekisho_messages_received_total\{role="ingress"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_smtp_rejected_total\{reason="relay-denied",role="ingress"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_recipients_total\{outcome="delivered",tenant="city-a",role="worker"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_stage_duration_seconds_count\{stage="scan",role="worker"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_queue_jobs\{stage="deliver",state="waiting",role="ingress"\} 0$/m);
  expect(metrics).toMatch(/^sekisho_messages\{state="done",role="ingress"\} 1$/m);

  const done = await app.inject({ url: '/api/queue-messages?state=done', headers: auth });
  expect(done.json().messages.map((m: { id: string }) => m.id)).toEqual([mid]);
  const one = await app.inject({ url: `/api/messages/${mid}`, headers: auth });
  expect(one.json().recipients[0]).toMatchObject({ address: 'u@city-a.example.lg.jp', state: 'delivered' });
  expect(one.json().attempts[0]).toMatchObject({ address: 'u@city-a.example.lg.jp', outcome: 'delivered' });
  expect(one.json().message.subject).toBeNull(); // operators see no message content
  expect((await app.inject({ url: '/api/queue-messages?state=bogus', headers: auth })).statusCode).toBe(400);
  expect((await app.inject({ url: '/api/messages/nope', headers: auth })).statusCode).toBe(404);
  for (const url of ['/api/queues', '/api/messages', '/api/quarantine', '/api/audit', '/console', '/openapi.json']) {
    const r = await app.inject(url);
    expect([401, 302], url).toContain(r.statusCode);
  }
});

it('answers 503 on /healthz when Redis is unreachable', async () => {
  h = await Harness.start();
  const { ctx, close } = adminContext(h.config, { stores: h.stores, pipeline: override(h.ingress.pipeline, { ping: async () => false }), metrics: h.ingress.metrics }, h.log);
  const app = buildAdminApp(ctx);
  admin = { app, ctx, close: async () => (await app.close(), await close()) } as AdminUnderTest;
  const r = await app.inject('/healthz');
  expect(r.statusCode).toBe(503);
  expect(r.json()).toMatchObject({ status: 'degraded', redis: false });
});
