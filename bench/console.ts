/**
 * npm run bench:console — the quarantine console at scale, through the real admin app over HTTP, each figure beside
 * its baseline in the same invocation:
 *   1. the store alone, with and without its indexes (bench/console-store.ts, runStoreBench);
 *   2. the API: `--records` (100,000) records across `--tenants` (20) — the same generator — in the SQLite store of a
 *      temp data dir, one in PREVIEW_EVERY with a preview; the admin app (buildAdminApp on adminContext) listening
 *      on 127.0.0.1:0, asked over HTTP with a logged-in session cookie, as a tenant user (tenant-staff of the
 *      largest tenant) and as a prefecture admin, each request `--iterations` (200) times; baseline: the store
 *      call(s) the handler makes, in process, with the same parameters (the rest is HTTP, session, JSON, HTML);
 *   3. release throughput: `--releases` (300) held records with their originals spooled, released one by one by
 *      the ReleaseService with a real clamd rescan, then with a rescan that finds nothing at once (the baseline:
 *      what the release costs without clamd), then through POST /api/quarantine/bulk as an admin; the three in
 *      turn, RELEASE_ROUNDS times, each on fresh records.
 * Deliveries are only queued (no workers run); the Redis keys (own prefix) and the data dir are removed at the end.
 * Figures depend on the machine and on what else it runs: the load average is printed; compare within one run.
 *
 * Options: --records N, --tenants N, --iterations N, --releases N, --seed N, --redis-url URL (the machine's Redis,
 * default redis://127.0.0.1:6379), --database-dir DIR (clamd's official signatures when present; the project's
 * own are always loaded).
 */
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import type { AdminContext } from '../src/admin/admin-context.ts';
import { buildAdminApp } from '../src/admin/app.ts';
import { hashPassword } from '../src/admin/auth/passwords.ts';
import type { Role } from '../src/admin/auth/roles.ts';
import { displaySubject, quarantineDetail, quarantineSearch, type QuarantineParams } from '../src/admin/views.ts';
import { validateConfig } from '../src/config/load.ts';
import type { Config } from '../src/config/schema.ts';
import { silentLogger } from '../src/log.ts';
import { createMetrics } from '../src/metrics.ts';
import type { Pipeline } from '../src/queue/pipeline.ts';
import { buildPreview } from '../src/quarantine/preview.ts';
import { ReleaseService, type Actor, type RecordRef, type Rescan } from '../src/quarantine/release.ts';
import { adminContext, closeStores, createPipeline, openStores, type Stores } from '../src/runtime.ts';
import { ClamdClient } from '../src/scan/clamd-client.ts';
import { startManagedClamd, type ManagedClamd } from '../src/services/clamd.ts';
import { newMessageId } from '../src/spool/message-id.ts';
import { storedSymbols } from '../src/spool/stored-verdict.ts';
import { buildMail, encodedWord } from '../test/helpers/mail-builder.ts';
import { newMessage } from '../test/helpers/new-message.ts';
import { deletePrefix } from '../test/helpers/redis-keys.ts';
import { onCleanup, runBench } from './lib/cleanup.ts';
import { fmt, percentile, table } from './lib/report.ts';
import { buildV1, DAY_MS, formatStoreBench, JA_WORDS, recipientOf, runStoreBench, senderOf, SYMBOLS, tenantName, type Latency } from './console-store.ts';

const { values: args } = parseArgs({
  options: {
    records: { type: 'string', default: '100000' },
    tenants: { type: 'string', default: '20' },
    iterations: { type: 'string', default: '200' },
    releases: { type: 'string', default: '300' },
    seed: { type: 'string', default: '1' },
    'redis-url': { type: 'string', default: 'redis://127.0.0.1:6379' },
    'database-dir': { type: 'string', default: '/var/lib/clamav' },
  },
});
const RECORDS = Number(args.records);
const TENANTS = Number(args.tenants);
const ITERATIONS = Number(args.iterations);
const RELEASES = Number(args.releases);
const SEED = Number(args.seed);

