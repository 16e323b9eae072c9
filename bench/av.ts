/**
 * npm run bench:av — throughput of the clamav check against clamd's own client on the same messages.
 *
 * For attachments of 10 KB and 1 MB (random bytes, one different file per message), it writes N messages to a
 * temporary directory and measures messages/s of:
 *   - `clamdscan --stream` on the .eml files (one process per worker, each streaming its share of the files);
 *   - the clamav check (archive inspection + INSTREAM of the raw message and of every decoded part), once with
 *     the MIME parse counted, once with the message parsed beforehand (in the pipeline the runner parses once
 *     for all checks);
 * at 1 and at 4 workers, each against a freshly started managed clamd (clamd caches clean results by hash, so a
 * second pass over the same files would measure the cache), warmed up first (clamd's first scans on each of its
 * threads cost several times a steady-state scan). Each measurement is repeated and the fastest kept; the CPU time
 * per message of clamd and of the client (clamdscan processes, or this process running the check) is printed too:
 * unlike messages/s, it hardly depends on what else the machine is doing, and its ratio is the throughput ratio
 * once the CPUs are saturated. clamd's resident memory (VmRSS at the end, VmHWM peak) is read from /proc.
 *
 * Options: --database-dir DIR (default /var/lib/clamav: the official databases when present; the project's own
 * signatures are always loaded; they take ~30 s per clamd start), --messages-10k N, --messages-1m N, --repeat N.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { ClamdClient } from '../src/scan/clamd-client.ts';
import { createClamavCheck } from '../src/scan/checks/clamav.ts';
import { parseMessage, type ParsedMessage } from '../src/scan/mime-parts.ts';
import { ensureBinary } from '../src/services/debian.ts';
import { startManagedClamd, type ManagedClamd } from '../src/services/clamd.ts';

const { values: args } = parseArgs({
  options: {
    'database-dir': { type: 'string', default: '/var/lib/clamav' },
    'messages-10k': { type: 'string', default: '1000' },
    'messages-1m': { type: 'string', default: '100' },
    repeat: { type: 'string', default: '3' },
  },
});

const WORKER_COUNTS = [1, 4];
/** The config defaults (src/config/schema.ts) */
const MAX_MESSAGE_BYTES = 52_428_800;
const CLAMD_TIMEOUT_MS = 60_000;
const ARCHIVE_LIMITS = { maxDepth: 5, maxExpandedBytes: 200 * 1024 * 1024, maxRatio: 100, maxEntries: 10_000 };
/** Scans of small random buffers, on as many connections as clamd has threads, before a measurement. */
const WARMUP_SCANS = 400;
const CLAMD_THREADS = 8;
const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-av-'));

function message(i: number, attachment: Buffer): Buffer {
  const b = `bench-boundary-${i}`;
  const body = attachment.toString('base64').replace(/.{76}/g, '$&\r\n');
  return Buffer.from(
    `From: sender${i}@example.com\r\nTo: staff@city.example.lg.jp\r\nSubject: report ${i}\r\nDate: Mon, 25 Nov 2024 10:00:00 +0900\r\n` +
      `Message-ID: <bench-${i}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n` +
      `--${b}\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nPlease find the report attached.\r\n` +
      `--${b}\r\nContent-Type: application/octet-stream; name="report-${i}.bin"\r\nContent-Transfer-Encoding: base64\r\n` +
      `Content-Disposition: attachment; filename="report-${i}.bin"\r\n\r\n${body}\r\n--${b}--\r\n`,
  );
}

/** CPU time (ms) of a process from /proc: its own, or (children) that of its waited-for children. */
function cpuMs(pid: number | 'self', children = false): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const [u, s] = children ? [fields[13], fields[14]] : [fields[11], fields[12]];
  return ((Number(u) + Number(s)) * 1000) / CLOCK_TICKS_PER_S;
}

function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: Math.round(kb('VmRSS') / 1024), peakMiB: Math.round(kb('VmHWM') / 1024) };
}

interface Measurement {
  seconds: number;
  /** CPU of the client side (clamdscan processes, or this process running the check). */
  clientCpuMs: number;
  clamdCpuMs: number;
  rssMiB: number;
  peakMiB: number;
}

async function withClamd(name: string, fn: (clamd: ManagedClamd, conf: string) => Promise<{ seconds: number; clientCpuMs: number }>): Promise<Measurement> {
  const dir = path.join(root, `clamd-${name}`);
  const clamd = await startManagedClamd({
    dir,
    databaseDir: args['database-dir'],
    maxStreamBytes: MAX_MESSAGE_BYTES,
    scanTimeoutMs: CLAMD_TIMEOUT_MS,
    startTimeoutMs: 300_000,
    maxThreads: CLAMD_THREADS,
  });
  try {
    const client = new ClamdClient(clamd.endpoint, CLAMD_TIMEOUT_MS);
    let warm = 0;
    await Promise.all(
      Array.from({ length: CLAMD_THREADS }, async () => {
        while (warm++ < WARMUP_SCANS) await client.scan(randomBytes(1024));
      }),
    );
    const clamdBefore = cpuMs(clamd.pid);
    const result = await fn(clamd, path.join(dir, 'clamd.conf'));
    return { ...result, clamdCpuMs: cpuMs(clamd.pid) - clamdBefore, ...memoryOf(clamd.pid) };
  } finally {
    await clamd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** clamdscan exits 0 (clean) or 1 (found); anything else is an error of the run. */
function clamdscan(bin: string, conf: string, files: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [`--config-file=${conf}`, '--stream', '--no-summary', '--quiet', ...files], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 || code === 1 ? resolve() : reject(new Error(`clamdscan exited ${code}: ${stderr}`))));
  });
}

