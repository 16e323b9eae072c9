/**
 * Message tracking: find any message (queue id, Message-ID, sender, recipient, time) and see its path — received,
 * each check, the action per tenant, each delivery attempt with its reply, the quarantine records. Page and JSON
 * API. A tenant user finds only messages with a recipient of their tenant and sees only that tenant's part of the
 * path; an operator sees the path without the subject (no message content).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { parseJapanDate } from '../../japan-time.ts';
import { visibleTenants, type Actor } from '../../quarantine/release.ts';
import type { DeliveryAttempt, MessageQuery, MessageRecord, RecipientRecord } from '../../spool/meta-store.ts';
import type { AdminContext } from '../admin-context.ts';
import { html } from '../html.ts';
import { formatBytes, formatTime, named, sendPage, t } from '../pages/layout.ts';
import { displaySubject, textParam, verdictRows, type VerdictRow } from '../views.ts';

const TRACKING_ROLES = ['admin', 'tenant-admin', 'tenant-staff', 'operator'] as const;
const DAY_MS = 86_400_000;

interface TrackingParams {
  id?: string;
  messageId?: string;
  sender?: string;
  recipient?: string;
  from?: string;
  to?: string;
  offset?: string;
}

/** Operators see everything but message content; tenant roles their tenant; auditors nothing here. */
function scopeOf(actor: Actor): readonly string[] | undefined {
  return actor.role === 'operator' ? undefined : visibleTenants(actor);
}

/** A search by sender or recipient without dates looks this far back (ids and Message-IDs are looked up at any age). */
const DEFAULT_RANGE_MS = 7 * DAY_MS;

export function trackingQuery(p: TrackingParams, actor: Actor, now: number): MessageQuery {
  const v = (s: string | undefined) => textParam(s, 300);
  const exact = v(p.id) ?? v(p.messageId);
  return {
    id: v(p.id)?.toLowerCase(),
    headerMessageId: v(p.messageId),
    mailFrom: v(p.sender),
    recipient: v(p.recipient),
    tenantIds: scopeOf(actor),
    from: parseJapanDate(p.from, false) ?? (exact || parseJapanDate(p.to, true) ? undefined : now - DEFAULT_RANGE_MS),
    to: parseJapanDate(p.to, true),
    limit: 50,
    offset: Math.max(0, Number(p.offset ?? 0) || 0),
  };
}

export interface TrackedMessage {
  message: Omit<MessageRecord, 'verdict' | 'subject'> & { subject: string | null };
  checks: { name: string; ms: number; failed: boolean }[];
  decisions: { tenantId: string; action: string; score: number; reasons: string[] }[];
  symbols: VerdictRow[];
  recipients: RecipientRecord[];
  attempts: DeliveryAttempt[];
  quarantine: { tenantId: string; state: string; kind: string }[];
}

/** The path of one message as `actor` may see it; undefined when the message is outside the actor's scope. */
export async function trackMessage(ctx: AdminContext, actor: Actor, id: string): Promise<TrackedMessage | undefined> {
  const msg = await ctx.meta.getMessage(id);
  if (!msg) return undefined;
  const scope = scopeOf(actor);
  const mine = <T extends { tenantId: string }>(xs: readonly T[]) => (scope === undefined ? [...xs] : xs.filter((x) => scope.includes(x.tenantId)));
  const recipients = mine(await ctx.meta.getRecipients(id));
  if (scope !== undefined && !recipients.length) return undefined;
  const v = msg.verdict;
  const { verdict: _verdict, subject, ...rest } = msg;
  const decisions = Object.entries(v?.decisions ?? {}).map(([tenantId, d]) => ({ tenantId, action: d.action, score: d.score, reasons: d.reasons }));
  return {
    message: { ...rest, subject: actor.role === 'operator' ? null : subject },
    checks: Object.entries(v?.durationsMs ?? {}).map(([name, ms]) => ({ name, ms, failed: v?.failedChecks.includes(name) ?? false })),
    decisions: mine(decisions),
    symbols: verdictRows(v, ctx.config, ctx.tenants, recipients[0]?.tenantId ?? ''),
    recipients,
    attempts: mine(await ctx.meta.getAttempts(id)),
    quarantine: mine(await ctx.quarantine.ofMessage(id)).map((r) => ({ tenantId: r.tenantId, state: r.state, kind: r.kind })),
  };
}