/** The console's target for list and search pages (issue 10): p95 at most this, on this machine. */
const TARGET_P95_MS = 150;
/** One generated record in this many gets a preview (records held before previews existed have none). */
const PREVIEW_EVERY = 10;
/** Distinct records the detail request cycles through, per user. */
const DETAIL_TARGETS = 20;
/** Requests made, untimed, before each timed series (first touches of pages and code paths). */
const WARMUP_REQUESTS = 5;
/** Records per bulk release request: a console page (the API takes up to MAX_SEARCH_PAGE). */
const BULK_BATCH = 50;
/** Rounds of the three release runs, taken in turn: each run's figures move with the machine's load. */
const RELEASE_ROUNDS = 3;
/** Releases before the first round, not counted (first writes to the audit log, the spool, Redis). */
const RELEASE_WARMUP = 20;
/** Random bytes attached to each original: every original differs, so clamd's cache of clean results never answers. */
const ATTACHMENT_BYTES = 20_000;
/** clamd's limits as the config defaults (src/config/schema.ts). */
const MAX_MESSAGE_BYTES = 52_428_800;
const CLAMD_TIMEOUT_MS = 60_000;
const CLAMD_THREADS = 4;
/** Scans of small random buffers before the release runs (clamd's first scans on a thread cost several times more). */
const CLAMD_WARMUP_SCANS = 40;
/** The tenant user's tenant: index 0, the largest (the generator gives tenant t a weight of 1/(t+1)). */
const TENANT_USER_TENANT = tenantName(0);
const PASSWORD = 'bench console password';
const RETENTION_MS = 30 * DAY_MS;

const loadAvg = () => os.loadavg().map((l) => l.toFixed(2)).join(' ');
const stamp = (what: string) => `${what}: load average ${loadAvg()} (${os.cpus().length} CPUs)`;
const log = (line: string) => console.error(line);

function latency(ms: readonly number[]): Latency {
  return { p50Ms: percentile(ms, 50), p95Ms: percentile(ms, 95), maxMs: Math.max(...ms) };
}

/** `run(i, timed)` WARMUP_REQUESTS times untimed, then `iterations` times timed. */
async function timeSeries(iterations: number, run: (i: number, timed: boolean) => Promise<unknown>): Promise<Latency> {
  for (let i = 0; i < WARMUP_REQUESTS; i++) await run(i, false);
  const ms: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t = performance.now();
    await run(i, true);
    ms.push(performance.now() - t);
  }
  return latency(ms);
}

// ---------------------------------------------------------------------------------------------------------------
// The data dir: the generated records, previews, and what the detail page reads

function benchConfig(dataDir: string, prefix: string): Config {
  const r = validateConfig({
    hostname: 'mx.bench.pref.example.lg.jp',
    redis: { url: args['redis-url'], prefix },
    dataDir,
    admin: { listen: '127.0.0.1:0' },
    log: { level: 'warn' },
    tenants: Array.from({ length: TENANTS }, (_, t) => ({
      id: tenantName(t),
      name: `市町村${t}`,
      domains: [`${tenantName(t)}.example.lg.jp`],
      deliverTo: 'smtp://127.0.0.1:2525',
    })),
  });
  if (!r.ok) throw new Error(`bad bench config: ${JSON.stringify(r.issues)}`);
  return r.config;
}

/** A held message as the console sees it: Japanese text, one attachment of unique random bytes. */
function sampleOriginal(i: number, rcpt: string): { raw: Buffer; subject: string; mailFrom: string } {
  const subject = encodedWord(`${JA_WORDS[i % JA_WORDS.length]!}の送付について（${i}）`, 'iso-2022-jp');
  const mailFrom = senderOf(i);
  const raw = buildMail({
    from: mailFrom,
    to: rcpt,
    subject,
    text: { body: 'いつもお世話になっております。\n資料を添付いたしますので、ご確認ください。\n'.repeat(20), charset: 'iso-2022-jp' },
    attachments: [{ filename: `資料${i}.bin`, contentType: 'application/octet-stream', data: randomBytes(ATTACHMENT_BYTES) }],
  });
  return { raw, subject, mailFrom };
}

/**
 * Previews for one record in PREVIEW_EVERY, written into the store's preview table in one transaction (one
 * preview built by the worker's code, its From and Subject set to each record's): hold() writes the same rows.
 */
