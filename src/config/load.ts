/**
 * Reading the configuration: the only module that touches process.env (STYLE rule 7). The result is validated
 * once and deep-frozen; everything downstream receives it as a parameter.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { SekishoError } from '../errors.ts';
import { demoConfig } from './demo.ts';
import { configSchema, type Config } from './schema.ts';

export interface ConfigIssue {
  path: string;
  message: string;
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; issues: ConfigIssue[] };

function formatPath(p: readonly PropertyKey[]): string {
  return p.reduce<string>((acc, k) => (typeof k === 'number' ? `${acc}[${k}]` : acc ? `${acc}.${String(k)}` : String(k)), '');
}

function issuesOf(error: z.ZodError): ConfigIssue[] {
  return error.issues.map((i) => ({ path: formatPath(i.path) || '(root)', message: i.message }));
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** Validates an already-parsed object. `baseDir` resolves a relative dataDir and file paths. */
export function validateConfig(raw: unknown, baseDir = process.cwd()): ConfigResult {
  const r = configSchema.safeParse(raw);
  if (!r.success) return { ok: false, issues: issuesOf(r.error) };
  const c = r.data;
  c.dataDir = path.resolve(baseDir, c.dataDir);
  if (c.smtp.tls) {
    c.smtp.tls.cert = path.resolve(baseDir, c.smtp.tls.cert);
    c.smtp.tls.key = path.resolve(baseDir, c.smtp.tls.key);
  }
  if (c.clamav.hashBlocklistFile) c.clamav.hashBlocklistFile = path.resolve(baseDir, c.clamav.hashBlocklistFile);
  return { ok: true, config: deepFreeze(c) };
}

/** Reads and validates a YAML file; every problem comes back with its key path. */
export function checkConfigFile(file: string): ConfigResult {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    return { ok: false, issues: [{ path: '(file)', message: `cannot read ${file}: ${(err as Error).message}` }] };
  }
  return validateConfig(raw, path.dirname(path.resolve(file)));
}

export function formatIssues(issues: ConfigIssue[]): string {
  return issues.map((i) => `  ${i.path}: ${i.message}`).join('\n');
}

/** The file named by --config or SEKISHO_CONFIG; undefined means the demo configuration. */
export function configFileFromEnv(cliValue?: string): string | undefined {
  return cliValue ?? process.env.SEKISHO_CONFIG ?? undefined;
}

export interface LoadedConfig {
  config: Config;
  file: string | undefined;
  demo: boolean;
}

export function loadConfig(cliValue?: string): LoadedConfig {
  const file = configFileFromEnv(cliValue);
  const r = file ? checkConfigFile(file) : validateConfig(demoConfig);
  if (!r.ok) {
    throw new SekishoError(
      'SEKISHO_ERR_CONFIG_INVALID',
      `invalid configuration${file ? ` in ${file}` : ''}:\n${formatIssues(r.issues)}`,
    );
  }
  return { config: r.config, file, demo: !file };
}

/** Environment switches that are not configuration: where the Debian helpers may install packages. */
export function envFlag(name: 'SEKISHO_NO_APT' | 'CI'): boolean {
  const v = process.env[name];
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}
