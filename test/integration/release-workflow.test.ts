/**
 * The release workflow end to end through the API, with real clamd, Redis and SMTP sinks: a sanitized message's
 * original is requested by staff, approved by the tenant admin and arrives once at the tenant's server; malware is
 * released only by a prefecture admin's override; double clicks and racing approvers release once; tenant users
 * never see, count or act on another tenant's records; every step is in a verifying audit log.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { releaseMessageId } from '../../src/quarantine/release.ts';
import { startAdminFor, type AdminUnderTest } from '../helpers/admin.ts';
import { EICAR } from '../helpers/check-context.ts';
import { startTestClamd, type TestClamd } from '../helpers/clamd.ts';
import { Harness, queuedId } from '../helpers/harness.ts';
import { buildMail } from '../helpers/mail-builder.ts';
import { sendRaw } from '../helpers/raw-smtp.ts';

let clamd: TestClamd;
let h: Harness | undefined;
let admin: AdminUnderTest | undefined;

beforeAll(async () => {
  clamd = await startTestClamd();
}, 180_000);
afterAll(async () => clamd?.cleanup());
afterEach(async () => {
  await admin?.close();
  await h?.stop();
  admin = undefined;
  h = undefined;
});

async function setUp(): Promise<{ h: Harness; admin: AdminUnderTest }> {
  h = await Harness.start({ engines: { clamd: clamd.clamd.endpoint }, tenantOptions: { 'town-b': { sanitize: true } } });
  admin = await startAdminFor(h, { clamd: clamd.clamd.endpoint });
  await admin.addUser('pref', 'admin');
  await admin.addUser('a-admin', 'tenant-admin', 'city-a');
  await admin.addUser('a-staff', 'tenant-staff', 'city-a');
  await admin.addUser('b-admin', 'tenant-admin', 'town-b');
  await admin.addUser('b-staff', 'tenant-staff', 'town-b');
  return { h, admin };
}

const textMail = (subject: string) =>
  buildMail({ from: 'partner@example.net', to: 'kikaku@town-b.example.lg.jp', subject, text: { body: '会議資料を送ります。', charset: 'iso-2022-jp' } });

const eicarMail = () =>
  buildMail({
    from: 'attacker@example.net',
    to: 'u@city-a.example.lg.jp',
    subject: 'invoice',
    text: { body: 'see attached', charset: 'utf-8' },
    attachments: [{ filename: 'invoice.com', contentType: 'application/octet-stream', data: EICAR }],
  });

describe('release workflow', () => {
  it('staff request, tenant admin approves: the original arrives once, with the release marked; audited', async () => {
    const { h, admin } = await setUp();
    const mid = queuedId(await sendRaw(h.port, 'partner@example.net', ['kikaku@town-b.example.lg.jp'], textMail('original please')));
    await h.waitForState(mid, (_s, m) => m === 'done');
    await h.sinks.b.waitFor(1);
    expect(h.sinks.b.messages[0]!.raw.toString()).toMatch(/X-Sekisho-Sanitized/);

    const staff = await admin.login('b-staff');
    const list = await staff.get('/api/quarantine');
    expect(list.json()).toMatchObject({ total: 1, records: [{ messageId: mid, tenantId: 'town-b', kind: 'original', state: 'held' }] });
    const detail = (await staff.get(`/api/quarantine/${mid}/town-b`)).json();
    expect(detail.steps).toEqual(['request']);
    // The preview was made in the worker: decoded headers and the body as text.
    expect(detail.preview.text).toContain('会議資料を送ります。');
    expect(detail.preview.headers).toEqual(expect.arrayContaining([{ name: 'subject', value: 'original please' }]));

    expect((await staff.post(`/api/quarantine/${mid}/town-b/approve`, { reason: 'self' })).statusCode).toBe(403);
    expect((await staff.post(`/api/quarantine/${mid}/town-b/request`, { reason: '添付の原本が必要' })).json()).toMatchObject({ ok: true });
    // The requester's own tenant admin approves; the same person could not.
    const tadmin = await admin.login('b-admin');
    const approvals = (await tadmin.get('/api/approvals')).json();
    expect(approvals.records.map((r: { messageId: string }) => r.messageId)).toEqual([mid]);
    const approved = await tadmin.post(`/api/quarantine/${mid}/town-b/approve`, { reason: 'OK' });
    expect(approved.statusCode).toBe(200);
    expect(approved.json().result).toMatchObject({ state: 'released', decidedBy: 'b-admin', releaseMessageId: releaseMessageId({ messageId: mid, tenantId: 'town-b' }) });

    await h.sinks.b.waitFor(2);
    const released = h.sinks.b.messages[1]!;
    expect(released.to).toEqual(['kikaku@town-b.example.lg.jp']);
    expect(released.raw.toString()).toMatch(/^X-Sekisho-Released: released from quarantine/m);
    expect(released.raw.toString()).not.toMatch(/X-Sekisho-Sanitized/);
    // A second click finds the record released: nothing more is sent.
    expect((await tadmin.post(`/api/quarantine/${mid}/town-b/approve`, { reason: 'again' })).statusCode).toBe(409);
    const rid = releaseMessageId({ messageId: mid, tenantId: 'town-b' });
    await h.waitForState(rid, (_s, m) => m === 'done');
    expect(h.sinks.b.messages).toHaveLength(2);

    const pref = await admin.login('pref');
    const audit = (await pref.get('/api/audit?limit=50')).json();
    const actions = audit.records.map((r: { action: string; outcome: string }) => `${r.action}:${r.outcome}`);
    expect(actions).toEqual(expect.arrayContaining(['quarantine.request:ok', 'quarantine.approve:ok', 'quarantine.release:ok', 'quarantine.approve:denied', 'login:ok']));
    expect((await pref.get('/api/audit/verify')).json()).toMatchObject({ ok: true });
  });

  it('malware: tenant admins cannot release it; a prefecture admin only with an override reason', async () => {
    const { h, admin } = await setUp();
    const mid = queuedId(await sendRaw(h.port, 'attacker@example.net', ['u@city-a.example.lg.jp'], eicarMail()));
    await h.waitForState(mid, (s, m) => s[0] === 'quarantined' && m === 'done');
    const staff = await admin.login('a-staff');
    const rec = (await staff.get(`/api/quarantine/${mid}/city-a`)).json();
    expect(rec.record.symbols).toContain('CLAMAV_VIRUS');
    expect(rec.verdict.find((v: { name: string }) => v.name === 'CLAMAV_VIRUS')).toMatchObject({ score: 100, group: 'antivirus' });
    expect((await staff.post(`/api/quarantine/${mid}/city-a/release`, {})).statusCode).toBe(403);
    await staff.post(`/api/quarantine/${mid}/city-a/request`, { reason: 'I need it' });
    const tadmin = await admin.login('a-admin');
    const refused = await tadmin.post(`/api/quarantine/${mid}/city-a/approve`, { reason: 'ok?' });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'SEKISHO_ERR_QUARANTINE_RESCAN' });
    expect(refused.json().found.join()).toMatch(/Eicar/i);

    const pref = await admin.login('pref');
    expect((await pref.post(`/api/quarantine/${mid}/city-a/release`, { reason: 'x' })).statusCode).toBe(409);
    const ok = await pref.post(`/api/quarantine/${mid}/city-a/release`, { reason: 'vendor confirmed', override: 'false positive: test signature' });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().result).toMatchObject({ state: 'released', overrideReason: 'false positive: test signature' });
    await h.sinks.a.waitFor(1);
    const audit = (await pref.get('/api/audit?action=quarantine.release-override')).json();
    expect(audit.records[0]).toMatchObject({ actor: 'pref', outcome: 'ok', tenantId: 'city-a' });
    expect(h.sinks.a.messages).toHaveLength(1);
  });

  it('two admins releasing at once, and a bulk release of the same record, deliver it once', async () => {
    const { h, admin } = await setUp();
    const mid = queuedId(await sendRaw(h.port, 'partner@example.net', ['kikaku@town-b.example.lg.jp'], textMail('race')));
    await h.waitForState(mid, (_s, m) => m === 'done');
    await admin.addUser('pref2', 'admin');
    const [p1, p2] = [await admin.login('pref'), await admin.login('pref2')];
    const results = await Promise.all([
      p1.post(`/api/quarantine/${mid}/town-b/release`, { reason: 'one' }),
      p2.post(`/api/quarantine/${mid}/town-b/release`, { reason: 'two' }),
      p1.post('/api/quarantine/bulk', { step: 'release', items: [{ messageId: mid, tenantId: 'town-b' }], reason: 'bulk' }),
    ]);
    const released = results.filter((r) => r.statusCode === 200 && (r.json().ok || r.json().done === 1));
    expect(released).toHaveLength(1);
    const rid = releaseMessageId({ messageId: mid, tenantId: 'town-b' });
    await h.waitForState(rid, (_s, m) => m === 'done');
    expect(h.sinks.b.messages.filter((m) => /X-Sekisho-Released/.test(m.raw.toString()))).toHaveLength(1);
  });

  it('tenant isolation: another tenant id in the path, the query or a bulk selection reads, counts and changes nothing', async () => {
    const { h, admin } = await setUp();
    const mid = queuedId(await sendRaw(h.port, 'partner@example.net', ['kikaku@town-b.example.lg.jp'], textMail('town-b only')));
    await h.waitForState(mid, (_s, m) => m === 'done');
    for (const user of ['a-staff', 'a-admin']) {
      const c = await admin.login(user);
      expect((await c.get(`/api/quarantine/${mid}/town-b`)).statusCode).toBe(404);
      expect((await c.get('/api/quarantine')).json()).toMatchObject({ total: 0, records: [] });
      expect((await c.get('/api/quarantine?tenant=town-b')).json()).toMatchObject({ total: 0 });
      expect((await c.get(`/api/quarantine?recipient=kikaku@town-b.example.lg.jp`)).json()).toMatchObject({ total: 0 });
      expect(Object.values((await c.get('/api/quarantine/counts?tenant=town-b')).json()).every((n) => n === 0)).toBe(true);
      expect((await c.post(`/api/quarantine/${mid}/town-b/request`, { reason: 'x' })).statusCode).toBe(404);
      const bulk = (await c.post('/api/quarantine/bulk', { step: 'request', items: [{ messageId: mid, tenantId: 'town-b' }] })).json();
      expect(bulk).toMatchObject({ done: 0, refused: 1 });
      // Staff may not download at all (403 whatever the id); the other tenant's admin finds no such record.
      expect((await c.get(`/api/quarantine/${mid}/town-b/original.eml`)).statusCode).toBe(user === 'a-staff' ? 403 : 404);
      expect((await c.get(`/api/messages/${mid}`)).statusCode).toBe(404);
      expect((await c.get(`/api/messages?id=${mid}`)).json()).toMatchObject({ total: 0 });
    }
    expect((await h.stores.quarantine.get(mid, 'town-b'))!.state).toBe('held');
    // The owning tenant sees it.
    const b = await admin.login('b-staff');
    expect((await b.get(`/api/messages?id=${mid}`)).json()).toMatchObject({ total: 1 });
  });

  it('refuses a state change without the CSRF token, and one from another origin', async () => {
    const { h, admin } = await setUp();
    const mid = queuedId(await sendRaw(h.port, 'partner@example.net', ['kikaku@town-b.example.lg.jp'], textMail('csrf')));
    await h.waitForState(mid, (_s, m) => m === 'done');
    const staff = await admin.login('b-staff');
    expect((await staff.post(`/api/quarantine/${mid}/town-b/request`, { reason: 'x' }, { csrf: false })).statusCode).toBe(403);
    expect((await staff.post(`/console/quarantine/${mid}/town-b/request`, { reason: 'x' }, { csrf: false, form: true })).statusCode).toBe(403);
    const cross = await admin.app.inject({
      method: 'POST',
      url: `/api/quarantine/${mid}/town-b/request`,
      headers: { cookie: staff.cookie, 'x-csrf-token': staff.csrf, origin: 'https://evil.example', host: 'localhost:80' },
      payload: { reason: 'x' },
    });
    expect(cross.statusCode).toBe(403);
    expect((await h.stores.quarantine.get(mid, 'town-b'))!.state).toBe('held');
    // With the token, the console form works.
    const ok = await staff.post(`/console/quarantine/${mid}/town-b/request`, { reason: '必要' }, { form: true });
    expect(ok.statusCode).toBe(302);
    expect((await h.stores.quarantine.get(mid, 'town-b'))!.state).toBe('release-requested');
  });
});
