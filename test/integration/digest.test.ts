/**
 * Recipient digests: a held message is listed in its recipient's daily digest, delivered through the pipeline once
 * a day; the signed link files a release request in the recipient's name; a tampered, expired or foreign link
 * does nothing.
 */
import { afterEach, expect, it } from 'vitest';
import { DigestSender, DigestSigner } from '../../src/quarantine/digest.ts';
import { startAdminFor, type AdminUnderTest } from '../helpers/admin.ts';
import { Harness, queuedId } from '../helpers/harness.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
let admin: AdminUnderTest | undefined;
afterEach(async () => {
  await admin?.close();
  await h?.stop();
  admin = undefined;
  h = undefined;
});

it('lists held mail per recipient once a day, and its signed link requests the release', async () => {
  h = await Harness.start({
    config: { admin: { publicUrl: 'https://console.pref.test.lg.jp' } },
    tenantOptions: { 'city-a': { digestHour: 0, block: ['spammer.example'] } },
  });
  admin = await startAdminFor(h);
  const mid = queuedId(await sendRaw(h.port, 'x@spammer.example', ['taro@city-a.example.lg.jp'], simpleMessage({ subject: 'held for the digest' })));
  await h.waitForState(mid, (s, m) => s[0] === 'quarantined' && m === 'done');

  const sender = new DigestSender({ config: h.config, ...h.stores, pipeline: h.ingress.pipeline, signer: admin.ctx.digestSigner!, log: h.log });
  expect(await sender.runDue()).toBe(1);
  expect(await sender.runDue()).toBe(0); // once a day
  await h.sinks.a.waitFor(1);
  const digest = h.sinks.a.messages[0]!;
  expect(digest.to).toEqual(['taro@city-a.example.lg.jp']);
  const text = Buffer.from(digest.raw.toString().split('\r\n\r\n').slice(1).join('').replace(/\s+/g, ''), 'base64').toString('utf8');
  expect(text).toContain('held for the digest');
  const url = new URL(/https:\/\/console\.pref\.test\.lg\.jp\/digest\/request\?\S+/.exec(text)![0]);

  const tampered = new URL(url);
  tampered.searchParams.set('r', 'hanako@city-a.example.lg.jp');
  expect((await admin.app.inject({ method: 'POST', url: `${tampered.pathname}${tampered.search}` })).statusCode).toBe(403);
  // A GET (a mail scanner following the link) only shows the button.
  expect((await admin.app.inject(`${url.pathname}${url.search}`)).statusCode).toBe(200);
  expect((await h.stores.quarantine.get(mid, 'city-a'))!.state).toBe('held');

  const r = await admin.app.inject({ method: 'POST', url: `${url.pathname}${url.search}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'reason=needed' });
  expect(r.statusCode).toBe(200);
  expect(await h.stores.quarantine.get(mid, 'city-a')).toMatchObject({ state: 'release-requested', requestedBy: 'recipient:taro@city-a.example.lg.jp' });
  const audit = await admin.ctx.audit.list({ action: 'quarantine.request' });
  expect(audit.records[0]).toMatchObject({ actor: 'recipient:taro@city-a.example.lg.jp', outcome: 'ok' });
});

it('refuses an expired link', () => {
  const signer = new DigestSigner(Buffer.alloc(32, 7));
  const link = { messageId: 'abcdefgh12', tenantId: 'city-a', recipient: 'a@city-a.example.lg.jp', expires: 1_000 };
  const sig = signer.sign(link);
  expect(signer.verify(link, sig, 999)).toBe(true);
  expect(signer.verify(link, sig, 1_000)).toBe(false);
  expect(signer.verify({ ...link, tenantId: 'town-b' }, sig, 0)).toBe(false);
});
