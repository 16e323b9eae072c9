/**
 * The quarantine pages: the list with its filters and bulk actions, a record's detail (verdict, headers, parts,
 * the text preview and the workflow buttons the caller may use), and the approvals waiting for the caller. Message
 * content is shown as text only: the preview is plain text made in the worker, every value is escaped, nothing is
 * loaded from elsewhere.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SekishoError } from '../../errors.ts';
import type { MessagePreview } from '../../quarantine/preview.ts';
import { quarantineStates, type QuarantineRecord } from '../../quarantine/quarantine-store.ts';
import { stepRoles, WorkflowError, type RecordRef, type Step } from '../../quarantine/release.ts';
import type { AdminContext } from '../admin-context.ts';
import { html, type SafeHtml } from '../html.ts';
import type { Translate } from '../i18n.ts';
import { addSenderToList, isWorkflowStep, runBulk, runStep, workflowSteps, type WorkflowStep } from '../routes/quarantine-api.ts';
import { approvalsFor, displaySubject, hasMalware, quarantineDetail, quarantineSearch, type QuarantineDetail, type QuarantineParams } from '../views.ts';
import { csrfField, formatBytes, formatTime, named, sendPage, t } from './layout.ts';


const STEP_LABEL: Record<WorkflowStep, Parameters<Translate>[0]> = {
  request: 'actRequest',
  approve: 'actApprove',
  reject: 'actReject',
  release: 'actRelease',
  delete: 'actDelete',
  redeliver: 'actRedeliver',
};

function refOf(r: Pick<QuarantineRecord, 'messageId' | 'tenantId'>): string {
  return `${r.messageId}/${r.tenantId}`;
}

function stateBadge(tr: Translate, state: string): SafeHtml {
  return html`<span class="badge st-${state}">${named(tr, 'state_', state)}</span>`;
}

function recordRows(req: FastifyRequest, records: readonly QuarantineRecord[], selectable: boolean): SafeHtml {
  const tr = t(req);
  return html`${records.map(
    (r) => html`<tr>
${selectable ? html`<td><input type="checkbox" name="sel" value="${refOf(r)}" form="bulk" aria-label="select"></td>` : ''}
<td class="nowrap">${formatTime(r.createdAt, req.locale)}</td><td class="nowrap">${r.tenantId}</td>
<td class="addr">${r.mailFrom || '<>'}</td><td class="addr">${r.recipients.join(', ')}</td>
<td><a href="/console/quarantine/${r.messageId}/${r.tenantId}">${displaySubject(r.subject) || '(no subject)'}</a></td>
<td class="symbols">${r.symbols.slice(0, 4).join(' ')}${r.symbols.length > 4 ? ' …' : ''}</td>
<td>${named(tr, 'kind_', r.kind)}</td><td>${stateBadge(tr, r.state)}</td></tr>`,
  )}`;
}

function tableHead(tr: Translate, selectable: boolean): SafeHtml {
  return html`<thead><tr>${selectable ? html`<th><input type="checkbox" id="select-all" aria-label="${tr('selectAll')}"></th>` : ''}
<th>${tr('received')}</th><th>${tr('tenant')}</th><th>${tr('sender')}</th><th>${tr('recipient')}</th><th>${tr('subject')}</th>
<th>${tr('symbol')}</th><th>${tr('kind')}</th><th>${tr('state')}</th></tr></thead>`;
}

function filterForm(req: FastifyRequest, ctx: AdminContext, q: QuarantineParams): SafeHtml {
  const tr = t(req);
  const field = (name: keyof QuarantineParams, label: string, type = 'text') =>
    html`<label>${label}<input type="${type}" name="${name}" value="${q[name] ?? ''}"></label>`;
  const admin = req.principal?.account.role === 'admin';
  return html`<form method="get" action="/console/quarantine" class="filters">
${field('recipient', tr('recipient'))}${field('sender', tr('sender'))}${field('subject', tr('subject'))}
${field('symbol', tr('symbol'))}${field('reason', tr('reason'))}
${field('from', tr('dateFrom'), 'date')}${field('to', tr('dateTo'), 'date')}
<label>${tr('state')}<select name="state"><option value="">${tr('any')}</option>${quarantineStates.map(
    (s) => html`<option value="${s}" ${q.state === s ? 'selected' : ''}>${named(tr, 'state_', s)}</option>`,
  )}</select></label>
<label>${tr('kind')}<select name="kind"><option value="">${tr('any')}</option>${(['held', 'original'] as const).map(
    (k) => html`<option value="${k}" ${q.kind === k ? 'selected' : ''}>${named(tr, 'kind_', k)}</option>`,
  )}</select></label>
${
  admin
    ? html`<label>${tr('tenant')}<select name="tenant"><option value="">${tr('any')}</option>${ctx.tenants.all.map(
        (tn) => html`<option value="${tn.id}" ${q.tenant === tn.id ? 'selected' : ''}>${tn.name} (${tn.id})</option>`,
      )}</select></label>`
    : ''
}
<button type="submit">${tr('filter')}</button> <a href="/console/quarantine">${tr('clear')}</a></form>`;
}

function bulkForm(req: FastifyRequest): SafeHtml {
  const tr = t(req);
  const role = req.principal!.account.role;
  // Redelivery is of one kept original at a time (the detail page), not a bulk step.
  const steps = workflowSteps.filter((s) => s !== 'redeliver' && stepRoles[s].includes(role));
  return html`<form method="post" action="/console/quarantine/bulk" id="bulk" class="bulk">${csrfField(req)}
<span>${tr('bulkAction')}</span><select name="step">${steps.map((s) => html`<option value="${s}">${tr(STEP_LABEL[s])}</option>`)}</select>
<input name="reason" placeholder="${tr('reasonPlaceholder')}" maxlength="1000">
<button type="submit">${tr('bulkRun')}</button></form>`;
}

function pager(req: FastifyRequest, q: QuarantineParams, nextCursor: string | null): SafeHtml {
  const tr = t(req);
  const params = (extra: Record<string, string>) => {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries({ ...q, ...extra })) if (v && k !== 'offset' && (k !== 'cursor' || extra.cursor)) u.set(k, v);
    return `/console/quarantine?${u.toString()}`;
  };
  return html`<nav class="pager">${q.cursor ? html`<a href="${params({})}">${tr('first')}</a>` : ''}
${nextCursor ? html`<a href="${params({ cursor: nextCursor })}" rel="next">${tr('next')} →</a>` : ''}</nav>`;
}

async function listPage(req: FastifyRequest<{ Querystring: QuarantineParams }>, reply: FastifyReply, ctx: AdminContext, notice: SafeHtml | null = null) {
  const tr = t(req);
  const q = req.query;
  const { records, total, nextCursor } = await ctx.quarantine.search(quarantineSearch(q, req.principal!.actor));
  return sendPage(
    req,
    reply,
    tr('navQuarantine'),
    html`${notice ?? ''}${filterForm(req, ctx, q)}
<p class="count">${tr('results', { n: total.toLocaleString() })}</p>
${bulkForm(req)}
${records.length ? html`<table class="list">${tableHead(tr, true)}<tbody>${recordRows(req, records, true)}</tbody></table>` : html`<p>${tr('noRecords')}</p>`}
${pager(req, q, nextCursor)}`,
  );
}

function previewSection(tr: Translate, preview: MessagePreview | null | undefined): SafeHtml {
  if (!preview) return html`<section><h2>${tr('preview')}</h2><p>${tr('previewUnavailable')}</p></section>`;
  return html`<section><h2>${tr('headers')}</h2><table class="kv">${preview.headers.map(
    (h) => html`<tr><th>${h.name}</th><td>${h.value}</td></tr>`,
  )}</table></section>
<section><h2>${tr('parts')}</h2><table class="list"><thead><tr><th>#</th><th>${tr('fileName')}</th><th>${tr('declaredType')}</th><th>${tr('trueType')}</th><th>${tr('size')}</th></tr></thead><tbody>
${preview.parts.map((p) => html`<tr><td>${p.path}</td><td>${p.filename ?? ''}</td><td>${p.contentType}</td><td>${p.trueType}</td><td>${formatBytes(p.size)}</td></tr>`)}
</tbody></table>${preview.morePartCount ? html`<p>+ ${preview.morePartCount}</p>` : ''}</section>
<section><h2>${tr('preview')}</h2><pre class="preview">${preview.text}</pre>${preview.textTruncated ? html`<p>${tr('previewTruncated')}</p>` : ''}</section>`;
}

function stepForms(req: FastifyRequest, d: QuarantineDetail, lists: boolean): SafeHtml {
  const tr = t(req);
  const r = d.record;
  const base = `/console/quarantine/${r.messageId}/${r.tenantId}`;
  const admin = req.principal!.account.role === 'admin';
  const workflow = d.steps.filter((s): s is WorkflowStep => isWorkflowStep(s));
  const canList = admin || (req.principal!.account.role === 'tenant-admin' && req.principal!.account.tenantId === r.tenantId);
  return html`<section class="actions">
${hasMalware(r) ? html`<p class="warn">${tr('virusWarning')}</p>` : ''}
${workflow.map(
  (s: Step) => html`<form method="post" action="${base}/${s}" class="step">${csrfField(req)}
<input name="reason" placeholder="${tr('reasonPlaceholder')}" maxlength="1000" ${s === 'reject' || s === 'delete' ? 'required' : ''}>
${(s === 'approve' || s === 'release') && admin ? html`<input name="override" placeholder="${tr('override')}" maxlength="1000">` : ''}
<button type="submit" class="btn-${s}" data-step="${s}">${tr(STEP_LABEL[s as WorkflowStep])}</button></form>`,
)}
${d.steps.includes('download') && d.originalKept ? html`<p class="warn">${tr('downloadWarning')}</p><a class="button" href="/api/quarantine/${r.messageId}/${r.tenantId}/original.eml" download>${tr('actDownload')}</a>` : ''}
${
  lists && canList
    ? html`<form method="post" action="${base}/sender-list/allow" class="step">${csrfField(req)}<button type="submit">${tr('actAllow')}</button></form>
<form method="post" action="${base}/sender-list/block" class="step">${csrfField(req)}<button type="submit">${tr('actBlock')}</button></form>`
    : ''
}</section>`;
}

async function detailPage(req: FastifyRequest<{ Params: RecordRef }>, reply: FastifyReply, ctx: AdminContext, notice: SafeHtml | null = null, status = 200) {
  const tr = t(req);
  const actor = req.principal!.actor;
  let rec: QuarantineRecord;
  try {
    rec = await ctx.release.get(actor, req.params);
  } catch {
    return sendPage(req, reply, tr('errorTitle'), html`<p>${tr('notFound')}</p>`, 404);
  }
  const d = await quarantineDetail(ctx, actor, rec);
  const preview = await ctx.quarantine.preview(rec.messageId);
  return sendPage(
    req,
    reply,
    tr('detailTitle'),
    html`${notice ?? ''}<p><a href="/console/quarantine">← ${tr('back')}</a></p>
<table class="kv">
<tr><th>${tr('subject')}</th><td class="subject">${displaySubject(rec.subject)}</td></tr>
<tr><th>${tr('sender')}</th><td>${rec.mailFrom || '<>'}</td></tr>
<tr><th>${tr('recipient')}</th><td>${rec.recipients.join(', ')}</td></tr>
<tr><th>${tr('tenant')}</th><td>${ctx.tenants.byId(rec.tenantId)?.name ?? ''} (${rec.tenantId})</td></tr>
<tr><th>${tr('state')}</th><td>${stateBadge(tr, rec.state)} ${named(tr, 'kind_', rec.kind)}</td></tr>
<tr><th>${tr('received')}</th><td>${formatTime(rec.createdAt, req.locale)}</td></tr>
<tr><th>${tr('expires')}</th><td>${formatTime(rec.expiresAt, req.locale)}</td></tr>
<tr><th>${tr('queueId')}</th><td><a href="/console/tracking/${rec.messageId}">${rec.messageId}</a></td></tr>
<tr><th>${tr('reasons')}</th><td><ul>${rec.reasons.map((x) => html`<li>${x}</li>`)}</ul></td></tr>
${rec.requestedBy ? html`<tr><th>${tr('requestedBy')}</th><td>${rec.requestedBy} ${rec.requestReason ? html`— ${rec.requestReason}` : ''}</td></tr>` : ''}
${rec.decidedBy ? html`<tr><th>${tr('decidedBy')}</th><td>${rec.decidedBy} ${rec.decisionReason ? html`— ${rec.decisionReason}` : ''}</td></tr>` : ''}
${rec.releasedAt ? html`<tr><th>${tr('releasedAt')}</th><td>${formatTime(rec.releasedAt, req.locale)}</td></tr>` : ''}
${rec.overrideReason ? html`<tr><th>${tr('overrideReason')}</th><td>${rec.overrideReason}</td></tr>` : ''}
</table>
${stepForms(req, d, !!ctx.senderLists)}
<section><h2>${tr('verdict')}${d.decision ? html` — ${named(tr, 'action_', d.decision.action)} (${tr('score')} ${d.decision.score})` : ''}</h2>
<table class="list"><thead><tr><th>${tr('symbol')}</th><th>${tr('score')}</th><th>${tr('group')}</th><th>${tr('description')}</th><th>${tr('details')}</th></tr></thead><tbody>
${d.verdict.map((v) => html`<tr><td class="sym">${v.name}</td><td class="num">${v.score}</td><td>${v.group}</td><td>${v.description}</td><td>${v.details.join(', ')}</td></tr>`)}
</tbody></table></section>
${previewSection(tr, preview)}`,
    status,
  );
}

function errorNotice(err: unknown): SafeHtml {
  if (err instanceof SekishoError) return html`<p class="error" role="alert">${err.message}</p>`;
  throw err;
}

/** The HTTP status of a refused step: the workflow's own (403 not allowed, 409 wrong state…), else 400. */
function errorStatus(err: unknown): number {
  return err instanceof WorkflowError ? err.status : 400;
}

