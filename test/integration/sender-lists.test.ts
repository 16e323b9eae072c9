/**
 * Allow and block list entries added from the console (SenderListStore), through the pipeline: once the worker's
 * TenantLists has reloaded, a blocked sender's next message is held as a config block-list entry would hold it, an
 * allowed sender's suspicious message is delivered untagged, and removing the entries undoes both.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { NewSenderListEntry } from '../../src/policy/sender-list-store.ts';
import { Harness, queuedId } from '../helpers/harness.ts';
import { buildMail } from '../helpers/mail-builder.ts';
import { sendRaw } from '../helpers/raw-smtp.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

/** Scores 9 with the structure check alone (as in policy-marks.test.ts): delivered tagged (tag 5, quarantine 10). */
function suspicious(): Buffer {
  const raw = buildMail({ subject: 'invoice', attachments: [{ filename: 'invoice.pdf.exe', contentType: 'application/octet-stream', data: Buffer.from('x') }] });
  return Buffer.from(raw.toString('latin1').replace(/^Date: [^\r]*\r\n/m, ''), 'latin1');
}

function consoleEntry(list: 'allow' | 'block', pattern: string): NewSenderListEntry {
  return { tenantId: 'city-a', list, pattern, addedBy: 'admin-a', reason: null, at: Date.now() };
}

describe('sender lists changed from the console', () => {
  it('a block entry holds the next message of that sender, an allow entry skips the thresholds; removing them undoes both', async () => {
    h = await Harness.start();
    const lists = h.stores.senderLists;
    const block = await lists.add(consoleEntry('block', 'Spammer.Example'));
    const allow = await lists.add(consoleEntry('allow', 'partner.example'));
    await h.worker!.senderLists.refresh();

    const blocked = queuedId(await sendRaw(h.port, 'x@spammer.example', ['u@city-a.example.lg.jp'], buildMail({ from: 'x@spammer.example' })));
    await h.waitForState(blocked, (s, m) => m === 'done' && s[0] === 'quarantined');
    expect((await h.stores.meta.getRecipients(blocked))[0]?.response).toContain('sender matches spammer.example on the block list of city-a');
    // Town-b's lists are its own: the same sender reaches it.
    const other = queuedId(await sendRaw(h.port, 'x@spammer.example', ['u@town-b.example.lg.jp'], buildMail({ from: 'x@spammer.example' })));
    await h.waitForState(other, (s) => s[0] === 'delivered');

    const allowed = queuedId(await sendRaw(h.port, 'y@partner.example', ['u@city-a.example.lg.jp'], suspicious()));
    await h.waitForState(allowed, (s) => s[0] === 'delivered');
    expect(h.sinks.a.messages.at(-1)!.raw.toString('latin1')).toMatch(/^X-Spam-Score: 9\r\nX-Spam-Status: No, score=9/);

    expect(await lists.remove(block.id, 'admin-b')).toBe(true);
    expect(await lists.remove(allow.id, 'admin-b')).toBe(true);
    await h.worker!.senderLists.refresh();

    const unblocked = queuedId(await sendRaw(h.port, 'x@spammer.example', ['u@city-a.example.lg.jp'], buildMail({ from: 'x@spammer.example' })));
    await h.waitForState(unblocked, (s) => s[0] === 'delivered');
    const tagged = queuedId(await sendRaw(h.port, 'y@partner.example', ['u@city-a.example.lg.jp'], suspicious()));
    await h.waitForState(tagged, (s) => s[0] === 'delivered');
    expect(h.sinks.a.messages.at(-1)!.raw.toString('latin1')).toMatch(/^X-Spam-Score: 9\r\nX-Spam-Status: Yes, score=9/);
  });
});
