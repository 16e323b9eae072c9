/**
 * Reading a configuration file: YAML errors and unreadable files are reported as such (path "(file)"), relative
 * paths resolve against the file's directory, and loadConfig turns problems into SekishoErrors with stable codes.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { checkConfigFile, formatIssues, loadConfig } from '../../../src/config/load.ts';
import { SekishoError } from '../../../src/errors.ts';

const GOOD = `hostname: mx.pref.example.lg.jp
dataDir: ./spool-here
tenants:
  - id: city-a
    name: "甲市"
    domains: ["city-a.example.lg.jp"]
    deliverTo: "smtp://10.1.2.3:25"
`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-config-'));
});
afterEach(() => {
  vi.unstubAllEnvs();
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

describe('checkConfigFile', () => {
  it('accepts a good file and resolves a relative dataDir against the file’s directory, not the cwd', () => {
    const file = write('etc/sekisho.yaml', GOOD);
    const r = checkConfigFile(file);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.dataDir).toBe(path.join(dir, 'etc', 'spool-here'));
    expect(r.config.tenants[0]!.name).toBe('甲市');
    expect(Object.isFrozen(r.config.tenants[0])).toBe(true);
  });

  it('resolves a relative file name against the cwd first, then dataDir against that file’s directory', () => {
    const file = write('etc/sekisho.yaml', GOOD);
    const r = checkConfigFile(path.relative(process.cwd(), file));
    expect(r.ok && r.config.dataDir).toBe(path.join(dir, 'etc', 'spool-here'));
  });

  it('reports a missing file under (file) with the reason', () => {
    const r = checkConfigFile(path.join(dir, 'nope.yaml'));
    expect(r).toEqual({ ok: false, issues: [{ path: '(file)', message: expect.stringMatching(/cannot read .*nope\.yaml: .*ENOENT/) }] });
  });

  it('reports a directory given as the file under (file)', () => {
    const r = checkConfigFile(dir);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues[0]!.message).toMatch(/cannot read .*EISDIR/);
  });

  it.skipIf(process.getuid?.() === 0)('reports an unreadable file under (file)', () => {
    const file = write('secret.yaml', GOOD);
    chmodSync(file, 0o000);
    const r = checkConfigFile(file);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues[0]!.message).toMatch(/cannot read .*EACCES/);
  });

  // Regression: a YAML syntax error was reported as "cannot read FILE", which sent people looking for a
  // permissions problem.
  it('reports invalid YAML as invalid YAML, with its line', () => {
    const file = write('bad.yaml', 'hostname: mx\nsmtp:\n  listen: "127.0.0.1:25\n  maxMessageBytes: 3\n');
    const r = checkConfigFile(file);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues).toHaveLength(1);
    expect(r.issues[0]!.path).toBe('(file)');
    expect(r.issues[0]!.message).toMatch(/bad\.yaml is not valid YAML: .*line \d+/s);
    expect(r.issues[0]!.message).not.toMatch(/cannot read/);
    expect(r.issues[0]!.message).not.toContain('\n'); // one line per error in check-config's list
  });

  it('reports duplicate YAML keys (the second would silently win otherwise)', () => {
    const file = write('dup.yaml', `hostname: a\nhostname: b\n${GOOD.split('\n').slice(1).join('\n')}`);
    const r = checkConfigFile(file);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues[0]!.message).toMatch(/not valid YAML: .*unique/i);
  });

  it('an empty file is reported as a missing mapping', () => {
    const r = checkConfigFile(write('empty.yaml', ''));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues).toEqual([{ path: '(root)', message: expect.stringMatching(/expected object/) }]);
  });

  it('reports every validation error of a file with its path', () => {
    const file = write(
      'broken.yaml',
      `smtp:
  listen: "127.0.0.1"
  maxMesageBytes: 1000
tenants:
  - id: city-a
    name: "甲市"
    domains: ["city-a.example.lg.jp"]
    deliverTo: "smtp://10.1.2.3:25"
  - id: city-b
    name: "乙市"
    domains: ["city-a.example.lg.jp"]
    deliverTo: "http://10.1.2.4"
`,
    );
    const r = checkConfigFile(file);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.path)).toEqual(['hostname', 'smtp.listen', 'smtp.maxMesageBytes', 'tenants[1].deliverTo', 'tenants[1].domains[0]']);
    expect(formatIssues(r.issues).split('\n')).toEqual([
      expect.stringMatching(/^ {2}hostname: /),
      '  smtp.listen: must be "host:port", e.g. "127.0.0.1:2525"',
      '  smtp.maxMesageBytes: unknown key (did you mean "maxMessageBytes"?)',
      expect.stringMatching(/^ {2}tenants\[1\]\.deliverTo: must be smtp:\/\//),
      '  tenants[1].domains[0]: domain "city-a.example.lg.jp" already belongs to tenant "city-a"',
    ]);
  });
});

describe('loadConfig', () => {
  it('loads the file named on the command line', () => {
    const file = write('sekisho.yaml', GOOD);
    const loaded = loadConfig(file);
    expect(loaded).toMatchObject({ file, demo: false });
    expect(loaded.config.hostname).toBe('mx.pref.example.lg.jp');
  });

  it('falls back to SEKISHO_CONFIG, and to the demo configuration without either', () => {
    const file = write('from-env.yaml', GOOD);
    vi.stubEnv('SEKISHO_CONFIG', file);
    expect(loadConfig()).toMatchObject({ file, demo: false });
    vi.stubEnv('SEKISHO_CONFIG', undefined);
    const demo = loadConfig();
    expect(demo).toMatchObject({ file: undefined, demo: true });
    expect(demo.config.tenants[0]!.deliverTo).toBe('smtp://127.0.0.1:2526');
  });

  it('throws SEKISHO_ERR_CONFIG_INVALID listing every error for an invalid file', () => {
    const file = write('sekisho.yaml', GOOD.replace('smtp://10.1.2.3:25', 'http://x').replace('hostname: mx.pref.example.lg.jp\n', ''));
    let err: unknown;
    try {
      loadConfig(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SekishoError);
    expect((err as SekishoError).code).toBe('SEKISHO_ERR_CONFIG_INVALID');
    expect((err as SekishoError).message).toContain(`invalid configuration in ${file}`);
    expect((err as SekishoError).message).toMatch(/hostname: .*\n.*tenants\[0\]\.deliverTo: /);
  });

  // Regression: unreadable files and YAML errors came out as SEKISHO_ERR_CONFIG_INVALID; CONFIG_READ was never used.
  it('throws SEKISHO_ERR_CONFIG_READ for a missing file or bad YAML', () => {
    expect(() => loadConfig(path.join(dir, 'missing.yaml'))).toThrow(expect.objectContaining({ code: 'SEKISHO_ERR_CONFIG_READ' }));
    const bad = write('bad.yaml', 'tenants: [');
    expect(() => loadConfig(bad)).toThrow(expect.objectContaining({ code: 'SEKISHO_ERR_CONFIG_READ' }));
  });
});