function searchForm(req: FastifyRequest, q: TrackingParams) {
  const tr = t(req);
  const f = (name: keyof TrackingParams, label: string, type = 'text') => html`<label>${label}<input type="${type}" name="${name}" value="${q[name] ?? ''}"></label>`;
  return html`<p>${tr('trackingHelp')}</p><form method="get" action="/console/tracking" class="filters">
${f('messageId', tr('messageId'))}${f('id', tr('queueId'))}${f('sender', tr('sender'))}${f('recipient', tr('recipient'))}
${f('from', tr('dateFrom'), 'date')}${f('to', tr('dateTo'), 'date')}<button type="submit">${tr('search')}</button></form>`;
}

export function registerTracking(app: FastifyInstance, ctx: AdminContext): void {
  const access = { access: TRACKING_ROLES };
  app.get<{ Querystring: TrackingParams }>(
    '/api/messages',
    {
      config: access,
      schema: {
        summary: 'Find messages (tracking): queue id, Message-ID, sender, recipient, time range',
        tags: ['tracking'],
        querystring: { type: 'object', properties: Object.fromEntries(['id', 'messageId', 'sender', 'recipient', 'from', 'to', 'offset'].map((k) => [k, { type: 'string' }])) },
      },
    },
    async (req) => {
      const actor = req.principal!.actor;
      const page = await ctx.meta.findMessages(trackingQuery(req.query, actor, ctx.now()));
      return { total: page.total, messages: page.messages.map(({ verdict: _v, ...m }) => (actor.role === 'operator' ? { ...m, subject: null } : m)) };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/api/messages/:id',
    { config: access, schema: { summary: "One message's path: checks, decisions, recipients, delivery attempts, quarantine", tags: ['tracking'] } },
    async (req, reply) => {
      const tracked = await trackMessage(ctx, req.principal!.actor, req.params.id);
      return tracked ?? reply.code(404).send({ error: 'no such message', statusCode: 404 });
    },
  );

  app.get<{ Querystring: TrackingParams }>('/console/tracking', { config: access }, async (req, reply) => {
    const tr = t(req);
    const searched = Object.values(req.query).some((v) => v);
    const page = searched ? await ctx.meta.findMessages(trackingQuery(req.query, req.principal!.actor, ctx.now())) : null;
    return sendPage(
      req,
      reply,
      tr('trackingTitle'),
      html`${searchForm(req, req.query)}
${
  page
    ? html`<p class="count">${tr('results', { n: page.total })}</p><table class="list"><thead><tr><th>${tr('received')}</th><th>${tr('queueId')}</th><th>${tr('sender')}</th><th>${tr('subject')}</th><th>${tr('state')}</th><th>${tr('size')}</th></tr></thead><tbody>
${page.messages.map(
  (m) => html`<tr><td class="nowrap">${formatTime(m.receivedAt, req.locale)}</td><td><a href="/console/tracking/${m.id}">${m.id}</a></td><td class="addr">${m.mailFrom || '<>'}</td>
<td>${req.principal!.account.role === 'operator' ? '' : displaySubject(m.subject)}</td><td>${named(tr, 'mstate_', m.state)}</td><td>${formatBytes(m.size)}</td></tr>`,
)}</tbody></table>`
    : ''
}`,
    );
  });

  app.get<{ Params: { id: string } }>('/console/tracking/:id', { config: access }, async (req, reply) => {
    const tr = t(req);
    const m = await trackMessage(ctx, req.principal!.actor, req.params.id);
    if (!m) return sendPage(req, reply, tr('errorTitle'), html`<p>${tr('notFound')}</p>`, 404);
    const msg = m.message;
    return sendPage(
      req,
      reply,
      `${tr('trackingTitle')}: ${msg.id}`,
      html`<ol class="timeline">
<li><h2>${tr('stepReceived')}</h2><table class="kv">
<tr><th>${tr('received')}</th><td>${formatTime(msg.receivedAt, req.locale)}</td></tr>
<tr><th>${tr('client')}</th><td>${msg.clientIp} (${msg.helo})${msg.tls ? html` · TLS ${msg.tls}` : ''}</td></tr>
<tr><th>${tr('sender')}</th><td>${msg.mailFrom || '<>'}</td></tr>
<tr><th>${tr('messageId')}</th><td>${msg.headerMessageId ?? ''}</td></tr>
${msg.subject !== null ? html`<tr><th>${tr('subject')}</th><td>${displaySubject(msg.subject)}</td></tr>` : ''}
<tr><th>${tr('size')}</th><td>${formatBytes(msg.size)} · ${msg.origin}</td></tr>
<tr><th>${tr('state')}</th><td>${named(tr, 'mstate_', msg.state)}${msg.lastError ? html` — ${msg.lastError}` : ''}</td></tr></table></li>
<li><h2>${tr('stepChecks')}</h2><table class="list"><thead><tr><th>${tr('check')}</th><th>${tr('durationMs')}</th><th></th></tr></thead><tbody>
${m.checks.map((c) => html`<tr><td>${c.name}</td><td class="num">${c.ms}</td><td>${c.failed ? html`<span class="badge st-rejected">${tr('failed')}</span>` : ''}</td></tr>`)}
</tbody></table>
<p class="symbols">${m.symbols.map((s) => html`<span class="sym" title="${s.description}">${s.name}(${s.score})</span> `)}</p></li>
<li><h2>${tr('stepDecision')}</h2><table class="list"><thead><tr><th>${tr('tenant')}</th><th>${tr('action')}</th><th>${tr('score')}</th><th>${tr('reason')}</th></tr></thead><tbody>
${m.decisions.map((d) => html`<tr><td>${d.tenantId}</td><td>${named(tr, 'action_', d.action)}</td><td class="num">${d.score}</td><td>${d.reasons.join('; ')}</td></tr>`)}
</tbody></table></li>
<li><h2>${tr('stepDelivery')}</h2><table class="list"><thead><tr><th>${tr('recipient')}</th><th>${tr('state')}</th><th>${tr('action')}</th><th>${tr('reply')}</th></tr></thead><tbody>
${m.recipients.map((r) => html`<tr><td class="addr">${r.address}</td><td>${named(tr, 'rstate_', r.state)}</td><td>${r.action ? named(tr, 'action_', r.action) : ''}</td><td>${r.response ?? ''}</td></tr>`)}
</tbody></table>
<h3>${tr('attempts')}</h3><table class="list"><thead><tr><th>${tr('when')}</th><th>${tr('recipient')}</th><th>${tr('outcome')}</th><th>${tr('remote')}</th><th>${tr('reply')}</th></tr></thead><tbody>
${m.attempts.map((a) => html`<tr><td class="nowrap">${formatTime(a.at, req.locale)}</td><td class="addr">${a.address}</td><td>${named(tr, 'outcome_', a.outcome)}</td><td>${a.remote}</td><td>${a.response}</td></tr>`)}
</tbody></table></li>
${
  m.quarantine.length
    ? html`<li><h2>${tr('stepQuarantine')}</h2><ul>${m.quarantine.map(
        (q) =>
          html`<li>${req.principal!.account.role === 'operator' ? html`${q.tenantId}` : html`<a href="/console/quarantine/${msg.id}/${q.tenantId}">${q.tenantId}</a>`}: ${named(tr, 'state_', q.state)} (${named(tr, 'kind_', q.kind)})</li>`,
      )}</ul></li>`
    : ''
}</ol>`,
    );
  });
}
