/**
 * Logging in and out, for the console (form posts) and the API (`POST /api/session`). Failed logins are counted per
 * account (lockout after admin.maxFailedLogins) and per client address (admin.loginAttemptsPerMinute, then 429);
 * an unknown user name costs the same hashing time as a known one and gets the same answer. A TOTP second factor,
 * when enrolled, is asked after the password on a session that can do nothing else. Every outcome is audited.
 * The login form itself carries a CSRF token bound to a short-lived cookie (double submit): there is no session yet.
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config/schema.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { html } from '../html.ts';
import { sendPage, t } from '../pages/layout.ts';
import { isLocked, type Account, type AccountStore } from './account-store.ts';
import { passwordNeedsRehash, hashPassword, verifyAgainstDummy, verifyPassword } from './passwords.ts';
import { LANG_COOKIE, SESSION_COOKIE } from './session-auth.ts';
import { verifyTotp } from './totp.ts';

const LOGIN_CSRF_COOKIE = 'sekisho_login';
/** The login form's token lives this long: a form left open longer is simply shown again. */
const LOGIN_FORM_TTL_S = 30 * 60;
/** Window of the per-address login limit. */
const THROTTLE_WINDOW_MS = 60_000;
/** Addresses remembered by the throttle at most (an attack from many addresses must not grow memory without bound). */
const MAX_THROTTLED_ADDRESSES = 10_000;

/** Attempts per client address in the last minute. */
export class LoginThrottle {
  readonly #hits = new Map<string, number[]>();
  constructor(
    readonly perMinute: number,
    readonly now: () => number,
  ) {}

