/**
 * Makes the admin console's screenshots in docs/img/console-*.png, so they can be made again after a change to the
 * console: `npx tsx scripts/make-console-screenshots.ts`. Everything is real: a private redis-server and clamd, the
 * ingress, the worker (with the sanitizer for 乙町) and the admin app on loopback ports, Japanese demo mail sent over
 * SMTP, Debian's chromium driven by playwright-core. Nothing leaves 127.0.0.1; the temporary directory is removed.
 * Needs chromium, clamav, redis-server, LibreOffice and fonts-noto-cjk (the Debian packages).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { openAdminStores } from '../src/admin/admin-stores.ts';
import { hashPassword } from '../src/admin/auth/passwords.ts';
import type { Role } from '../src/admin/auth/roles.ts';
import { validateConfig } from '../src/config/load.ts';
import type { Config } from '../src/config/schema.ts';
import { createLogger } from '../src/log.ts';
import { closeStores, openStores, startAdmin, startIngress, startWorker, type Stores } from '../src/runtime.ts';
import { PROJECT_SIGNATURE_DIR } from '../src/services/clamd.ts';
import { startManagedRedis } from '../src/services/redis-server.ts';
import { EICAR } from '../test/helpers/check-context.ts';
import { startTestClamd } from '../test/helpers/clamd.ts';
import { buildMail, encodedWord, type Attachment } from '../test/helpers/mail-builder.ts';
import { flatSpreadsheet, flatText, saveAs } from '../test/helpers/office-docs.ts';
import { sendRaw } from '../test/helpers/raw-smtp.ts';
import { SmtpSink } from '../test/helpers/smtp-sink.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const IMG_DIR = path.join(ROOT, 'docs', 'img');
const FIXTURES = path.join(ROOT, 'fixtures', 'mails');
const CHROMIUM = '/usr/bin/chromium';
const VIEWPORT = { width: 1280, height: 800 };
const PASSWORD = 'demo-password-for-screenshots';
/** A demo message that has not been handled by then is a broken stack, not a slow one. */
const MESSAGE_DONE_TIMEOUT_MS = 120_000;
const POLL_MS = 200;

interface Demo {
  from: string;
  to: string;
  raw: Buffer;
}

const mail = (from: string, name: string, to: string, subject: string, body: string, attachments: Attachment[] = []): Demo => ({
  from,
  to,
  raw: buildMail({ from: `${encodedWord(name, 'iso-2022-jp')} <${from}>`, to, subject: encodedWord(subject, 'iso-2022-jp'), text: { body, charset: 'iso-2022-jp' }, attachments }),
});

const fixture = (name: string, from: string, to: string): Demo => ({ from, to, raw: readFileSync(path.join(FIXTURES, name)) });

async function officeDocs(dir: string): Promise<{ docx: Buffer; xlsx: Buffer; pdf: Buffer }> {
  writeFileSync(path.join(dir, 'src.fodt'), flatText(2));
  writeFileSync(path.join(dir, 'src.fods'), flatSpreadsheet(1, 12));
  const out = (ext: string) => path.join(dir, `doc.${ext}`);
  await saveAs(dir, [
    [path.join(dir, 'src.fodt'), out('docx'), 'MS Word 2007 XML', ''],
    [path.join(dir, 'src.fods'), out('xlsx'), 'Calc MS Excel 2007 XML', ''],
    [path.join(dir, 'src.fodt'), out('pdf'), 'writer_pdf_Export', ''],
  ]);
  return { docx: readFileSync(out('docx')), xlsx: readFileSync(out('xlsx')), pdf: readFileSync(out('pdf')) };
}

