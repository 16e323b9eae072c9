/**
 * The admin HTTP app (fastify): health, Prometheus metrics and the operators' read-only message API. Built by a
 * factory separate from listen() so tests use inject(). The quarantine console, users and release workflow
 * (DESIGN §7) build on this app.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { AggregatorRegistry, Gauge, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Pipeline } from '../queue/pipeline.ts';
import { messageStates, type MessageState, type MetaStore } from '../spool/meta-store.ts';
import type { Metrics } from '../metrics.ts';

export interface AdminDeps {
  meta: MetaStore;
  pipeline: Pick<Pipeline, 'ping' | 'counts'>;
  metrics: Metrics;
  /** Metrics of other processes of the tree (the worker child), fetched at scrape time. */
  remoteMetrics?: () => Promise<MetricObjectWithValues<MetricValue<string>>[][]>;
}

/** Largest page of the message list API. */
const MAX_PAGE = 500;

export function buildAdminApp(deps: AdminDeps): FastifyInstance {
  const app = Fastify({ logger: false });
  const { registry } = deps.metrics;

  new Gauge({
    name: 'sekisho_queue_jobs',
    help: 'BullMQ jobs per stage and state',
    labelNames: ['stage', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        const counts = await deps.pipeline.counts();
        for (const [stage, byState] of Object.entries(counts)) {
          for (const [state, n] of Object.entries(byState)) this.set({ stage, state }, n);
        }
      } catch {
        // Redis down: the gauge is absent and /healthz says so.
      }
    },
  });
  new Gauge({
    name: 'sekisho_messages',
    help: 'Messages in the MetaStore per state',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const counts = await deps.meta.countByState();
      for (const s of messageStates) this.set({ state: s }, counts[s]);
    },
  });

  app.get('/healthz', async (_req, reply) => {
    const redis = await deps.pipeline.ping();
    let store = true;
    try {
      await deps.meta.countByState();
    } catch {
      store = false;
    }
    const ok = redis && store;
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'degraded', redis, metaStore: store });
  });

  app.get('/metrics', async (_req, reply) => {
    const own = await registry.getMetricsAsJSON();
    const others = deps.remoteMetrics ? await deps.remoteMetrics().catch(() => []) : [];
    const merged = others.length ? AggregatorRegistry.aggregate([own, ...others]) : registry;
    return reply.type(merged.contentType).send(await merged.metrics());
  });

  app.get<{ Querystring: { state?: string; limit?: string; offset?: string } }>('/api/messages', async (req, reply) => {
    const state = (req.query.state ?? 'failed') as MessageState;
    if (!messageStates.includes(state)) {
      return reply.code(400).send({ error: `state must be one of ${messageStates.join(', ')}` });
    }
    const limit = Math.min(MAX_PAGE, Math.max(1, Number(req.query.limit ?? 50) || 50));
    const offset = Math.max(0, Number(req.query.offset ?? 0) || 0);
    return { state, messages: await deps.meta.listByState(state, { limit, offset }) };
  });

  app.get<{ Params: { id: string } }>('/api/messages/:id', async (req, reply) => {
    const msg = await deps.meta.getMessage(req.params.id);
    if (!msg) return reply.code(404).send({ error: 'no such message' });
    return { message: msg, recipients: await deps.meta.getRecipients(req.params.id) };
  });

  app.get('/api/queues', async () => deps.pipeline.counts());

  return app;
}
