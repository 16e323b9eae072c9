/**
 * The quarantine's JSON API: search, detail, the release workflow's steps one by one or in bulk, the original as
 * .eml, and the sender lists. The console's forms post to the same handlers (pages/quarantine-pages.ts calls
 * `runStep` and `runBulk`). Tenant scope comes from the caller's account, never from the request.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { SekishoError } from '../../errors.ts';
import type { SenderListStore } from '../../policy/sender-list-store.ts';
import { MAX_SEARCH_PAGE } from '../../quarantine/quarantine-store.ts';
import { stepRoles, WorkflowError, type Actor, type RecordRef, type ReleaseService, type StepOptions } from '../../quarantine/release.ts';
import type { AdminContext } from '../admin-context.ts';
import { approvalsFor, quarantineDetail, quarantineSearch, type QuarantineParams } from '../views.ts';

export const workflowSteps = ['request', 'approve', 'reject', 'release', 'delete', 'redeliver'] as const;
export type WorkflowStep = (typeof workflowSteps)[number];

/** Who may see quarantined content at all: the workflow's own rule. */
const CONTENT_ROLES = stepRoles.view;

export function isWorkflowStep(s: string): s is WorkflowStep {
  return (workflowSteps as readonly string[]).includes(s);
}

export async function runStep(release: ReleaseService, actor: Actor, ref: RecordRef, step: WorkflowStep, opts: StepOptions): Promise<unknown> {
  switch (step) {
    case 'request':
      return release.request(actor, ref, opts);
    case 'approve':
      return release.approve(actor, ref, opts);
    case 'reject':
      return release.reject(actor, ref, opts);
    case 'release':
      return release.release(actor, ref, opts);
    case 'delete':
      return release.delete(actor, ref, opts);
    case 'redeliver':
      return { messageId: await release.redeliver(actor, ref, opts) };
  }
}

export interface BulkOutcome {
  messageId: string;
  tenantId: string;
  ok: boolean;
  error?: string;
}

/** One step over many records, each checked on its own (scope, state, rescan): one refusal does not stop the rest. */
export async function runBulk(release: ReleaseService, actor: Actor, refs: readonly RecordRef[], step: WorkflowStep, opts: StepOptions): Promise<BulkOutcome[]> {
  const out: BulkOutcome[] = [];
  for (const ref of refs.slice(0, MAX_SEARCH_PAGE)) {
    try {
      await runStep(release, actor, ref, step, opts);
      out.push({ ...ref, ok: true });
    } catch (err) {
      if (!(err instanceof SekishoError)) throw err;
      out.push({ ...ref, ok: false, error: err.message });
    }
  }
  return out;
}

export function sendWorkflowError(reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof WorkflowError) return reply.code(err.status).send({ error: err.message, code: err.code, found: err.found, statusCode: err.status });
  if (err instanceof SekishoError && err.code === 'SEKISHO_ERR_LIST_PATTERN') return reply.code(400).send({ error: err.message, code: err.code, statusCode: 400 });
  throw err;
}

/** Adds the record's sender to its tenant's allow or block list (audited). */
export async function addSenderToList(
  ctx: AdminContext,
  lists: SenderListStore,
  actor: Actor,
  ref: RecordRef,
  list: 'allow' | 'block',
  pattern: string | undefined,
  reason: string | null,
): Promise<unknown> {
  const rec = await ctx.release.get(actor, ref);
  if (!(actor.role === 'admin' || (actor.role === 'tenant-admin' && actor.tenantId === rec.tenantId))) {
    throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', 'only administrators may change the sender lists', 403);
  }
  const entry = pattern?.trim() || rec.mailFrom;
  if (!entry) throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', 'the message has the null sender <>: name a pattern', 400);
  const added = await lists.add({ tenantId: rec.tenantId, list, pattern: entry, addedBy: actor.name, reason, at: ctx.now() });
  await ctx.audit.append({
    at: ctx.now(),
    actor: actor.name,
    role: actor.role,
    tenantId: rec.tenantId,
    ip: actor.ip,
    action: 'list.add',
    target: `${list}:${rec.tenantId}`,
    reason,
    outcome: 'ok',
    details: { pattern: added.pattern, from: `quarantine:${rec.messageId}/${rec.tenantId}` },
  });
  return added;
}

