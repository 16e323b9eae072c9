/**
 * npx tsx bench/meta-search.ts — the console's reads of SqliteMetaStore (findMessages, countActions, getAttempts)
 * on a database of `--messages` messages (default 200,000), and what the tracking indexes cost the ingress.
 *
 * Fills a fresh database in a temporary directory with a seeded, repeatable mail flow: 30 tenants of unequal size,
 * 1–3 recipients each (a pool of 1,000 addresses per tenant), 20,000 senders, received over 30 days; each message
 * gets its actions and one delivery attempt per recipient, as the pipeline records them. Then it measures:
 *   insert on the full database — `--inserts` insertMessage at 20 concurrent writers (synchronous = FULL, as the
 *     ingress), to compare with the same run of an older store (`--module`, see bench/meta.ts);
 *   each console read, `--reads` times with random targets: median and p95 ms on the calling thread.
 * The reads are skipped for a module without findMessages. Compare runs on one machine only.
 *
 * Options: --messages N (200000), --inserts N (5000), --reads N per read (200), --writers N (20), --dir DIR (kept
 * afterwards; default a temporary directory, removed), --module PATH (default src/spool/sqlite-meta-store.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Action } from '../src/config/schema.ts';
import type { MessageQuery, MetaStore, NewMessage } from '../src/spool/meta-store.ts';
import type { SqliteMetaStore as Store } from '../src/spool/sqlite-meta-store.ts';
import { fmt, percentile, table } from './lib/report.ts';

const { values: args } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    inserts: { type: 'string', default: '5000' },
    reads: { type: 'string', default: '200' },
    writers: { type: 'string', default: '20' },
    dir: { type: 'string' },
    module: { type: 'string', default: path.join(import.meta.dirname, '../src/spool/sqlite-meta-store.ts') },
  },
});
const total = Number(args.messages);
const writers = Number(args.writers);
const reads = Number(args.reads);
const { SqliteMetaStore } = (await import(pathToFileURL(path.resolve(args.module)).href)) as { SqliteMetaStore: typeof Store };

const DAY_MS = 86_400_000;
const SPAN_MS = 30 * DAY_MS;
const T_END = 1_750_000_000_000;
const TENANTS = 30;
const ADDRESSES_PER_TENANT = 1_000;
const SENDERS = 20_000;

/** mulberry32: the same mail flow on every run, for every module compared. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
const random = rng(42);
const pick = (n: number) => Math.floor(random() * n);
/** Tenant i gets a share ∝ 1 / (i + 1): a prefecture's capital and its villages. */
const weights = Array.from({ length: TENANTS }, (_, i) => 1 / (i + 1));
const weightSum = weights.reduce((a, b) => a + b, 0);
function tenant(): number {
  let r = random() * weightSum;
  for (const [i, w] of weights.entries()) if ((r -= w) < 0) return i;
  return TENANTS - 1;
}
const address = (t: number, u: number) => `user${u}@city${t}.example.lg.jp`;
const sender = (s: number) => `Sender${s}@Example${s % 997}.com`;
const actions: Action[] = ['deliver', 'deliver', 'deliver', 'deliver', 'deliver-tagged', 'sanitize', 'quarantine', 'reject'];

function message(i: number): NewMessage {
  const tenants = [...new Set(Array.from({ length: 1 + pick(3) }, tenant))];
  return {
    id: `m${String(i).padStart(12, '0')}`,
    origin: 'smtp',
    receivedAt: T_END - SPAN_MS + Math.floor((i / total) * SPAN_MS),
    mailFrom: sender(pick(SENDERS)),
    clientIp: '203.0.113.7',
    helo: 'mail.example.net',
    tls: 'TLS_AES_256_GCM_SHA384',
    size: 20_000,
    sha256: 'a'.repeat(64),
    headerMessageId: `<${i}.${pick(1e9)}@example.net>`,
    subject: 'bench',
    recipients: tenants.map((t) => ({ address: address(t, pick(ADDRESSES_PER_TENANT)), tenantId: `city${t}` })),
  };
}

async function run(n: number, write: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async () => {
      while (next < n) await write(next++);
    }),
  );
  return performance.now() - start;
}

/** What the pipeline writes for one message: the actions, then one attempt per recipient with its delivery. */
async function processed(store: MetaStore, msg: NewMessage): Promise<void> {
  const action = actions[pick(actions.length)]!;
  await store.update(msg.id, { recipients: [{ patch: { action } }], message: { state: 'delivering' } });
  const attempt = { at: msg.receivedAt + 1000, outcome: 'delivered' as const, response: '250 2.0.0 Ok', remote: 'mx:25', durationMs: 40 };
  await store.update(msg.id, {
    recipients: [{ patch: { state: 'delivered', response: '250 2.0.0 Ok', countAttempt: true, attempt } }],
    message: { state: 'done' },
  });
}

