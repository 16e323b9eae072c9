/**
 * `sekisho check-config FILE` as an operator runs it: the real command in a child process. Exit 0 and a short
 * OK line for a good file; exit 1 and every error with its key path on stderr otherwise.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';

const BIN = fileURLToPath(new URL('../../../bin/sekisho.js', import.meta.url));
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-check-config-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function sekisho(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { env: { ...process.env, SEKISHO_CONFIG: '' } }, (_err, stdout, stderr) =>
      resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

it('a good file: exit 0 and an OK line', async () => {
  const file = write(
    'good.yaml',
    'hostname: mx.pref.example.lg.jp\ntenants:\n  - id: city-a\n    name: "甲市"\n    domains: ["city-a.example.lg.jp"]\n    deliverTo: "smtp://10.1.2.3:25"\n',
  );
  const r = await sekisho(['check-config', file]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toBe(`${file}: OK (1 tenant(s))\n`);
});

it('a broken file: exit 1 and every error with its key path on stderr', async () => {
  const file = write(
    'broken.yaml',
    `hostname: mx.pref.example.lg.jp
smtp:
  listen: "127.0.0.1:70000"
  maxMesageBytes: 1000
tenants:
  - id: city-a
    name: "甲市"
    domains: ["city-a.example.lg.jp"]
    deliverTo: "smtp://10.1.2.3:25"
  - id: city-a
    name: "乙市"
    domains: ["town-b.example.lg.jp"]
    deliverTo: "smtp://"
`,
  );
  const r = await sekisho(['check-config', file]);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[0]).toBe(`${file}: 4 error(s)`);
  expect(lines.slice(1)).toEqual([
    '  smtp.listen: port must be 0-65535',
    '  smtp.maxMesageBytes: unknown key (did you mean "maxMessageBytes"?)',
    expect.stringMatching(/^ {2}tenants\[1\]\.deliverTo: must be smtp:\/\/host/),
    '  tenants[1].id: duplicate tenant id "city-a"',
  ]);
});

it('a file that does not exist: exit 1 and a clear message', async () => {
  const file = path.join(dir, 'missing.yaml');
  const r = await sekisho(['check-config', file]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`\\(file\\): cannot read ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`));
});

it('invalid YAML: exit 1 and a message that says so, with the line', async () => {
  const file = write('bad.yaml', 'hostname: mx\ntenants:\n  - id: [unclosed\n');
  const r = await sekisho(['check-config', file]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/^ {2}\(file\): .*bad\.yaml is not valid YAML: .* at line 4, column 1\n$/m);
});

it('no file named: usage and exit 2', async () => {
  const r = await sekisho(['check-config']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/usage: sekisho check-config FILE/);
});
