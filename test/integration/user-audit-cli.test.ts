/**
 * `sekisho user …` and `sekisho audit …` as an operator runs them (node bin/sekisho.js against a config file with
 * a temporary dataDir): accounts made there log in through the same stores the admin app uses, every change is an
 * audit row by `cli:<os user>`, `audit verify` fails on a tampered log and `audit export` can be verified alone.
 */
import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAdminStores } from '../../src/admin/admin-stores.ts';
import { verifyPassword } from '../../src/admin/auth/passwords.ts';
import { totpCode, verifyTotp } from '../../src/admin/auth/totp.ts';
import { AuditChainChecker, type AuditRecord } from '../../src/admin/audit/audit-log.ts';
import { sekishoCommand } from '../helpers/sekisho-process.ts';

const PASSWORD = '関所-correct-horse-2026';
let dir: string;
let configFile: string;
let dataDir: string;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

const sekisho = (args: string[], stdin = ''): Promise<Result> => sekishoCommand([...args, '--config', configFile], stdin);

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-user-cli-'));
  configFile = path.join(dir, 'sekisho.yaml');
  dataDir = path.join(dir, 'var');
  writeFileSync(
    configFile,
    ['hostname: mx.pref.example.lg.jp', 'dataDir: ./var', 'tenants:', '  - id: city-a', '    name: 甲市', '    domains: [city-a.example.lg.jp]', '    deliverTo: smtp://127.0.0.1:25', ''].join('\n'),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('sekisho user / audit', () => {
  it('user add: makes accounts whose password the login path verifies; refuses bad tenants, duplicates and weak passwords', async () => {
    expect(await sekisho(['user', 'add', 'pref-admin', '--role', 'admin', '--password-stdin'], `${PASSWORD}\n`)).toMatchObject({ code: 0, stdout: 'created account pref-admin (admin)\n' });
    // Without --password-stdin and without a TTY, one line of stdin is the password as well.
    const staff = await sekisho(['user', 'add', 'sato', '--role', 'tenant-staff', '--tenant', 'city-a', '--name', '佐藤 花子', '--email', 'sato@city-a.example.lg.jp'], `${PASSWORD}\r\n`);
    expect(staff).toMatchObject({ code: 0, stdout: 'created account sato (tenant-staff, tenant city-a)\n' });

    expect(await sekisho(['user', 'add', 'x', '--role', 'tenant-admin'], `${PASSWORD}\n`)).toMatchObject({ code: 2, stderr: expect.stringContaining('needs --tenant') });
    expect(await sekisho(['user', 'add', 'x', '--role', 'tenant-admin', '--tenant', 'town-b'], `${PASSWORD}\n`)).toMatchObject({ code: 1, stderr: expect.stringContaining('no tenant "town-b"') });
    expect(await sekisho(['user', 'add', 'x', '--role', 'root'], `${PASSWORD}\n`)).toMatchObject({ code: 2, stderr: expect.stringContaining('--role is one of admin, tenant-admin') });
    expect(await sekisho(['user', 'add', 'SATO', '--role', 'auditor'], `${PASSWORD}\n`)).toMatchObject({ code: 1, stderr: expect.stringContaining('SEKISHO_ERR_AUTH_DUPLICATE') });
    expect(await sekisho(['user', 'add', 'weak', '--role', 'auditor'], 'short\n')).toMatchObject({ code: 1, stderr: expect.stringContaining('at least 12 characters') });

    const list = await sekisho(['user', 'list', '--json']);
    expect(list.code).toBe(0);
    expect(list.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)).toEqual([
      { username: 'pref-admin', displayName: 'pref-admin', role: 'admin', tenantId: null, email: null, status: 'active', totp: false, lastLoginAt: null },
      { username: 'sato', displayName: '佐藤 花子', role: 'tenant-staff', tenantId: 'city-a', email: 'sato@city-a.example.lg.jp', status: 'active', totp: false, lastLoginAt: null },
    ]);
    expect(list.stdout).not.toContain('scrypt');

    const stores = openAdminStores({ dataDir });
    try {
      const sato = await stores.accounts.byUsername('sato');
      expect(await verifyPassword(PASSWORD, sato!.passwordHash)).toBe(true);
      const { records } = await stores.audit.list();
      expect(records.map((r) => [r.action, r.target, r.outcome, r.tenantId])).toEqual([
        ['account.create', 'sato', 'ok', 'city-a'],
        ['account.create', 'pref-admin', 'ok', null],
      ]);
      expect(records[0]!.actor).toBe(`cli:${os.userInfo().username}`);
    } finally {
      await stores.close();
    }
  });

  it('user totp / token / disable / passwd: each takes effect in the stores and leaves an audit row', async () => {
    const enrol = await sekisho(['user', 'totp', 'sato']);
    expect(enrol.code).toBe(0);
    const secret = /^secret: ([A-Z2-7]+)$/m.exec(enrol.stdout)?.[1];
    expect(enrol.stdout).toContain(`uri: otpauth://totp/Sekisho:sato%40mx.pref.example.lg.jp?issuer=Sekisho&secret=${secret}`);
    const made = await sekisho(['user', 'token', 'sato', '--name', 'SOC export', '--expires-days', '30']);
    expect(made.code).toBe(0);
    const token = made.stdout.trim().split('\n').at(-1)!;
    expect(token).toMatch(/^skt_/);

    const stores = openAdminStores({ dataDir });
    try {
      const sato = (await stores.accounts.byUsername('sato'))!;
      const now = Date.now();
      expect(await verifyTotp(stores.accounts, sato, totpCode(secret!, now), now)).toBe(true);
      expect((await stores.accounts.verifyToken(token, now))?.account.username).toBe('sato');

      expect(await sekisho(['user', 'disable', 'sato'])).toMatchObject({ code: 0 });
      expect(await stores.accounts.verifyToken(token, now)).toBeUndefined();
      expect((await sekisho(['user', 'list'])).stdout).toMatch(/^sato +tenant-staff +city-a +disabled +yes/m);
      expect(await sekisho(['user', 'enable', 'sato'])).toMatchObject({ code: 0 });
      expect(await sekisho(['user', 'token', 'sato', '--revoke', '1'])).toMatchObject({ code: 0, stdout: 'API token 1 of sato revoked\n' });
      expect(await stores.accounts.verifyToken(token, now)).toBeUndefined();
      expect(await sekisho(['user', 'passwd', 'sato', '--password-stdin'], 'a-brand-new-password\n')).toMatchObject({ code: 0 });
      expect(await verifyPassword('a-brand-new-password', (await stores.accounts.get(sato.id))!.passwordHash)).toBe(true);
      expect(await sekisho(['user', 'passwd', 'nobody', '--password-stdin'], 'a-brand-new-password\n')).toMatchObject({ code: 1, stderr: expect.stringContaining('SEKISHO_ERR_AUTH_NOT_FOUND') });
      expect(await sekisho(['user', 'totp', 'sato', '--disable'])).toMatchObject({ code: 0 });
      expect((await stores.accounts.get(sato.id))?.totpSecret).toBeNull();

      const { records } = await stores.audit.list({ limit: 10 });
      expect(records.slice(0, 7).map((r) => [r.action, r.details, r.outcome]).reverse()).toEqual([
        ['account.totp', { enabled: true }, 'ok'],
        ['token.create', { name: 'SOC export', expiresAt: expect.any(Number) }, 'ok'],
        ['account.disable', {}, 'ok'],
        ['account.enable', {}, 'ok'],
        ['token.revoke', { tokenId: 1 }, 'ok'],
        ['account.password', {}, 'ok'],
        ['account.totp', { enabled: false }, 'ok'],
      ]);
      expect(records.slice(0, 7).every((r) => r.target === 'sato' && r.tenantId === 'city-a')).toBe(true);
    } finally {
      await stores.close();
    }
  });

  it('audit export writes JSON lines a third party verifies; audit verify passes, then fails on an edited row', async () => {
    const out = path.join(dir, 'audit.jsonl');
    const exported = await sekisho(['audit', 'export', '--out', out, '--from', '2020-01-01T00:00:00Z']);
    expect(exported).toMatchObject({ code: 0, stderr: expect.stringMatching(/^exported 9 record\(s\) to /) });
    const records = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditRecord);
    const checker = new AuditChainChecker();
    for (const r of records) checker.push(r);
    expect(checker).toMatchObject({ checked: 9, problems: [] });
    expect((await sekisho(['audit', 'export', '--to', '2020-01-01'])).stdout).toBe('');

    expect(await sekisho(['audit', 'verify'])).toMatchObject({ code: 0, stdout: 'audit log OK: 9 record(s), hash chain and anchor intact\n' });
    const raw = new Database(path.join(dataDir, 'admin.sqlite'));
    try {
      raw.exec(`DROP TRIGGER audit_no_update; UPDATE audit SET actor = 'someone-else' WHERE seq = 2`);
    } finally {
      raw.close();
    }
    const bad = await sekisho(['audit', 'verify']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('seq 2: hash mismatch: the row was edited after it was written\n');
    expect(bad.stderr).toContain('SEKISHO_ERR_AUDIT_CHAIN');
  });
});
