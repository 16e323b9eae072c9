/**
 * The frame of every console page: header with the navigation the role may use, the user, the language switch and
 * the logout form. Nothing from a message is ever rendered as markup here or in the pages (html.ts escapes it); the
 * pages load one style sheet and one small script, both from this app (the CSP allows nothing else).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Role } from '../auth/roles.ts';
import { html, type SafeHtml } from '../html.ts';
import { messageKey, translator, type MessageKey, type Translate } from '../i18n.ts';

interface NavItem {
  href: string;
  key: MessageKey;
  roles: readonly Role[];
}

const NAV: readonly NavItem[] = [
  { href: '/console', key: 'navOverview', roles: ['admin', 'tenant-admin', 'tenant-staff', 'operator', 'auditor'] },
  { href: '/console/quarantine', key: 'navQuarantine', roles: ['admin', 'tenant-admin', 'tenant-staff'] },
  { href: '/console/approvals', key: 'navApprovals', roles: ['admin', 'tenant-admin'] },
  { href: '/console/tracking', key: 'navTracking', roles: ['admin', 'tenant-admin', 'tenant-staff', 'operator'] },
  { href: '/console/queues', key: 'navQueues', roles: ['admin', 'operator'] },
  { href: '/console/audit', key: 'navAudit', roles: ['admin', 'auditor'] },
  { href: '/console/accounts', key: 'navAccounts', roles: ['admin'] },
];

export function t(req: FastifyRequest): Translate {
  return translator(req.locale);
}

/** A role's or state's name in the page's language (the raw name when the dictionary has none). */
export function named(tr: Translate, prefix: 'role_' | 'state_' | 'kind_' | 'action_' | 'rstate_' | 'mstate_' | 'outcome_' | 'health_', name: string): string {
  const key = messageKey(prefix, name);
  return key ? tr(key) : name;
}

export function csrfField(req: FastifyRequest): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${req.principal?.session?.csrfToken ?? ''}">`;
}

export function sendPage(req: FastifyRequest, reply: FastifyReply, title: string, body: SafeHtml, status = 200): FastifyReply {
  const tr = t(req);
  const p = req.principal;
  const role = p?.account.role;
  const other = req.locale === 'ja' ? 'en' : 'ja';
  const here = req.url.split('?')[0] ?? '/console';
  const doc = html`<!doctype html>
<html lang="${req.locale}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} — Sekisho</title><link rel="stylesheet" href="/console/static/console.css"><script src="/console/static/console.js" defer></script></head>
<body>
<header class="top"><a class="brand" href="/console">関所 <small>Sekisho</small></a>
${
  role
    ? html`<nav>${NAV.filter((n) => n.roles.includes(role)).map(
        (n) => html`<a href="${n.href}" class="${here === n.href || (n.href !== '/console' && here.startsWith(n.href)) ? 'on' : ''}">${tr(n.key)}</a>`,
      )}</nav>
<div class="who"><span>${p.account.displayName}</span> <span class="role">${named(tr, 'role_', role)}${p.account.tenantId ? html` · ${p.account.tenantId}` : ''}</span>
<a href="/console/lang/${other}">${tr('language')}</a>
<form method="post" action="/console/logout" class="inline">${csrfField(req)}<button type="submit">${tr('logout')}</button></form></div>`
    : html`<div class="who"><a href="/console/lang/${other}">${tr('language')}</a></div>`
}
</header>
<main><h1>${title}</h1>
${body}</main>
</body></html>`;
  return reply.code(status).type('text/html; charset=utf-8').send(doc.value);
}

export function formatTime(ms: number | null | undefined, locale: string): string {
  if (ms === null || ms === undefined) return '';
  return new Date(ms).toLocaleString(locale === 'ja' ? 'ja-JP' : 'en-GB', { timeZone: 'Asia/Tokyo', hour12: false });
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
