/**
 * The error catalogue (src/errors.ts) and docs/errors.md list the same codes (Fastify's habit): a new code fails
 * this test until it is documented, and a documented code that no longer exists fails it too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { errorCodes, SekishoError } from '../../src/errors.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function docRows(): { code: string; meaning: string }[] {
  const md = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8');
  return [...md.matchAll(/^\|\s*`(SEKISHO_ERR_[A-Z0-9_]+)`\s*\|([^|]*)\|/gm)].map((m) => ({ code: m[1]!, meaning: m[2]!.trim() }));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : /\.[jt]s$/.test(e.name) ? [path.join(dir, e.name)] : [],
  );
}

describe('docs/errors.md', () => {
  const rows = docRows();

  it('documents every code of src/errors.ts, with its meaning', () => {
    const documented = new Map(rows.map((r) => [r.code, r.meaning]));
    const problems = Object.entries(errorCodes).flatMap(([code, meaning]) => {
      const doc = documented.get(code);
      if (doc === undefined) return [`${code}: not documented`];
      return doc === meaning ? [] : [`${code}: "${doc}" in the docs, "${meaning}" in src/errors.ts`];
    });
    expect(problems).toEqual([]);
  });

  it('documents no code that does not exist, and each code once', () => {
    expect(rows.map((r) => r.code).filter((c) => !(c in errorCodes))).toEqual([]);
    const codes = rows.map((r) => r.code);
    expect(codes.filter((c, i) => codes.indexOf(c) !== i)).toEqual([]);
  });
});

describe('the catalogue', () => {
  it('codes follow SEKISHO_ERR_<AREA>_<WHAT>', () => {
    for (const code of Object.keys(errorCodes)) expect(code).toMatch(/^SEKISHO_ERR_[A-Z]+_[A-Z0-9_]+$/);
  });

  it('every SEKISHO_ERR_ code named in src/ is in the catalogue', () => {
    const named = new Set<string>();
    for (const f of sourceFiles(path.join(ROOT, 'src'))) {
      for (const m of readFileSync(f, 'utf8').matchAll(/SEKISHO_ERR_[A-Z0-9_]+/g)) named.add(m[0]);
    }
    expect([...named].filter((c) => !(c in errorCodes)).sort()).toEqual([]);
  });

  it('SekishoError carries its code, name, message and cause', () => {
    const cause = new Error('ENOSPC');
    const err = new SekishoError('SEKISHO_ERR_SPOOL_WRITE', 'cannot write message abc', { cause });
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ name: 'SekishoError', code: 'SEKISHO_ERR_SPOOL_WRITE', message: 'cannot write message abc', cause });
  });
});
