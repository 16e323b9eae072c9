/**
 * The admin HTTP app (fastify): the console (server-rendered pages, Japanese first), the JSON API behind every page
 * (described at /openapi.json), the queue dashboard (bull-board, read-only), /healthz and /metrics. Built by a
 * factory separate from listen() so tests use inject(). Every route declares who may use it (session-auth.ts);
 * security headers and a strict CSP on every answer: no inline script, nothing from another origin.
 */
import { readFileSync } from 'node:fs';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AdminContext } from './admin-context.ts';
import { installSessionAuth } from './auth/session-auth.ts';
import { registerLoginRoutes } from './auth/login-routes.ts';
import { registerQuarantinePages } from './pages/quarantine-pages.ts';
import { registerAuditAndAccounts } from './routes/audit-accounts.ts';
import { registerDigestRoutes } from './routes/digest-routes.ts';
import { registerOperations } from './routes/operations.ts';
import { registerQuarantineApi } from './routes/quarantine-api.ts';
import { registerTracking } from './routes/tracking.ts';

/** Request bodies: forms and JSON steps are small; nothing uploads files to the console. */
const MAX_BODY_BYTES = 1024 * 1024;
const QUEUES_PREFIX = '/console/queues';

const CSP: Record<string, string[]> = {
  defaultSrc: ["'self'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  objectSrc: ["'none'"],
  frameSrc: ["'none'"],
  frameAncestors: ["'none'"],
  formAction: ["'self'"],
  baseUri: ["'none'"],
};
/**
 * bull-board's page (checked with @bull-board/ui 9.10.1) sets `<base href>` and uses inline styles (its loader, style
 * attributes): only under its prefix, base-uri 'self' and style-src 'unsafe-inline'. Scripts stay 'self'.
 */
const QUEUES_CSP = Object.entries({ ...CSP, styleSrc: ["'self'", "'unsafe-inline'"], baseUri: ["'self'"] })
  .map(([k, v]) => `${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${v.join(' ')}`)
  .join('; ');

const STATIC: Record<string, { type: string; body: Buffer }> = {
  'console.css': { type: 'text/css; charset=utf-8', body: readFileSync(new URL('./static/console.css', import.meta.url)) },
  'console.js': { type: 'text/javascript; charset=utf-8', body: readFileSync(new URL('./static/console.js', import.meta.url)) },
};

export interface AdminAppOptions {
  /** Only /healthz and /metrics: the side listener of a separately run ingress or worker. */
  metricsOnly?: boolean;
  /** HTTPS (admin.tls): cookies are Secure and HSTS is sent. */
  https?: { key: Buffer; cert: Buffer };
}

export function buildAdminApp(ctx: AdminContext, opts: AdminAppOptions = {}): FastifyInstance {
  const app = (opts.https ? Fastify({ logger: false, https: opts.https, bodyLimit: MAX_BODY_BYTES }) : Fastify({ logger: false, bodyLimit: MAX_BODY_BYTES })) as FastifyInstance;
  const secure = !!opts.https;

  void app.register(cookie);
  void app.register(formbody, { bodyLimit: MAX_BODY_BYTES });
  void app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CSP },
    hsts: secure ? { maxAge: 31_536_000 } : false,
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginEmbedderPolicy: false,
  });
  void app.register(swagger, {
    openapi: {
      info: { title: 'Sekisho admin API', version: '1', description: 'Quarantine, release workflow, tracking, audit and operations. Session cookie (+ x-csrf-token) or Bearer API token.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, session: { type: 'apiKey', in: 'cookie', name: 'sekisho_session' } } },
      security: [{ bearer: [] }, { session: [] }],
    },
  });

  void app.register(async (scoped) => {
    // The OpenAPI description is of the JSON API: console pages and the dashboard are left out of it.
    scoped.addHook('onRoute', (r) => {
      if (!r.url.startsWith('/api/') && r.url !== '/healthz' && r.url !== '/metrics') r.schema = { ...r.schema, hide: true };
    });
    installSessionAuth(scoped, {
      accounts: ctx.accounts,
      config: ctx.config.admin,
      now: ctx.now,
      prefixAccess: [{ prefix: QUEUES_PREFIX, access: ['admin', 'operator'] }],
    });
    // No page of the console may be cached by a shared proxy or kept by the browser after logout.
    scoped.addHook('onSend', async (req, reply) => {
      if (!req.url.startsWith('/console/static/')) void reply.header('cache-control', 'no-store');
      const path = req.url.split('?')[0] ?? '';
      if (path === QUEUES_PREFIX || path.startsWith(`${QUEUES_PREFIX}/`)) void reply.header('content-security-policy', QUEUES_CSP);
    });

    scoped.get('/', { config: { access: 'public' } }, async (_req, reply) => reply.redirect('/console'));
    scoped.get<{ Params: { file: string } }>('/console/static/:file', { config: { access: 'public' } }, async (req, reply) => {
      const f = STATIC[req.params.file];
      if (!f) return reply.code(404).send({ error: 'not found' });
      return reply.type(f.type).header('cache-control', 'public, max-age=3600').send(f.body);
    });
    scoped.get('/openapi.json', { config: { access: 'authenticated' }, schema: { hide: true } }, async () => app.swagger());

    registerOperations(scoped, ctx);
    if (opts.metricsOnly) return;
    registerLoginRoutes(scoped, { accounts: ctx.accounts, audit: ctx.audit, config: ctx.config.admin, secureCookies: secure, now: ctx.now });
    registerQuarantineApi(scoped, ctx);
    registerQuarantinePages(scoped, ctx);
    registerTracking(scoped, ctx);
    registerAuditAndAccounts(scoped, ctx);
    if (ctx.digestSigner) registerDigestRoutes(scoped, ctx, ctx.digestSigner);

    const board = new FastifyAdapter();
    board.setBasePath(QUEUES_PREFIX);
    createBullBoard({
      queues: ctx.pipeline.stages.map((s) => new BullMQAdapter(ctx.pipeline.queue(s.name), { readOnlyMode: true })),
      serverAdapter: board,
      options: { uiConfig: { boardTitle: 'Sekisho queues' } },
    });
    await scoped.register(board.registerPlugin(), { prefix: QUEUES_PREFIX });
  });

  return app;
}
