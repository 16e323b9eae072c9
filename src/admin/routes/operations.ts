/**
 * What operators watch: `/healthz` (open, for load balancers and monitoring: Redis, the MetaStore and how current
 * the antivirus is), `/metrics` (Prometheus, every process of the tree), the queue counts, the held-as-failed list
 * and the overview page — antivirus currency, quarantine counts and a chart of messages per tenant and action over
 * the last days (inline SVG: nothing loaded from elsewhere, no script).
 */
import type { FastifyInstance } from 'fastify';
import { AggregatorRegistry, Gauge } from 'prom-client';
import { jstDayStart } from '../../japan-time.ts';
import { visibleTenants } from '../../quarantine/release.ts';
import type { AvCurrency } from '../../scan/av-currency.ts';
import type { ServiceStatus } from '../../services/supervisor.ts';
import { messageStates, type ActionCount, type MessageState } from '../../spool/meta-store.ts';
import type { AdminContext } from '../admin-context.ts';
import { html, type SafeHtml } from '../html.ts';
import type { Translate } from '../i18n.ts';
import { named, sendPage, t } from '../pages/layout.ts';

/** Largest page of the failed-message list API. */
const MAX_PAGE = 500;
const DAY_MS = 86_400_000;
/** Days of the overview chart. */
const CHART_DAYS = 7;
const ACTION_COLOURS: Record<string, string> = {
  deliver: '#3a7d44',
  'deliver-tagged': '#9bbf4b',
  sanitize: '#2f6db5',
  quarantine: '#d08c2f',
  reject: '#b53a3a',
  tempfail: '#888888',
  none: '#cccccc',
};

export interface Health {
  status: 'ok' | 'degraded';
  redis: boolean;
  metaStore: boolean;
  antivirus?: AvCurrency | null;
  /** The managed services (clamd, redis-server) of the process serving this, when it supervises any. */
  services?: ServiceStatus[];
  /** Why degraded, one line each. */
  problems?: string[];
}

export async function health(ctx: AdminContext): Promise<{ code: number; body: Health }> {
  const redis = await ctx.pipeline.ping();
  let metaStore = true;
  try {
    await ctx.meta.countByState();
  } catch {
    metaStore = false;
  }
  const problems: string[] = [];
  if (!redis) problems.push('redis unreachable');
  if (!metaStore) problems.push('metadata store unreadable');
  const av = ctx.avCurrency?.latest();
  if (av && av.status !== 'ok') problems.push(`antivirus: ${av.reason ?? av.status}`);
  const services = ctx.services?.status();
  for (const s of services ?? []) if (!s.up) problems.push(`${s.service} down (restarting)`);
  const body: Health = { status: problems.length ? 'degraded' : 'ok', redis, metaStore };
  if (ctx.avCurrency) body.antivirus = av ?? null;
  if (services) body.services = services;
  if (problems.length) body.problems = problems;
  // Mail cannot flow without Redis or the store: 503 takes the node out of rotation. Stale signatures or a managed
  // service being restarted do not stop mail: still 200, but `degraded` with the reason, for monitoring to alert on.
  return { code: redis && metaStore ? 200 : 503, body };
}

function avCard(tr: Translate, av: AvCurrency | null | undefined): SafeHtml {
  if (!av) return html`<section class="card"><h2>${tr('avTitle')}</h2><p>${tr('avUnknown')}</p></section>`;
  const cls = av.status === 'ok' ? 'ok' : 'bad';
  const label = av.status === 'ok' ? tr('avOk') : av.status === 'degraded' ? tr('avDegraded') : tr('avUnknown');
  return html`<section class="card av ${cls}"><h2>${tr('avTitle')}: <span class="badge ${cls}">${label}</span></h2>
${av.reason ? html`<p class="${cls === 'bad' ? 'error' : ''}">${av.reason}</p>` : ''}
<table class="kv"><tr><th>${tr('avSignatures')}</th><td>${av.signatures?.toLocaleString() ?? '—'}</td></tr>
<tr><th>${tr('avAge')}</th><td>${av.ageMs === null ? '—' : `${Math.round(av.ageMs / 3_600_000)} h`}</td></tr>
<tr><th>${tr('engine')}</th><td>${av.engine ?? ''}</td></tr></table></section>`;
}

