/**
 * `npm run bench:faults-postfix` — duplicates and losses after kill -9, Sekisho next to Postfix in the same fault.
 *
 * Both systems relay two domains (city-a, city-b) to two SMTP sinks on loopback that record every Message-ID per
 * recipient (test/helpers/smtp-sink.ts). The same steady stream (test/faults/mail-stream.ts: each message to one
 * recipient of each domain) is offered to each for a few seconds; mid-stream one kill -9:
 *   postfix  whole tree   SIGKILL to the master and every daemon under it (smtpd, qmgr, smtp…), then
 *                         `postfix start` on the same queue directory
 *   postfix  smtp agents  SIGKILL to its smtp delivery agents (the master restarts them)
 *   sekisho  whole tree   SIGKILL to every process of `sekisho start` (test/faults/sekisho-tree.ts), then
 *                         `sekisho start` on the same dataDir
 *   sekisho  worker       SIGKILL to the worker (`sekisho start` restarts it)
 * then waits until every message accepted with 250 is delivered (Postfix: its queue is empty; `postqueue -f`
 * every few seconds, as Sekisho's retry delays are seconds here too), and counts per recipient delivered,
 * duplicated, lost and still held. Every row runs R times, the systems alternating first.
 *
 * Postfix is the private instance of bench/lib/postfix-instance.ts, with clamav-milter in front when installed
 * (clamd and the milter are not killed: they hold no mail). Needs root, Postfix, redis-server and clamd.
 *
 * Options:
 *   --repeat R      runs of every row (default 3)
 *   --rate N        messages offered per second (default 40)
 *   --seconds S     how long each row offers mail (default 10; the kill comes at S/2)
 *   --only LIST     of postfix, sekisho (default both)
 *   --no-milter     Postfix without clamav-milter
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SmtpSink } from '../test/helpers/smtp-sink.ts';
import { markWindow } from '../test/faults/fault-table.ts';
import { MailStream, RECIPIENT_A, RECIPIENT_B, sinkCounts, tally } from '../test/faults/mail-stream.ts';
import { SekishoTree, treeOf, until, writeFaultConfig } from '../test/faults/sekisho-tree.ts';
import { onCleanup, runBench } from './lib/cleanup.ts';
import { PostfixInstance, postfixAvUnavailable, postfixUnavailable } from './lib/postfix-instance.ts';
import { sleep } from './lib/util.ts';

const { values: args } = parseArgs({
  options: {
    repeat: { type: 'string', default: '3' },
    rate: { type: 'string', default: '40' },
    seconds: { type: 'string', default: '10' },
    only: { type: 'string', default: 'postfix,sekisho' },
    'no-milter': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (args.help) {
  const src = readFileSync(new URL(import.meta.url), 'utf8');
  console.log(src.slice(src.indexOf('/**') + 4, src.indexOf('*/')).replace(/^ \* ?/gm, ''));
  process.exit(0);
}

const repeat = Number(args.repeat);
const ratePerS = Number(args.rate);
const streamMs = Number(args.seconds) * 1000;
const only = args.only.split(',').map((s) => s.trim().toLowerCase());
if (!(repeat >= 1 && ratePerS > 0 && streamMs >= 2_000 && only.every((s) => s === 'postfix' || s === 'sekisho'))) {
  console.error('usage: npm run bench:faults-postfix -- [--repeat R] [--rate N] [--seconds S] [--only postfix,sekisho] [--no-milter]');
  process.exit(64);
}

/** How long a row may take to deliver what it accepted once the stream stopped; past it the rest counts as held. */
const SETTLE_MS = 60_000;
/** How often Postfix's deferred queue is flushed while a row settles (Sekisho retries after 1–3 s here). */
const FLUSH_EVERY_MS = 2_000;
/** How long `sekisho start` gets to restart a killed worker. */
const WORKER_RESTART_MS = 15_000;
/** The whole run; past it everything is stopped and the bench exits 2. */
const RUN_DEADLINE_MS = 15 * 60_000;


interface Counts {
  accepted: number;
  delivered: number;
  duplicated: number;
  lost: number;
  held: number;
  settled: boolean;
}

interface Fault {
  name: string;
  /** Kills (and restarts what the system does not restart itself); returns a note. */
  inject(): Promise<string>;
}

interface System {
  name: 'postfix' | 'sekisho';
  label: string;
  port: number;
  faults: Fault[];
  counts(stream: MailStream): Counts;
  /** Called every FLUSH_EVERY_MS while a row settles. */
  nudge?(): void;
}

interface Row extends Counts {
  system: string;
  fault: string;
  run: number;
  notes: string;
}

const sinks: SmtpSink[] = [];
const recipients = [RECIPIENT_A, RECIPIENT_B];

function domainOf(address: string): string {
  return address.slice(address.indexOf('@') + 1);
}

