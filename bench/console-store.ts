/**
 * npm run bench:console-store — latency of the console's quarantine queries at scale, with and without the
 * store's search indexes (the store-level half of bench:console; runStoreBench returns the figures as data).
 *
 * Builds `--records` (100,000) records across `--tenants` (20) as schema v1 rows, opens the file with
 * SqliteQuarantineStore (which upgrades it: the upgrade with its backfill is timed), then runs each query `--iterations`
 * (200) times, cycling through a fixed list of parameters, on two databases holding the same rows:
 *   indexed  — the store as shipped (side tables, ordering indexes, trigram index, search keys),
 *              through its API;
 *   baseline — a copy with the side tables, the trigram index and the v2 indexes dropped and schema v1's indexes
 *              back: recipient and symbol filters scan the JSON columns (json_each), substrings are LIKE over the
 *              decoded search keys (so substring figures compare index and scan, not encodings).
 * A second table isolates the substring filters: the store (FTS5 trigram for terms of 3+ characters, LIKE below)
 * against LIKE alone on the same indexed file. Figures depend on the machine: compare within one run.
 *
 * Options: --records N, --tenants N, --iterations N, --dir DIR (kept; default a temp dir, removed), --seed N.
 */
import Database from 'better-sqlite3';
import Encoding from 'encoding-japanese';
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { QuarantineSearch, QuarantineState } from '../src/quarantine/quarantine-store.ts';
import { addressKey, isWholeAddress, searchKey } from '../src/quarantine/search-keys.ts';
import { SqliteQuarantineStore } from '../src/quarantine/sqlite-quarantine-store.ts';
import { fmt, mb, percentile, table } from './lib/report.ts';

export interface StoreBenchOptions {
  records?: number;
  tenants?: number;
  iterations?: number;
  /** Where the databases go; kept when given, otherwise a temp dir removed at the end. */
  dir?: string;
  seed?: number;
  log?: (line: string) => void;
}

export interface Latency {
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
}

export interface QueryFigures {
  query: string;
  /** Mean `total` over the parameter list (how many records the filter matches). */
  matched: number;
  indexed: Latency;
  baseline: Latency;
  /** LIKE alone on the indexed file, no trigram index (substring queries only). */
  likeOnly?: Latency;
}

export interface StoreBenchResult {
  records: number;
  tenants: number;
  iterations: number;
  buildMs: number;
  /** Opening the v1 file: the migrations to the current schema, with the backfill of side tables and search keys. */
  upgradeMs: number;
  indexedBytes: number;
  baselineBytes: number;
  /** One hold() on the full file (synchronous = FULL: mostly the disk's fsync). */
  hold: Latency;
  queries: QueryFigures[];
}

export const DAY_MS = 24 * 3_600_000;
const SPAN_MS = 14 * DAY_MS;
const T_END = Date.UTC(2026, 11, 1);
const PAGE = 50;
/** Records per bulk-insert transaction while building. */
const BUILD_BATCH = 10_000;
/** Distinct parameter values each query cycles through (one tenant, term, address… per iteration). */
const PARAMS = 20;

export const SYMBOLS = [
  'CLAMAV_VIRUS', 'CLAMAV_FAIL', 'SPF_FAIL', 'SPF_SOFTFAIL', 'DKIM_FAIL', 'DMARC_REJECT', 'DMARC_QUARANTINE',
  'ARCHIVE_ENCRYPTED', 'ARCHIVE_TOO_DEEP', 'OFFICE_AUTOEXEC_MACRO', 'OFFICE_MACRO', 'PDF_JAVASCRIPT', 'PDF_LAUNCH',
  'EXECUTABLE_ATTACHMENT', 'DOUBLE_EXTENSION', 'RTLO_FILENAME', 'HTML_FORM', 'URL_IP', 'URL_SHORTENER',
  'URL_PUNYCODE', 'FROM_DISPLAY_SPOOF', 'REPLY_TO_MISMATCH', 'BAYES_SPAM', 'BAYES_HAM', 'RBL_SPAMHAUS',
  'HASH_BLOCKLIST', 'ENCRYPTED_PDF', 'UNKNOWN_TYPE', 'SIZE_LIMIT', 'SANITIZE_FAIL',
];
export const JA_WORDS = [
  '請求書', '会議資料', 'ご案内', '見積書', '納品書', '議事録', 'お知らせ', '【重要】', '打ち合わせ', '予算要求',
  '報告書', '確認のお願い', 'アカウント停止', 'パスワード更新', '緊急', '申請書', '調査票', 'ご回答', '送付', '入札',
  '契約書', '住民票', '防災訓練', '研修', '日程調整', '広報誌', '議会', '補助金', '照会', '回覧',
];
const EN_WORDS = [
  'Invoice', 'Meeting', 'Quarterly report', 'Your account', 'Password reset', 'Delivery failed', 'Order', 'Payment',
  'urgent', 'notice', 'update', 'schedule', 'Re:', 'Fw:', 'contract', 'shipment', 'verify', 'document', 'review',
];
const STATES: readonly [QuarantineState, number][] = [
  ['held', 62], ['expired', 15], ['released', 6], ['deleted', 6], ['rejected', 4], ['release-requested', 4], ['approved', 3],
];

