/**
 * npm run bench:av — throughput of the clamav check against clamd's own client on the same messages.
 *
 * For attachments of 10 KB and 1 MB (random bytes, one different file per message), it writes N messages to a
 * temporary directory and measures messages/s of:
 *   - `clamdscan --stream` on the .eml files (one process per worker, each streaming its share of the files);
 *   - the clamav check (parse + archive inspection + INSTREAM of the raw message and of every decoded part);
 * at 1 and at 4 workers, each against a freshly started managed clamd (clamd caches clean results by hash, so a
 * second pass over the same files would measure the cache). clamd's resident memory (VmRSS now, VmHWM peak) is
 * read from /proc after each run.
 *
 * Options: --database-dir DIR (default /var/lib/clamav: the official databases when present; the project's own
 * signatures are always loaded), --messages-10k N, --messages-1m N.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createClamavCheck } from '../src/scan/checks/clamav.ts';
import { parseMessage, type ParsedMessage } from '../src/scan/mime-parts.ts';
import { ensureBinary } from '../src/services/debian.ts';
import { startManagedClamd, type ManagedClamd } from '../src/services/clamd.ts';

const { values: args } = parseArgs({
  options: {
    'database-dir': { type: 'string', default: '/var/lib/clamav' },
    'messages-10k': { type: 'string', default: '1000' },
    'messages-1m': { type: 'string', default: '100' },
  },
});

const WORKER_COUNTS = [1, 4];
/** The config defaults (src/config/schema.ts) */
const MAX_MESSAGE_BYTES = 52_428_800;
const CLAMD_TIMEOUT_MS = 60_000;
const ARCHIVE_LIMITS = { maxDepth: 5, maxExpandedBytes: 200 * 1024 * 1024, maxRatio: 100, maxEntries: 10_000 };

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

function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMiB: Math.round(kb('VmRSS') / 1024), peakMiB: Math.round(kb('VmHWM') / 1024) };
}

async function withClamd<T>(name: string, fn: (clamd: ManagedClamd, conf: string) => Promise<T>): Promise<T & { rssMiB: number; peakMiB: number }> {
  const dir = path.join(root, `clamd-${name}`);
  const clamd = await startManagedClamd({
    dir,
    databaseDir: args['database-dir'],
    maxStreamBytes: MAX_MESSAGE_BYTES,
    scanTimeoutMs: CLAMD_TIMEOUT_MS,
    startTimeoutMs: 300_000,
    maxThreads: 8,
  });
  try {
    const result = await fn(clamd, path.join(dir, 'clamd.conf'));
    return { ...result, ...memoryOf(clamd.pid) };
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

async function benchClamdscan(bin: string, files: string[], workers: number) {
  return withClamd(`clamdscan-${workers}`, async (_clamd, conf) => {
    const shares = Array.from({ length: workers }, (_, w) => files.filter((_, i) => i % workers === w));
    const t0 = performance.now();
    await Promise.all(shares.map((share) => clamdscan(bin, conf, share)));
    return { seconds: (performance.now() - t0) / 1000 };
  });
}

async function benchCheck(raws: Buffer[], workers: number) {
  return withClamd(`check-${workers}`, async (clamd) => {
    const check = createClamavCheck({ clamd: clamd.endpoint, timeoutMs: CLAMD_TIMEOUT_MS, archive: ARCHIVE_LIMITS });
    const log = pino({ level: 'silent' });
    let next = 0;
    let found = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (next < raws.length) {
          const raw = raws[next++] as Buffer;
          let parsed: Promise<ParsedMessage> | undefined;
          const hits = await check.run({
            messageId: `bench-${next}`,
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
    if (found > 0) throw new Error(`the check reported ${found} symbols on random data`);
    return { seconds: (performance.now() - t0) / 1000 };
  });
}

async function main(): Promise<void> {
  const bin = ensureBinary('clamdscan', 'clamdscan');
  const cases = [
    { label: '10 KB', bytes: 10 * 1024, count: Number(args['messages-10k']) },
    { label: '1 MB', bytes: 1024 * 1024, count: Number(args['messages-1m']) },
  ];
  console.log(`clamav bench: database dir ${args['database-dir']} (+ project signatures), ${os.cpus().length} cores`);
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
      const base = await benchClamdscan(bin, files, workers);
      const ours = await benchCheck(raws, workers);
      const baseRate = c.count / base.seconds;
      const ourRate = c.count / ours.seconds;
      rows.push(
        `| ${c.label} | ${c.count} | ${workers} | ${baseRate.toFixed(1)} | ${ourRate.toFixed(1)} | ${(ourRate / baseRate).toFixed(2)}× | ` +
          `${base.rssMiB} / ${base.peakMiB} | ${ours.rssMiB} / ${ours.peakMiB} |`,
      );
      console.log(rows.at(-1));
    }
  }
  console.log('\n| attachment | messages | workers | clamdscan --stream msg/s | clamav check msg/s | check ÷ clamdscan | clamd MiB rss / peak (clamdscan run) | clamd MiB rss / peak (check run) |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) console.log(r);
}

try {
  await main();
} finally {
  rmSync(root, { recursive: true, force: true });
}
