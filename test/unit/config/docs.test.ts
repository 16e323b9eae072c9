/**
 * docs/config.md is the configuration reference: every key of the schema has a row there, every documented key
 * exists, the complete example is a valid configuration and the demo configuration shown is the real one.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { demoConfig } from '../../../src/config/demo.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { configSchema } from '../../../src/config/schema.ts';

const DOC = readFileSync(new URL('../../../docs/config.md', import.meta.url), 'utf8');

type Node = z.core.$ZodType;

function unwrap(t: Node): Node {
  for (;;) {
    const def: z.core.$ZodTypeDef = t._zod.def;
    if ('innerType' in def) t = def.innerType as Node;
    else if (def.type === 'pipe' && 'in' in def) t = def.in as Node;
    // `boolean | { options }` (tenants[].sanitize): the object alternative's keys need rows.
    else if (def.type === 'union' && 'options' in def) {
      const obj = (def.options as Node[]).find((o) => unwrap(o)._zod.def.type === 'object');
      if (!obj) return t;
      t = obj;
    } else return t;
  }
}

function isUnion(t: Node): boolean {
  let def: z.core.$ZodTypeDef = t._zod.def;
  while ('innerType' in def) def = (def.innerType as Node)._zod.def;
  return def.type === 'union';
}

/**
 * Every key path that needs a row: scalars and maps ("smtp.maxMessageBytes", "policy.scores"), lists
 * ("tenants", with their elements' keys as "tenants[].id") and optional objects ("smtp.tls"); the sections
 * (smtp, redis, …) are headings, not rows.
 */
function keyPaths(t: Node, prefix = ''): string[] {
  const def: z.core.$ZodTypeDef = unwrap(t)._zod.def;
  if (def.type !== 'object' || !('shape' in def)) return [];
  return Object.entries(def.shape as Record<string, Node>).flatMap(([k, v]) => {
    const p = prefix ? `${prefix}.${k}` : k;
    const inner: z.core.$ZodTypeDef = unwrap(v)._zod.def;
    // An optional object, or the object alternative of a union, is a row of its own as well as a heading.
    const ownRow = v._zod.def.type === 'optional' || isUnion(v);
    if (inner.type === 'object') return [...(ownRow ? [p] : []), ...keyPaths(v, p)];
    if (inner.type === 'array' && 'element' in inner) return [p, ...keyPaths(inner.element as Node, `${p}[]`)];
    return [p];
  });
}

/** Keys in the first column of the reference tables. */
function documentedKeys(): string[] {
  return [...DOC.matchAll(/^\| `([a-zA-Z.[\]]+)` \|/gm)].map((m) => m[1]!);
}

function yamlBlockAfter(heading: string): string {
  const at = DOC.indexOf(`## ${heading}`);
  expect(at, `section "${heading}" in docs/config.md`).toBeGreaterThan(-1);
  const m = /```yaml\n([\s\S]*?)```/.exec(DOC.slice(at));
  expect(m, `yaml block in "${heading}"`).not.toBeNull();
  return m![1]!;
}

describe('docs/config.md', () => {
  it('documents every key of the schema', () => {
    const documented = new Set(documentedKeys());
    const missing = keyPaths(configSchema).filter((k) => !documented.has(k));
    expect(missing, 'keys without a row in docs/config.md').toEqual([]);
  });

  it('documents no key that does not exist', () => {
    const known = new Set(keyPaths(configSchema));
    const extra = documentedKeys().filter((k) => !known.has(k));
    expect(extra, 'rows in docs/config.md for keys the schema does not have').toEqual([]);
  });

  it('its complete example is a valid configuration that sets every section', () => {
    const raw = parseYaml(yamlBlockAfter('Complete example')) as Record<string, unknown>;
    const r = validateConfig(raw, '/etc/sekisho');
    expect(r.ok ? [] : r.issues).toEqual([]);
    const sections = Object.keys((unwrap(configSchema)._zod.def as unknown as { shape: object }).shape);
    expect(Object.keys(raw).sort()).toEqual(sections.sort());
  });

  it('shows the real demo configuration', () => {
    expect(parseYaml(yamlBlockAfter('The demo configuration'))).toEqual(demoConfig);
  });
});