/** A stacked bar per day, one colour per action: recipients of the scope's tenants. */
function actionChart(tr: Translate, counts: readonly ActionCount[], from: number, locale: string): SafeHtml {
  const actions = [...new Set(counts.map((c) => c.action ?? 'none'))].sort();
  const days = Array.from({ length: CHART_DAYS }, (_, i) => from + i * DAY_MS);
  const per = days.map((d) => {
    const byAction = new Map<string, number>();
    for (const c of counts) if (c.bucket === d) byAction.set(c.action ?? 'none', (byAction.get(c.action ?? 'none') ?? 0) + c.n);
    return byAction;
  });
  const max = Math.max(1, ...per.map((m) => [...m.values()].reduce((a, b) => a + b, 0)));
  const W = 640;
  const H = 220;
  const barW = (W - 60) / CHART_DAYS - 12;
  const bars = per.map((m, i) => {
    let y = H - 30;
    const x = 50 + i * ((W - 60) / CHART_DAYS);
    const label = new Date(days[i]!).toLocaleDateString(locale === 'ja' ? 'ja-JP' : 'en-GB', { timeZone: 'Asia/Tokyo', month: 'numeric', day: 'numeric' });
    return html`<g>${actions.map((a) => {
      const n = m.get(a) ?? 0;
      const h = ((H - 50) * n) / max;
      y -= h;
      return n ? html`<rect x="${x}" y="${y}" width="${barW}" height="${h}" fill="${ACTION_COLOURS[a] ?? '#555'}"><title>${named(tr, 'action_', a)}: ${n}</title></rect>` : '';
    })}<text x="${x + barW / 2}" y="${H - 12}" text-anchor="middle">${label}</text></g>`;
  });
  return html`<figure class="chart"><svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${tr('actionsOverTime')}">
<line x1="45" y1="${H - 30}" x2="${W - 5}" y2="${H - 30}" stroke="#999"/><text x="40" y="24" text-anchor="end">${max}</text><text x="40" y="${H - 30}" text-anchor="end">0</text>
${bars}</svg>
<figcaption>${actions.map(
    (a) => html`<span class="legend"><svg width="12" height="12" aria-hidden="true"><rect width="12" height="12" fill="${ACTION_COLOURS[a] ?? '#555'}"/></svg> ${named(tr, 'action_', a)}</span>`,
  )}</figcaption></figure>`;
}

function tenantTable(tr: Translate, counts: readonly ActionCount[]): SafeHtml {
  const actions = [...new Set(counts.map((c) => c.action ?? 'none'))].sort();
  const tenants = [...new Set(counts.map((c) => c.tenantId))].sort();
  const cell = (tn: string, a: string) => counts.filter((c) => c.tenantId === tn && (c.action ?? 'none') === a).reduce((s, c) => s + c.n, 0);
  return html`<table class="list"><thead><tr><th>${tr('tenant')}</th>${actions.map((a) => html`<th>${named(tr, 'action_', a)}</th>`)}</tr></thead><tbody>
${tenants.map((tn) => html`<tr><td>${tn}</td>${actions.map((a) => html`<td class="num">${cell(tn, a)}</td>`)}</tr>`)}</tbody></table>`;
}

function registerQueueGauges(ctx: AdminContext): void {
  const { registry } = ctx.metrics;
  new Gauge({
    name: 'sekisho_queue_jobs',
    help: 'BullMQ jobs per stage and state',
    labelNames: ['stage', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        const counts = await ctx.pipeline.counts();
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
      const counts = await ctx.meta.countByState();
      for (const s of messageStates) this.set({ state: s }, counts[s]);
    },
  });
}