function demoMail(docs: { docx: Buffer; xlsx: Buffer; pdf: Buffer }): Demo[] {
  const A = 'soumu@city-a.example.lg.jp';
  const B = 'kikaku@town-b.example.lg.jp';
  const DOCX = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';
  const XLSX = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
  return [
    mail('keiri@kensetsu-example.co.jp', '株式会社見本建設 経理部', A, '【請求書】12月分のご請求について', 'いつもお世話になっております。\n12月分の請求書を添付いたします。ご確認ください。', [
      { filename: '請求書_2026年12月.exe', contentType: 'application/octet-stream', data: EICAR },
    ]),
    fixture('spam-ja-spoof-city-iso-2022-jp.eml', 'kaikei@city-a.exarnple.lg.jp', A),
    fixture('spam-ja-redelivery-shift-jis.eml', 'info@kuroneko-yamato.delivery-check.example', 'soumu@town-b.example.lg.jp'),
    fixture('av-ppap-encrypted-zip.eml', 'sender@example.com', A),
    fixture('mime-lnk-iso-one.eml', 'sender@example.com', A),
    fixture('mime-clean-japanese.eml', 'hanako@pref.example.lg.jp', A),
    mail('tanaka@consult-example.co.jp', 'ミホン総研 田中', B, '会議資料の送付（第3回 地域交通検討会）', '乙町 企画課 御中\n\n第3回検討会の会議資料をお送りします。\n当日はよろしくお願いいたします。', [
      { filename: '第3回検討会_会議資料.docx', contentType: DOCX, data: docs.docx },
      { filename: '参考資料_交通量調査.pdf', contentType: 'application/pdf', data: docs.pdf },
    ]),
    mail('suzuki@printing-example.co.jp', 'ミホン印刷 鈴木', B, '【見積書】広報誌 1月号の印刷について', '企画課 ご担当者様\n\n広報誌1月号の印刷費のお見積りを添付いたします。', [
      { filename: '御見積書_広報誌1月号.xlsx', contentType: XLSX, data: docs.xlsx },
    ]),
    mail('sato@pref.example.lg.jp', '県 情報政策課 佐藤', B, '情報セキュリティ研修のご案内', '各市町村 情報担当者様\n\n来月の情報セキュリティ研修のご案内です。出欠を今月末までにご返信ください。'),
    mail('yamada@ngo-example.or.jp', 'NPO法人ミホン 山田', 'jumin@town-b.example.lg.jp', 'イベント後援名義の申請について', '乙町 住民課 御中\n\n後援名義使用の申請書を送付いたします。', [
      { filename: '後援名義使用申請書.pdf', contentType: 'application/pdf', data: docs.pdf },
    ]),
    mail('kobayashi@school-example.ed.jp', '見本小学校 小林', A, '学校行事の日程について', '総務課 御中\n\n2月の学校行事の日程をお知らせします。'),
    mail('support@bank-example.co.jp', 'ミホン銀行', A, '【重要】お客様情報の確認のお願い', 'お客様の口座に不審なアクセスがありました。\n24時間以内に本人確認をお願いします。\nhttps://bit.ly/3xmihon'),
  ];
}