async function startPostfix(milter: boolean): Promise<System> {
  const [a, b] = sinks as [SmtpSink, SmtpSink];
  const pf = await PostfixInstance.start(a.port, {
    antivirus: milter,
    routes: { [domainOf(RECIPIENT_A)]: a.port, [domainOf(RECIPIENT_B)]: b.port },
  });
  return {
    name: 'postfix',
    label: milter ? 'Postfix + clamav-milter' : 'Postfix',
    port: pf.port,
    faults: [
      {
        name: 'kill -9 whole tree',
        async inject() {
          const n = await pf.kill9('all');
          await pf.restart();
          return `${n} processes killed; postfix start`;
        },
      },
      {
        name: 'kill -9 smtp agents',
        async inject() {
          return `${await pf.kill9('smtp')} smtp processes killed`;
        },
      },
    ],
    counts(stream) {
      const counts = sinkCounts(sinks);
      const c: Counts = { accepted: stream.accepted.length, delivered: 0, duplicated: 0, lost: 0, held: 0, settled: false };
      let missing = 0;
      for (const mid of stream.accepted) {
        for (const rcpt of stream.recipients) {
          const n = counts.get(`${mid} ${rcpt}`) ?? 0;
          if (n > 0) {
            c.delivered++;
            c.duplicated += n - 1;
          } else missing++;
        }
      }
      let queued: number | undefined;
      try {
        queued = pf.queuedRecipients();
      } catch {
        // the queue cannot be listed (Postfix restarting): not settled
      }
      // Only this row's mail can be in the queue: the previous row settled with an empty one (or said otherwise).
      c.held = Math.min(missing, queued ?? missing);
      c.lost = missing - c.held;
      c.settled = queued === 0;
      return c;
    },
    nudge: () => pf.flush(),
  };
}

/** The fault suite's configuration (test/faults/): short retries, no official signatures. */
async function sekishoConfig(dir: string): Promise<{ file: string; smtpPort: number; adminPort: number }> {
  const [a, b] = sinks as [SmtpSink, SmtpSink];
  return writeFaultConfig(dir, [
    { id: 'city-a', name: 'City A', domains: [domainOf(RECIPIENT_A)], deliverTo: a.url },
    { id: 'city-b', name: 'City B', domains: [domainOf(RECIPIENT_B)], deliverTo: b.url },
  ]);
}

async function startSekisho(root: string, logFile: string): Promise<System> {
  const dir = path.join(root, 'sekisho');
  mkdirSync(dir);
  const { file, smtpPort, adminPort } = await sekishoConfig(dir);
  const tree = new SekishoTree(file, smtpPort, adminPort, logFile);
  onCleanup(
    'sekisho start',
    () => tree.stop(),
    () => {
      for (const p of tree.rootPid === undefined ? [] : treeOf(tree.rootPid)) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    },
  );
  await tree.start();
  const metaFile = path.join(dir, 'data', 'meta.sqlite');
  return {
    name: 'sekisho',
    label: 'Sekisho',
    port: smtpPort,
    faults: [
      {
        name: 'kill -9 whole tree',
        async inject() {
          const n = treeOf(tree.rootPid ?? -1).length;
          await tree.kill9All();
          await tree.start();
          return `${n} processes killed; sekisho start`;
        },
      },
      {
        name: 'kill -9 worker',
        async inject() {
          const pid = tree.kill9('worker');
          const back = await until(() => tree.pids('worker').some((p) => p !== pid), WORKER_RESTART_MS, 100);
          return back ? 'worker restarted' : 'worker NOT restarted';
        },
      },
    ],
    counts(stream) {
      const t = tally(stream.accepted, sinks, metaFile, stream.recipients);
      return { accepted: t.accepted, delivered: t.delivered, duplicated: t.duplicated, lost: t.lost, held: t.held + t.bounced, settled: t.settled };
    },
  };
}

/** One row: stream, kill at half time, stream on, stop, wait until settled. */
async function runRow(sys: System, fault: Fault, run: number): Promise<Row> {
  const tag = `${sys.name}-${fault.name.replace(/[^a-z0-9]+/gi, '-')}-${run}-${Date.now().toString(36)}`;
  const stream = new MailStream(sys.port, tag, { recipients });
  const notes: string[] = [];
  stream.start(ratePerS);
  try {
    await sleep(streamMs / 2);
    notes.push(await fault.inject());
    await sleep(streamMs / 2);
  } finally {
    await stream.stop();
    stream.close();
  }
  let c = sys.counts(stream);
  let lastNudge = Date.now();
  await until(() => {
    if (sys.nudge && Date.now() - lastNudge >= FLUSH_EVERY_MS) {
      sys.nudge();
      lastNudge = Date.now();
    }
    c = sys.counts(stream);
    return c.settled;
  }, SETTLE_MS, 250);
  if (!c.settled) notes.push(`not settled within ${SETTLE_MS / 1000} s`);
  if (stream.refused.size) notes.push(`refused: ${[...stream.refused].map(([k, n]) => `${k}×${n}`).join(' ')}`);
  return { system: sys.label, fault: fault.name, run, ...c, notes: notes.join('; ') };
}

