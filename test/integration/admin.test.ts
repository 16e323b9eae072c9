/**
 * The admin app: health (Redis and MetaStore), Prometheus metrics of the ingress and worker, the failed hold.
 */
import { afterEach, expect, it } from 'vitest';
import { buildAdminApp } from '../../src/admin/app.ts';
import { Harness, override, queuedId } from '../helpers/harness.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

it('reports health, metrics and messages per state', async () => {
  h = await Harness.start();
  const app = buildAdminApp({
    meta: h.stores.meta,
    pipeline: h.ingress.pipeline,
    metrics: h.ingress.metrics,
    remoteMetrics: async () => [await h!.worker!.metrics.registry.getMetricsAsJSON()],
  });
  const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage()));
  await sendRaw(h.port, 's@example.net', ['x@example.org'], simpleMessage());
  await h.waitForState(mid, (_s, m) => m === 'done');

  const health = await app.inject('/healthz');
  expect(health.statusCode).toBe(200);
  expect(health.json()).toEqual({ status: 'ok', redis: true, metaStore: true });

  const metrics = (await app.inject('/metrics')).body;
  expect(metrics).toMatch(/^sekisho_messages_received_total\{role="ingress"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_smtp_rejected_total\{reason="relay-denied",role="ingress"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_recipients_total\{outcome="delivered",tenant="city-a",role="worker"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_stage_duration_seconds_count\{stage="scan",role="worker"\} 1$/m);
  expect(metrics).toMatch(/^sekisho_queue_jobs\{stage="deliver",state="waiting",role="ingress"\} 0$/m);
  expect(metrics).toMatch(/^sekisho_messages\{state="done",role="ingress"\} 1$/m);

  const done = await app.inject('/api/messages?state=done');
  expect(done.json().messages.map((m: { id: string }) => m.id)).toEqual([mid]);
  const one = await app.inject(`/api/messages/${mid}`);
  expect(one.json().recipients[0]).toMatchObject({ address: 'u@city-a.example.lg.jp', state: 'delivered' });
  expect((await app.inject('/api/messages?state=bogus')).statusCode).toBe(400);
  expect((await app.inject('/api/messages/nope')).statusCode).toBe(404);
  await app.close();
});

it('answers 503 on /healthz when Redis is unreachable', async () => {
  h = await Harness.start();
  const app = buildAdminApp({
    meta: h.stores.meta,
    pipeline: override(h.ingress.pipeline, { ping: async () => false }),
    metrics: h.ingress.metrics,
  });
  const r = await app.inject('/healthz');
  expect(r.statusCode).toBe(503);
  expect(r.json()).toMatchObject({ status: 'degraded', redis: false });
  await app.close();
});
