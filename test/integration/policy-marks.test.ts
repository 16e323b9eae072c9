/**
 * What policy puts on delivered mail and what the tenants' lists do, through the pipeline: X-Spam-Score/Status on
 * delivered mail, the subject tag on tagged mail (in any charset, the original subject kept), the block list holding
 * a sender, the allow list letting one through its score.
 */
import { simpleParser } from 'mailparser';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, queuedId } from '../helpers/harness.ts';
import { buildMail, encodeText } from '../helpers/mail-builder.ts';
import { sendRaw } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

/**
 * Scores 9 with the structure check alone — MIME_DOUBLE_EXTENSION (4), MIME_EXECUTABLE_ATTACHMENT (4),
 * HEADER_MISSING_DATE (1) — so it is delivered tagged (tag 5, quarantine 10).
 */
function suspicious(): Buffer {
  const subject = `=?ISO-2022-JP?B?${encodeText('請求書の件', 'iso-2022-jp').toString('base64')}?=`;
  const raw = buildMail({ subject, text: { body: 'ご確認ください。', charset: 'iso-2022-jp' }, attachments: [{ filename: 'invoice.pdf.exe', contentType: 'application/octet-stream', data: Buffer.from('x') }] });
  return Buffer.from(raw.toString('latin1').replace(/^Date: [^\r]*\r\n/m, ''), 'latin1');
}

describe('policy marks and sender lists', () => {
  it('tags the subject of mail delivered tagged and adds X-Spam-Status: Yes; clean mail gets X-Spam-Status: No', async () => {
    h = await Harness.start({ config: { policy: { subjectTag: '【迷惑メール】' } } });
    await sendRaw(h.port, 'sender@example.net', ['u@city-a.example.lg.jp'], suspicious());
    await sendRaw(h.port, 'sender@example.net', ['u@city-a.example.lg.jp'], buildMail({ subject: 'clean', text: { body: '本文', charset: 'utf-8' } }));
    const got = await h.sinks.a.waitFor(2);
    const unfold = (b: Buffer) => b.toString('latin1').replace(/\r\n[ \t]+/g, ' ');
    const byHead = await Promise.all(got.map(async (m) => ({ raw: unfold(m.raw), parsed: await simpleParser(m.raw) })));
    const tagged = byHead.find((m) => m.parsed.subject?.includes('請求書'))!;
    expect(tagged.parsed.subject).toBe('【迷惑メール】請求書の件');
    expect(tagged.raw).toMatch(/^X-Spam-Score: 9\r\nX-Spam-Status: Yes, score=9 required=5 tests=HEADER_MISSING_DATE, MIME_DOUBLE_EXTENSION, MIME_EXECUTABLE_ATTACHMENT\r\n/);
    const clean = byHead.find((m) => m.parsed.subject === 'clean')!;
    expect(clean.raw).toMatch(/^X-Spam-Score: 0\r\nX-Spam-Status: No, score=0 required=5 tests=none\r\n/);
  });

  it('holds mail from a blocked sender and lets an allowed one through its score', async () => {
    h = await Harness.start({ tenantOptions: { 'city-a': { block: ['bad.example'], allow: ['partner.example'] } } });
    const blocked = queuedId(await sendRaw(h.port, 'x@bad.example', ['u@city-a.example.lg.jp'], buildMail({ from: 'x@bad.example' })));
    await h.waitForState(blocked, (s, m) => m === 'done' && s[0] === 'quarantined');
    const [r] = await h.stores.meta.getRecipients(blocked);
    expect(r?.response).toContain('sender matches bad.example on the block list of city-a');

    const allowed = queuedId(await sendRaw(h.port, 'y@partner.example', ['u@city-a.example.lg.jp'], suspicious()));
    await h.waitForState(allowed, (s) => s[0] === 'delivered');
    // Delivered as it is (not tagged) although it scores 9.
    expect(h.sinks.a.messages[0]!.raw.toString('latin1')).toMatch(/^X-Spam-Score: 9\r\nX-Spam-Status: No, score=9/);
  });
});
