/**
 * `npm run bench:relay` — throughput, latency and memory of the relay path, Sekisho next to private Postfix instances.
 *
 * Systems: `sekisho` (`sekisho start` on its defaults: every message scanned by ClamAV); `postfix` (relays only: the
 * baseline issue 2's targets name); `postfix-av` (Postfix + clamav-milter on a clamd configured as Sekisho's own,
 * the like-for-like baseline: both pay for the same scan). Postfix needs root; clamav-milter is Debian's package.
 *
 * A sink (smtp-server on 127.0.0.1, in a child process) receives what the system under test relays and records
 * when each message arrived, by its `X-Bench-Id` header. A load generator (raw-socket SMTP, concurrency 20) sends
 * 10,000 × 1 KB and 2,000 × 100 KB messages in two shapes: many messages per connection (RSET between them) and
 * one message per connection (what internet MXs mostly do). Every (system × workload × shape) cell runs against a
 * fresh instance (temp data dir, free ports) after a short warm-up, and reports
 *   accepted msgs/s  — accepted messages / time until the last 250
 *   e2e msgs/s       — delivered messages / time until the sink had the last of them
 *   p50/p99 latency  — per message, from its MAIL FROM to its arrival at the sink
 *   peak RSS / PSS   — of the system's whole process tree, sampled from /proc every 100 ms
 * then the ratios Sekisho / each baseline, and the RSS growth of each system while it accepts one 50 MB message.
 *
 * Bounded: every load has a count and a deadline, every wait a timeout and a stall limit, the whole run a time
 * limit; it talks to 127.0.0.1 only, and stops the systems and removes their temp dirs on any exit (Ctrl-C too).
 *
 * Options (env in brackets):
 *   --quick              counts ÷10 and shorter limits, for a smoke run [BENCH_QUICK=1]
 *   --scale X            multiply the message counts by X [BENCH_SCALE]
 *   --only LIST          of sekisho, postfix, postfix-av (default all three) [BENCH_ONLY]
 *   --workloads LIST     1k,100k (default both)
 *   --shapes LIST        reuse,single (default both)
 *   --concurrency N      concurrent SMTP clients (default 20)
 *   --per-connection N   messages per connection in the "reuse" shape (default 100)
 *   --no-big / --big-only  skip / only run the 50 MB message figure
 *   --repeat N           run every cell N times, systems alternating first; ratios use the medians (default 1)
 *   --big-runs N         fresh instances the 50 MB message is measured on (default 3; 1 with --quick)
 *   --json FILE          also write the JSON result to FILE
 *   --sekisho-config Y   YAML/JSON merged over Sekisho's bench config, e.g. '{queue: {scanConcurrency: 8}}'
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { runBench } from './lib/cleanup.ts';
import { bigMessage, messageFactory } from './lib/message.ts';
import { PostfixInstance, postfixAvUnavailable, postfixUnavailable } from './lib/postfix-instance.ts';
import { CpuMeter, TreeSampler } from './lib/proc-rss.ts';
import { fmt, mb, percentile, table } from './lib/report.ts';
import { SekishoInstance, sekishoUnavailable } from './lib/sekisho-instance.ts';
import { Sink } from './lib/sink.ts';
import { type LoadResult, runLoad } from './lib/smtp-load.ts';
import { sleep } from './lib/util.ts';

type SystemName = 'sekisho' | 'postfix' | 'postfix-av';

/** The baselines Sekisho is compared with, and what each is. */
const baselines: Record<Exclude<SystemName, 'sekisho'>, string> = {
  postfix: 'Postfix (no content scanning)',
  'postfix-av': 'Postfix + clamav-milter (the same clamd as Sekisho)',
};

interface Workload {
  name: string;
  bytes: number;
  count: number;
}

interface Shape {
  name: 'reuse' | 'single';
  perConnection: number;
}

/** The system under test, whichever it is. */
interface System {
  name: SystemName;
  port: number;
  rootPids(): number[];
  /** The parts of it that the bench process itself started (their CPU is not the bench's). */
  benchChildPids(): number[];
  notePids(pids: Iterable<number>): void;
  stop(): Promise<void>;
  /** Why it cannot go on (it died), or null. */
  broken(): string | null;
  /** Its recent log, for error reports. */
  log(): string;
}