  /** Counts an attempt; false when the address is over its limit. */
  take(ip: string): boolean {
    const t = this.now();
    const recent = (this.#hits.get(ip) ?? []).filter((at) => t - at < THROTTLE_WINDOW_MS);
    if (recent.length >= this.perMinute) {
      this.#hits.set(ip, recent);
      return false;
    }
    recent.push(t);
    this.#hits.delete(ip);
    this.#hits.set(ip, recent);
    if (this.#hits.size > MAX_THROTTLED_ADDRESSES) this.#hits.delete(this.#hits.keys().next().value as string);
    return true;
  }
}

export interface LoginDeps {
  accounts: AccountStore;
  audit: AuditLog;
  config: Config['admin'];
  secureCookies: boolean;
  now: () => number;
}

type LoginResult = { ok: true; account: Account; token: string; pendingTotp: boolean } | { ok: false; status: 401 | 429; message: 'loginFailed' | 'loginThrottled' | 'loginTotpRequired' };

function safeNext(next: unknown): string {
  return typeof next === 'string' && next.startsWith('/console') && !next.startsWith('//') ? next : '/console';
}

export function registerLoginRoutes(app: FastifyInstance, d: LoginDeps): void {
  const throttle = new LoginThrottle(d.config.loginAttemptsPerMinute, d.now);
  const cookie = { path: '/', httpOnly: true, sameSite: 'strict' as const, secure: d.secureCookies };

  const audit = (req: FastifyRequest, action: string, actor: string, account: Account | undefined, outcome: 'ok' | 'denied', why?: string) =>
    d.audit.append({
      at: d.now(),
      actor,
      role: account?.role ?? null,
      tenantId: account?.tenantId ?? null,
      ip: req.ip,
      action,
      target: account ? `account:${account.username}` : null,
      reason: null,
      outcome,
      details: why ? { why, userAgent: req.headers['user-agent'] ?? null } : { userAgent: req.headers['user-agent'] ?? null },
    });

  async function login(req: FastifyRequest, username: string, password: string): Promise<LoginResult> {
    if (!throttle.take(req.ip)) {
      await audit(req, 'login-failed', username.slice(0, 64), undefined, 'denied', 'too many attempts from this address');
      return { ok: false, status: 429, message: 'loginThrottled' };
    }
    const account = username ? await d.accounts.byUsername(username) : undefined;
    if (!account) {
      await verifyAgainstDummy(password);
      await audit(req, 'login-failed', username.slice(0, 64), undefined, 'denied', 'unknown user');
      return { ok: false, status: 401, message: 'loginFailed' };
    }
    const now = d.now();
    if (account.disabled || isLocked(account, now)) {
      await verifyAgainstDummy(password);
      await audit(req, 'login-failed', account.username, account, 'denied', account.disabled ? 'account disabled' : 'account locked');
      return { ok: false, status: 401, message: 'loginFailed' };
    }
    if (!(await verifyPassword(password, account.passwordHash))) {
      const after = await d.accounts.recordLoginFailure(account.id, now, { maxFailures: d.config.maxFailedLogins, lockMs: d.config.lockoutMs });
      await audit(req, 'login-failed', account.username, account, 'denied', isLocked(after, now) ? 'wrong password: account now locked' : 'wrong password');
      return { ok: false, status: 401, message: 'loginFailed' };
    }
    if (!account.totpSecret && d.config.requireTotp.includes(account.role)) {
      await audit(req, 'login-failed', account.username, account, 'denied', 'second factor required but not enrolled');
      return { ok: false, status: 401, message: 'loginTotpRequired' };
    }
    if (passwordNeedsRehash(account.passwordHash)) await d.accounts.update(account.id, { passwordHash: await hashPassword(password) });
    const { token } = await d.accounts.createSession({
      accountId: account.id,
      ip: req.ip,
      userAgent: req.headers['user-agent'] ?? null,
      now,
      idleMs: d.config.sessionIdleMs,
      absoluteMs: d.config.sessionMaxMs,
    });
    if (!account.totpSecret) {
      await d.accounts.recordLoginSuccess(account.id, now);
      await audit(req, 'login', account.username, account, 'ok');
    }
    return { ok: true, account, token, pendingTotp: account.totpSecret !== null };
  }

  /** The second step: the code of a session waiting for it. */
  async function secondFactor(req: FastifyRequest, code: string): Promise<boolean> {
    const token = req.cookies[SESSION_COOKIE];
    const session = token ? await d.accounts.getSession(token, d.now()) : undefined;
    const account = session ? await d.accounts.get(session.accountId) : undefined;
    if (!token || !session?.secondFactorPending || !account) return false;
    if (!throttle.take(req.ip) || !(await verifyTotp(d.accounts, account, code.trim(), d.now()))) {
      await d.accounts.recordLoginFailure(account.id, d.now(), { maxFailures: d.config.maxFailedLogins, lockMs: d.config.lockoutMs });
      await audit(req, 'login-failed', account.username, account, 'denied', 'wrong TOTP code');
      await d.accounts.deleteSession(token);
      return false;
    }
    await d.accounts.completeSecondFactor(token);
    await d.accounts.recordLoginSuccess(account.id, d.now());
    await audit(req, 'login', account.username, account, 'ok', 'password and TOTP');
    return true;
  }

  function loginForm(req: FastifyRequest, reply: FastifyReply, error: string | null, status = 200, next = '/console'): FastifyReply {
    const tr = t(req);
    const formToken = randomBytes(24).toString('base64url');
    void reply.setCookie(LOGIN_CSRF_COOKIE, formToken, { ...cookie, path: '/console/login', maxAge: LOGIN_FORM_TTL_S });
    return sendPage(
      req,
      reply,
      tr('login'),
      html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}
<form method="post" action="/console/login" class="login">
<input type="hidden" name="_login" value="${formToken}"><input type="hidden" name="next" value="${next}">
<label>${tr('username')}<input name="username" autocomplete="username" required autofocus></label>
<label>${tr('password')}<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">${tr('login')}</button></form>`,
      status,
    );
  }

  app.get<{ Querystring: { next?: string } }>('/console/login', { config: { access: 'public' } }, async (req, reply) =>
    loginForm(req, reply, null, 200, safeNext(req.query.next)),
  );

  app.post<{ Body: Record<string, string | undefined> }>('/console/login', { config: { access: 'public' } }, async (req, reply) => {
    const body = req.body ?? {};
    const expected = req.cookies[LOGIN_CSRF_COOKIE];
    if (!expected || body._login !== expected) return loginForm(req, reply, t(req)('loginFailed'), 403);
    const result = await login(req, body.username ?? '', body.password ?? '');
    if (!result.ok) return loginForm(req, reply, t(req)(result.message), result.status, safeNext(body.next));
    void reply.clearCookie(LOGIN_CSRF_COOKIE, { path: '/console/login' });
    void reply.setCookie(SESSION_COOKIE, result.token, cookie);
    return reply.redirect(result.pendingTotp ? `/console/login/totp?next=${encodeURIComponent(safeNext(body.next))}` : safeNext(body.next));
  });

  app.get<{ Querystring: { next?: string } }>('/console/login/totp', { config: { access: 'public' } }, async (req, reply) => totpForm(req, reply, null, safeNext(req.query.next)));

  function totpForm(req: FastifyRequest, reply: FastifyReply, error: string | null, next: string, status = 200): FastifyReply {
    const tr = t(req);
    return sendPage(
      req,
      reply,
      tr('login'),
      html`${error ? html`<p class="error" role="alert">${error}</p>` : ''}<p>${tr('totpPrompt')}</p>
<form method="post" action="/console/login/totp" class="login"><input type="hidden" name="next" value="${next}">
<label>${tr('totpCode')}<input name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" required autofocus></label>
<button type="submit">${tr('login')}</button></form>`,
      status,
    );
  }

  app.post<{ Body: Record<string, string | undefined> }>('/console/login/totp', { config: { access: 'public' } }, async (req, reply) => {
    const body = req.body ?? {};
    if (await secondFactor(req, body.code ?? '')) return reply.redirect(safeNext(body.next));
    return loginForm(req, reply, t(req)('totpFailed'), 401);
  });

  app.post('/console/logout', { config: { access: 'authenticated' } }, async (req, reply) => {
    const p = req.principal;
    if (p?.sessionToken) {
      await d.accounts.deleteSession(p.sessionToken);
      await audit(req, 'logout', p.account.username, p.account, 'ok');
    }
    void reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.redirect('/console/login');
  });

  app.get<{ Params: { lang: string } }>('/console/lang/:lang', { config: { access: 'public' } }, async (req, reply) => {
    const lang = req.params.lang === 'en' ? 'en' : 'ja';
    void reply.setCookie(LANG_COOKIE, lang, { path: '/', sameSite: 'lax', secure: d.secureCookies, maxAge: 365 * 24 * 3600 });
    const back = req.headers.referer ? new URL(req.headers.referer).pathname : '/console';
    return reply.redirect(back.startsWith('/console') ? back : '/console');
  });

  app.post<{ Body: { username?: string; password?: string; totp?: string } }>(
    '/api/session',
    {
      config: { access: 'public' },
      schema: {
        summary: 'Log in (sets the session cookie; returns the CSRF token for state-changing requests)',
        tags: ['session'],
        body: {
          type: 'object',
          required: ['username', 'password'],
          properties: { username: { type: 'string' }, password: { type: 'string' }, totp: { type: 'string' } },
        },
      },
    },
    async (req, reply) => {
      const result = await login(req, req.body.username ?? '', req.body.password ?? '');
      if (!result.ok) return reply.code(result.status).send({ error: t(req)(result.message), statusCode: result.status });
      void reply.setCookie(SESSION_COOKIE, result.token, cookie);
      if (result.pendingTotp) {
        req.cookies[SESSION_COOKIE] = result.token;
        if (!(await secondFactor(req, req.body.totp ?? ''))) return reply.code(401).send({ error: t(req)('totpFailed'), statusCode: 401 });
      }
      const session = await d.accounts.getSession(result.token, d.now());
      return { username: result.account.username, role: result.account.role, tenantId: result.account.tenantId, csrfToken: session?.csrfToken };
    },
  );

  app.delete('/api/session', { config: { access: 'authenticated' }, schema: { summary: 'Log out', tags: ['session'] } }, async (req, reply) => {
    const p = req.principal;
    if (p?.sessionToken) {
      await d.accounts.deleteSession(p.sessionToken);
      await audit(req, 'logout', p.account.username, p.account, 'ok');
    }
    void reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return { ok: true };
  });
}
