/**
 * The audit log (auditors and prefecture admins: read, verify the hash chain, export JSON lines for the SOC) and
 * the accounts (prefecture admins: list, create, disable, enable; everyone: their own password). Account changes are
 * audited like every other step.
 */
import { PassThrough } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SekishoError } from '../../errors.ts';
import { parseJapanDate } from '../../japan-time.ts';
import type { AdminContext } from '../admin-context.ts';
import type { AuditQuery } from '../audit/audit-log.ts';
import type { Account } from '../auth/account-store.ts';
import { hashPassword, validateNewPassword } from '../auth/passwords.ts';
import { isRole, roleNeedsTenant, roles } from '../auth/roles.ts';
import { html } from '../html.ts';
import { csrfField, formatTime, named, sendPage, t } from '../pages/layout.ts';
import { textParam } from '../views.ts';

const AUDIT_ROLES = ['admin', 'auditor'] as const;
const PAGE = 100;

interface AuditParams {
  actor?: string;
  action?: string;
  tenant?: string;
  from?: string;
  to?: string;
  offset?: string;
}

function auditQuery(p: AuditParams): AuditQuery {
  return {
    actor: textParam(p.actor),
    action: textParam(p.action),
    tenantId: textParam(p.tenant),
    from: parseJapanDate(p.from, false),
    to: parseJapanDate(p.to, true),
    limit: PAGE,
    offset: Math.max(0, Number(p.offset ?? 0) || 0),
  };
}

function publicAccount(a: Account) {
  return { id: a.id, username: a.username, displayName: a.displayName, role: a.role, tenantId: a.tenantId, email: a.email, locale: a.locale, disabled: a.disabled, totp: a.totpSecret !== null, lastLoginAt: a.lastLoginAt, lockedUntil: a.lockedUntil, createdAt: a.createdAt };
}