interface CellResult {
  system: SystemName;
  run: number;
  workload: string;
  messageBytes: number;
  shape: string;
  perConnection: number;
  concurrency: number;
  messages: number;
  accepted: number;
  failed: number;
  notSent: number;
  delivered: number;
  missing: number;
  duplicates: number;
  connections: number;
  acceptSeconds: number;
  e2eSeconds: number;
  acceptedPerSec: number;
  e2ePerSec: number;
  /** Null when not every accepted message arrived in time: no rate "until the sink has everything" exists. */
  e2eComplete: boolean;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  acceptLatencyP50Ms: number;
  acceptLatencyP99Ms: number;
  peakRssMB: number;
  peakPssMB: number;
  peakRssByProcessMB: Record<string, number>;
  /** 1-minute load average when the cell started: other work on the machine skews every figure. */
  loadAvg1AtStart: number;
  /** CPU seconds of the system under test during the measured load and delivery, and per message. */
  cpuSystemS: number;
  cpuMsPerMsg: number;
  /** CPU seconds by process (Sekisho: "sekisho start" = ingress + admin, "sekisho worker" = stages). */
  cpuByProcessS: Record<string, number>;
  /** CPU seconds of the bench's generator and sink. */
  cpuBenchS: number;
  /** CPU that other processes on the machine took meanwhile, as % of all cores × wall time. */
  otherCpuPct: number;
  failures: Record<string, number>;
  note?: string;
}

interface BigResult {
  system: SystemName;
  run: number;
  messageBytes: number;
  accepted: boolean;
  acceptSeconds: number;
  baselineRssMB: number;
  rssGrowthAcceptMB: number;
  /** RSS per process name at the acceptance peak. */
  acceptPeakByProcessMB: Record<string, number>;
  rssGrowthUntilDeliveredMB: number | null;
  /** RSS per process name at the peak until delivery. */
  deliveredPeakByProcessMB: Record<string, number>;
  delivered: boolean;
  deliveredSeconds: number | null;
  error?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Options

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    scale: { type: 'string' },
    only: { type: 'string' },
    workloads: { type: 'string', default: '1k,100k' },
    shapes: { type: 'string', default: 'reuse,single' },
    concurrency: { type: 'string', default: '20' },
    'per-connection': { type: 'string', default: '100' },
    'no-big': { type: 'boolean', default: false },
    'big-only': { type: 'boolean', default: false },
    'big-runs': { type: 'string' },
    repeat: { type: 'string', default: '1' },
    json: { type: 'string' },
    'sekisho-config': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});

if (args.help) {
  const src = readFileSync(new URL(import.meta.url), 'utf8');
  console.log(src.slice(src.indexOf('/**') + 4, src.indexOf('*/')).replace(/^ \* ?/gm, ''));
  process.exit(0);
}

const quick = args.quick || process.env.BENCH_QUICK === '1';
const scale = Number(args.scale ?? process.env.BENCH_SCALE ?? (quick ? 0.1 : 1));
const allSystems: SystemName[] = ['postfix', 'postfix-av', 'sekisho'];
const only = (args.only ?? process.env.BENCH_ONLY ?? allSystems.join(','))
  .toLowerCase()
  .split(',')
  .map((s) => s.trim());
const concurrency = Number(args.concurrency);
const perConnection = Number(args['per-connection']);
const bigRuns = Number(args['big-runs'] ?? (quick ? 1 : 3));
const repeat = Number(args.repeat);
/** Merged (deeply) over Sekisho's bench config: a tuning experiment; the JSON report shows it. */
const sekishoExtraConfig = (args['sekisho-config'] ? parseYaml(args['sekisho-config']) : {}) as Record<string, unknown>;

