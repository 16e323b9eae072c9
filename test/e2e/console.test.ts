/**
 * The admin console in a real browser (Debian's chromium driven by playwright-core) against the real stack: a
 * Harness with real clamd and Redis, the admin app listening on loopback. Logs in through the form, finds and acts on
 * quarantined mail the way staff do, and proves what the server-side tests cannot: hostile message text stays text
 * in a browser that runs scripts, a form without its CSRF token changes nothing, and a tampered audit row shows.
 * The rule: assert outcomes (page text, sink messages, record states); never sleep for a fixed time.
 */
import Database from 'better-sqlite3';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openAdminStores, ADMIN_DB_FILE, type AdminStores } from '../../src/admin/admin-stores.ts';
import { hashPassword } from '../../src/admin/auth/passwords.ts';
import type { Role } from '../../src/admin/auth/roles.ts';
import { releaseMessageId } from '../../src/quarantine/release.ts';
import { startAdmin } from '../../src/runtime.ts';
import { EICAR } from '../helpers/check-context.ts';
import { startTestClamd, type TestClamd } from '../helpers/clamd.ts';
import { Harness, queuedId } from '../helpers/harness.ts';
import { buildMail, encodedWord } from '../helpers/mail-builder.ts';
import { sendRaw } from '../helpers/raw-smtp.ts';
import { sekishoCommand } from '../helpers/sekisho-process.ts';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`console e2e skipped: ${CHROMIUM} is missing (scripts/ensure-deps.sh test installs it)`);