export function registerQuarantinePages(app: FastifyInstance, ctx: AdminContext): void {
  const access = { config: { access: stepRoles.view } };
  app.get<{ Querystring: QuarantineParams }>('/console/quarantine', access, (req, reply) => listPage(req, reply, ctx));

  app.post<{ Body: { step?: string; reason?: string; override?: string; sel?: string | string[] }; Querystring: QuarantineParams }>(
    '/console/quarantine/bulk',
    access,
    async (req, reply) => {
      const step = req.body.step ?? '';
      const sel = ([] as string[]).concat(req.body.sel ?? []);
      const refs = sel.map((s) => s.split('/')).filter((p) => p.length === 2).map(([messageId, tenantId]) => ({ messageId: messageId!, tenantId: tenantId! }));
      if (!isWorkflowStep(step)) return reply.code(400).send({ error: 'no such step' });
      const results = await runBulk(ctx.release, req.principal!.actor, refs, step, req.body);
      const refused = results.filter((r) => !r.ok);
      const tr = t(req);
      const notice = html`<p class="${refused.length ? 'error' : 'ok'}" role="status">${tr('done')} ${results.length - refused.length}/${results.length}</p>
${refused.length ? html`<ul class="error">${refused.map((r) => html`<li>${r.messageId}/${r.tenantId}: ${r.error}</li>`)}</ul>` : ''}`;
      return listPage(req, reply, ctx, notice);
    },
  );

  app.get<{ Params: RecordRef }>('/console/quarantine/:messageId/:tenantId', access, (req, reply) => detailPage(req, reply, ctx));

  app.post<{ Params: RecordRef & { step: string }; Body: { reason?: string; override?: string } }>(
    '/console/quarantine/:messageId/:tenantId/:step',
    access,
    async (req, reply) => {
      const { messageId, tenantId, step } = req.params;
      if (!isWorkflowStep(step)) return sendPage(req, reply, t(req)('errorTitle'), html`<p>${t(req)('notFound')}</p>`, 404);
      try {
        await runStep(ctx.release, req.principal!.actor, { messageId, tenantId }, step, req.body ?? {});
      } catch (err) {
        return detailPage(req, reply, ctx, errorNotice(err), errorStatus(err));
      }
      return reply.redirect(`/console/quarantine/${messageId}/${tenantId}?done=${step}`);
    },
  );

  app.post<{ Params: RecordRef & { list: string } }>('/console/quarantine/:messageId/:tenantId/sender-list/:list', access, async (req, reply) => {
    const { messageId, tenantId, list } = req.params;
    if (list !== 'allow' && list !== 'block') return sendPage(req, reply, t(req)('errorTitle'), html`<p>${t(req)('notFound')}</p>`, 404);
    if (!ctx.senderLists) return reply.code(503).send({ error: 'sender lists are not available' });
    try {
      await addSenderToList(ctx, ctx.senderLists, req.principal!.actor, { messageId, tenantId }, list, undefined, null);
    } catch (err) {
      return detailPage(req, reply, ctx, errorNotice(err), errorStatus(err));
    }
    return reply.redirect(`/console/quarantine/${messageId}/${tenantId}?done=list`);
  });

  app.get('/console/approvals', { config: { access: stepRoles.approve } }, async (req, reply) => {
    const tr = t(req);
    const actor = req.principal!.actor;
    const mine = await approvalsFor(ctx.quarantine, actor);
    return sendPage(
      req,
      reply,
      tr('approvalsTitle'),
      mine.length ? html`<table class="list">${tableHead(tr, false)}<tbody>${recordRows(req, mine, false)}</tbody></table>` : html`<p>${tr('noRecords')}</p>`,
    );
  });
}