const allWorkloads: Record<string, Workload> = {
  '1k': { name: '1KB', bytes: 1024, count: 10_000 },
  '100k': { name: '100KB', bytes: 100 * 1024, count: 2_000 },
};
const workloads = args.workloads
  .split(',')
  .map((w) => allWorkloads[w.trim().toLowerCase()])
  .filter((w): w is Workload => w !== undefined)
  .map((w) => ({ ...w, count: Math.max(concurrency, Math.round(w.count * scale)) }));
const shapes: Shape[] = args.shapes
  .split(',')
  .map((s) => s.trim())
  .filter((s): s is Shape['name'] => s === 'reuse' || s === 'single')
  .map((name) => ({ name, perConnection: name === 'reuse' ? perConnection : 1 }));

const valid =
  scale > 0 &&
  bigRuns >= 1 &&
  repeat >= 1 &&
  concurrency >= 1 &&
  perConnection >= 1 &&
  only.every((s) => (allSystems as string[]).includes(s)) &&
  workloads.length > 0 &&
  shapes.length > 0;
if (!valid) {
  console.error('usage: npm run bench:relay -- [--quick] [--scale X] [--only sekisho,postfix,postfix-av] … (--help)');
  process.exit(64);
}

/** Messages sent (and delivered) before each measured run, so that no cell measures a cold start. */
const warmupCount = quick ? 20 : 100;
/** Budget of one load (all messages of one cell accepted). */
const loadDeadlineMs = (quick ? 5 : 20) * 60_000;
/** Budget of waiting for the sink to have every accepted message, and the longest stretch without progress. */
const deliveryDeadlineMs = (quick ? 5 : 20) * 60_000;
const deliveryStallMs = 60_000;
/** The whole run; past it the bench stops everything and exits 2. */
const runDeadlineMs = (quick ? 20 : 120) * 60_000;
const replyTimeoutMs = 60_000;
const dataTimeoutMs = 120_000;
const bigMessageBytes = 50_000_000;
/** RSS growth allowed while Sekisho accepts one 50 MB message (issue 2). */
const bigRssTargetMB = 64;
const runTag = Date.now().toString(36);


// ---------------------------------------------------------------------------------------------------------------
// Systems

async function startSystem(name: SystemName, sinkPort: number): Promise<System> {
  if (name !== 'sekisho') {
    const pf = await PostfixInstance.start(sinkPort, { antivirus: name === 'postfix-av' });
    return {
      name,
      port: pf.port,
      rootPids: () => pf.rootPids(),
      benchChildPids: () => pf.scannerPids(),
      notePids: (p) => pf.notePids(p),
      stop: () => pf.stop(),
      broken: () => pf.broken(),
      log: () => pf.maillog(),
    };
  }
  const sk = await SekishoInstance.start(sinkPort, sekishoExtraConfig);
  return {
    name,
    port: sk.port,
    rootPids: () => sk.rootPids(),
    benchChildPids: () => sk.rootPids(),
    notePids: (p) => sk.notePids(p),
    stop: () => sk.stop(),
    broken: () => (sk.exited ? 'the sekisho process exited' : null),
    log: () => sk.output(),
  };
}

