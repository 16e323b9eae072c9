/**
 * npm run bench:meta — write throughput of SqliteMetaStore and what its writes cost the event loop.
 *
 * `--writers` concurrent loops (default 20, like the relay bench's SMTP clients) each await one write after the
 * other, on a fresh database in a temporary directory:
 *   insert (full)    — insertMessage with synchronous = FULL, as the ingress does before its 250;
 *   update (full)    — update() of both recipients and the message of each inserted message (delivered, done);
 *   update (normal)  — the same with synchronous = NORMAL, as the stage workers do;
 *   insert + update  — two processes on one file: this one inserts (FULL, the ingress) while a child process
 *                      updates the messages of the first phase (NORMAL, the worker), both at `--writers`.
 * Each line reports writes/s, writes per commit (group commit; versions with the writer thread only) and, for this
 * process's main thread, the event-loop utilisation (the share of wall time the thread was busy: what SMTP sessions
 * of the ingress wait behind) and the event-loop delay p99 / max (how late a 1 ms timer fired). The figures
 * depend on the disk's fsync latency (printed first): compare runs on one machine only.
 *
 * Options: --writers N (20), --count N writes per phase (5000), --dir DIR (a temp dir under os.tmpdir()),
 * --module PATH (the store module to measure, default src/spool/sqlite-meta-store.ts: to compare an older
 * version, copy it elsewhere with its imports and point here).
 */
import { spawn } from 'node:child_process';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { MetaStore, NewMessage } from '../src/spool/meta-store.ts';
import type { SqliteMetaStore as Store } from '../src/spool/sqlite-meta-store.ts';
import { newMessage } from '../test/helpers/new-message.ts';
import { fmt, percentile, table } from './lib/report.ts';

interface StoreModule {
  SqliteMetaStore: typeof Store;
  /** Absent in versions before the writer thread. */
  sqliteMetaStoreTestHooks?: { commits(store: Store): number };
}

const { values: args } = parseArgs({
  options: {
    writers: { type: 'string', default: '20' },
    count: { type: 'string', default: '5000' },
    dir: { type: 'string' },
    module: { type: 'string', default: path.join(import.meta.dirname, '../src/spool/sqlite-meta-store.ts') },
    // Internal: the child process of the two-process phase.
    'child-update': { type: 'string' },
  },
});
const writers = Number(args.writers);
const count = Number(args.count);
const { SqliteMetaStore, sqliteMetaStoreTestHooks: hooks } = (await import(
  pathToFileURL(path.resolve(args.module)).href
)) as StoreModule;

const id = (prefix: string, i: number) => `${prefix}${String(i).padStart(10, '0')}`;

function message(msgId: string): NewMessage {
  return newMessage({ id: msgId, receivedAt: Date.now(), headerMessageId: `<${msgId}@example.net>`, subject: 'bench' });
}

function deliveredAll(store: MetaStore, msgId: string): Promise<void> {
  return store.update(msgId, {
    recipients: [{ patch: { state: 'delivered', response: '250 2.0.0 Ok', countAttempt: true } }],
    message: { state: 'done' },
  });
}

/** Runs `n` writes on `writers` concurrent loops; resolves to the wall time in ms. */
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

interface Figures {
  writesPerSec: number;
  writesPerCommit: number | null;
  elu: number;
  delayP99Ms: number;
  delayMaxMs: number;
}

/**
 * How late a 1 ms interval timer fires, sampled over the run: what a socket callback of an SMTP session waits.
 * (monitorEventLoopDelay records nothing while promise continuations alone keep the loop from turning.)
 */
function loopDelayProbe(): () => number[] {
  const lateMs: number[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const t = performance.now();
    lateMs.push(Math.max(0, t - last - 1));
    last = t;
  }, 1);
  return () => {
    clearInterval(timer);
    lateMs.push(Math.max(0, performance.now() - last - 1));
    return lateMs;
  };
}

async function measured(store: Store, n: number, write: (i: number) => Promise<void>): Promise<Figures> {
  const commits0 = hooks?.commits(store);
  const stop = loopDelayProbe();
  const elu0 = performance.eventLoopUtilization();
  const ms = await run(n, write);
  const elu = performance.eventLoopUtilization(elu0).utilization;
  const lateMs = stop();
  const commits = commits0 === undefined ? undefined : hooks!.commits(store) - commits0;
  return {
    writesPerSec: (n / ms) * 1000,
    writesPerCommit: commits ? n / commits : null,
    elu,
    delayP99Ms: percentile(lateMs, 99),
    delayMaxMs: Math.max(...lateMs),
  };
}

if (args['child-update']) {
  const store = new SqliteMetaStore(args['child-update'], { synchronous: 'normal' });
  process.stdout.write('ready\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const ms = await run(count, (i) => deliveredAll(store, id('a', i)));
  await store.close();
  process.stdout.write(`${JSON.stringify({ writesPerSec: (count / ms) * 1000 })}\n`);
  process.exit(0);
}

const dir = args.dir ?? mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-meta-'));
const file = path.join(dir, 'meta.sqlite');

/** Median of 200 fsyncs of a 4 KiB write: the floor under a FULL commit on this disk. */
function fsyncMs(): number {
  const fd = openSync(path.join(dir, 'fsync-probe'), 'w');
  const samples: number[] = [];
  try {
    for (let i = 0; i < 200; i++) {
      writeSync(fd, Buffer.alloc(4096, i), 0, 4096, 0);
      const t = performance.now();
      fsyncSync(fd);
      samples.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
  }
  return percentile(samples, 50);
}
const rows: string[][] = [];
const row = (phase: string, f: Figures) =>
  rows.push([
    phase,
    fmt(f.writesPerSec, 0),
    fmt(f.writesPerCommit, 1),
    fmt(f.elu * 100, 0),
    fmt(f.delayP99Ms, 1),
    fmt(f.delayMaxMs, 1),
  ]);

try {
  const full = new SqliteMetaStore(file, { synchronous: 'full' });
  row('insert (full)', await measured(full, count, (i) => full.insertMessage(message(id('a', i)))));
  row('update (full)', await measured(full, count, (i) => deliveredAll(full, id('a', i))));
  await full.close();
  const normal = new SqliteMetaStore(file, { synchronous: 'normal' });
  row('update (normal)', await measured(normal, count, (i) => deliveredAll(normal, id('a', i))));
  await normal.close();

  const childArgs = ['--import', 'tsx', import.meta.filename, ...process.argv.slice(2), '--child-update', file];
  const child = spawn(process.execPath, childArgs, { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  await new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d).includes('ready\n') && resolve());
    void exited.then(() => reject(new Error('the updating child process exited before it was ready')));
  });
  const ingress = new SqliteMetaStore(file, { synchronous: 'full' });
  child.stdin.write('go\n');
  const both = await measured(ingress, count, (i) => ingress.insertMessage(message(id('b', i))));
  await ingress.close();
  if ((await exited) !== 0) throw new Error('the updating child process failed');
  const updates = JSON.parse(out.slice(out.indexOf('ready\n') + 6)) as { writesPerSec: number };
  row('insert + update: inserts', both);
  rows.push(['insert + update: updates (child)', fmt(updates.writesPerSec, 0), '-', '-', '-', '-']);

  console.log(`${args.module}: ${writers} concurrent writers, ${count} writes per phase, fsync ≈ ${fmt(fsyncMs(), 2)} ms\n`);
  console.log(table(['phase', 'writes/s', 'writes/commit', 'main ELU %', 'loop delay p99 ms', 'max ms'], rows, 1));
} finally {
  if (!args.dir) rmSync(dir, { recursive: true, force: true });
}
