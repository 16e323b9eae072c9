/**
 * `sekisho spam …`: the operator's tools for the Bayes filter.
 *   sekisho spam train --spam DIR --ham DIR [--config FILE]
 *       learns every file under each DIR (recursively) as one raw message; a message already learned as that
 *       class counts nothing, one learned as the other class is moved
 *   sekisho spam classify FILE|DIR… [--config FILE] [--tenant ID] [--client-ip IP] [--json]
 *       runs the local checks (no network: no DNS, no clamd) and the tenant's policy on each message and prints
 *       one line per message: file, action, score, symbols (`--json`: one JSON object per line)
 * What the classify output says is what the pipeline would decide from those checks alone: that is what an
 * operator tunes scores with, and what `npm run bench:spam` measures.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import type { LoadedConfig } from '../config/load.ts';
import type { Config, TenantConfig } from '../config/schema.ts';
import { decide, type Decision } from '../policy/decide.ts';
import type { Check, Envelope, SymbolHit } from '../scan/check.ts';
import { createMimeStructureCheck } from '../scan/checks/mime-structure.ts';
import { bayesConfigSchema, createBayesCheck, openBayesStore, type BayesConfig, type BayesStore } from '../scan/checks/bayes/index.ts';
import type { BayesClass, LearnOutcome } from '../scan/checks/bayes/bayes-store.ts';
import { learnMessage, withoutMboxFromLine } from '../scan/checks/bayes/learn.ts';
import { runChecks, type Verdict } from '../scan/runner.ts';

export interface SpamCommandDeps {
  loadConfig(file: string | undefined): LoadedConfig;
  /** The Bayes section of the configuration; defaults when absent. */
  bayesConfig?(config: Config): BayesConfig;
  /** The checks that run besides Bayes: those that need no network. Default: the MIME structure check. */
  localChecks?(config: Config, log: Logger): Check[];
  /** Where warnings go (never stdout, which carries the results). Default: pino on stderr at config.log.level. */
  log?: Logger;
  out?(line: string): void;
  err?(line: string): void;
}

const USAGE = `usage: sekisho spam train --spam DIR --ham DIR [--config FILE]
       sekisho spam classify FILE|DIR… [--config FILE] [--tenant ID] [--client-ip IP] [--json]`;

/**
 * Address the classified messages are assumed to come from: TEST-NET-1 (RFC 5737), an outside address, so that
 * checks which treat our own relays differently judge the message as internet mail.
 */
const DEFAULT_CLIENT_IP = '192.0.2.1';

export async function runSpamCommand(argv: string[], deps: SpamCommandDeps): Promise<number> {
  const out = deps.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  const err = deps.err ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const [sub, ...rest] = argv;
  try {
    if (sub === 'train') return await train(rest, deps, out, err);
    if (sub === 'classify') return await classifyCommand(rest, deps, out, err);
  } catch (e) {
    if (!(e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))) throw e;
    err(`sekisho spam: ${e.message}`);
  }
  err(USAGE);
  return sub === 'help' || sub === '--help' ? 0 : 2;
}

interface Opened {
  config: Config;
  bayes: BayesConfig;
  store: BayesStore;
  log: Logger;
}

function open(configFile: string | undefined, deps: SpamCommandDeps): Opened {
  const { config } = deps.loadConfig(configFile);
  const bayes = deps.bayesConfig?.(config) ?? bayesConfigSchema.parse({});
  const log = deps.log ?? pino({ level: config.log.level }, pino.destination(2));
  return { config, bayes, store: openBayesStore(config.dataDir, bayes), log };
}

/** messageFiles, or [] after reporting why the path cannot be read (a typo in a path must not end a long run). */
function filesOrReport(target: string, err: (l: string) => void): string[] | undefined {
  try {
    return messageFiles(target);
  } catch (e) {
    err(`${target}: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}

/** Regular files under `dir` (or `dir` itself when it is a file), sorted; symbolic links are not followed. */
export function messageFiles(dir: string): string[] {
  const st = statSync(dir);
  if (st.isFile()) return [dir];
  const files: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) files.push(...messageFiles(p));
    else if (e.isFile()) files.push(p);
  }
  return files.sort();
}

async function train(argv: string[], deps: SpamCommandDeps, out: (l: string) => void, err: (l: string) => void): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { spam: { type: 'string', multiple: true }, ham: { type: 'string', multiple: true }, config: { type: 'string', short: 'c' } },
  });
  const sources: { cls: BayesClass; dir: string }[] = [
    ...(values.spam ?? []).map((dir) => ({ cls: 'spam' as const, dir })),
    ...(values.ham ?? []).map((dir) => ({ cls: 'ham' as const, dir })),
  ];
  if (sources.length === 0) {
    err('sekisho spam train: give at least one --spam DIR or --ham DIR');
    return 2;
  }
  const { config, bayes, store } = open(values.config, deps);
  let failures = 0;
  try {
    for (const { cls, dir } of sources) {
      const counts: Record<LearnOutcome | 'skipped', number> = { learned: 0, relearned: 0, unchanged: 0, skipped: 0 };
      const files = filesOrReport(dir, err);
      if (!files) {
        failures++;
        continue;
      }
      for (const file of files) {
        try {
          if (statSync(file).size > config.smtp.maxMessageBytes) {
            counts.skipped++;
            err(`${file}: larger than smtp.maxMessageBytes, not learned`);
            continue;
          }
          counts[await learnMessage(store, readFileSync(file), cls, bayes)]++;
        } catch (e) {
          failures++;
          err(`${file}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      out(`${cls} ${dir}: ${counts.learned} learned, ${counts.relearned} moved from the other class, ${counts.unchanged} already known, ${counts.skipped} skipped`);
    }
    const totals = await store.totals();
    out(`model: ${totals.spamMessages} spam, ${totals.hamMessages} ham (classifies from ${bayes.minSpamMessages} spam and ${bayes.minHamMessages} ham)`);
  } finally {
    store.close();
  }
  return failures > 0 ? 1 : 0;
}

