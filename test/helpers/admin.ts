/**
 * The admin app on a Harness's stores, with accounts made directly in its AccountStore and a logged-in client per
 * account (session cookie + CSRF token) for `app.inject`.
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { AdminContext } from '../../src/admin/admin-context.ts';
import { buildAdminApp } from '../../src/admin/app.ts';
import { hashPassword } from '../../src/admin/auth/passwords.ts';
import type { Role } from '../../src/admin/auth/roles.ts';
import { adminContext } from '../../src/runtime.ts';
import type { ClamdEndpoint } from '../../src/scan/clamd-client.ts';
import type { Harness } from './harness.ts';

export const TEST_PASSWORD = 'correct horse battery staple';

export interface AdminUnderTest {
  app: FastifyInstance;
  ctx: AdminContext;
  addUser(username: string, role: Role, tenantId?: string | null): Promise<void>;
  /** Logs in through POST /api/session and returns a client that sends the cookie and the CSRF token. */
  login(username: string, password?: string): Promise<Client>;
  close(): Promise<void>;
}

export interface Client {
  cookie: string;
  csrf: string;
  get(url: string): Promise<LightMyRequestResponse>;
  post(url: string, body?: Record<string, unknown>, opts?: { csrf?: boolean; form?: boolean }): Promise<LightMyRequestResponse>;
}

export async function startAdminFor(h: Harness, opts: { clamd?: ClamdEndpoint } = {}): Promise<AdminUnderTest> {
  const { ctx, close } = adminContext(h.config, { stores: h.stores, pipeline: h.ingress.pipeline, metrics: h.ingress.metrics, clamd: opts.clamd }, h.log);
  const app = buildAdminApp(ctx);
  await app.ready();
  const hash = await hashPassword(TEST_PASSWORD);
  return {
    app,
    ctx,
    async addUser(username, role, tenantId = null) {
      await ctx.accounts.create({ username, role, tenantId, passwordHash: hash });
    },
    async login(username, password = TEST_PASSWORD) {
      const r = await app.inject({ method: 'POST', url: '/api/session', payload: { username, password } });
      if (r.statusCode !== 200) throw new Error(`login of ${username} failed: ${r.statusCode} ${r.body}`);
      const set = r.cookies.find((c) => c.name === 'sekisho_session');
      const cookie = `sekisho_session=${set?.value ?? ''}`;
      const csrf = (r.json() as { csrfToken: string }).csrfToken;
      const send = (o: InjectOptions) => app.inject({ ...o, headers: { ...o.headers, cookie } });
      return {
        cookie,
        csrf,
        get: (url) => send({ method: 'GET', url }),
        post: (url, body = {}, o = {}) =>
          o.form
            ? send({
                method: 'POST',
                url,
                headers: { 'content-type': 'application/x-www-form-urlencoded' },
                payload: new URLSearchParams({ ...(o.csrf === false ? {} : { _csrf: csrf }), ...(body as Record<string, string>) }).toString(),
              })
            : send({ method: 'POST', url, headers: o.csrf === false ? {} : { 'x-csrf-token': csrf }, payload: body }),
      };
    },
    async close() {
      await app.close();
      await close();
    },
  };
}
