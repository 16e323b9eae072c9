/**
 * Who is asking, and may they: every request to the admin app goes through these hooks. A request is
 * authenticated by the session cookie (browser) or an `Authorization: Bearer skt_…` API token (scripts, the SOC);
 * each route declares its `access` (public, any account, or a list of roles), and a route that declares none is
 * refused to everyone but a prefecture admin. A state-changing request made with the session cookie must carry the
 * session's CSRF token (form field `_csrf` or header `x-csrf-token`) and, when the browser sends one, an Origin of
 * this host. The rule: authorization is decided here and in the release workflow, never by what a page shows.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config/schema.ts';
import type { Actor } from '../../quarantine/release.ts';
import type { Account, AccountStore, Locale, Session } from './account-store.ts';
import type { Role } from './roles.ts';

export const SESSION_COOKIE = 'sekisho_session';
export const LANG_COOKIE = 'sekisho_lang';
/** A session's idle deadline is moved at most this often: not one database write per request. */
const TOUCH_EVERY_MS = 60_000;

/** public: anyone; authenticated: any account; a list: those roles only. */
export type Access = 'public' | 'authenticated' | readonly Role[];

export interface Principal {
  account: Account;
  actor: Actor;
  session: Session | null;
  /** The session cookie's token (to log out); null for an API token. */
  sessionToken: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    locale: Locale;
  }
  interface FastifyContextConfig {
    access?: Access;
  }
}

/** Access of routes the app registers through plugins that cannot set route config (bull-board), by URL prefix. */
export interface PrefixAccess {
  prefix: string;
  access: Access;
}

export function actorOf(account: Account, ip: string | null): Actor {
  return { name: account.username, role: account.role, tenantId: account.tenantId, ip };
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function isApi(req: FastifyRequest): boolean {
  return req.url.startsWith('/api/') || req.url === '/metrics' || req.url.startsWith('/openapi');
}

function localeOf(req: FastifyRequest, account: Account | undefined): Locale {
  const cookie = req.cookies[LANG_COOKIE];
  if (cookie === 'ja' || cookie === 'en') return cookie;
  return account?.locale ?? 'ja';
}

export interface SessionAuthOptions {
  accounts: AccountStore;
  config: Config['admin'];
  prefixAccess: readonly PrefixAccess[];
  now: () => number;
}

/** Refuses the request: 401/403 JSON for the API, a redirect to the login page (or a 403 page) for the console. */
function refuse(req: FastifyRequest, reply: FastifyReply, status: 401 | 403, why: string): FastifyReply {
  if (!isApi(req) && status === 401 && req.method === 'GET') {
    return reply.redirect(`/console/login?next=${encodeURIComponent(req.url)}`);
  }
  return reply.code(status).send({ error: why, statusCode: status });
}

export function installSessionAuth(app: FastifyInstance, opts: SessionAuthOptions): void {
  const { accounts, now } = opts;
  app.decorateRequest('principal', null);
  app.decorateRequest('locale', 'ja');

  app.addHook('onRequest', async (req, reply) => {
    req.principal = await resolvePrincipal(req, accounts, opts.config.sessionIdleMs, now);
    req.locale = localeOf(req, req.principal?.account);
    const access = req.routeOptions.config.access ?? opts.prefixAccess.find((p) => req.url.startsWith(p.prefix))?.access ?? ['admin'];
    if (access === 'public') return;
    const p = req.principal;
    if (!p) return refuse(req, reply, 401, 'log in first (session cookie or Bearer token)');
    if (p.session?.secondFactorPending) return refuse(req, reply, 401, 'the second factor (TOTP code) is still missing');
    if (access !== 'authenticated' && !access.includes(p.account.role)) return refuse(req, reply, 403, `the role ${p.account.role} may not use this`);
  });

  // After the body is parsed: the CSRF token may be a form field.
  app.addHook('preHandler', async (req, reply) => {
    const p = req.principal;
    if (!p?.sessionToken || req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS') return;
    // Public forms carry their own proof (the login form's token, a digest link's signature); a stale session
    // cookie sent along with them must not make them fail.
    if (req.routeOptions.config.access === 'public') return;
    const origin = req.headers.origin;
    if (origin && origin !== 'null' && new URL(origin).host !== req.headers.host) {
      return reply.code(403).send({ error: 'cross-origin request refused', statusCode: 403 });
    }
    const header = req.headers['x-csrf-token'];
    const field = (req.body as Record<string, unknown> | undefined)?._csrf;
    const token = typeof header === 'string' ? header : typeof field === 'string' ? field : '';
    if (!p.session || !sameSecret(token, p.session.csrfToken)) {
      return reply.code(403).send({ error: 'missing or wrong CSRF token', statusCode: 403 });
    }
  });
}

async function resolvePrincipal(req: FastifyRequest, accounts: AccountStore, idleMs: number, now: () => number): Promise<Principal | null> {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) {
    const found = await accounts.verifyToken(auth.slice('Bearer '.length).trim(), now());
    return found ? { account: found.account, actor: actorOf(found.account, req.ip), session: null, sessionToken: null } : null;
  }
  const token = req.cookies[SESSION_COOKIE];
  if (!token) return null;
  const t = now();
  const session = await accounts.getSession(token, t);
  if (!session) return null;
  const account = await accounts.get(session.accountId);
  if (!account || account.disabled) return null;
  if (t - session.lastSeenAt > TOUCH_EVERY_MS) await accounts.touchSession(token, t, idleMs);
  return { account, actor: actorOf(account, req.ip), session, sessionToken: token };
}