export interface Classified {
  file: string;
  action: Decision['action'];
  score: number;
  symbols: SymbolHit[];
  failedChecks: string[];
  reasons: string[];
}

export function formatSymbol(s: SymbolHit): string {
  return s.details?.length ? `${s.name}(${s.details.join(', ')})` : s.name;
}

/** The envelope a classified file is given: its Return-Path (else From) as sender, the tenant's postmaster as recipient. */
function envelopeFor(raw: Buffer, tenant: TenantConfig, clientIp: string): Envelope {
  const head = raw.subarray(0, 64 * 1024).toString('latin1');
  const sender = /^(?:return-path|from):[^\n]*?<?([^\s<>@]+@[^\s<>]+?)>?\s*$/im.exec(head)?.[1] ?? '';
  return { mailFrom: sender, recipients: [{ address: `postmaster@${tenant.domains[0] ?? 'invalid'}`, tenantId: tenant.id }], clientIp, helo: 'classify.invalid', tls: null };
}

/** Runs `checks` and the policy of `tenant` on one raw message, as the pipeline would. */
export async function classifyMessage(raw: Buffer, checks: readonly Check[], config: Config, tenant: TenantConfig, opts: { file: string; clientIp: string; log: Logger }): Promise<Classified> {
  const message = withoutMboxFromLine(raw);
  const verdict: Verdict = await runChecks(
    checks,
    { messageId: path.basename(opts.file), envelope: envelopeFor(message, tenant, opts.clientIp), raw: message, log: opts.log },
    { checkTimeoutMs: config.scan.checkTimeoutMs },
  );
  const decision = decide(verdict, tenant, config.policy, { ageMs: 0, scan: config.scan });
  return { file: opts.file, action: decision.action, score: decision.score, symbols: verdict.symbols, failedChecks: verdict.failedChecks, reasons: decision.reasons };
}

async function classifyCommand(argv: string[], deps: SpamCommandDeps, out: (l: string) => void, err: (l: string) => void): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, tenant: { type: 'string' }, 'client-ip': { type: 'string' }, json: { type: 'boolean' } },
  });
  if (positionals.length === 0) {
    err('sekisho spam classify: give at least one FILE or DIR');
    return 2;
  }
  const { config, bayes, store, log } = open(values.config, deps);
  const checks = [...(deps.localChecks?.(config, log) ?? [createMimeStructureCheck()]), ...(bayes.enabled ? [createBayesCheck({ store, config: bayes })] : [])];
  try {
    const tenant = values.tenant === undefined ? config.tenants[0] : config.tenants.find((t) => t.id === values.tenant);
    if (!tenant) {
      err(`sekisho spam classify: no tenant "${values.tenant}" in the configuration`);
      return 2;
    }
    const clientIp = values['client-ip'] ?? DEFAULT_CLIENT_IP;
    let failures = 0;
    for (const target of positionals) {
      const files = filesOrReport(target, err);
      if (!files) failures++;
      for (const file of files ?? []) {
        let raw: Buffer;
        try {
          raw = readFileSync(file);
        } catch (e) {
          failures++;
          err(`${file}: ${e instanceof Error ? e.message : String(e)}`);
          continue;
        }
        const r = await classifyMessage(raw, checks, config, tenant, { file, clientIp, log });
        out(values.json ? JSON.stringify(r) : `${file}\t${r.action}\t${r.score}\t${r.symbols.map(formatSymbol).join(' ')}`);
      }
    }
    return failures > 0 ? 1 : 0;
  } finally {
    for (const c of checks) await c.close?.();
    store.close();
  }
}