async function addPreviews(file: string): Promise<number> {
  const template = await buildPreview(sampleOriginal(0, recipientOf(0, 1)).raw);
  const db = new Database(file);
  try {
    const rows = db.prepare(`SELECT message_id, mail_from, subject FROM quarantine WHERE rowid % ${PREVIEW_EVERY} = 0`).all() as { message_id: string; mail_from: string; subject: string | null }[];
    const insert = db.prepare('INSERT INTO quarantine_previews (message_id, preview) VALUES (?, ?) ON CONFLICT (message_id) DO NOTHING');
    db.transaction(() => {
      for (const r of rows) {
        const headers = template.headers.map((h) =>
          h.name === 'from' ? { ...h, value: r.mail_from } : h.name === 'subject' ? { ...h, value: displaySubject(r.subject) } : h,
        );
        insert.run(r.message_id, JSON.stringify({ ...template, headers }));
      }
    })();
    return rows.length;
  } finally {
    db.close();
  }
}

/**
 * Records with a preview, given a MetaStore row with a verdict and a spooled original: what a detail page reads.
 * The i-th is the (skip + i)-th newest record with a preview of tenantIds[i].
 */
async function detailTargets(stores: Stores, file: string, tenantIds: readonly string[], skip: number): Promise<RecordRef[]> {
  const db = new Database(file, { readonly: true });
  const pick = db.prepare(
    `SELECT q.message_id AS messageId, q.tenant_id AS tenantId FROM quarantine q JOIN quarantine_previews p USING (message_id)
     WHERE q.tenant_id = ? ORDER BY q.created_at DESC LIMIT 1 OFFSET ?`,
  );
  const refs = tenantIds.map((t, i) => pick.get(t, skip + i) as RecordRef | undefined).filter((r): r is RecordRef => r !== undefined);
  db.close();
  for (const ref of refs) {
    const rec = (await stores.quarantine.get(ref.messageId, ref.tenantId))!;
    const { raw } = sampleOriginal(0, rec.recipients[0]!);
    const written = await stores.store.write(ref.messageId, Readable.from([raw]));
    await stores.meta.insertMessage(
      newMessage({
        id: ref.messageId,
        receivedAt: rec.createdAt,
        mailFrom: rec.mailFrom,
        size: written.size,
        sha256: written.sha256,
        subject: displaySubject(rec.subject),
        recipients: rec.recipients.map((address) => ({ address, tenantId: rec.tenantId })),
      }),
    );
    await stores.meta.updateMessage(ref.messageId, {
      verdict: {
        ...storedSymbols(rec.symbols.map((name) => ({ name, details: ['bench'] }))),
        failedChecks: [],
        durationsMs: { clamav: 12, mime: 3 },
        decisions: { [rec.tenantId]: { action: 'quarantine', score: 12, reasons: rec.reasons } },
        scannedAt: rec.createdAt,
      },
    });
  }
  return refs;
}

// ---------------------------------------------------------------------------------------------------------------
// The admin app over HTTP

interface Session {
  name: string;
  actor: Actor;
  cookie: string;
  csrf: string;
}

async function addAccount(ctx: AdminContext, username: string, role: Role, tenantId: string | null): Promise<void> {
  await ctx.accounts.create({ username, role, tenantId, passwordHash: await hashPassword(PASSWORD) });
}

async function login(base: string, username: string): Promise<Session> {
  const r = await fetch(`${base}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: PASSWORD }) });
  if (r.status !== 200) throw new Error(`login of ${username} failed: ${r.status} ${await r.text()}`);
  const body = (await r.json()) as { role: Role; tenantId: string | null; csrfToken: string };
  const cookie = r.headers.getSetCookie().map((c) => c.split(';')[0]!).find((c) => c.startsWith('sekisho_session='));
  if (!cookie) throw new Error(`login of ${username}: no session cookie`);
  return { name: username, actor: { name: username, role: body.role, tenantId: body.tenantId, ip: '127.0.0.1' }, cookie, csrf: body.csrfToken };
}

async function get(base: string, s: Session | null, url: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`${base}${url}`, { headers: s ? { cookie: s.cookie } : {} });
  const body = await r.text();
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${body.slice(0, 300)}`);
  return { status: r.status, body };
}

interface ApiQuery {
  name: string;
  url: (i: number) => string;
  /** The store call(s) the handler makes for the same request, in process. */
  store: (i: number) => Promise<unknown>;
  /** Whether the answer is a search result whose `total` is reported. */
  search?: boolean;
  /** No session (the HTTP floor). */
  anonymous?: boolean;
}

interface ApiFigures {
  user: string;
  query: string;
  matched: number | null;
  bytes: number;
  http: Latency;
  store: Latency;
}