export function registerAuditAndAccounts(app: FastifyInstance, ctx: AdminContext): void {
  const audited = (req: FastifyRequest, action: string, target: string, outcome: 'ok' | 'denied' | 'failed', details: Record<string, unknown> = {}) =>
    ctx.audit.append({
      at: ctx.now(),
      actor: req.principal!.account.username,
      role: req.principal!.account.role,
      tenantId: null,
      ip: req.ip,
      action,
      target,
      reason: null,
      outcome,
      details,
    });

  app.get<{ Querystring: AuditParams }>('/api/audit', { config: { access: AUDIT_ROLES }, schema: { summary: 'Audit log rows, newest first', tags: ['audit'] } }, async (req) =>
    ctx.audit.list(auditQuery(req.query)),
  );
  app.get('/api/audit/verify', { config: { access: AUDIT_ROLES }, schema: { summary: 'Verify the hash chain', tags: ['audit'] } }, async () => ctx.audit.verify());
  app.get<{ Querystring: AuditParams }>(
    '/api/audit/export',
    { config: { access: AUDIT_ROLES }, schema: { summary: 'JSON lines, oldest first, with seq/prevHash/hash', tags: ['audit'] } },
    async (req, reply) => {
      const out = new PassThrough();
      const { limit: _l, offset: _o, ...q } = auditQuery(req.query);
      void ctx.audit.exportJsonl(out, q).then(
        () => out.end(),
        (err: unknown) => out.destroy(err as Error),
      );
      return reply.type('application/x-ndjson').header('content-disposition', 'attachment; filename="sekisho-audit.jsonl"').send(out);
    },
  );

  app.get<{ Querystring: AuditParams & { verify?: string } }>('/console/audit', { config: { access: AUDIT_ROLES } }, async (req, reply) => {
    const tr = t(req);
    const q = req.query;
    const { records, total } = await ctx.audit.list(auditQuery(q));
    const verification = q.verify ? await ctx.audit.verify() : null;
    const f = (name: keyof AuditParams, label: string, type = 'text') => html`<label>${label}<input type="${type}" name="${name}" value="${q[name] ?? ''}"></label>`;
    const next = Number(q.offset ?? 0) + PAGE;
    const qs = (extra: Record<string, string>) => new URLSearchParams(Object.entries({ ...q, ...extra }).filter(([, v]) => v) as [string, string][]).toString();
    return sendPage(
      req,
      reply,
      tr('auditTitle'),
      html`${
        verification
          ? verification.ok
            ? html`<p class="ok" role="status">${tr('auditVerifyOk', { n: verification.checked })}</p>`
            : html`<div class="error" role="alert"><p>${tr('auditVerifyBad')}</p><ul>${verification.problems.map((p) => html`<li>#${p.seq}: ${p.problem}</li>`)}</ul></div>`
          : ''
      }
<form method="get" action="/console/audit" class="filters">${f('actor', tr('actor'))}${f('action', tr('action'))}${f('tenant', tr('tenant'))}${f('from', tr('dateFrom'), 'date')}${f('to', tr('dateTo'), 'date')}
<button type="submit">${tr('filter')}</button></form>
<p><a class="button" href="/console/audit?${qs({ verify: '1' })}">${tr('auditVerify')}</a> <a class="button" href="/api/audit/export?${qs({})}">${tr('auditExport')}</a></p>
<p class="count">${tr('results', { n: total })}</p>
<table class="list"><thead><tr><th>#</th><th>${tr('when')}</th><th>${tr('actor')}</th><th>${tr('role')}</th><th>${tr('ipAddress')}</th><th>${tr('action')}</th><th>${tr('target')}</th><th>${tr('reason')}</th><th>${tr('outcome')}</th><th>${tr('details')}</th></tr></thead><tbody>
${records.map(
  (r) => html`<tr class="out-${r.outcome}"><td class="num">${r.seq}</td><td class="nowrap">${formatTime(r.at, req.locale)}</td><td>${r.actor}</td><td>${r.role ?? ''}</td><td>${r.ip ?? ''}</td>
<td>${r.action}</td><td class="addr">${r.target ?? ''}</td><td>${r.reason ?? ''}</td><td>${r.outcome}</td><td class="details">${JSON.stringify(r.details)}</td></tr>`,
)}</tbody></table>
${next < total ? html`<nav class="pager"><a href="/console/audit?${qs({ offset: String(next) })}">${tr('next')} →</a></nav>` : ''}`,
    );
  });

  app.get('/api/accounts', { config: { access: ['admin'] }, schema: { summary: 'Accounts', tags: ['accounts'] } }, async () => (await ctx.accounts.list()).map(publicAccount));

  app.post<{ Body: { username?: string; password?: string; role?: string; tenantId?: string; displayName?: string; email?: string } }>(
    '/api/accounts',
    {
      config: { access: ['admin'] },
      schema: {
        summary: 'Create an account',
        tags: ['accounts'],
        body: {
          type: 'object',
          required: ['username', 'password', 'role'],
          properties: { username: { type: 'string' }, password: { type: 'string' }, role: { type: 'string', enum: [...roles] }, tenantId: { type: 'string' }, displayName: { type: 'string' }, email: { type: 'string' } },
        },
      },
    },
    async (req, reply) => {
      try {
        const created = await createAccount(ctx, req.body);
        await audited(req, 'account.create', `account:${created.username}`, 'ok', { role: created.role, tenantId: created.tenantId });
        return publicAccount(created);
      } catch (err) {
        if (!(err instanceof SekishoError)) throw err;
        await audited(req, 'account.create', `account:${req.body.username ?? ''}`, 'failed', { why: err.message });
        const status = err.code === 'SEKISHO_ERR_AUTH_DUPLICATE' ? 409 : 400;
        return reply.code(status).send({ error: err.message, code: err.code, statusCode: status });
      }
    },
  );

  app.post<{ Params: { username: string; op: string } }>(
    '/api/accounts/:username/:op',
    { config: { access: ['admin'] }, schema: { summary: 'Disable or enable an account', tags: ['accounts'], params: { type: 'object', properties: { username: { type: 'string' }, op: { type: 'string', enum: ['disable', 'enable'] } } } } },
    async (req, reply) => {
      const a = await ctx.accounts.byUsername(req.params.username);
      if (!a) return reply.code(404).send({ error: 'no such account', statusCode: 404 });
      const disabled = req.params.op === 'disable';
      await audited(req, disabled ? 'account.disable' : 'account.enable', `account:${a.username}`, 'ok', { disabled });
      return publicAccount(await ctx.accounts.update(a.id, { disabled }));
    },
  );

  app.post<{ Body: { password?: string } }>(
    '/api/me/password',
    { config: { access: 'authenticated' }, schema: { summary: 'Change my password', tags: ['accounts'], body: { type: 'object', required: ['password'], properties: { password: { type: 'string' } } } } },
    async (req, reply) => {
      const me = req.principal!.account;
      try {
        validateNewPassword(req.body.password ?? '', me.username);
      } catch (err) {
        if (err instanceof SekishoError) return reply.code(400).send({ error: err.message, statusCode: 400 });
        throw err;
      }
      await ctx.accounts.update(me.id, { passwordHash: await hashPassword(req.body.password ?? '') });
      await audited(req, 'account.password', `account:${me.username}`, 'ok');
      return { ok: true };
    },
  );

  app.get('/console/accounts', { config: { access: ['admin'] } }, async (req, reply) => {
    const tr = t(req);
    const accounts = await ctx.accounts.list();
    return sendPage(
      req,
      reply,
      tr('accountsTitle'),
      html`<table class="list"><thead><tr><th>${tr('username')}</th><th>${tr('displayName')}</th><th>${tr('role')}</th><th>${tr('tenant')}</th><th>TOTP</th><th>${tr('lastLogin')}</th><th></th></tr></thead><tbody>
${accounts.map(
  (a) => html`<tr class="${a.disabled ? 'disabled' : ''}"><td>${a.username}</td><td>${a.displayName}</td><td>${named(tr, 'role_', a.role)}</td><td>${a.tenantId ?? ''}</td>
<td>${a.totpSecret ? '✓' : ''}</td><td class="nowrap">${formatTime(a.lastLoginAt, req.locale)}</td>
<td><form method="post" action="/console/accounts/${a.username}/${a.disabled ? 'enable' : 'disable'}" class="inline">${csrfField(req)}<button type="submit">${a.disabled ? tr('enable') : tr('disable')}</button></form></td></tr>`,
)}</tbody></table>
<h2>${tr('createAccount')}</h2><form method="post" action="/console/accounts" class="filters">${csrfField(req)}
<label>${tr('username')}<input name="username" required></label><label>${tr('displayName')}<input name="displayName"></label>
<label>${tr('role')}<select name="role">${roles.map((r) => html`<option value="${r}">${named(tr, 'role_', r)}</option>`)}</select></label>
<label>${tr('tenant')}<select name="tenantId"><option value=""></option>${ctx.tenants.all.map((tn) => html`<option value="${tn.id}">${tn.name}</option>`)}</select></label>
<label>${tr('password')}<input name="password" type="password" minlength="12" required autocomplete="new-password"></label>
<button type="submit">${tr('createAccount')}</button></form>`,
    );
  });

  app.post<{ Body: Record<string, string | undefined> }>('/console/accounts', { config: { access: ['admin'] } }, async (req, reply) => {
    try {
      await createAccount(ctx, req.body);
      await audited(req, 'account.create', `account:${req.body.username ?? ''}`, 'ok', { role: req.body.role });
    } catch (err) {
      if (!(err instanceof SekishoError)) throw err;
      await audited(req, 'account.create', `account:${req.body.username ?? ''}`, 'failed', { why: err.message });
      return sendPage(req, reply, t(req)('errorTitle'), html`<p class="error">${err.message}</p><p><a href="/console/accounts">${t(req)('back')}</a></p>`, 400);
    }
    return reply.redirect('/console/accounts');
  });

  app.post<{ Params: { username: string; op: string } }>('/console/accounts/:username/:op', { config: { access: ['admin'] } }, async (req, reply) => {
    const a = await ctx.accounts.byUsername(req.params.username);
    if (a) {
      const disabled = req.params.op === 'disable';
      await audited(req, disabled ? 'account.disable' : 'account.enable', `account:${a.username}`, 'ok', { disabled });
      await ctx.accounts.update(a.id, { disabled });
    }
    return reply.redirect('/console/accounts');
  });
}

async function createAccount(ctx: AdminContext, b: { username?: string; password?: string; role?: string; tenantId?: string; displayName?: string; email?: string }): Promise<Account> {
  const username = b.username?.trim() ?? '';
  if (!isRole(b.role)) throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', `role must be one of ${roles.join(', ')}`);
  const tenantId = roleNeedsTenant(b.role) ? b.tenantId?.trim() || null : null;
  if (tenantId && !ctx.tenants.byId(tenantId)) throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', `no tenant "${tenantId}" in the configuration`);
  validateNewPassword(b.password ?? '', username);
  return ctx.accounts.create({
    username,
    role: b.role,
    tenantId,
    displayName: b.displayName?.trim() || undefined,
    email: b.email?.trim() || null,
    passwordHash: await hashPassword(b.password ?? ''),
  });
}
