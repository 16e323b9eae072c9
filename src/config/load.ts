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

type SchemaNode = z.core.$ZodType | undefined;

/** Steps through defaults, optionals and pipes to the schema that does the checking. */
function unwrapSchema(t: SchemaNode): SchemaNode {
  for (;;) {
    const def: z.core.$ZodTypeDef | undefined = t?._zod.def;
    if (def && 'innerType' in def) t = def.innerType as z.core.$ZodType;
    else if (def?.type === 'pipe' && 'in' in def) t = def.in as z.core.$ZodType;
    else return t;
  }
}

/** The object keys the schema allows at `path`, for "did you mean". */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let t: SchemaNode = configSchema;
  for (const key of path) {
    const def: z.core.$ZodTypeDef | undefined = unwrapSchema(t)?._zod.def;
    if (def?.type === 'array' && 'element' in def && typeof key === 'number') t = def.element as z.core.$ZodType;
    else if (def?.type === 'object' && 'shape' in def) t = (def.shape as Record<string, z.core.$ZodType>)[String(key)];
    else return [];
  }
  const def: z.core.$ZodTypeDef | undefined = unwrapSchema(t)?._zod.def;
  return def?.type === 'object' && 'shape' in def ? Object.keys(def.shape as object) : [];
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

function issuesOf(error: z.ZodError): ConfigIssue[] {
  return issueList(error.issues);
}

function issueList(issues: readonly z.core.$ZodIssue[]): ConfigIssue[] {
  return issues.flatMap((i): ConfigIssue[] => {
    // `boolean | { options }` (tenants[].sanitize): an object given is meant as options, so its own errors are the
    // useful ones; anything else is told what the key takes.
    if (i.code === 'invalid_union') {
      const objectBranch = i.errors.find((branch) => !branch.some((e) => e.code === 'invalid_type' && e.path.length === 0));
      if (objectBranch) return issueList(objectBranch.map((e) => ({ ...e, path: [...i.path, ...e.path] })));
      return [{ path: formatPath(i.path) || '(root)', message: 'must be true, false or an object of options' }];
    }
    // zod reports unknown keys on the enclosing object ("smtp: Unrecognized key"); report each at its own path
    // ("smtp.maxMesageBytes"), with the closest allowed key when the name looks like a typo of one.
    if (i.code === 'unrecognized_keys') {
      const known = knownKeysAt(i.path);
      return i.keys.map((key) => {
        const [best] = known.map((k) => ({ k, d: editDistance(key, k) })).sort((a, b) => a.d - b.d);
        const hint = best && best.d <= Math.max(2, Math.floor(key.length / 4)) ? ` (did you mean "${best.k}"?)` : '';
        return { path: formatPath([...i.path, key]), message: `unknown key${hint}` };
      });
    }
    return [{ path: formatPath(i.path) || '(root)', message: i.message }];
  });
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
  if (c.antispam.rules.ruleFile) c.antispam.rules.ruleFile = path.resolve(baseDir, c.antispam.rules.ruleFile);
  return { ok: true, config: deepFreeze(c) };
}

/** Reads and validates a YAML file; every problem comes back with its key path. */
export function checkConfigFile(file: string): ConfigResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, issues: [{ path: '(file)', message: `cannot read ${file}: ${(err as Error).message}` }] };
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    // A separate message: "cannot read" for a YAML syntax error sent people looking for a permissions problem.
    // yaml's message ends with a multi-line excerpt of the source; the first line has the reason and position.
    const reason = ((err as Error).message.split('\n')[0] ?? '').replace(/:$/, '');
    return { ok: false, issues: [{ path: '(file)', message: `${file} is not valid YAML: ${reason}` }] };
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
    // An unreadable file or bad YAML is reported under "(file)": give it its own code (it always had
    // SEKISHO_ERR_CONFIG_INVALID, and SEKISHO_ERR_CONFIG_READ was never raised).
    throw new SekishoError(
      r.issues.some((i) => i.path === '(file)') ? 'SEKISHO_ERR_CONFIG_READ' : 'SEKISHO_ERR_CONFIG_INVALID',
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
