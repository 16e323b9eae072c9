/**
 * The symbol catalogue (src/scan/symbols.ts) and its documentation (docs/symbols.md) say the same thing: every
 * symbol has one row with the same group and default score, and there is no row for a symbol that does not
 * exist. A new symbol fails this test until it is documented. Also: every symbol the checks can emit is in
 * the catalogue (a symbol missing there scores 0 and cannot be configured).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isFailSymbol, symbolGroups, symbolInfo, symbols } from '../../../src/scan/symbols.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface DocRow {
  name: string;
  group: string;
  score: number;
  description: string;
}

/** Rows of the symbol tables: | `NAME` | group | score | description | */
function docRows(): DocRow[] {
  const md = readFileSync(path.join(ROOT, 'docs/symbols.md'), 'utf8');
  return [...md.matchAll(/^\|\s*`([A-Z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|(.*)\|\s*$/gm)].map((m) => ({
    name: m[1]!,
    group: m[2]!.trim(),
    score: Number(m[3]!.trim()),
    description: m[4]!.trim(),
  }));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
  );
}

describe('docs/symbols.md', () => {
  const rows = docRows();
  const catalogue = Object.entries(symbols);

  it('has a table the test can read', () => {
    expect(rows.length).toBeGreaterThan(0);
  });

  it('documents every symbol of the catalogue with the same group and default score', () => {
    const byName = new Map(rows.map((r) => [r.name, r]));
    const mismatches = catalogue.flatMap(([name, info]) => {
      const row = byName.get(name);
      if (!row) return [`${name}: not documented`];
      const problems: string[] = [];
      if (row.group !== info.group) problems.push(`${name}: group ${row.group} in the docs, ${info.group} in the catalogue`);
      if (row.score !== info.score) problems.push(`${name}: score ${row.score} in the docs, ${info.score} in the catalogue`);
      if (!row.description) problems.push(`${name}: no description`);
      return problems;
    });
    expect(mismatches).toEqual([]);
  });

  it('documents nothing that is not in the catalogue, and each symbol once', () => {
    expect(rows.map((r) => r.name).filter((n) => !(n in symbols))).toEqual([]);
    const names = rows.map((r) => r.name);
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
  });
});

describe('the catalogue', () => {
  it('names are UPPER_SNAKE_CASE, groups are known, scores are finite, descriptions present', () => {
    for (const [name, info] of Object.entries(symbols)) {
      expect(name).toMatch(/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$/);
      expect(symbolGroups).toContain(info.group);
      expect(Number.isFinite(info.score)).toBe(true);
      expect(info.description.length).toBeGreaterThan(10);
    }
  });

  it('fail symbols are in the system group with score 0 (their meaning is the action, not the score)', () => {
    const fails = Object.entries(symbols).filter(([name]) => isFailSymbol(name));
    expect(fails.length).toBeGreaterThan(0);
    for (const [name, info] of fails) expect({ name, group: info.group, score: info.score }).toEqual({ name, group: 'system', score: 0 });
  });

  it('symbolInfo finds catalogue symbols only', () => {
    expect(symbolInfo('CLAMAV_VIRUS')?.group).toBe('antivirus');
    expect(symbolInfo('NO_SUCH_SYMBOL')).toBeUndefined();
    expect(symbolInfo('toString')).toBeUndefined();
  });

  // Regression: the hash-blocklist check's failSymbol HASH_BLOCKLIST_FAIL was not in the catalogue.
  it('contains every symbol name that src/scan emits (quoted UPPER_SNAKE names in the checks’ sources)', () => {
    const files = sourceFiles(path.join(ROOT, 'src/scan')).filter((f) => !f.endsWith(`${path.sep}symbols.ts`));
    const used = new Set<string>();
    for (const f of files) {
      for (const m of readFileSync(f, 'utf8').matchAll(/['"`]([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)['"`]/g)) {
        if (!m[1]!.startsWith('SEKISHO_ERR_')) used.add(m[1]!);
      }
    }
    expect(used.size).toBeGreaterThan(5);
    expect([...used].filter((n) => !symbolInfo(n)).sort()).toEqual([]);
  });
});