const refParams = {
  type: 'object',
  required: ['messageId', 'tenantId'],
  properties: { messageId: { type: 'string', pattern: '^[0-9a-z]{8,64}$' }, tenantId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' } },
} as const;

const stepBody = {
  type: 'object',
  properties: { reason: { type: 'string', maxLength: 1000 }, override: { type: 'string', maxLength: 1000 } },
} as const;

export function registerQuarantineApi(app: FastifyInstance, ctx: AdminContext): void {
  app.get<{ Querystring: QuarantineParams }>(
    '/api/quarantine',
    {
      config: { access: CONTENT_ROLES },
      schema: {
        summary: 'Search the quarantine (newest first; tenant users see their tenant only)',
        tags: ['quarantine'],
        querystring: {
          type: 'object',
          properties: Object.fromEntries(
            ['recipient', 'sender', 'subject', 'symbol', 'reason', 'state', 'kind', 'tenant', 'from', 'to', 'limit', 'offset', 'cursor'].map((k) => [k, { type: 'string' }]),
          ),
        },
      },
    },
    async (req) => ctx.quarantine.search(quarantineSearch(req.query, req.principal!.actor)),
  );

  app.get<{ Querystring: { tenant?: string } }>(
    '/api/quarantine/counts',
    { config: { access: CONTENT_ROLES }, schema: { summary: 'Quarantine records per state (in the caller’s scope)', tags: ['quarantine'] } },
    async (req) => {
      return ctx.quarantine.countByState(quarantineSearch({ tenant: req.query.tenant }, req.principal!.actor).tenantIds);
    },
  );

  app.get<{ Params: RecordRef }>(
    '/api/quarantine/:messageId/:tenantId',
    { config: { access: CONTENT_ROLES }, schema: { summary: 'One record: verdict with scores, preview, allowed steps', tags: ['quarantine'], params: refParams } },
    async (req, reply) => {
      try {
        const rec = await ctx.release.get(req.principal!.actor, req.params);
        return await quarantineDetail(ctx, req.principal!.actor, rec);
      } catch (err) {
        return sendWorkflowError(reply, err);
      }
    },
  );

  app.get<{ Params: RecordRef }>(
    '/api/quarantine/:messageId/:tenantId/original.eml',
    { config: { access: stepRoles.download }, schema: { summary: 'Download the original (audited)', tags: ['quarantine'], params: refParams } },
    async (req, reply) => {
      try {
        const { body } = await ctx.release.download(req.principal!.actor, req.params);
        return reply
          .type('message/rfc822')
          .header('content-disposition', `attachment; filename="${req.params.messageId}.eml"`)
          .header('x-content-type-options', 'nosniff')
          .send(body);
      } catch (err) {
        return sendWorkflowError(reply, err);
      }
    },
  );

  app.post<{ Params: RecordRef & { step: string }; Body: { reason?: string; override?: string } }>(
    '/api/quarantine/:messageId/:tenantId/:step',
    {
      config: { access: CONTENT_ROLES },
      schema: {
        summary: 'A release workflow step: request, approve, reject, release, delete, redeliver',
        tags: ['quarantine'],
        params: { ...refParams, required: [...refParams.required, 'step'], properties: { ...refParams.properties, step: { type: 'string', enum: [...workflowSteps] } } },
        body: stepBody,
      },
    },
    async (req, reply) => {
      const { step, messageId, tenantId } = req.params;
      if (!isWorkflowStep(step)) return reply.code(404).send({ error: 'no such step', statusCode: 404 });
      try {
        return { ok: true, result: await runStep(ctx.release, req.principal!.actor, { messageId, tenantId }, step, req.body ?? {}) };
      } catch (err) {
        return sendWorkflowError(reply, err);
      }
    },
  );

  app.post<{ Body: { step: string; reason?: string; override?: string; items?: RecordRef[]; filter?: QuarantineParams } }>(
    '/api/quarantine/bulk',
    {
      config: { access: CONTENT_ROLES },
      schema: {
        summary: `One step on many records: a list of ids, or every record of a filter (at most ${MAX_SEARCH_PAGE})`,
        tags: ['quarantine'],
        body: {
          type: 'object',
          required: ['step'],
          properties: {
            step: { type: 'string', enum: [...workflowSteps] },
            reason: { type: 'string', maxLength: 1000 },
            override: { type: 'string', maxLength: 1000 },
            items: { type: 'array', maxItems: MAX_SEARCH_PAGE, items: refParams },
            filter: { type: 'object', additionalProperties: { type: 'string' } },
          },
        },
      },
    },
    async (req, reply) => {
      const { step, items, filter } = req.body;
      if (!isWorkflowStep(step)) return reply.code(400).send({ error: 'no such step', statusCode: 400 });
      const actor = req.principal!.actor;
      const refs = items ?? (filter ? (await ctx.quarantine.search({ ...quarantineSearch(filter, actor), limit: MAX_SEARCH_PAGE, offset: 0 })).records : []);
      const results = await runBulk(ctx.release, actor, refs, step, req.body);
      return { done: results.filter((r) => r.ok).length, refused: results.filter((r) => !r.ok).length, results };
    },
  );

  app.post<{ Params: RecordRef & { list: string }; Body: { pattern?: string; reason?: string } }>(
    '/api/quarantine/:messageId/:tenantId/sender-list/:list',
    {
      config: { access: ['admin', 'tenant-admin'] },
      schema: {
        summary: "Add the record's sender (or a pattern) to its tenant's allow or block list",
        tags: ['quarantine'],
        params: { ...refParams, required: [...refParams.required, 'list'], properties: { ...refParams.properties, list: { type: 'string', enum: ['allow', 'block'] } } },
        body: { type: 'object', properties: { pattern: { type: 'string', maxLength: 300 }, reason: { type: 'string', maxLength: 1000 } } },
      },
    },
    async (req, reply) => {
      if (!ctx.senderLists) return reply.code(503).send({ error: 'sender lists are not available', statusCode: 503 });
      const { messageId, tenantId, list } = req.params;
      try {
        return await addSenderToList(ctx, ctx.senderLists, req.principal!.actor, { messageId, tenantId }, list === 'allow' ? 'allow' : 'block', req.body?.pattern, req.body?.reason?.trim() || null);
      } catch (err) {
        return sendWorkflowError(reply, err);
      }
    },
  );

  app.get(
    '/api/approvals',
    { config: { access: stepRoles.approve }, schema: { summary: 'Release requests the caller may approve', tags: ['quarantine'] } },
    async (req) => {
      return { records: await approvalsFor(ctx.quarantine, req.principal!.actor) };
    },
  );
}
