/**
 * The links of recipient digests (src/quarantine/digest.ts): GET shows what the link is for and a button (mail
 * scanners that follow links must not request releases), POST checks the signature and expiry, that the record is
 * held for that very recipient, and files a release request in the recipient's name. No login: the signed link is
 * the credential, and it can only request — approving stays with the tenant's administrators.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { SekishoError } from '../../errors.ts';
import type { DigestLink, DigestSigner } from '../../quarantine/digest.ts';
import type { AdminContext } from '../admin-context.ts';
import { html } from '../html.ts';
import { sendPage, t } from '../pages/layout.ts';
import { displaySubject } from '../views.ts';

interface LinkParams {
  m?: string;
  t?: string;
  r?: string;
  e?: string;
  s?: string;
}

function linkOf(p: LinkParams): DigestLink | null {
  if (!p.m || !p.t || !p.r || !p.e) return null;
  return { messageId: p.m, tenantId: p.t, recipient: p.r, expires: Number(p.e) };
}

export function registerDigestRoutes(app: FastifyInstance, ctx: AdminContext, signer: DigestSigner): void {
  const valid = (req: FastifyRequest<{ Querystring: LinkParams }>) => {
    const link = linkOf(req.query);
    return link && signer.verify(link, req.query.s ?? '', ctx.now()) ? link : null;
  };

  app.get<{ Querystring: LinkParams }>('/digest/request', { config: { access: 'public' } }, async (req, reply) => {
    const tr = t(req);
    const link = valid(req);
    if (!link) return sendPage(req, reply, tr('errorTitle'), html`<p class="error">${tr('digestLinkInvalid')}</p>`, 403);
    const rec = await ctx.quarantine.get(link.messageId, link.tenantId);
    const qs = new URLSearchParams(req.query as Record<string, string>).toString();
    return sendPage(
      req,
      reply,
      tr('actRequest'),
      html`<table class="kv"><tr><th>${tr('sender')}</th><td>${rec?.mailFrom ?? ''}</td></tr><tr><th>${tr('subject')}</th><td>${displaySubject(rec?.subject)}</td></tr>
<tr><th>${tr('state')}</th><td>${rec?.state ?? ''}</td></tr></table>
<form method="post" action="/digest/request?${qs}" class="step"><input name="reason" placeholder="${tr('reason')}" maxlength="1000"><button type="submit">${tr('actRequest')}</button></form>`,
    );
  });

  app.post<{ Querystring: LinkParams; Body: { reason?: string } }>('/digest/request', { config: { access: 'public' } }, async (req, reply) => {
    const tr = t(req);
    const link = valid(req);
    if (!link) return sendPage(req, reply, tr('errorTitle'), html`<p class="error">${tr('digestLinkInvalid')}</p>`, 403);
    const rec = await ctx.quarantine.get(link.messageId, link.tenantId);
    if (!rec?.recipients.some((r) => r.toLowerCase() === link.recipient.toLowerCase())) {
      return sendPage(req, reply, tr('errorTitle'), html`<p class="error">${tr('digestLinkInvalid')}</p>`, 403);
    }
    const actor = { name: `recipient:${link.recipient}`, role: 'tenant-staff' as const, tenantId: link.tenantId, ip: req.ip };
    try {
      await ctx.release.request(actor, link, { reason: req.body?.reason?.trim() || 'requested from the recipient digest' });
    } catch (err) {
      if (!(err instanceof SekishoError)) throw err;
      return sendPage(req, reply, tr('errorTitle'), html`<p class="error">${err.message}</p>`, 409);
    }
    return sendPage(req, reply, tr('actRequest'), html`<p class="ok" role="status">${tr('digestRequested')}</p>`);
  });
}