const PASSWORD = 'correct horse battery staple';
const XSS = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`;

declare global {
  interface Window {
    __pwned?: number;
  }
}

let clamd: TestClamd | undefined;
let h: Harness;
let admin: { port: number; stop(): Promise<void> } | undefined;
let stores: AdminStores | undefined;
let browser: Browser | undefined;
let base: string;
const contexts: BrowserContext[] = [];

async function newContext(): Promise<BrowserContext> {
  const c = await browser!.newContext({ baseURL: base, locale: 'ja-JP', viewport: { width: 1280, height: 800 } });
  contexts.push(c);
  return c;
}

/** Logs `username` in through the form in a fresh browser context; the page is on the overview afterwards. */
async function loginAs(username: string): Promise<Page> {
  const page = await (await newContext()).newPage();
  await page.goto('/console/login');
  await page.getByLabel('ユーザー名').fill(username);
  await page.getByLabel('パスワード').fill(PASSWORD);
  await Promise.all([page.waitForURL(`${base}/console`), page.getByRole('button', { name: 'ログイン' }).click()]);
  return page;
}

async function send(from: string, to: string, raw: Buffer): Promise<string> {
  return queuedId(await sendRaw(h.port, from, [to], raw));
}

function released(subject: string): number {
  return h.sinks.b.messages.filter((m) => {
    const s = m.raw.toString();
    return /^X-Sekisho-Released:/m.test(s) && s.includes(subject);
  }).length;
}

const sekisho = (args: string[]) => sekishoCommand(args);

describe.skipIf(!HAVE_CHROMIUM)('admin console in a browser', () => {
  beforeAll(async () => {
    clamd = await startTestClamd();
    const endpoint = clamd.clamd.endpoint;
    h = await Harness.start({ engines: { clamd: endpoint }, tenantOptions: { 'town-b': { sanitize: true } } });
    admin = await startAdmin(h.config, { stores: h.stores, pipeline: h.ingress.pipeline, metrics: h.ingress.metrics, clamd: endpoint }, h.log);
    base = `http://127.0.0.1:${admin.port}`;
    stores = openAdminStores(h.config);
    const hash = await hashPassword(PASSWORD);
    const users: [string, Role, string | null][] = [
      ['pref', 'admin', null],
      ['a-staff', 'tenant-staff', 'city-a'],
      ['b-admin', 'tenant-admin', 'town-b'],
      ['b-staff', 'tenant-staff', 'town-b'],
    ];
    for (const [username, role, tenantId] of users) await stores.accounts.create({ username, role, tenantId, passwordHash: hash });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 180_000);

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => undefined);
    await browser?.close();
    await stores?.close();
    await admin?.stop();
    await h?.stop();
    await clamd?.cleanup();
  }, 60_000);

  it('logs in through the Japanese form, refuses a wrong password, logs out', async () => {
    const page = await (await newContext()).newPage();
    const first = await page.goto('/console');
    expect(page.url()).toBe(`${base}/console/login?next=%2Fconsole`);
    expect(first?.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(await page.locator('html').getAttribute('lang')).toBe('ja');
    await page.getByLabel('ユーザー名').fill('b-staff');
    await page.getByLabel('パスワード').fill('not the password');
    await page.getByRole('button', { name: 'ログイン' }).click();
    expect(await page.getByRole('alert').textContent()).toBe('ユーザー名またはパスワードが正しくありません。');

    await page.getByLabel('ユーザー名').fill('b-staff');
    await page.getByLabel('パスワード').fill(PASSWORD);
    await Promise.all([page.waitForURL(`${base}/console`), page.getByRole('button', { name: 'ログイン' }).click()]);
    expect(await page.locator('header .who').textContent()).toContain('団体職員');

    await Promise.all([page.waitForURL(/\/console\/login$/), page.getByRole('button', { name: 'ログアウト' }).click()]);
    await page.goto('/console/quarantine');
    expect(page.url()).toMatch(/\/console\/login\?next=/);
  });

  it('EICAR: staff find it, see the virus verdict and warning, have no release button, and a release POST is refused', async () => {
    const subject = 'eicar-invoice-e2e';
    const mid = await send(
      'attacker@example.net',
      'u@city-a.example.lg.jp',
      buildMail({
        from: 'attacker@example.net',
        to: 'u@city-a.example.lg.jp',
        subject,
        text: { body: 'see attached', charset: 'utf-8' },
        attachments: [{ filename: 'invoice.com', contentType: 'application/octet-stream', data: EICAR }],
      }),
    );
    await h.waitForState(mid, (s, m) => s[0] === 'quarantined' && m === 'done');

    const page = await loginAs('a-staff');
    await page.getByRole('link', { name: '隔離メール' }).click();
    await page.locator('form.filters input[name=subject]').fill(subject);
    await page.locator('form.filters button[type=submit]').click();
    await page.waitForURL(/subject=eicar-invoice-e2e/);
    const rows = page.locator('table.list tbody tr');
    expect(await rows.count()).toBe(1);
    await rows.getByRole('link', { name: subject }).click();
    await page.waitForURL(`${base}/console/quarantine/${mid}/city-a`);

    const virusRow = page.locator('table.list tr', { has: page.locator('td.sym', { hasText: /^CLAMAV_VIRUS$/ }) });
    expect(await virusRow.locator('td.num').textContent()).toBe('100');
    expect(await page.locator('p.warn').first().textContent()).toContain('ウイルスが検出されたメールです');
    expect(await page.locator('button[data-step=release], button[data-step=approve]').count()).toBe(0);

    const csrf = await page.locator('input[name=_csrf]').first().inputValue();
    const form = await page.request.post(`/console/quarantine/${mid}/city-a/release`, { form: { _csrf: csrf, reason: 'let me' }, maxRedirects: 0 });
    expect(form.status()).toBe(403);
    const api = await page.request.post(`/api/quarantine/${mid}/city-a/release`, { headers: { 'x-csrf-token': csrf }, data: { reason: 'let me' } });
    expect(api.status()).toBe(403);
    expect((await h.stores.quarantine.get(mid, 'city-a'))!.state).toBe('held');
  });

  it("a sanitizer's original: staff request, the tenant admin approves in another browser, it arrives once", async () => {
    const subject = 'kaigi-shiryo-e2e';
    const mid = await send(
      'partner@example.net',
      'kikaku@town-b.example.lg.jp',
      buildMail({ from: 'partner@example.net', to: 'kikaku@town-b.example.lg.jp', subject, text: { body: '会議資料を送ります。', charset: 'iso-2022-jp' } }),
    );
    await h.waitForState(mid, (_s, m) => m === 'done');
    const detail = `${base}/console/quarantine/${mid}/town-b`;

    const staff = await loginAs('b-staff');
    await staff.goto(detail);
    expect(await staff.locator('button[data-step=approve]').count()).toBe(0);
    await staff.locator('form.step', { has: staff.locator('button[data-step=request]') }).locator('input[name=reason]').fill('添付の原本が必要です');
    await Promise.all([staff.waitForURL(/\?done=request$/), staff.locator('button[data-step=request]').click()]);
    expect(await staff.locator('.badge').first().textContent()).toBe('解除申請中');

    const tadmin = await loginAs('b-admin');
    await tadmin.getByRole('link', { name: '承認待ち' }).click();
    await tadmin.getByRole('link', { name: subject }).click();
    await tadmin.waitForURL(detail);
    await tadmin.locator('form.step', { has: tadmin.locator('button[data-step=approve]') }).locator('input[name=reason]').fill('確認しました');
    await Promise.all([tadmin.waitForURL(/\?done=approve$/), tadmin.getByRole('button', { name: '承認して解除' }).click()]);
    expect(await tadmin.locator('.badge').first().textContent()).toBe('解除済み');
    const rid = releaseMessageId({ messageId: mid, tenantId: 'town-b' });
    await h.waitForState(rid, (_s, m) => m === 'done');
    expect(released(subject)).toBe(1);

    // A second approval: the reloaded page offers no button, and a replayed POST is refused.
    await tadmin.reload();
    expect(await tadmin.locator('button[data-step=approve]').count()).toBe(0);
    const csrf = await tadmin.locator('input[name=_csrf]').first().inputValue();
    const again = await tadmin.request.post(`/console/quarantine/${mid}/town-b/approve`, { form: { _csrf: csrf, reason: 'again' }, maxRedirects: 0 });
    expect(again.status()).toBe(409);
    await h.waitForState(rid, (_s, m) => m === 'done');
    expect(released(subject)).toBe(1);
  });

  it('XSS: hostile subject, display name, file name and bodies stay text on the list, detail and tracking pages', async () => {
    const mid = await send(
      'xss@example.net',
      'kikaku@town-b.example.lg.jp',
      buildMail({
        from: `${encodedWord(XSS, 'utf-8')} <xss@example.net>`,
        to: 'kikaku@town-b.example.lg.jp',
        subject: XSS,
        text: { body: `text ${XSS}`, charset: 'utf-8' },
        html: { body: `<p>html</p>${XSS}`, charset: 'utf-8' },
        attachments: [{ filename: `${XSS}.txt`, contentType: 'text/plain', data: Buffer.from('hello') }],
      }),
    );
    await h.waitForState(mid, (_s, m) => m === 'done');

    const page = await loginAs('b-staff');
    const requests: string[] = [];
    const dialogs: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    const pages = [`/console/quarantine?subject=${encodeURIComponent('window.__pwned')}`, `/console/quarantine/${mid}/town-b`, `/console/tracking/${mid}`];
    for (const url of pages) {
      const res = await page.goto(url);
      expect(res?.status(), url).toBe(200);
      expect(res?.headers()['content-security-policy'], url).toMatch(/default-src 'self'.*script-src 'self'/);
      expect(await page.evaluate(() => window.__pwned), url).toBeUndefined();
      expect(await page.locator('img').count(), url).toBe(0);
      expect(await page.locator('main').innerText(), url).toContain(XSS);
    }
    expect(await page.locator('main script').count()).toBe(0);
    // On the detail page's preview: the display name, the file name and both bodies, as text.
    await page.goto(`/console/quarantine/${mid}/town-b`);
    const text = await page.locator('main').innerText();
    expect(text).toContain(`${XSS}.txt`);
    expect(await page.locator('table.kv td', { hasText: '<xss@example.net>' }).first().textContent()).toContain(XSS);
    expect(await page.locator('pre.preview').textContent()).toContain('window.__pwned=1');
    expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
    expect(dialogs).toEqual([]);
    expect(requests.filter((u) => !u.startsWith(`${base}/`))).toEqual([]);
    expect(requests.filter((u) => new URL(u).pathname.endsWith('/x'))).toEqual([]);
  });

  it('CSRF: a console form without its _csrf field is refused and changes nothing', async () => {
    const mid = await send(
      'partner@example.net',
      'kikaku@town-b.example.lg.jp',
      buildMail({ from: 'partner@example.net', to: 'kikaku@town-b.example.lg.jp', subject: 'csrf-e2e', text: { body: '本文', charset: 'utf-8' } }),
    );
    await h.waitForState(mid, (_s, m) => m === 'done');
    const page = await loginAs('b-staff');
    await page.goto(`/console/quarantine/${mid}/town-b`);
    const form = page.locator('form.step', { has: page.locator('button[data-step=request]') });
    await form.locator('input[name=reason]').fill('no token');
    await form.evaluate((f) => f.querySelector('input[name=_csrf]')?.remove());
    expect(await form.locator('input[name=_csrf]').count()).toBe(0);
    const [res] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), form.locator('button').click()]);
    expect(res.status()).toBe(403);
    expect((await h.stores.quarantine.get(mid, 'town-b'))!.state).toBe('held');
    const { records } = await stores!.audit.list({ action: 'quarantine.request', limit: 100 });
    expect(records.filter((r) => r.target?.includes(mid))).toEqual([]);
  });

  it('the queue dashboard renders under its own CSP; every other page keeps the strict one', async () => {
    const page = await loginAs('pref');
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const res = await page.goto('/console/queues');
    expect(res?.headers()['content-security-policy']).toMatch(/script-src 'self';.*base-uri 'self'/);
    await page.getByText('deliver', { exact: true }).first().waitFor();
    expect(errors).toEqual([]);
    const strict = await page.goto('/console/quarantine');
    expect(strict?.headers()['content-security-policy']).toMatch(/style-src 'self';.*base-uri 'none'/);
  });

  it('audit: an edited row fails `sekisho audit verify` and shows red on the audit page', async () => {
    const configFile = path.join(h.dataDir, 'e2e-sekisho.yaml');
    const tenants = h.config.tenants.map((t) => ({ id: t.id, name: t.name, domains: [...t.domains], deliverTo: 'smtp://127.0.0.1:25' }));
    writeFileSync(configFile, [`hostname: ${h.config.hostname}`, `dataDir: ${JSON.stringify(h.dataDir)}`, `tenants: ${JSON.stringify(tenants)}`, ''].join('\n'));
    const before = await sekisho(['audit', 'verify', '--config', configFile]);
    expect(before, before.stderr).toMatchObject({ code: 0, stdout: expect.stringContaining('audit log OK') });

    const db = new Database(path.join(h.dataDir, ADMIN_DB_FILE));
    try {
      db.exec('DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;');
      const row = db.prepare("SELECT seq FROM audit WHERE action = 'quarantine.request' ORDER BY seq LIMIT 1").get() as { seq: number } | undefined;
      expect(row).toBeDefined();
      expect(db.prepare('UPDATE audit SET reason = ? WHERE seq = ?').run('書き換えた理由', row!.seq).changes).toBe(1);
    } finally {
      db.close();
    }
    const after = await sekisho(['audit', 'verify', '--config', configFile]);
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('SEKISHO_ERR_AUDIT_CHAIN');

    const page = await loginAs('pref');
    await page.getByRole('link', { name: '監査ログ' }).click();
    await page.waitForURL(/\/console\/audit$/);
    await page.getByRole('link', { name: /検証/ }).click();
    await page.waitForURL(/verify=1/);
    const alert = page.locator('main div.error[role=alert]');
    expect(await alert.textContent()).toContain('監査ログの検証に失敗しました');
    expect(await alert.evaluate((el) => getComputedStyle(el).color)).toBe('rgb(179, 38, 30)');
  });
});