const qs = (p: QuarantineParams) => new URLSearchParams(p as Record<string, string>).toString();

/** The page-50 cursor of the first page's search, walked through the store as the API hands it out. */
async function page50Cursor(ctx: AdminContext, actor: Actor): Promise<string> {
  let cursor: string | undefined;
  for (let p = 1; p < 50; p++) cursor = (await ctx.quarantine.search(quarantineSearch({ limit: '50', ...(cursor ? { cursor } : {}) }, actor))).nextCursor ?? undefined;
  if (!cursor) throw new Error('fewer than 50 pages: raise --records');
  return cursor;
}

function apiQueries(ctx: AdminContext, s: Session, cursor: string, targets: readonly RecordRef[]): ApiQuery[] {
  const tenantOf = (i: number) => (s.actor.tenantId ? 0 : i % TENANTS);
  const search = (name: string, params: (i: number) => QuarantineParams): ApiQuery => ({
    name,
    url: (i) => `/api/quarantine?${qs(params(i))}`,
    store: (i) => ctx.quarantine.search(quarantineSearch(params(i), s.actor)),
    search: true,
  });
  const scope = quarantineSearch({}, s.actor).tenantIds;
  const states = ['held', 'release-requested', 'approved'];
  return [
    { name: 'HTTP floor: static file, no session', url: () => '/console/static/console.css', store: async () => undefined, anonymous: true },
    search('list, first page', () => ({})),
    search('list, page 50 (cursor)', () => ({ cursor })),
    search('recipient (whole address)', (i) => ({ recipient: recipientOf(tenantOf(i), (i * 37) % 300) })),
    search('sender (substring)', (i) => ({ sender: `shop${(i * 5) % 500}.example` })),
    search('subject (Japanese)', (i) => ({ subject: JA_WORDS[i % JA_WORDS.length]!.replace(/[【】]/g, '') })),
    search('symbol', (i) => ({ symbol: SYMBOLS[i % SYMBOLS.length]! })),
    search('state + date range (3 days)', (i) => ({ state: states[i % states.length]!, from: '2026-11-28', to: '2026-11-30' })),
    {
      name: 'counts by state',
      url: () => '/api/quarantine/counts',
      store: async () => (scope === undefined ? ctx.quarantine.countByState() : Promise.all([...scope, '\u0000none'].map((t) => ctx.quarantine.countByState(t)))),
    },
    {
      name: 'detail (record, verdict, preview)',
      url: (i) => `/api/quarantine/${targets[i % targets.length]!.messageId}/${targets[i % targets.length]!.tenantId}`,
      store: async (i) => quarantineDetail(ctx, s.actor, await ctx.release.get(s.actor, targets[i % targets.length]!)),
    },
    { name: 'console page /console/quarantine', url: () => '/console/quarantine', store: () => ctx.quarantine.search(quarantineSearch({}, s.actor)) },
    {
      name: 'console page, subject filter',
      url: (i) => `/console/quarantine?${qs({ subject: JA_WORDS[i % JA_WORDS.length]!.replace(/[【】]/g, '') })}`,
      store: (i) => ctx.quarantine.search(quarantineSearch({ subject: JA_WORDS[i % JA_WORDS.length]!.replace(/[【】]/g, '') }, s.actor)),
    },
  ];
}

async function runApi(base: string, ctx: AdminContext, sessions: readonly Session[], targets: ReadonlyMap<string, RecordRef[]>): Promise<ApiFigures[]> {
  const out: ApiFigures[] = [];
  for (const s of sessions) {
    const cursor = await page50Cursor(ctx, s.actor);
    for (const q of apiQueries(ctx, s, cursor, targets.get(s.name)!)) {
      let matched = 0;
      let bytes = 0;
      const http = await timeSeries(ITERATIONS, async (i, timed) => {
        const r = await get(base, q.anonymous ? null : s, q.url(i));
        if (timed && i < DETAIL_TARGETS) {
          bytes += Buffer.byteLength(r.body);
          if (q.search) matched += (JSON.parse(r.body) as { total: number }).total;
        }
      });
      const store = await timeSeries(ITERATIONS, q.store);
      const n = Math.min(DETAIL_TARGETS, ITERATIONS);
      out.push({ user: s.name, query: q.name, matched: q.search ? matched / n : null, bytes: bytes / n, http, store });
      log(`${s.name} ${q.name}: p95 ${fmt(http.p95Ms, 1)} ms (store ${fmt(store.p95Ms, 1)} ms)`);
    }
  }
  return out;
}