async function waitDone(stores: Stores, mid: string): Promise<void> {
  const deadline = Date.now() + MESSAGE_DONE_TIMEOUT_MS;
  while ((await stores.meta.getMessage(mid))?.state !== 'done') {
    if (Date.now() > deadline) throw new Error(`demo message ${mid} was not handled in time`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function login(browser: Browser, base: string, username: string): Promise<Page> {
  const ctx = await browser.newContext({ baseURL: base, locale: 'ja-JP', viewport: VIEWPORT, deviceScaleFactor: 1 });
  const page = watch(await ctx.newPage());
  await page.goto('/console/login');
  await page.getByLabel('ユーザー名').fill(username);
  await page.getByLabel('パスワード').fill(PASSWORD);
  await Promise.all([page.waitForURL(`${base}/console`), page.getByRole('button', { name: 'ログイン' }).click()]);
  return page;
}

/** Browser errors of the pages shot (a CSP refusal, a failed load): a picture of a broken page is worse than none. */
const pageErrors: string[] = [];

function watch(page: Page): Page {
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on('requestfailed', (r) => pageErrors.push(`${page.url()}: ${r.url()} ${r.failure()?.errorText ?? ''}`));
  page.on('response', (r) => {
    if (r.status() >= 400) pageErrors.push(`${page.url()}: ${r.url()} ${r.status()}`);
  });
  return page;
}

async function shot(page: Page, name: string, fullPage = true): Promise<void> {
  await page.waitForLoadState('networkidle');
  await page.screenshot({ path: path.join(IMG_DIR, `console-${name}.png`), fullPage });
  console.log(`wrote docs/img/console-${name}.png`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-screenshots-'));
  const log = createLogger('warn');
  const stops: (() => Promise<unknown>)[] = [];
  try {
    mkdirSync(path.join(dir, 'redis'));
    const redis = await startManagedRedis({ dir: path.join(dir, 'redis') });
    stops.unshift(() => redis.stop());
    const clamd = await startTestClamd();
    stops.unshift(() => clamd.cleanup());
    const sinks = { a: new SmtpSink(), b: new SmtpSink(), outbound: new SmtpSink() };
    for (const s of Object.values(sinks)) {
      await s.start();
      stops.unshift(() => s.close());
    }
    const checked = validateConfig({
      hostname: 'mx.pref.example.lg.jp',
      smtp: { listen: '127.0.0.1:0' },
      redis: { url: redis.url, prefix: 'screenshots' },
      dataDir: path.join(dir, 'data'),
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'warn' },
      delivery: { outboundRelay: sinks.outbound.url },
      tenants: [
        { id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: sinks.a.url },
        { id: 'town-b', name: '乙町', domains: ['town-b.example.lg.jp'], deliverTo: sinks.b.url, sanitize: true },
      ],
    });
    if (!checked.ok) throw new Error(`bad demo config: ${JSON.stringify(checked.issues)}`);
    const config: Config = checked.config;
    mkdirSync(config.dataDir, { recursive: true });
    const stores = openStores(config);
    stops.unshift(() => closeStores(stores));
    const ingress = await startIngress(config, { redisUrl: redis.url, log, stores });
    stops.unshift(() => ingress.stop());
    const worker = await startWorker(config, { redisUrl: redis.url, engines: { clamd: clamd.clamd.endpoint }, log, stores });
    stops.unshift(() => worker.stop());
    const admin = await startAdmin(
      config,
      { stores, pipeline: ingress.pipeline, metrics: ingress.metrics, clamd: clamd.clamd.endpoint, clamdDatabaseDirs: [clamd.databaseDir, PROJECT_SIGNATURE_DIR] },
      log,
    );
    stops.unshift(() => admin.stop());
    const base = `http://127.0.0.1:${admin.port}`;

    const accounts = openAdminStores(config);
    stops.unshift(() => accounts.close());
    const hash = await hashPassword(PASSWORD);
    const people: [string, string, Role, string | null][] = [
      ['yamada', '山田 太郎（県 情報政策課）', 'admin', null],
      ['kikaku-staff', '高橋 由美（乙町 企画課）', 'tenant-staff', 'town-b'],
      ['b-admin', '伊藤 健一（乙町 総務課）', 'tenant-admin', 'town-b'],
    ];
    for (const [username, displayName, role, tenantId] of people) await accounts.accounts.create({ username, displayName, role, tenantId, passwordHash: hash });

    const docs = await officeDocs(dir);
    const ids: string[] = [];
    for (const m of demoMail(docs)) {
      const reply = await sendRaw(ingress.port, m.from, [m.to], m.raw);
      const id = /queued as ([0-9a-z]+)/.exec(reply)?.[1];
      if (!id) throw new Error(`demo mail refused: ${reply}`);
      ids.push(id);
    }
    for (const id of ids) await waitDone(stores, id);
    const [eicarId, , , , , , meetingId] = ids;

    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    stops.unshift(() => browser.close());
    mkdirSync(IMG_DIR, { recursive: true });

    const anon = await (await browser.newContext({ baseURL: base, locale: 'ja-JP', viewport: VIEWPORT })).newPage();
    await anon.goto('/console/login');
    await shot(anon, 'login', false);

    // One release request by the town's staff, for the approvals page.
    const staff = await login(browser, base, 'kikaku-staff');
    await staff.goto(`/console/quarantine/${meetingId}/town-b`);
    const request = staff.locator('form.step', { has: staff.locator('button[data-step=request]') });
    await request.locator('input[name=reason]').fill('添付の会議資料を原本の書式のまま編集する必要があるため');
    await Promise.all([staff.waitForURL(/done=request/), request.locator('button').click()]);

    const page = await login(browser, base, 'yamada');
    await shot(page, 'overview');
    await page.goto('/console/quarantine');
    await shot(page, 'quarantine');
    await page.goto(`/console/quarantine/${eicarId}/city-a`);
    await shot(page, 'detail');
    await page.goto('/console/approvals');
    await shot(page, 'approvals');
    await page.goto(`/console/tracking/${meetingId}`);
    await shot(page, 'tracking');
    await page.goto('/console/audit');
    await shot(page, 'audit', false);
    await page.goto('/console/queues');
    await shot(page, 'queues', false);
    if (pageErrors.length) console.warn(`browser errors on the pages shot:\n  ${pageErrors.join('\n  ')}`);
  } finally {
    for (const stop of stops) await stop().catch((err: unknown) => console.error(err));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