async function benchClamdscan(bin: string, files: string[], workers: number): Promise<Measurement> {
  return withClamd(`clamdscan-${workers}`, async (_clamd, conf) => {
    const shares = Array.from({ length: workers }, (_, w) => files.filter((_, i) => i % workers === w));
    const cpuBefore = cpuMs('self', true);
    const t0 = performance.now();
    await Promise.all(shares.map((share) => clamdscan(bin, conf, share)));
    return { seconds: (performance.now() - t0) / 1000, clientCpuMs: cpuMs('self', true) - cpuBefore };
  });
}

async function benchCheck(raws: Buffer[], workers: number, preParse: boolean): Promise<Measurement> {
  const parsedAhead = preParse ? await Promise.all(raws.map((raw) => parseMessage(raw))) : undefined;
  return withClamd(`check-${workers}-${preParse}`, async (clamd) => {
    const check = createClamavCheck({ clamd: clamd.endpoint, timeoutMs: CLAMD_TIMEOUT_MS, archive: ARCHIVE_LIMITS });
    const log = pino({ level: 'silent' });
    let next = 0;
    let found = 0;
    const cpuBefore = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (next < raws.length) {
          const i = next++;
          const raw = raws[i] as Buffer;
          let parsed: Promise<ParsedMessage> | undefined = parsedAhead ? Promise.resolve(parsedAhead[i] as ParsedMessage) : undefined;
          const hits = await check.run({
            messageId: `bench-${i}`,
            envelope: { mailFrom: 'a@example.com', recipients: [], clientIp: '127.0.0.1', helo: 'bench', tls: null },
            raw,
            parsed: () => (parsed ??= parseMessage(raw)),
            signal: new AbortController().signal,
            log,
          });
          found += hits.length;
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    if (found > 0) throw new Error(`the check reported ${found} symbols on random data`);
    return { seconds, clientCpuMs: (cpu.user + cpu.system) / 1000 };
  });
}

/** The fastest of the repetitions (the least disturbed by whatever else runs on the machine). */
function best(runs: Measurement[]): Measurement {
  return runs.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

async function main(): Promise<void> {
  const bin = ensureBinary('clamdscan', 'clamdscan');
  const repeat = Number(args.repeat);
  const cases = [
    { label: '10 KB', bytes: 10 * 1024, count: Number(args['messages-10k']) },
    { label: '1 MB', bytes: 1024 * 1024, count: Number(args['messages-1m']) },
  ];
  console.log(`clamav bench: database dir ${args['database-dir']} (+ project signatures), ${os.cpus().length} cores, best of ${repeat}`);
  const rows: string[] = [];
  for (const c of cases) {
    const dir = path.join(root, c.label.replace(' ', ''));
    mkdirSync(dir);
    const raws = Array.from({ length: c.count }, (_, i) => message(i, randomBytes(c.bytes)));
    const files = raws.map((raw, i) => {
      const f = path.join(dir, `${i}.eml`);
      writeFileSync(f, raw);
      return f;
    });
    for (const workers of WORKER_COUNTS) {
      const runs: { base: Measurement[]; ours: Measurement[]; shared: Measurement[] } = { base: [], ours: [], shared: [] };
      for (let r = 0; r < repeat; r++) {
        runs.base.push(await benchClamdscan(bin, files, workers));
        runs.ours.push(await benchCheck(raws, workers, false));
        runs.shared.push(await benchCheck(raws, workers, true));
      }
      const [base, ours, shared] = [best(runs.base), best(runs.ours), best(runs.shared)];
      const rate = (m: Measurement) => c.count / m.seconds;
      const cell = (m: Measurement) => `${rate(m).toFixed(1)} (${(rate(m) / rate(base)).toFixed(2)}×)`;
      const cpu = (m: Measurement) => `${(m.clamdCpuMs / c.count).toFixed(2)} + ${(m.clientCpuMs / c.count).toFixed(2)}`;
      rows.push(
        `| ${c.label} | ${c.count} | ${workers} | ${rate(base).toFixed(1)} | ${cell(ours)} | ${cell(shared)} | ${cpu(base)} | ${cpu(ours)} | ${cpu(shared)} | ` +
          `${base.rssMiB} / ${base.peakMiB} | ${shared.rssMiB} / ${shared.peakMiB} |`,
      );
      console.log(rows.at(-1));
    }
  }
  console.log(
    '\n| attachment | messages | workers | clamdscan --stream msg/s | check msg/s, parse included | check msg/s, parse shared | CPU ms/msg clamd + client: clamdscan | check, parse included | check, parse shared | clamd MiB rss / peak: clamdscan | check |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) console.log(r);
}

try {
  await main();
} finally {
  rmSync(root, { recursive: true, force: true });
}