function formatApi(rows: readonly ApiFigures[]): string {
  const withTarget = (q: string) => !q.startsWith('HTTP floor');
  return table(
    ['user', 'request (ms)', 'matched', 'KiB', 'HTTP p50', 'p95', 'max', `p95 ≤ ${TARGET_P95_MS}`, 'store p50', 'p95', 'max'],
    rows.map((r) => [
      r.user,
      r.query,
      r.matched === null ? '-' : fmt(r.matched, 0),
      fmt(r.bytes / 1024, 1),
      fmt(r.http.p50Ms, 2),
      fmt(r.http.p95Ms, 2),
      fmt(r.http.maxMs, 1),
      withTarget(r.query) ? (r.http.p95Ms <= TARGET_P95_MS ? 'pass' : 'FAIL') : '-',
      r.query.startsWith('HTTP floor') ? '-' : fmt(r.store.p50Ms, 2),
      r.query.startsWith('HTTP floor') ? '-' : fmt(r.store.p95Ms, 2),
      r.query.startsWith('HTTP floor') ? '-' : fmt(r.store.maxMs, 1),
    ]),
    2,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Releases

/** `n` held records with their originals spooled and their MetaStore rows, as the worker leaves them. */
async function holdForRelease(stores: Stores, n: number): Promise<RecordRef[]> {
  const refs: RecordRef[] = [];
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    const tenantId = tenantName(i % TENANTS);
    const rcpt = recipientOf(i % TENANTS, i % 300);
    const { raw, subject, mailFrom } = sampleOriginal(i, rcpt);
    const id = newMessageId(now + i);
    const written = await stores.store.write(id, Readable.from([raw]));
    await stores.meta.insertMessage(
      newMessage({ id, receivedAt: now, mailFrom, size: written.size, sha256: written.sha256, subject: displaySubject(subject), recipients: [{ address: rcpt, tenantId }] }),
    );
    await stores.quarantine.hold({
      messageId: id,
      tenantId,
      kind: 'held',
      recipients: [rcpt],
      mailFrom,
      subject,
      symbols: ['OFFICE_MACRO', 'SPF_SOFTFAIL'],
      reasons: ['OFFICE_MACRO forces hold'],
      createdAt: now + i,
      expiresAt: now + RETENTION_MS,
    });
    refs.push({ messageId: id, tenantId });
  }
  return refs;
}

interface ReleaseFigures {
  run: string;
  round?: number;
  releases: number;
  seconds: number;
  /** Per release (service runs) or per bulk request of BULK_BATCH (API run). */
  each: Latency;
  /** Mean milliseconds per release spent in the rescan. */
  rescanMs: number | null;
}

/** Releases `refs` one by one through a ReleaseService on the app's stores, with `rescan` timed apart. */
async function releaseEach(run: string, ctx: AdminContext, pipeline: Pipeline, actor: Actor, refs: readonly RecordRef[], rescan: (raw: Buffer) => Promise<Rescan>): Promise<ReleaseFigures> {
  let rescanMs = 0;
  const service = new ReleaseService({
    quarantine: ctx.quarantine,
    meta: ctx.meta,
    store: ctx.store,
    pipeline,
    audit: ctx.audit,
    tenants: ctx.tenants,
    hostname: ctx.config.hostname,
    rescan: async (raw) => {
      const t = performance.now();
      const r = await rescan(raw);
      rescanMs += performance.now() - t;
      return r;
    },
  });
  const ms: number[] = [];
  const start = performance.now();
  for (const ref of refs) {
    const t = performance.now();
    const rec = await service.release(actor, ref, { reason: 'bench' });
    ms.push(performance.now() - t);
    if (rec.state !== 'released') throw new Error(`${ref.messageId} is ${rec.state}`);
  }
  const seconds = (performance.now() - start) / 1000;
  return { run, releases: refs.length, seconds, each: latency(ms), rescanMs: rescanMs / refs.length };
}

/** Releases `refs` through POST /api/quarantine/bulk, BULK_BATCH at a time (the app's own clamd rescan). */
async function releaseBulk(base: string, s: Session, refs: readonly RecordRef[]): Promise<ReleaseFigures> {
  const ms: number[] = [];
  const start = performance.now();
  for (let i = 0; i < refs.length; i += BULK_BATCH) {
    const items = refs.slice(i, i + BULK_BATCH);
    const t = performance.now();
    const r = await fetch(`${base}/api/quarantine/bulk`, {
      method: 'POST',
      headers: { cookie: s.cookie, 'x-csrf-token': s.csrf, 'content-type': 'application/json' },
      body: JSON.stringify({ step: 'release', reason: 'bench', items }),
    });
    const body = (await r.json()) as { done: number; refused: number; results: { error?: string }[] };
    ms.push(performance.now() - t);
    if (r.status !== 200 || body.done !== items.length) throw new Error(`bulk release: ${r.status} ${JSON.stringify(body).slice(0, 300)}`);
  }
  const seconds = (performance.now() - start) / 1000;
  return { run: `API bulk, ${BULK_BATCH} per request, clamd rescan`, releases: refs.length, seconds, each: latency(ms), rescanMs: null };
}

function formatReleases(rows: readonly ReleaseFigures[]): string {
  return table(
    ['release run', 'round', 'releases', 'releases/s', 'p50 ms', 'p95 ms', 'max ms', 'rescan ms (mean)'],
    rows.map((r) => [r.run, String(r.round ?? '-'), String(r.releases), fmt(r.releases / r.seconds, 1), fmt(r.each.p50Ms, 1), fmt(r.each.p95Ms, 1), fmt(r.each.maxMs, 1), fmt(r.rescanMs, 2)]),
    1,
  );
}

// ---------------------------------------------------------------------------------------------------------------


async function startClamd(root: string): Promise<ManagedClamd> {
  const clamd = await startManagedClamd({
    dir: path.join(root, 'clamd'),
    databaseDir: args['database-dir'],
    maxStreamBytes: MAX_MESSAGE_BYTES,
    scanTimeoutMs: CLAMD_TIMEOUT_MS,
    startTimeoutMs: 300_000,
    maxThreads: CLAMD_THREADS,
  });
  onCleanup('clamd', () => clamd.stop(), () => clamd.kill());
  const client = new ClamdClient(clamd.endpoint, CLAMD_TIMEOUT_MS);
  for (let i = 0; i < CLAMD_WARMUP_SCANS; i++) await client.scan(randomBytes(1024));
  client.close();
  return clamd;
}

function officialSignatures(): string {
  try {
    const files = readdirSync(args['database-dir']).filter((f) => /\.(cvd|cld)$/.test(f));
    return files.length ? `official signatures loaded (${files.join(', ')})` : 'no official signatures (only the project\'s)';
  } catch {
    return 'no official signatures (only the project\'s)';
  }
}

async function main(): Promise<void> {
  const out: string[] = [`bench:console — ${RECORDS} records, ${TENANTS} tenants, ${ITERATIONS} requests per figure, ${RELEASES} releases per run`, stamp('start')];

  log('1. store level, with and without the indexes');
  const storeResult = await runStoreBench({ records: RECORDS, tenants: TENANTS, iterations: ITERATIONS, seed: SEED, log });
  out.push('', '## 1. Store: the console\'s queries with the indexes (as shipped) and without (baseline)', formatStoreBench(storeResult), stamp('after the store part'));

  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-console-api-'));
  onCleanup('temp dir', async () => rmSync(root, { recursive: true, force: true }), () => rmSync(root, { recursive: true, force: true }));
  const prefix = `bench-console-${randomBytes(4).toString('hex')}`;
  onCleanup('redis keys', () => deletePrefix(args['redis-url'], prefix), () => undefined);
  const config = benchConfig(path.join(root, 'data'), prefix);
  const quarantineFile = path.join(config.dataDir, 'quarantine.sqlite');

  log('2. API: building the data dir');
  let t = performance.now();
  mkdirSync(config.dataDir, { recursive: true });
  buildV1(quarantineFile, RECORDS, TENANTS, SEED);
  const stores = openStores(config, 'admin');
  onCleanup('stores', () => closeStores(stores), () => undefined);
  const previews = await addPreviews(quarantineFile);
  const fillS = (performance.now() - t) / 1000;
  const clamd = await startClamd(root);
  const pipeline = createPipeline(config, args['redis-url']);
  onCleanup('pipeline', () => pipeline.close(), () => undefined);
  const { ctx, close } = adminContext(config, { stores, pipeline, metrics: createMetrics('admin'), clamd: clamd.endpoint }, silentLogger);
  onCleanup('admin context', close, () => undefined);
  const app = buildAdminApp(ctx);
  onCleanup('admin app', () => app.close(), () => undefined);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;

  await addAccount(ctx, 'tenant-staff', 'tenant-staff', TENANT_USER_TENANT);
  await addAccount(ctx, 'admin', 'admin', null);
  const sessions = [await login(base, 'tenant-staff'), await login(base, 'admin')];
  const targets = new Map([
    ['tenant-staff', await detailTargets(stores, quarantineFile, Array.from({ length: DETAIL_TARGETS }, () => TENANT_USER_TENANT), 0)],
    ['admin', await detailTargets(stores, quarantineFile, Array.from({ length: DETAIL_TARGETS }, (_, i) => tenantName(i % TENANTS)), DETAIL_TARGETS)],
  ]);
  const tenantShare = (await ctx.quarantine.countByState(TENANT_USER_TENANT)) as Record<string, number>;
  const tenantRecords = Object.values(tenantShare).reduce((a, b) => a + b, 0);

  log('2. API: requests');
  const api = await runApi(base, ctx, sessions, targets);
  out.push(
    '',
    `## 2. API over HTTP (127.0.0.1, keep-alive, one request at a time, ${WARMUP_REQUESTS} untimed first), p95 target ≤ ${TARGET_P95_MS} ms`,
    `data dir filled in ${fmt(fillS, 1)} s (same generator; ${previews} previews, one record in ${PREVIEW_EVERY}); ` +
      `tenant-staff of ${TENANT_USER_TENANT} sees ${tenantRecords} records, admin all ${RECORDS}; ` +
      'baseline "store": the store call(s) the handler makes, in process, same parameters',
    formatApi(api),
    `failing the target: ${api.filter((r) => !r.query.startsWith('HTTP floor') && r.http.p95Ms > TARGET_P95_MS).length} of ${api.length - sessions.length}`,
    stamp('after the API part'),
  );

  log('3. releases');
  t = performance.now();
  const admin = sessions[1]!;
  const batches: RecordRef[][] = [];
  for (let i = 0; i < 3 * RELEASE_ROUNDS; i++) batches.push(await holdForRelease(stores, RELEASES));
  const holdS = (performance.now() - t) / 1000;
  await releaseEach('warm-up', ctx, pipeline, admin.actor, await holdForRelease(stores, RELEASE_WARMUP), async () => ({ found: [] }));
  const client = new ClamdClient(clamd.endpoint, CLAMD_TIMEOUT_MS, { sessions: 1 });
  const releases: ReleaseFigures[] = [];
  for (let round = 1; round <= RELEASE_ROUNDS; round++) {
    const [withClamd, without, bulk] = batches.splice(0, 3) as [RecordRef[], RecordRef[], RecordRef[]];
    releases.push({ ...(await releaseEach('service, clamd rescan', ctx, pipeline, admin.actor, withClamd, (raw) => client.scan(raw))), round });
    releases.push({ ...(await releaseEach('service, no rescan (baseline)', ctx, pipeline, admin.actor, without, async () => ({ found: [] }))), round });
    releases.push({ ...(await releaseBulk(base, admin, bulk)), round });
    log(`release round ${round} done`);
  }
  client.close();
  const queued = (await pipeline.queue('deliver').getJobCounts()) as Record<string, number>;
  out.push(
    '',
    `## 3. Releases (admin; originals of ${fmt(sampleOriginal(0, recipientOf(0, 0)).raw.length / 1024, 1)} KiB, ${officialSignatures()})`,
    `${3 * RELEASE_ROUNDS * RELEASES} held records with spooled originals and MetaStore rows made in ${fmt(holdS, 1)} s; ` +
      `${RELEASE_WARMUP} releases untimed first; the three runs in turn, ${RELEASE_ROUNDS} rounds. Each release: read the original, ` +
      'rescan, spool a copy, record it, enqueue its delivery, audit, move the record, remove the original',
    formatReleases(releases),
    `(API bulk rows: p50/p95/max are per request of ${BULK_BATCH} releases.) Deliveries queued: ${JSON.stringify(queued)}`,
    stamp('end'),
  );
  console.log(out.join('\n'));
}

await runBench(main);