function progressLine(text: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${text}`);
}

function progressDone(): void {
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
}

/**
 * Waits until the sink holds `expected` messages of the current prefix; gives up at the deadline, when nothing
 * arrived for `deliveryStallMs`, or when the system died. Returns what it saw last.
 */
async function waitDelivered(
  sink: Sink,
  sut: System,
  expected: number,
  deadlineMs: number,
  label: string,
): Promise<{ count: number; why: string | null }> {
  const deadline = Date.now() + deadlineMs;
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const { count } = await sink.stats();
    if (count >= expected) return { count, why: null };
    if (count !== last) {
      last = count;
      lastChange = Date.now();
    }
    const broken = sut.broken();
    if (broken) return { count, why: broken };
    if (Date.now() >= deadline) return { count, why: `not all delivered within ${deadlineMs / 1000} s` };
    if (Date.now() - lastChange >= deliveryStallMs) {
      return { count, why: `nothing arrived for ${deliveryStallMs / 1000} s` };
    }
    progressLine(`${label}: delivered ${count}/${expected}`);
    await sleep(100);
  }
}

async function load(
  sut: System,
  total: number,
  makeMessage: (seq: number) => ReturnType<ReturnType<typeof messageFactory>>,
  shape: Shape,
  label: string,
): Promise<LoadResult> {
  const progress = { accepted: 0, failed: 0 };
  const ticker = setInterval(
    () => progressLine(`${label}: accepted ${progress.accepted}/${total}, failed ${progress.failed}`),
    250,
  );
  try {
    return await runLoad({
      port: sut.port,
      total,
      concurrency,
      perConnection: shape.perConnection,
      message: makeMessage,
      replyTimeoutMs,
      dataTimeoutMs,
      deadlineMs: loadDeadlineMs,
      progress,
    });
  } finally {
    clearInterval(ticker);
    progressDone();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One cell: a fresh system, a warm-up, the measured load, the wait for delivery.

let cellNo = 0;

async function runCell(
  sink: Sink,
  system: SystemName,
  workload: Workload,
  shape: Shape,
  run: number,
): Promise<CellResult> {
  cellNo += 1;
  const label = `${system} ${workload.name} ${shape.name}${repeat > 1 ? ` run ${run}/${repeat}` : ''}`;
  console.error(`▶ ${label}: ${workload.count} × ${workload.bytes} B, concurrency ${concurrency}`);
  const loadAvg1AtStart = os.loadavg()[0] ?? 0;
  const sut = await startSystem(system, sink.port);
  const sampler = new TreeSampler(() => sut.rootPids(), 100).start();
  const factory = messageFactory(workload.bytes);
  try {
    const warmPrefix = `${runTag}-w${cellNo}-`;
    await sink.reset(warmPrefix);
    const warm = await load(sut, warmupCount, (seq) => factory(`${warmPrefix}${seq}`, seq), shape, `${label} warm-up`);
    if (warm.accepted === 0) {
      throw new Error(`${label}: the warm-up accepted nothing: ${[...warm.failures.keys()].join('; ')}\n${sut.log()}`);
    }
    const warmWait = await waitDelivered(sink, sut, warm.accepted, 120_000, `${label} warm-up`);
    progressDone();
    if (warmWait.why) {
      throw new Error(`${label}: warm-up messages not delivered (${warmWait.count}/${warm.accepted}: ${warmWait.why})\n${sut.log()}`);
    }

    const prefix = `${runTag}-c${cellNo}-`;
    await sink.reset(prefix);
    const cpu = new CpuMeter(() => sut.rootPids(), () => sut.benchChildPids()).start();
    const pad = String(workload.count).length;
    const result = await load(
      sut,
      workload.count,
      (seq) => factory(`${prefix}${String(seq).padStart(pad, '0')}`, seq),
      shape,
      label,
    );
    const waited = await waitDelivered(sink, sut, result.accepted, deliveryDeadlineMs, label);
    progressDone();
    const cpuShare = cpu.stop(os.cpus().length);
    const stats = await sink.stats();
    const arrivals = await sink.arrivals();
    const mem = sampler.stop();

    const latencies: number[] = [];
    const acceptLatencies: number[] = [];
    result.ids.forEach((id, i) => {
      const start = result.startedAt[i] as number;
      const accepted = result.acceptedAt[i] as number;
      if (!Number.isNaN(accepted)) acceptLatencies.push(accepted - start);
      const arrived = arrivals.get(id);
      if (arrived !== undefined && !Number.isNaN(start)) latencies.push(arrived - start);
    });
    const acceptSeconds = (result.lastAccept - result.t0) / 1000;
    const e2eSeconds = stats.lastArrival > 0 ? (stats.lastArrival - result.t0) / 1000 : Number.NaN;
    const cell: CellResult = {
      system,
      run,
      workload: workload.name,
      messageBytes: workload.bytes,
      shape: shape.name,
      perConnection: shape.perConnection,
      concurrency,
      messages: workload.count,
      accepted: result.accepted,
      failed: result.failed,
      notSent: result.notSent,
      delivered: stats.count,
      missing: Math.max(0, result.accepted - stats.count),
      duplicates: stats.duplicates,
      connections: result.connections,
      acceptSeconds,
      e2eSeconds,
      acceptedPerSec: result.accepted / acceptSeconds,
      e2ePerSec: stats.count / e2eSeconds,
      e2eComplete: waited.why === null,
      latencyP50Ms: percentile(latencies, 50),
      latencyP99Ms: percentile(latencies, 99),
      latencyMaxMs: percentile(latencies, 100),
      acceptLatencyP50Ms: percentile(acceptLatencies, 50),
      acceptLatencyP99Ms: percentile(acceptLatencies, 99),
      peakRssMB: mb(mem.peakRss),
      peakPssMB: mb(mem.peakPss),
      peakRssByProcessMB: byNameMB(mem.peakByName),
      loadAvg1AtStart,
      cpuSystemS: cpuShare.system,
      cpuMsPerMsg: (cpuShare.system * 1000) / Math.max(1, stats.count),
      cpuByProcessS: cpuShare.systemByProcess,
      cpuBenchS: cpuShare.bench,
      otherCpuPct: (100 * cpuShare.other) / (cpuShare.wall * cpuShare.cores),
      failures: Object.fromEntries(result.failures),
    };
    if (waited.why) cell.note = waited.why;
    if (result.failed > 0) {
      console.error(`  ${result.failed} message(s) failed: ${JSON.stringify(cell.failures)}`);
    }
    if (waited.why) console.error(`  ${waited.why} (${stats.count}/${result.accepted})\n${indent(sut.log())}`);
    console.error(
      `  accepted ${fmt(cell.acceptedPerSec)}/s, e2e ${fmt(cell.e2ePerSec)}/s, p50 ${fmt(cell.latencyP50Ms)} ms, ` +
        `p99 ${fmt(cell.latencyP99Ms)} ms, peak RSS ${fmt(cell.peakRssMB)} MB, CPU ${fmt(cell.cpuMsPerMsg, 2)} ms/msg, ` +
        `other load ${fmt(cell.otherCpuPct, 0)}%`,
    );
    return cell;
  } finally {
    sampler.stop();
    sut.notePids(sampler.pidsSeen);
    await sut.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The 50 MB message: RSS growth of the process tree while it is accepted (and until it is delivered).

async function runBig(sink: Sink, system: SystemName, run: number): Promise<BigResult> {
  cellNo += 1;
  const label = `${system} 50 MB message, run ${run}/${bigRuns}`;
  console.error(`▶ ${label}`);
  const sut = await startSystem(system, sink.port);
  const sampler = new TreeSampler(() => sut.rootPids(), 20);
  const one: Shape = { name: 'single', perConnection: 1 };
  try {
    // Warm up with small mail so that the figure is about the big message, not about first-use module loading.
    const warmPrefix = `${runTag}-w${cellNo}-`;
    await sink.reset(warmPrefix);
    const factory = messageFactory(1024);
    const warm = await load(sut, warmupCount, (seq) => factory(`${warmPrefix}${seq}`, seq), one, `${label} warm-up`);
    await waitDelivered(sink, sut, warm.accepted, 120_000, `${label} warm-up`);
    progressDone();
    await sleep(2_000);
    const base: number[] = [];
    for (let i = 0; i < 10; i++) {
      base.push(sampler.sample().rss);
      await sleep(50);
    }
    const baseline = percentile(base, 50);
    sampler.resetPeaks();
    sampler.start();

    const prefix = `${runTag}-b${cellNo}-`;
    await sink.reset(prefix);
    const msg = bigMessage(`${prefix}0`, bigMessageBytes);
    const result = await load(sut, 1, () => msg, one, label);
    sampler.sample();
    const { peakRss: acceptPeak, peakByName: acceptPeakByName } = sampler.peaks();
    const acceptSeconds = (result.lastAccept - result.t0) / 1000;
    const out: BigResult = {
      system,
      run,
      messageBytes: msg.bytes,
      accepted: result.accepted === 1,
      acceptSeconds,
      baselineRssMB: mb(baseline),
      rssGrowthAcceptMB: mb(acceptPeak - baseline),
      acceptPeakByProcessMB: byNameMB(acceptPeakByName),
      rssGrowthUntilDeliveredMB: null,
      deliveredPeakByProcessMB: {},
      delivered: false,
      deliveredSeconds: null,
    };
    if (result.accepted !== 1) {
      out.error = [...result.failures.keys()].join('; ');
      return out;
    }
    const waited = await waitDelivered(sink, sut, 1, 300_000, label);
    progressDone();
    const stats = await sink.stats();
    const mem = sampler.stop();
    out.delivered = waited.why === null;
    out.deliveredSeconds = out.delivered ? (stats.lastArrival - result.t0) / 1000 : null;
    out.rssGrowthUntilDeliveredMB = mb(mem.peakRss - baseline);
    out.deliveredPeakByProcessMB = byNameMB(mem.peakByName);
    if (waited.why) out.error = `not delivered: ${waited.why}`;
    console.error(
      `  ${msg.bytes} B accepted in ${fmt(acceptSeconds, 2)} s, RSS growth while accepting ${fmt(out.rssGrowthAcceptMB)} MB` +
        `, until delivered ${fmt(out.rssGrowthUntilDeliveredMB)} MB`,
    );
    return out;
  } finally {
    sampler.stop();
    sut.notePids(sampler.pidsSeen);
    await sut.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------

function byNameMB(bytes: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(bytes).map(([k, v]) => [k, Number(mb(v).toFixed(1))]));
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

function hostInfo(): Record<string, string | number> {
  const cpu = os.cpus()[0]?.model ?? '?';
  let postfixVersion = '-';
  try {
    postfixVersion = execFileSync('dpkg-query', ['-W', '-f=${Version}', 'postfix'], { encoding: 'utf8' }).trim();
  } catch {
    // not a Debian package, or not installed
  }
  let tmpFs = '?';
  try {
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .filter((f) => f.length > 2 && os.tmpdir().startsWith(f[1] as string))
      .sort((a, b) => (b[1] as string).length - (a[1] as string).length);
    tmpFs = mounts[0]?.[2] ?? '?';
  } catch {
    // not Linux
  }
  return {
    cpus: os.cpus().length,
    cpu,
    memMB: Math.round(os.totalmem() / 2 ** 20),
    loadAvg1: Number((os.loadavg()[0] ?? 0).toFixed(2)),
    kernel: os.release(),
    node: process.version,
    postfix: postfixVersion,
    tmpdir: os.tmpdir(),
    tmpdirFs: tmpFs,
  };
}

async function main(): Promise<void> {
  const host = hostInfo();
  console.error(
    `host: ${host.cpus} × ${host.cpu}, ${host.memMB} MB, load ${host.loadAvg1}, Linux ${host.kernel}, Node ${host.node}, Postfix ${host.postfix}; ` +
      `temp dirs on ${host.tmpdirFs} (${host.tmpdir})`,
  );
  if (host.tmpdirFs === 'tmpfs') {
    console.error('warning: the temp dir is on tmpfs, where fsync costs nothing: set TMPDIR to a disk-backed directory');
  }

  const systems: SystemName[] = [];
  const skipped: Record<string, string> = {};
  for (const name of allSystems) {
    if (!only.includes(name)) continue;
    const why = name === 'postfix' ? postfixUnavailable() : name === 'postfix-av' ? postfixAvUnavailable() : sekishoUnavailable();
    if (why) {
      skipped[name] = why;
      console.error(`skipping ${name}: ${why}`);
    } else {
      systems.push(name);
    }
  }
  if (systems.length === 0) throw new Error('nothing to benchmark');

  const sink = await Sink.start();
  const cells: CellResult[] = [];
  const errors: Array<{ system: string; cell: string; error: string }> = [];
  if (!args['big-only']) {
    for (const workload of workloads) {
      for (const shape of shapes) {
        for (let run = 1; run <= repeat; run++) {
          // Alternate which system goes first, so that drifting load on the machine hits both alike.
          for (const system of run % 2 === 1 ? systems : [...systems].reverse()) {
            try {
              cells.push(await runCell(sink, system, workload, shape, run));
            } catch (err) {
              const error = err instanceof Error ? err.message : String(err);
              console.error(`✗ ${system} ${workload.name} ${shape.name} run ${run}: ${error}`);
              errors.push({
                system,
                cell: `${workload.name} ${shape.name} run ${run}`,
                error: error.split('\n')[0] ?? error,
              });
            }
          }
        }
      }
    }
  }
  const big: BigResult[] = [];
  if (!args['no-big']) {
    for (const system of systems) {
      for (let run = 1; run <= bigRuns; run++) {
        try {
          big.push(await runBig(sink, system, run));
        } catch (err) {
          const error = err instanceof Error ? err.message : String(err);
          console.error(`✗ ${system} 50 MB message: ${error}`);
          errors.push({ system, cell: `50 MB message run ${run}`, error: error.split('\n')[0] ?? error });
        }
      }
    }
  }
  await sink.stop();

  // Report ------------------------------------------------------------------------------------------------------
  const out: string[] = [''];
  if (cells.length > 0) {
    out.push(
      `Relay benchmark — concurrency ${concurrency}, reuse = up to ${perConnection} msgs/connection with RSET, ` +
        'single = 1 msg/connection; latency = MAIL FROM → arrival at the sink',
      table(
        [
          'system',
          'workload',
          'shape',
          'run',
          'msgs',
          'accepted/s',
          'e2e/s',
          'p50 ms',
          'p99 ms',
          'peak RSS MB',
          'peak PSS MB',
          'CPU ms/msg',
          'other CPU %',
          'failed',
          'missing',
        ],
        cells.map((c) => [
          c.system,
          c.workload,
          c.shape,
          String(c.run),
          String(c.messages),
          fmt(c.acceptedPerSec),
          fmt(c.e2ePerSec) + (c.e2eComplete ? '' : '*'),
          fmt(c.latencyP50Ms),
          fmt(c.latencyP99Ms),
          fmt(c.peakRssMB),
          fmt(c.peakPssMB),
          fmt(c.cpuMsPerMsg, 2),
          fmt(c.otherCpuPct, 0),
          String(c.failed + c.notSent),
          String(c.missing),
        ]),
      ),
    );
    if (cells.some((c) => !c.e2eComplete)) out.push('* not every accepted message reached the sink (see "missing")');
    out.push(
      '\nCPU ms per delivered message, by process (command name; the split of "CPU ms/msg" above)',
      ...cells.map((c) => {
        const parts = Object.entries(c.cpuByProcessS)
          .map(([name, s]) => [name, (s * 1000) / Math.max(1, c.delivered)] as const)
          .filter(([, ms]) => ms >= 0.005)
          .sort((a, b) => b[1] - a[1])
          .map(([name, ms]) => `${name} ${fmt(ms, 2)}`);
        return `  ${c.system} ${c.workload} ${c.shape} run ${c.run}: ${parts.join(', ')}`;
      }),
      '',
    );
    out.push(
      'peak RSS = sum over the process tree, sampled every 100 ms (counts shared pages once per process); ' +
        'peak PSS = shared pages split among processes, sampled every 1 s\n' +
        'CPU ms/msg = CPU time of the system under test per delivered message; other CPU % = what processes outside ' +
        'the bench and the system under test took of all cores meanwhile (noise when above a few %)',
    );
  }
  const ratios: Array<Record<string, string | number | boolean>> = [];
  const median = (system: SystemName, workload: Workload, shape: Shape, key: 'acceptedPerSec' | 'e2ePerSec' | 'cpuMsPerMsg') =>
    percentile(
      cells.filter((c) => c.system === system && c.workload === workload.name && c.shape === shape.name).map((c) => c[key]),
      50,
    );
  for (const baseline of Object.keys(baselines) as Array<keyof typeof baselines>) {
    for (const workload of workloads) {
      for (const shape of shapes) {
        const of = (system: SystemName) =>
          cells.filter((c) => c.system === system && c.workload === workload.name && c.shape === shape.name);
        const ofSekisho = of('sekisho');
        const ofBaseline = of(baseline);
        if (ofSekisho.length === 0 || ofBaseline.length === 0) continue;
        const ratio = (key: 'acceptedPerSec' | 'e2ePerSec' | 'cpuMsPerMsg') =>
          median('sekisho', workload, shape, key) / median(baseline, workload, shape, key);
        const accept = ratio('acceptedPerSec');
        const e2e = ratio('e2ePerSec');
        ratios.push({
          baseline,
          workload: workload.name,
          shape: shape.name,
          runs: Math.min(ofSekisho.length, ofBaseline.length),
          acceptRatio: Number(accept.toFixed(3)),
          e2eRatio: Number(e2e.toFixed(3)),
          cpuPerMsgRatio: Number(ratio('cpuMsPerMsg').toFixed(3)),
          acceptTargetMet: accept >= 1.0,
          e2eTargetMet: e2e >= 0.8 && ofSekisho.every((c) => c.e2eComplete),
        });
      }
    }
  }
  for (const baseline of Object.keys(baselines) as Array<keyof typeof baselines>) {
    const rows = ratios.filter((r) => r.baseline === baseline);
    if (rows.length === 0) continue;
    out.push(
      '',
      `Sekisho / ${baselines[baseline]}${repeat > 1 ? ' (medians of the runs)' : ''} — targets: accepted ≥ 1.0×, ` +
        'end-to-end ≥ 0.8×; CPU/msg is the contention-robust figure (lower is better)',
      table(
        ['workload', 'shape', 'accepted ×', 'e2e ×', 'CPU/msg ×'],
        rows.map((r) => [
          String(r.workload),
          String(r.shape),
          `${fmt(Number(r.acceptRatio), 2)} ${r.acceptTargetMet ? 'ok' : 'BELOW'}`,
          `${fmt(Number(r.e2eRatio), 2)} ${r.e2eTargetMet ? 'ok' : 'BELOW'}`,
          fmt(Number(r.cpuPerMsgRatio), 2),
        ]),
        2,
      ),
    );
  }
  if (ratios.length === 0 && cells.length > 0) {
    out.push('', `(no ratio: ${Object.entries(skipped).map(([k, v]) => `${k} skipped — ${v}`).join('; ') || 'one system only'})`);
  }
  if (big.length > 0) {
    out.push(
      '',
      `One ${fmt(bigMessageBytes / 1e6, 0)} MB message (RSS of the process tree; target for Sekisho: growth < ${bigRssTargetMB} MB while accepting)`,
      table(
        ['system', 'run', 'accepted', 'accept s', 'baseline MB', 'growth accepting MB', 'growth until delivered MB', 'delivered s'],
        big.map((b) => [
          b.system,
          String(b.run),
          b.accepted ? 'yes' : `no: ${b.error ?? ''}`,
          fmt(b.acceptSeconds, 2),
          fmt(b.baselineRssMB),
          `${fmt(b.rssGrowthAcceptMB)}${b.system === 'sekisho' ? (b.rssGrowthAcceptMB < bigRssTargetMB ? ' ok' : ' ABOVE') : ''}`,
          fmt(b.rssGrowthUntilDeliveredMB),
          b.delivered ? fmt(b.deliveredSeconds, 2) : `- (${b.error ?? 'not delivered'})`,
        ]),
        3,
      ),
    );
  }
  if (errors.length > 0) {
    out.push('', 'Errors:', ...errors.map((e) => `  ${e.system} ${e.cell}: ${e.error}`));
  }
  console.log(out.join('\n'));
  const json = {
    bench: 'relay',
    at: new Date().toISOString(),
    host,
    options: { quick, scale, concurrency, perConnection, warmupCount, repeat, bigRuns, sekishoExtraConfig },
    skipped,
    results: cells,
    ratios,
    bigMessage: big,
    errors,
  };
  const line = JSON.stringify(json, (_k, v: unknown) =>
    typeof v === 'number' && !Number.isInteger(v) ? Number(v.toFixed(3)) : v,
  );
  console.log(line);
  if (args.json) writeFileSync(args.json, `${line}\n`);
  if (errors.length > 0) process.exitCode = 1;
}

await runBench(main, runDeadlineMs);