/** mulberry32: the same data for the same seed, on every machine. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function jisWord(s: string): string {
  return `=?ISO-2022-JP?B?${Buffer.from(Encoding.convert(Encoding.stringToCode(s), { to: 'JIS', from: 'UNICODE' })).toString('base64')}?=`;
}

function utf8Word(s: string): string {
  return `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`;
}

export const tenantName = (t: number) => `city-${String(t).padStart(2, '0')}`;
export const recipientOf = (t: number, u: number) => `user${u}@${tenantName(t)}.example.lg.jp`;
export const senderOf = (s: number) => `sender${s}@${['shop', 'news', 'bank', 'corp', 'mail'][s % 5]}${s % 500}.example.com`;

/** Schema v1 rows, as the pipeline of the previous release wrote them. */
export function buildV1(file: string, n: number, tenants: number, seed: number): void {
  const rand = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const weights = Array.from({ length: tenants }, (_, t) => 1 / (t + 1));
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const tenantOf = () => {
    let x = rand() * weightSum;
    for (let t = 0; t < tenants; t++) if ((x -= weights[t]!) <= 0) return t;
    return tenants - 1;
  };
  const stateSum = STATES.reduce((a, [, w]) => a + w, 0);
  const stateOf = () => {
    let x = rand() * stateSum;
    for (const [s, w] of STATES) if ((x -= w) <= 0) return s;
    return 'held';
  };
  const subjectOf = (i: number) => {
    const r = rand();
    if (r < 0.35) return jisWord(`${pick(JA_WORDS)}${pick(JA_WORDS)}（${(i % 12) + 1}月分）`);
    if (r < 0.6) return utf8Word(`${pick(JA_WORDS)} ${pick(JA_WORDS)} No.${i % 1000}`);
    if (r < 0.97) return `${pick(EN_WORDS)} ${pick(EN_WORDS)} #${i % 10_000}`;
    return null;
  };
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(`
    CREATE TABLE quarantine (
      message_id TEXT NOT NULL, tenant_id TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT NULL,
      recipients TEXT NOT NULL CHECK (json_valid(recipients)), mail_from TEXT NOT NULL, subject TEXT,
      symbols TEXT NOT NULL CHECK (json_valid(symbols)), reasons TEXT NOT NULL CHECK (json_valid(reasons)),
      created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
      PRIMARY KEY (message_id, tenant_id)
    ) STRICT;
    CREATE INDEX quarantine_tenant_created ON quarantine (tenant_id, created_at);
    CREATE INDEX quarantine_created ON quarantine (created_at);
    CREATE INDEX quarantine_state_expires ON quarantine (state, expires_at);
    PRAGMA user_version = 1;`);
  const insert = db.prepare('INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const step = SPAN_MS / n;
  for (let start = 0; start < n; start += BUILD_BATCH) {
    db.transaction(() => {
      for (let i = start; i < Math.min(n, start + BUILD_BATCH); i++) {
        const t = tenantOf();
        const createdAt = Math.floor(T_END - SPAN_MS + i * step + rand() * step);
        const recipients = [...new Set(Array.from({ length: 1 + Math.floor(rand() * 5) }, () => recipientOf(t, Math.floor(rand() * 300))))];
        const symbols = [...new Set(Array.from({ length: Math.floor(rand() * 7) }, () => pick(SYMBOLS)))];
        const kind = rand() < 0.75 ? 'original' : 'held';
        const reasons = kind === 'original' ? [`tenant ${tenantName(t)} sanitizes every message`] : symbols.slice(0, 2).map((s) => `${s} forces hold`);
        const id = `q${i.toString(36).padStart(8, '0')}${Math.floor(rand() * 1e6).toString(36)}`;
        insert.run(id, tenantName(t), kind, stateOf(), JSON.stringify(recipients), senderOf(Math.floor(rand() * 5000)), subjectOf(i),
          JSON.stringify(symbols), JSON.stringify(reasons), createdAt, createdAt + SPAN_MS, createdAt);
      }
    })();
  }
  db.close();
}

/** The baseline database: same rows, side tables and v2 indexes gone, v1 indexes back. */
function makeBaseline(indexedFile: string, file: string): void {
  copyFileSync(indexedFile, file);
  const db = new Database(file);
  const v2Indexes = db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL AND name <> 'quarantine_state_expires'`).pluck().all() as string[];
  for (const name of v2Indexes) db.exec(`DROP INDEX ${name}`);
  db.exec(`
    DROP TABLE quarantine_text;
    DROP TABLE quarantine_recipients;
    DROP TABLE quarantine_symbols;
    CREATE INDEX quarantine_tenant_created ON quarantine (tenant_id, created_at);
    CREATE INDEX quarantine_created ON quarantine (created_at);
    VACUUM;`);
  db.close();
}

interface BaseRow {
  message_id: string;
  tenant_id: string;
  created_at: number;
  recipients: string;
  symbols: string;
  reasons: string;
}

const like = (term: string) => `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** The store's search as one would write it without the side tables: JSON scans, no ordering indexes. */
function baselineSearch(db: Database.Database, q: QuarantineSearch, substring: (column: string, term: string) => [string, unknown]): { rows: number; total: number; nextCursor: string | null } {
  const where: string[] = [];
  const args: unknown[] = [];
  if (q.tenantIds !== undefined) {
    where.push(q.tenantIds.length === 0 ? '1 = 0' : `tenant_id IN (${q.tenantIds.map(() => '?').join(', ')})`);
    args.push(...q.tenantIds);
  }
  if (q.recipient !== undefined && isWholeAddress(q.recipient)) {
    where.push('EXISTS (SELECT 1 FROM json_each(q.recipients) WHERE lower(value) = ?)');
    args.push(addressKey(q.recipient));
  }
  if (q.symbol !== undefined) {
    where.push('EXISTS (SELECT 1 FROM json_each(q.symbols) WHERE value = ?)');
    args.push(q.symbol);
  }
  for (const [column, term] of [['sender_key', q.sender], ['subject_key', q.subject]] as const) {
    if (term === undefined) continue;
    const [sql, arg] = substring(column, searchKey(term));
    where.push(sql);
    args.push(arg);
  }
  if (q.state !== undefined) {
    const states = typeof q.state === 'string' ? [q.state] : q.state;
    where.push(`state IN (${states.map(() => '?').join(', ')})`);
    args.push(...states);
  }
  if (q.from !== undefined) {
    where.push('created_at >= ?');
    args.push(q.from);
  }
  if (q.to !== undefined) {
    where.push('created_at < ?');
    args.push(q.to);
  }
  const w = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const total = (db.prepare(`SELECT COUNT(*) AS n FROM quarantine q ${w}`).get(...args) as { n: number }).n;
  const pageWhere = [...where];
  const pageArgs = [...args];
  if (q.cursor !== undefined) {
    pageWhere.push('(created_at, message_id, tenant_id) < (?, ?, ?)');
    pageArgs.push(...(JSON.parse(Buffer.from(q.cursor, 'base64url').toString('utf8')) as unknown[]));
  }
  const rows = db
    .prepare(`SELECT * FROM quarantine q ${pageWhere.length ? `WHERE ${pageWhere.join(' AND ')}` : ''}
              ORDER BY created_at DESC, message_id DESC, tenant_id DESC LIMIT ? OFFSET ?`)
    .all(...pageArgs, (q.limit ?? PAGE) + 1, q.cursor === undefined ? (q.offset ?? 0) : 0) as BaseRow[];
  for (const r of rows) {
    JSON.parse(r.recipients);
    JSON.parse(r.symbols);
    JSON.parse(r.reasons);
  }
  const last = rows[Math.min(rows.length, q.limit ?? PAGE) - 1];
  const more = rows.length > (q.limit ?? PAGE) && last;
  return { rows: rows.length, total, nextCursor: more ? Buffer.from(JSON.stringify([last.created_at, last.message_id, last.tenant_id])).toString('base64url') : null };
}

async function time(iterations: number, run: (i: number) => unknown): Promise<Latency> {
  const ms: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t = performance.now();
    await run(i);
    ms.push(performance.now() - t);
  }
  return { p50Ms: percentile(ms, 50), p95Ms: percentile(ms, 95), maxMs: Math.max(...ms) };
}

/** Builds the data, runs every query on both databases, and returns the figures. */
export async function runStoreBench(opts: StoreBenchOptions = {}): Promise<StoreBenchResult> {
  const n = opts.records ?? 100_000;
  const tenants = opts.tenants ?? 20;
  const iterations = opts.iterations ?? 200;
  const log = opts.log ?? (() => undefined);
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-console-'));
  const indexedFile = path.join(dir, 'quarantine.sqlite');
  const baselineFile = path.join(dir, 'baseline.sqlite');
  let store: SqliteQuarantineStore | undefined;
  const dbs: Database.Database[] = [];
  try {
    rmSync(indexedFile, { force: true });
    let t = performance.now();
    buildV1(indexedFile, n, tenants, opts.seed ?? 1);
    const buildMs = performance.now() - t;
    log(`built ${n} v1 records in ${fmt(buildMs / 1000, 1)} s`);
    t = performance.now();
    store = new SqliteQuarantineStore(indexedFile);
    const upgradeMs = performance.now() - t;
    log(`upgraded to the current schema (backfill) in ${fmt(upgradeMs / 1000, 1)} s`);
    await store.close();
    makeBaseline(indexedFile, baselineFile);
    store = new SqliteQuarantineStore(indexedFile);
    const base = new Database(baselineFile, { readonly: true });
    dbs.push(base);
    const indexedDb = new Database(indexedFile, { readonly: true });
    dbs.push(indexedDb);
    const s = store;

    const tenantIds = Array.from({ length: PARAMS }, (_, i) => tenantName(i % tenants));
    const walkTo = async (q: QuarantineSearch, pages: number) => {
      let cursor: string | undefined;
      for (let p = 1; p < pages; p++) cursor = (await s.search({ ...q, limit: PAGE, ...(cursor ? { cursor } : {}) })).nextCursor ?? undefined;
      return cursor;
    };
    const page50Cursors: string[] = [];
    for (let i = 0; i < 3; i++) page50Cursors.push((await walkTo(i === 0 ? {} : { tenantIds: [tenantName(0)] }, 50)) ?? '');
    const from3d = T_END - 3 * DAY_MS;

    const queries: { query: string; params: (i: number) => QuarantineSearch; substring?: boolean }[] = [
      { query: "tenant user's first page", params: (i) => ({ tenantIds: [tenantIds[i % PARAMS]!], limit: PAGE }) },
      { query: "admin's first page", params: () => ({ limit: PAGE }) },
      { query: 'page 50 by offset (admin)', params: () => ({ limit: PAGE, offset: 49 * PAGE }) },
      { query: 'page 50 by cursor (admin)', params: () => ({ limit: PAGE, cursor: page50Cursors[0]! }) },
      { query: 'page 50 by offset (largest tenant)', params: () => ({ tenantIds: [tenantName(0)], limit: PAGE, offset: 49 * PAGE }) },
      { query: 'page 50 by cursor (largest tenant)', params: () => ({ tenantIds: [tenantName(0)], limit: PAGE, cursor: page50Cursors[1]! }) },
      { query: 'recipient exact (admin)', params: (i) => ({ recipient: recipientOf(i % tenants, (i * 37) % 300), limit: PAGE }) },
      { query: 'recipient exact (tenant)', params: (i) => ({ tenantIds: [tenantName(i % tenants)], recipient: recipientOf(i % tenants, (i * 37) % 300), limit: PAGE }) },
      { query: 'sender substring (admin)', params: (i) => ({ sender: `shop${(i * 5) % 500}.example`, limit: PAGE }), substring: true },
      { query: 'subject 請求書 etc. (admin)', params: (i) => ({ subject: JA_WORDS[i % JA_WORDS.length]!.replace(/[【】]/g, ''), limit: PAGE }), substring: true },
      { query: 'subject 2 chars 議会 etc. (admin)', params: (i) => ({ subject: ['議会', '研修', '緊急', '照会', '回覧'][i % 5]!, limit: PAGE }), substring: true },
      { query: 'subject substring (tenant)', params: (i) => ({ tenantIds: [tenantIds[i % PARAMS]!], subject: JA_WORDS[i % JA_WORDS.length]!, limit: PAGE }), substring: true },
      { query: 'subject, no match (admin)', params: (i) => ({ subject: `存在しない件名${i % PARAMS}`, limit: PAGE }), substring: true },
      { query: 'symbol (admin)', params: (i) => ({ symbol: SYMBOLS[i % SYMBOLS.length]!, limit: PAGE }) },
      { query: 'symbol (tenant)', params: (i) => ({ tenantIds: [tenantIds[i % PARAMS]!], symbol: SYMBOLS[i % SYMBOLS.length]!, limit: PAGE }) },
      { query: 'state + last 3 days (admin)', params: (i) => ({ state: (['release-requested', 'approved', 'held'] as const)[i % 3], from: from3d, to: T_END, limit: PAGE }) },
      { query: 'state + last 3 days (tenant)', params: (i) => ({ tenantIds: [tenantIds[i % PARAMS]!], state: 'release-requested', from: from3d, to: T_END, limit: PAGE }) },
    ];

    const like_ = (column: string, term: string): [string, unknown] => [`${column} LIKE ? ESCAPE '\\'`, like(term)];
    const figures: QueryFigures[] = [];
    for (const q of queries) {
      let matched = 0;
      const indexed = await time(iterations, async (i) => {
        const r = await s.search(q.params(i));
        if (i < PARAMS) matched += r.total;
      });
      const baseline = await time(iterations, (i) => baselineSearch(base, q.params(i), like_));
      const f: QueryFigures = { query: q.query, matched: matched / Math.min(PARAMS, iterations), indexed, baseline };
      if (q.substring) f.likeOnly = await time(iterations, (i) => baselineSearch(indexedDb, q.params(i), like_));
      figures.push(f);
      log(`${q.query}: p50 ${fmt(indexed.p50Ms, 2)} ms vs ${fmt(baseline.p50Ms, 2)} ms`);
    }

    const countQueries: { query: string; indexed: (i: number) => Promise<unknown>; baseline: (i: number) => unknown }[] = [
      {
        query: 'counts by state (admin)',
        indexed: () => s.countByState(),
        baseline: () => base.prepare('SELECT state, COUNT(*) AS n FROM quarantine GROUP BY state').all(),
      },
      {
        query: 'counts by state (tenant)',
        indexed: (i) => s.countByState([tenantIds[i % PARAMS]!]),
        baseline: (i) => base.prepare('SELECT state, COUNT(*) AS n FROM quarantine WHERE tenant_id = ? GROUP BY state').all(tenantIds[i % PARAMS]),
      },
      {
        query: 'counts per day, 14 days (admin)',
        indexed: () => s.countsOverTime({ from: T_END - SPAN_MS, to: T_END, bucketMs: DAY_MS }),
        baseline: () =>
          base
            .prepare(`SELECT (created_at / ${DAY_MS}) * ${DAY_MS} AS bucket, tenant_id, kind, COUNT(*) AS n FROM quarantine
                      WHERE created_at >= ? AND created_at < ? GROUP BY bucket, tenant_id, kind ORDER BY bucket, tenant_id, kind`)
            .all(T_END - SPAN_MS, T_END),
      },
      {
        query: 'counts per hour, 1 day (tenant)',
        indexed: (i) => s.countsOverTime({ tenantIds: [tenantIds[i % PARAMS]!], from: T_END - DAY_MS, to: T_END, bucketMs: 3_600_000 }),
        baseline: (i) =>
          base
            .prepare(`SELECT (created_at / 3600000) * 3600000 AS bucket, tenant_id, kind, COUNT(*) AS n FROM quarantine
                      WHERE created_at >= ? AND created_at < ? AND tenant_id = ? GROUP BY bucket, tenant_id, kind ORDER BY bucket, tenant_id, kind`)
            .all(T_END - DAY_MS, T_END, tenantIds[i % PARAMS]),
      },
    ];
    for (const c of countQueries) {
      figures.push({ query: c.query, matched: n, indexed: await time(iterations, c.indexed), baseline: await time(iterations, c.baseline) });
    }

    const hold = await time(Math.min(iterations, 200), (i) =>
      s.hold({
        messageId: `bench-hold-${i}`,
        tenantId: tenantName(i % tenants),
        kind: 'original',
        recipients: [recipientOf(i % tenants, 1), recipientOf(i % tenants, 2)],
        mailFrom: senderOf(i),
        subject: jisWord('請求書のご送付'),
        symbols: ['SPF_FAIL', 'OFFICE_MACRO', 'BAYES_SPAM'],
        reasons: ['bench'],
        createdAt: T_END + i,
        expiresAt: T_END + SPAN_MS,
      }),
    );
    return {
      records: n,
      tenants,
      iterations,
      buildMs,
      upgradeMs,
      indexedBytes: statSync(indexedFile).size,
      baselineBytes: statSync(baselineFile).size,
      hold,
      queries: figures,
    };
  } finally {
    await store?.close();
    for (const db of dbs) db.close();
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
  }
}

export function formatStoreBench(r: StoreBenchResult): string {
  const lat = (l: Latency | undefined) => (l ? [fmt(l.p50Ms, 2), fmt(l.p95Ms, 2), fmt(l.maxMs, 2)] : ['-', '-', '-']);
  const rows = r.queries.map((q) => [q.query, fmt(q.matched, 0), ...lat(q.indexed), ...lat(q.baseline), fmt(q.baseline.p50Ms / q.indexed.p50Ms, 1)]);
  const likeRows = r.queries.filter((q) => q.likeOnly).map((q) => [q.query, fmt(q.matched, 0), ...lat(q.indexed), ...lat(q.likeOnly)]);
  return [
    `${r.records} records, ${r.tenants} tenants, ${r.iterations} runs per query; pages of ${PAGE} with exact totals`,
    `build (v1 rows) ${fmt(r.buildMs / 1000, 1)} s; upgrade from v1 with backfill ${fmt(r.upgradeMs / 1000, 1)} s; ` +
      `file ${fmt(mb(r.indexedBytes), 1)} MiB indexed, ${fmt(mb(r.baselineBytes), 1)} MiB baseline; ` +
      `hold() p50 ${fmt(r.hold.p50Ms, 2)} ms, p95 ${fmt(r.hold.p95Ms, 2)} ms (synchronous = FULL)`,
    '',
    table(['query (ms)', 'matched', 'indexed p50', 'p95', 'max', 'baseline p50', 'p95', 'max', 'x p50'], rows, 1),
    '',
    'substring filters: the store (trigram index for 3+ characters) vs LIKE alone, both on the indexed file',
    table(['query (ms)', 'matched', 'store p50', 'p95', 'max', 'LIKE-only p50', 'p95', 'max'], likeRows, 1),
  ].join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  const { values: args } = parseArgs({
    options: {
      records: { type: 'string', default: '100000' },
      tenants: { type: 'string', default: '20' },
      iterations: { type: 'string', default: '200' },
      seed: { type: 'string', default: '1' },
      dir: { type: 'string' },
    },
  });
  const result = await runStoreBench({
    records: Number(args.records),
    tenants: Number(args.tenants),
    iterations: Number(args.iterations),
    seed: Number(args.seed),
    ...(args.dir ? { dir: args.dir } : {}),
    log: (line) => console.error(line),
  });
  console.log(formatStoreBench(result));
}