export function registerOperations(app: FastifyInstance, ctx: AdminContext): void {
  const { registry } = ctx.metrics;
  // Once per registry: a process that builds the app twice (tests, a side listener) shares its metrics.
  if (!registry.getSingleMetric('sekisho_queue_jobs')) registerQueueGauges(ctx);


  app.get('/healthz', { config: { access: 'public' }, schema: { summary: 'Health: Redis, metadata store, antivirus currency', tags: ['operations'] } }, async (_req, reply) => {
    const { code, body } = await health(ctx);
    return reply.code(code).send(body);
  });

  app.get('/metrics', { config: { access: ['admin', 'operator'] }, schema: { summary: 'Prometheus metrics of every process', tags: ['operations'] } }, async (_req, reply) => {
    const own = await registry.getMetricsAsJSON();
    const others = ctx.remoteMetrics ? await ctx.remoteMetrics().catch(() => []) : [];
    const merged = others.length ? AggregatorRegistry.aggregate([own, ...others]) : registry;
    return reply.type(merged.contentType).send(await merged.metrics());
  });

  app.get<{ Querystring: { state?: string; limit?: string; offset?: string } }>(
    '/api/queue-messages',
    { config: { access: ['admin', 'operator'] }, schema: { summary: 'Messages in one pipeline state (e.g. the failed hold), newest first', tags: ['operations'] } },
    async (req, reply) => {
      const state = (req.query.state ?? 'failed') as MessageState;
      if (!messageStates.includes(state)) return reply.code(400).send({ error: `state must be one of ${messageStates.join(', ')}` });
      const limit = Math.min(MAX_PAGE, Math.max(1, Number(req.query.limit ?? 50) || 50));
      const offset = Math.max(0, Number(req.query.offset ?? 0) || 0);
      const messages = await ctx.meta.listByState(state, { limit, offset });
      return { state, messages: messages.map(({ verdict: _v, subject: _s, ...m }) => m) };
    },
  );

  app.get('/api/queues', { config: { access: ['admin', 'operator'] }, schema: { summary: 'Jobs per stage and state', tags: ['operations'] } }, async () => ctx.pipeline.counts());

  app.get('/api/overview', { config: { access: 'authenticated' }, schema: { summary: 'Health, antivirus currency, counts per tenant and action', tags: ['operations'] } }, async (req) => overview(ctx, req.principal!.actor));

  app.get('/console', { config: { access: 'authenticated' } }, async (req, reply) => {
    const tr = t(req);
    const o = await overview(ctx, req.principal!.actor);
    return sendPage(
      req,
      reply,
      tr('overviewTitle'),
      html`<div class="cards">${avCard(tr, o.health.antivirus)}
<section class="card ${o.health.status === 'ok' ? 'ok' : 'bad'}"><h2>${tr('health')}: ${named(tr, 'health_', o.health.status)}</h2>${(o.health.problems ?? []).map((p) => html`<p class="error">${p}</p>`)}
<p>redis: ${o.health.redis ? 'ok' : 'down'} · metaStore: ${o.health.metaStore ? 'ok' : 'down'}</p></section>
<section class="card"><h2>${tr('quarantineCounts')}</h2><table class="kv">${Object.entries(o.quarantine).map(
        ([s, n]) => html`<tr><th>${named(tr, 'state_', s)}</th><td class="num">${n}</td></tr>`,
      )}</table></section></div>
<section><h2>${tr('actionsOverTime')}</h2>${actionChart(tr, o.actions, o.from, req.locale)}${tenantTable(tr, o.actions)}</section>`,
    );
  });
}

export interface Overview {
  health: Health;
  from: number;
  actions: ActionCount[];
  quarantine: Record<string, number>;
}

/** The chart's counts are cached this long per scope: a week of a busy gateway takes a few hundred ms to count. */
const CHART_CACHE_MS = 60_000;
const chartCache = new WeakMap<AdminContext, Map<string, { at: number; counts: Promise<ActionCount[]> }>>();

function cachedActions(ctx: AdminContext, scope: readonly string[] | undefined, from: number, to: number): Promise<ActionCount[]> {
  const byScope = chartCache.get(ctx) ?? new Map<string, { at: number; counts: Promise<ActionCount[]> }>();
  chartCache.set(ctx, byScope);
  const key = `${scope?.join(',') ?? '*'}|${from}`;
  const hit = byScope.get(key);
  if (hit && ctx.now() - hit.at < CHART_CACHE_MS) return hit.counts;
  const counts = ctx.meta.countActions({ tenantIds: scope, from, to, bucketMs: DAY_MS });
  byScope.set(key, { at: ctx.now(), counts });
  counts.catch(() => byScope.delete(key));
  return counts;
}

async function overview(ctx: AdminContext, actor: Parameters<typeof visibleTenants>[0]): Promise<Overview> {
  const { body } = await health(ctx);
  const scope = actor.role === 'operator' || actor.role === 'auditor' ? undefined : visibleTenants(actor);
  const today = jstDayStart(ctx.now());
  const from = today - (CHART_DAYS - 1) * DAY_MS;
  const actions = await cachedActions(ctx, scope, from, today + DAY_MS);
  return { health: body, from, actions, quarantine: await ctx.quarantine.countByState(scope) };
}