const dir = args.dir ?? mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-meta-search-'));
try {
  const store = new SqliteMetaStore(path.join(dir, 'meta.sqlite'), { synchronous: 'normal' });
  const flow = Array.from({ length: total }, (_, i) => message(i));
  const fillMs = await run(total, async (i) => {
    await store.insertMessage(flow[i]!);
    await processed(store, flow[i]!);
  });
  await store.close();
  console.log(`${args.module}: ${total} messages filled in ${fmt(fillMs / 1000, 1)} s (inserts, actions, attempts)\n`);

  const ingress = new SqliteMetaStore(path.join(dir, 'meta.sqlite'), { synchronous: 'full' });
  const inserts = Number(args.inserts);
  const extra = Array.from({ length: inserts }, (_, i) => ({ ...message(total + i), receivedAt: T_END + i }));
  const insertMs = await run(inserts, (i) => ingress.insertMessage(extra[i]!));
  console.log(`insert (full) on the filled database: ${fmt((inserts / insertMs) * 1000, 0)} writes/s (${inserts}, ${writers} writers)\n`);

  if (typeof (ingress as Partial<MetaStore>).findMessages !== 'function') {
    console.log('no findMessages in this module: reads skipped');
  } else {
    const rows: string[][] = [];
    const measure = async (name: string, read: () => Promise<unknown>, describe: (r: unknown) => string) => {
      const ms: number[] = [];
      let last: unknown;
      for (let i = 0; i < reads; i++) {
        const t = performance.now();
        last = await read();
        ms.push(performance.now() - t);
      }
      rows.push([name, fmt(percentile(ms, 50), 2), fmt(percentile(ms, 95), 2), describe(last)]);
    };
    const someMessage = () => flow[pick(total)]!;
    const find = (q: () => MessageQuery) => () => ingress.findMessages(q());
    const page = (r: unknown) => {
      const p = r as { messages: unknown[]; total: number };
      return `${p.messages.length} of ${p.total}`;
    };
    const rowsOf = (r: unknown) => `${(r as unknown[]).length} rows`;
    const dayAgo = T_END - DAY_MS;
    const bigTenant = ['city0'];
    const smallTenant = [`city${TENANTS - 1}`];

    await measure('id', find(() => ({ id: someMessage().id })), page);
    await measure('header Message-ID, with <>', find(() => ({ headerMessageId: someMessage().headerMessageId! })), page);
    await measure('header Message-ID, bare', find(() => ({ headerMessageId: someMessage().headerMessageId!.slice(1, -1) })), page);
    await measure('recipient (exact, other case)', find(() => ({ recipient: someMessage().recipients[0]!.address.toUpperCase() })), page);
    await measure('recipient + tenant scope', find(() => {
      const r = someMessage().recipients[0]!;
      return { recipient: r.address, tenantIds: [r.tenantId] };
    }), page);
    await measure('recipient + scope + 24 h', find(() => {
      const r = someMessage().recipients[0]!;
      return { recipient: r.address, tenantIds: [r.tenantId], from: dayAgo, to: T_END };
    }), page);
    await measure('scope: largest tenant, page 1', find(() => ({ tenantIds: bigTenant })), page);
    await measure('scope: smallest tenant, page 1', find(() => ({ tenantIds: smallTenant })), page);
    await measure('scope: largest tenant, 24 h', find(() => ({ tenantIds: bigTenant, from: dayAgo, to: T_END })), page);
    await measure('scope: smallest tenant, 24 h', find(() => ({ tenantIds: smallTenant, from: dayAgo, to: T_END })), page);
    await measure('scope: 3 tenants, page 3', find(() => ({ tenantIds: ['city1', 'city7', 'city20'], offset: 100 })), page);
    await measure('no filter, page 1', find(() => ({})), page);
    await measure('no filter, 24 h', find(() => ({ from: dayAgo, to: T_END })), page);
    await measure('mailFrom substring, all', find(() => ({ mailFrom: `sender${pick(SENDERS)}@` })), page);
    await measure('mailFrom substring, 24 h', find(() => ({ mailFrom: `sender${pick(SENDERS)}@`, from: dayAgo, to: T_END })), page);
    await measure('countActions 24 h hourly, all', () => ingress.countActions({ from: dayAgo, to: T_END, bucketMs: DAY_MS / 24 }), rowsOf);
    await measure('countActions 24 h hourly, small', () => ingress.countActions({ tenantIds: smallTenant, from: dayAgo, to: T_END, bucketMs: DAY_MS / 24 }), rowsOf);
    await measure('countActions 30 d daily, all', () => ingress.countActions({ from: T_END - SPAN_MS, to: T_END, bucketMs: DAY_MS }), rowsOf);
    await measure('countActions 30 d daily, large', () => ingress.countActions({ tenantIds: bigTenant, from: T_END - SPAN_MS, to: T_END, bucketMs: DAY_MS }), rowsOf);
    await measure('getAttempts', () => ingress.getAttempts(someMessage().id), rowsOf);
    console.log(table(['read', 'median ms', 'p95 ms', 'last answer'], rows, 1));
  }
  await ingress.close();
} finally {
  if (!args.dir) rmSync(dir, { recursive: true, force: true });
}