function render(rows: Row[], window: ReturnType<typeof markWindow>): string {
  const out = [
    '| system | fault | run | accepted | delivered | duplicated | lost | held | notes |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...rows.map((r) => `| ${r.system} | ${r.fault} | ${r.run} | ${r.accepted} | ${r.delivered} | ${r.duplicated} | ${r.lost} | ${r.held} | ${r.notes} |`),
    '',
    '| system | fault | runs | accepted | delivered | duplicated (per run) | lost |',
    '| --- | --- | ---: | ---: | ---: | --- | ---: |',
  ];
  const keys = [...new Set(rows.map((r) => `${r.system}\u0000${r.fault}`))];
  for (const key of keys) {
    const of = rows.filter((r) => `${r.system}\u0000${r.fault}` === key);
    const sum = (k: 'accepted' | 'delivered' | 'duplicated' | 'lost') => of.reduce((s, r) => s + r[k], 0);
    const [system, fault] = key.split('\u0000');
    out.push(
      `| ${system} | ${fault} | ${of.length} | ${sum('accepted')} | ${sum('delivered')} | ${sum('duplicated')} (${of.map((r) => r.duplicated).join(', ')}) | ${sum('lost')} |`,
    );
  }
  out.push(
    '',
    'accepted = messages answered 250 (each to two recipients, one per domain); delivered, duplicated, lost and held ' +
      'count recipients (held = still queued when the row gave up waiting).',
  );
  if (window) {
    const f = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
    out.push(
      '',
      `Sekisho's delivered-mark window (downstream reply → commit of the mark), ${window.samples} deliveries: ` +
        `p50 ${f(window.p50Ms)}, p99 ${f(window.p99Ms)}, max ${f(window.maxMs)}.`,
    );
  }
  return out.join('\n');
}

function versions(): string {
  const v = (pkg: string) => {
    try {
      return execFileSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' }).trim();
    } catch {
      return '-';
    }
  };
  return `Postfix ${v('postfix')}, clamav-milter ${v('clamav-milter')}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, load ${os.loadavg()[0]?.toFixed(2)}`;
}

async function main(): Promise<void> {
  const why = only.includes('postfix') ? postfixUnavailable() : null;
  if (why) throw new Error(`cannot run Postfix: ${why} (DEBIAN_FRONTEND=noninteractive apt-get install -y postfix clamav-milter)`);
  const noMilter = args['no-milter'] ? null : postfixAvUnavailable();
  if (noMilter) console.error(`Postfix without clamav-milter: ${noMilter}`);
  const wantMilter = !args['no-milter'] && noMilter === null;
  if (process.getuid?.() !== 0) throw new Error('needs root (managed clamd, private Postfix)');
  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-faults-'));
  const logFile = path.join(root, 'sekisho.log');
  onCleanup(
    'temp dir',
    async () => rmSync(root, { recursive: true, force: true }),
    () => rmSync(root, { recursive: true, force: true }),
  );
  for (let i = 0; i < 2; i++) sinks.push(await new SmtpSink({ closeTimeoutMs: 500 }).start());
  onCleanup(
    'sinks',
    async () => void (await Promise.allSettled(sinks.map((s) => s.close()))),
    () => {},
  );
  const started = Date.now();
  const systems: System[] = [];
  if (only.includes('postfix')) systems.push(await startPostfix(wantMilter));
  if (only.includes('sekisho')) systems.push(await startSekisho(root, logFile));
  console.error(`started in ${((Date.now() - started) / 1000).toFixed(0)} s; ${repeat} × ${systems.reduce((n, s) => n + s.faults.length, 0)} rows of ${streamMs / 1000} s at ${ratePerS} msgs/s`);
  const rows: Row[] = [];
  for (let run = 1; run <= repeat; run++) {
    const order = run % 2 === 1 ? systems : [...systems].reverse();
    for (const sys of order) {
      for (const fault of sys.faults) {
        const row = await runRow(sys, fault, run);
        rows.push(row);
        console.error(`${row.system} | ${row.fault} | run ${run}: accepted ${row.accepted}, delivered ${row.delivered}, duplicated ${row.duplicated}, lost ${row.lost}, held ${row.held} ${row.notes}`);
      }
    }
  }
  console.log(`\nbench:faults-postfix, ${new Date().toISOString().slice(0, 16)}Z, ${repeat} runs, ${ratePerS} msgs/s for ${streamMs / 1000} s, kill at ${streamMs / 2000} s; ${versions()}; ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  console.log(render(rows, only.includes('sekisho') ? markWindow(logFile) : null));
  if (rows.some((r) => r.lost > 0 || !r.settled)) process.exitCode = 1;
}

await runBench(main, RUN_DEADLINE_MS);
