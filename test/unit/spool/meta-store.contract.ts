/**
 * The MetaStore contract (DESIGN §5, STYLE rule 6): every driver's test file calls describeMetaStoreContract
 * with a factory for a fresh, empty store that takes its clock from `now` (so `updatedAt` is asserted exactly,
 * never against the wall clock). Covers the message and recipient lifecycles of meta-store.ts, atomicity of
 * inserts and recipient patches, ordering and paging of the lists, and counting; the console's delivery-attempt
 * history, message search and action counts, and that a tenant scope never reaches another tenant's messages.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Action } from '../../../src/config/schema.ts';
import {
  DEFAULT_FIND_LIMIT,
  MAX_ACTION_BUCKETS,
  MAX_FIND_LIMIT,
  monotonicMs,
  messageStates,
  type AttemptOutcome,
  type MessageQuery,
  type MessageState,
  type MetaStore,
  type NewAttempt,
} from '../../../src/spool/meta-store.ts';
import type { StoredVerdict } from '../../../src/spool/stored-verdict.ts';
import { newMessage, T0 } from '../../helpers/new-message.ts';

const emptyVerdict: StoredVerdict = { symbols: [], unlistedSymbols: [], failedChecks: [], durationsMs: {}, decisions: {}, scannedAt: T0 };

/** A delivery attempt at T0 to a downstream server. */
function tried(outcome: AttemptOutcome, response: string): NewAttempt {
  return { at: T0, outcome, response, remote: 'mx.example.lg.jp:25' };
}

export interface MetaStoreFixture {
  store: MetaStore;
  cleanup(): Promise<void>;
}

export interface MetaStoreFactoryOptions {
  /** The clock the store must use for `updatedAt`. */
  now: () => number;
}

export function describeMetaStoreContract(
  name: string,
  make: (opts: MetaStoreFactoryOptions) => Promise<MetaStoreFixture>,
): void {
  describe(`MetaStore contract: ${name}`, () => {
    let fx: MetaStoreFixture;
    let store: MetaStore;
    let clock: number;
    beforeEach(async () => {
      clock = T0 + 5_000;
      fx = await make({ now: () => clock });
      store = fx.store;
    });
    afterEach(async () => {
      await store.close();
      await fx.cleanup();
    });

    /** Inserts messages received at T0 + i seconds, in the given states. */
    async function seed(states: MessageState[]): Promise<string[]> {
      const ids: string[] = [];
      for (const [i, state] of states.entries()) {
        const msg = newMessage({ receivedAt: T0 + i * 1000 });
        await store.insertMessage(msg);
        if (state !== 'received') await store.updateMessage(msg.id, { state });
        ids.push(msg.id);
      }
      return ids;
    }

    describe('insertMessage / getMessage / getRecipients', () => {
      it('stores every field, starts in received with no verdict, recipients pending in the given order', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const { recipients, ...fields } = msg;
        expect(await store.getMessage(msg.id)).toEqual({
          ...fields,
          state: 'received',
          verdict: null,
          attempts: 0,
          lastError: null,
          updatedAt: clock,
        });
        expect(await store.getRecipients(msg.id)).toEqual(
          recipients.map((r) => ({
            messageId: msg.id,
            address: r.address,
            tenantId: r.tenantId,
            state: 'pending',
            action: null,
            attempts: 0,
            response: null,
            nextAttemptAt: null,
            delayNoticeSent: false,
            updatedAt: clock,
          })),
        );
      });

      it('keeps the null sender as "" and absent values as null', async () => {
        const msg = newMessage({ origin: 'dsn', mailFrom: '', tls: null, headerMessageId: null, subject: null });
        await store.insertMessage(msg);
        expect(await store.getMessage(msg.id)).toMatchObject({
          origin: 'dsn',
          mailFrom: '',
          tls: null,
          headerMessageId: null,
          subject: null,
        });
      });

      it('keeps recipient order for many recipients, and a recipient given twice once', async () => {
        const addresses = Array.from({ length: 30 }, (_, i) => `user${(i * 7) % 30}@city-a.example.lg.jp`);
        const msg = newMessage({
          recipients: [...addresses, addresses[3]!].map((address) => ({ address, tenantId: 'city-a' })),
        });
        await store.insertMessage(msg);
        expect((await store.getRecipients(msg.id)).map((r) => r.address)).toEqual(addresses);
      });

      it('returns undefined and [] for an unknown id', async () => {
        expect(await store.getMessage('unknown00')).toBeUndefined();
        expect(await store.getRecipients('unknown00')).toEqual([]);
      });

      it('rejects a duplicate id with SEKISHO_ERR_META_DUPLICATE and leaves the first message untouched', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const before = { message: await store.getMessage(msg.id), recipients: await store.getRecipients(msg.id) };
        clock += 1000;
        const dup = newMessage({
          id: msg.id,
          subject: 'other',
          recipients: [{ address: 'someone-else@city-c.example.lg.jp', tenantId: 'city-c' }],
        });
        await expect(store.insertMessage(dup)).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_DUPLICATE' });
        expect({ message: await store.getMessage(msg.id), recipients: await store.getRecipients(msg.id) }).toEqual(before);
      });
    });

    describe('updateMessage', () => {
      it('walks received → delivering → done, setting updatedAt on every update', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        for (const state of ['delivering', 'done'] as const) {
          clock += 1000;
          await store.updateMessage(msg.id, { state });
          expect(await store.getMessage(msg.id)).toMatchObject({ state, updatedAt: clock });
        }
      });

      it('moves a message to failed with its error and counted attempts, and to rejected', async () => {
        const [a, b] = await seed(['received', 'received']);
        await store.updateMessage(a!, { countAttempt: true, lastError: 'worker crashed' });
        await store.updateMessage(a!, { countAttempt: true, lastError: 'scan timed out', state: 'failed' });
        expect(await store.getMessage(a!)).toMatchObject({ state: 'failed', attempts: 2, lastError: 'scan timed out' });
        await store.updateMessage(b!, { state: 'rejected' });
        expect(await store.getMessage(b!)).toMatchObject({ state: 'rejected', attempts: 0, lastError: null });
      });

      it('stores the verdict, replaces it, clears it with null', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const verdict: StoredVerdict = {
          symbols: [{ name: 'CLAMAV_VIRUS', details: ['Eicar-Test-Signature'] }, { name: 'HEADER_MISSING_DATE' }],
          unlistedSymbols: [{ name: 'SANDBOX_FAIL', details: ['添付ファイルを解析できません'] }],
          failedChecks: ['sandbox'],
          durationsMs: { clamav: 12, sandbox: 30_000 },
          decisions: {
            'city-a': { action: 'reject', score: 112.5, reasons: ['CLAMAV_VIRUS(Eicar-Test-Signature) forces reject'] },
            'town-b': { action: 'sanitize', score: -1, reasons: [] },
          },
          scannedAt: T0 + 1,
        };
        await store.updateMessage(msg.id, { verdict });
        expect((await store.getMessage(msg.id))?.verdict).toEqual(verdict);
        await store.updateMessage(msg.id, { verdict: emptyVerdict });
        expect((await store.getMessage(msg.id))?.verdict).toEqual(emptyVerdict);
        await store.updateMessage(msg.id, { verdict: null });
        expect((await store.getMessage(msg.id))?.verdict).toBeNull();
      });

      it('changes only the patched fields; an empty patch only sets updatedAt; lastError clears with null', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        await store.updateMessage(msg.id, { state: 'delivering', verdict: emptyVerdict, lastError: 'x', countAttempt: true });
        const before = await store.getMessage(msg.id);
        clock += 1000;
        await store.updateMessage(msg.id, {});
        expect(await store.getMessage(msg.id)).toEqual({ ...before, updatedAt: clock });
        await store.updateMessage(msg.id, { lastError: null });
        expect(await store.getMessage(msg.id)).toEqual({ ...before, lastError: null, updatedAt: clock });
      });

      it('rejects an unknown id with SEKISHO_ERR_META_NOT_FOUND', async () => {
        await expect(store.updateMessage('unknown00', { state: 'done' })).rejects.toMatchObject({
          code: 'SEKISHO_ERR_META_NOT_FOUND',
        });
      });
    });

    describe('updateRecipients', () => {
      it('walks one recipient pending → deferred → delivered, leaving the others alone', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const [taro, hanako] = msg.recipients.map((r) => r.address);
        clock += 1000;
        await store.updateRecipients(msg.id, [taro!], {
          state: 'deferred',
          action: 'deliver',
          response: '451 4.3.0 try later',
          nextAttemptAt: clock + 60_000,
          countAttempt: true,
        });
        const deferredAt = clock;
        expect(await store.getRecipients(msg.id)).toEqual([
          expect.objectContaining({
            address: taro,
            state: 'deferred',
            action: 'deliver',
            response: '451 4.3.0 try later',
            nextAttemptAt: deferredAt + 60_000,
            attempts: 1,
            delayNoticeSent: false,
            updatedAt: deferredAt,
          }),
          expect.objectContaining({ address: hanako, state: 'pending', attempts: 0, action: null, updatedAt: T0 + 5_000 }),
        ]);

        clock += 60_000;
        await store.updateRecipients(msg.id, [taro!], { delayNoticeSent: true });
        clock += 1000;
        await store.updateRecipients(msg.id, [taro!], {
          state: 'delivered',
          response: '250 2.0.0 Ok',
          nextAttemptAt: null,
          countAttempt: true,
        });
        expect((await store.getRecipients(msg.id))[0]).toEqual({
          messageId: msg.id,
          address: taro,
          tenantId: 'city-a',
          state: 'delivered',
          action: 'deliver',
          attempts: 2,
          response: '250 2.0.0 Ok',
          nextAttemptAt: null,
          delayNoticeSent: true,
          updatedAt: clock,
        });
      });

      it('reaches every final state: bounced, quarantined, rejected', async () => {
        const msg = newMessage({
          recipients: ['a', 'b', 'c'].map((u) => ({ address: `${u}@city-a.example.lg.jp`, tenantId: 'city-a' })),
        });
        await store.insertMessage(msg);
        await store.updateRecipients(msg.id, ['a@city-a.example.lg.jp'], { state: 'bounced', response: '550 5.1.1 no such user' });
        await store.updateRecipients(msg.id, ['b@city-a.example.lg.jp'], { state: 'quarantined', action: 'quarantine' });
        await store.updateRecipients(msg.id, ['c@city-a.example.lg.jp'], { state: 'rejected', action: 'reject' });
        expect((await store.getRecipients(msg.id)).map((r) => [r.state, r.action, r.response])).toEqual([
          ['bounced', null, '550 5.1.1 no such user'],
          ['quarantined', 'quarantine', null],
          ['rejected', 'reject', null],
        ]);
      });

      it('patches every recipient when addresses is undefined; delayNoticeSent goes back to false', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        await store.updateRecipients(msg.id, undefined, { action: 'sanitize', delayNoticeSent: true, countAttempt: true });
        clock += 1000;
        await store.updateRecipients(msg.id, undefined, { delayNoticeSent: false });
        for (const r of await store.getRecipients(msg.id)) {
          expect(r).toMatchObject({ action: 'sanitize', delayNoticeSent: false, attempts: 1, state: 'pending', updatedAt: clock });
        }
      });

      it('does not touch the same address in another message', async () => {
        const a = newMessage();
        const b = newMessage();
        await store.insertMessage(a);
        await store.insertMessage(b);
        await store.updateRecipients(a.id, [a.recipients[0]!.address], { state: 'delivered' });
        await store.updateRecipients(a.id, undefined, { action: 'deliver' });
        expect((await store.getRecipients(b.id)).map((r) => [r.state, r.action])).toEqual([
          ['pending', null],
          ['pending', null],
        ]);
      });

      it('rejects an unknown recipient with SEKISHO_ERR_META_NOT_FOUND and changes none of the named ones', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const before = await store.getRecipients(msg.id);
        clock += 1000;
        await expect(
          store.updateRecipients(msg.id, [msg.recipients[0]!.address, 'nobody@city-a.example.lg.jp'], { state: 'delivered' }),
        ).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
        expect(await store.getRecipients(msg.id)).toEqual(before);
      });

      it('rejects an unknown message with SEKISHO_ERR_META_NOT_FOUND', async () => {
        await expect(store.updateRecipients('unknown00', undefined, { state: 'delivered' })).rejects.toMatchObject({
          code: 'SEKISHO_ERR_META_NOT_FOUND',
        });
        await expect(store.updateRecipients('unknown00', ['x@y'], { state: 'delivered' })).rejects.toMatchObject({
          code: 'SEKISHO_ERR_META_NOT_FOUND',
        });
      });

      it('accepts an empty address list as a no-op', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const before = await store.getRecipients(msg.id);
        await store.updateRecipients(msg.id, [], { state: 'delivered' });
        expect(await store.getRecipients(msg.id)).toEqual(before);
      });
    });

    describe('update (several patches in one transaction)', () => {
      it('applies recipient patches in order and then the message patch', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const [taro, hanako] = msg.recipients.map((r) => r.address);
        clock += 1000;
        await store.update(msg.id, {
          recipients: [
            { patch: { action: 'deliver', state: 'pending' } },
            { addresses: [taro!], patch: { state: 'delivered', response: '250 2.0.0 Ok', countAttempt: true } },
            { addresses: [hanako!], patch: { state: 'quarantined', action: 'quarantine', response: 'held' } },
          ],
          message: { state: 'delivering', verdict: emptyVerdict },
        });
        const rcpts = await store.getRecipients(msg.id);
        expect(rcpts.map((r) => [r.address, r.state, r.action, r.response, r.attempts, r.updatedAt])).toEqual([
          [taro, 'delivered', 'deliver', '250 2.0.0 Ok', 1, clock],
          [hanako, 'quarantined', 'quarantine', 'held', 0, clock],
        ]);
        const m = await store.getMessage(msg.id);
        expect([m?.state, m?.verdict, m?.updatedAt]).toEqual(['delivering', emptyVerdict, clock]);
      });

      it('changes nothing when one recipient is unknown, or the message is', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const before = [await store.getMessage(msg.id), await store.getRecipients(msg.id)];
        clock += 1000;
        await expect(
          store.update(msg.id, {
            recipients: [
              { addresses: [msg.recipients[0]!.address], patch: { state: 'delivered' } },
              { addresses: ['nobody@city-a.example.lg.jp'], patch: { state: 'delivered' } },
            ],
            message: { state: 'done' },
          }),
        ).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
        expect([await store.getMessage(msg.id), await store.getRecipients(msg.id)]).toEqual(before);
        await expect(store.update('unknown00', { message: { state: 'done' } })).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
        await expect(store.update('unknown00', {})).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
      });

      it('applies a durable change as any other (and a failing one changes nothing)', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        clock += 1000;
        await store.update(msg.id, { recipients: [{ patch: { state: 'rejected', action: 'reject' } }], message: { state: 'rejected' }, durable: true });
        expect((await store.getMessage(msg.id))?.state).toBe('rejected');
        expect((await store.getRecipients(msg.id)).map((r) => r.state)).toEqual(['rejected', 'rejected']);
        await expect(store.update('unknown00', { message: { state: 'done' }, durable: true })).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
      });
    });

    describe('lists and counts', () => {
      it('listUnfinished returns received and delivering messages only, oldest first, in pages', async () => {
        const ids = await seed(['delivering', 'done', 'received', 'failed', 'received', 'rejected', 'delivering']);
        // Inserted in the reverse order of reception: the order must come from receivedAt, not insertion.
        const early = newMessage({ receivedAt: T0 - 1000 });
        await store.insertMessage(early);
        const expected = [early.id, ids[0], ids[2], ids[4], ids[6]];
        expect((await store.listUnfinished()).map((m) => m.id)).toEqual(expected);
        expect((await store.listUnfinished({ limit: 2 })).map((m) => m.id)).toEqual(expected.slice(0, 2));
        expect((await store.listUnfinished({ limit: 2, offset: 2 })).map((m) => m.id)).toEqual(expected.slice(2, 4));
        expect((await store.listUnfinished({ limit: 2, offset: 4 })).map((m) => m.id)).toEqual(expected.slice(4));
        expect(await store.listUnfinished({ offset: 5 })).toEqual([]);
        expect((await store.listUnfinished())[1]).toEqual(await store.getMessage(ids[0]!));
      });

      it('listByState returns one state, newest first, in disjoint pages that cover it', async () => {
        const states: MessageState[] = Array.from({ length: 25 }, (_, i) => (i % 3 === 0 ? 'done' : 'failed'));
        const ids = await seed(states);
        const failedNewestFirst = ids.filter((_, i) => states[i] === 'failed').reverse();
        const pages: string[][] = [];
        for (let offset = 0; ; offset += 4) {
          const rows = await store.listByState('failed', { limit: 4, offset });
          if (rows.length === 0) break;
          expect(rows.every((r) => r.state === 'failed')).toBe(true);
          pages.push(rows.map((r) => r.id));
        }
        expect(pages.flat()).toEqual(failedNewestFirst);
        expect(pages.slice(0, -1).every((p) => p.length === 4)).toBe(true);
        expect((await store.listByState('failed')).map((m) => m.id)).toEqual(failedNewestFirst);
        expect(await store.listByState('delivering')).toEqual([]);
      });

      it('breaks ties of receivedAt by id (ascending for listUnfinished, descending for listByState), stable across pages', async () => {
        // Inserted out of id order, so neither insertion order nor chance can pass for the tie-break.
        const ids = ['m0000005', 'm0000002', 'm0000006', 'm0000001', 'm0000004', 'm0000003'];
        for (const id of ids) await store.insertMessage(newMessage({ id, receivedAt: T0 }));
        const ascending = [...ids].sort();
        expect((await store.listUnfinished()).map((m) => m.id)).toEqual(ascending);
        const paged = [
          ...(await store.listUnfinished({ limit: 3 })),
          ...(await store.listUnfinished({ limit: 3, offset: 3 })),
        ].map((m) => m.id);
        expect(paged).toEqual(ascending);
        expect((await store.listByState('received', { limit: 4 })).map((m) => m.id)).toEqual(
          [...ascending].reverse().slice(0, 4),
        );
      });

      it('countByState has every state, 0 when none', async () => {
        const zero = Object.fromEntries(messageStates.map((s) => [s, 0]));
        expect(await store.countByState()).toEqual(zero);
        await seed(['received', 'delivering', 'delivering', 'done', 'failed', 'failed', 'failed']);
        expect(await store.countByState()).toEqual({ ...zero, received: 1, delivering: 2, done: 1, failed: 3 });
      });
    });

    describe('deleteMessage', () => {
      it('removes the message and its recipients; the id can be used again; an unknown id is no error', async () => {
        const msg = newMessage();
        const other = newMessage();
        await store.insertMessage(msg);
        await store.insertMessage(other);
        await store.deleteMessage(msg.id);
        expect(await store.getMessage(msg.id)).toBeUndefined();
        expect(await store.getRecipients(msg.id)).toEqual([]);
        expect(await store.getRecipients(other.id)).toHaveLength(2);
        expect((await store.countByState()).received).toBe(1);
        await store.deleteMessage(msg.id);
        await store.insertMessage(msg);
        expect(await store.getRecipients(msg.id)).toHaveLength(2);
      });

      it('removes the delivery attempts with the message', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        await store.updateRecipients(msg.id, undefined, { state: 'deferred', attempt: tried('deferred', '451 4.3.0 later') });
        expect(await store.getAttempts(msg.id)).toHaveLength(2);
        await store.deleteMessage(msg.id);
        expect(await store.getAttempts(msg.id)).toEqual([]);
        await store.insertMessage(msg);
        expect(await store.getAttempts(msg.id)).toEqual([]);
      });
    });

    describe('delivery attempts', () => {
      it('records an attempt with its recipient patch, through updateRecipients and update, oldest first', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const [taro, hanako] = msg.recipients.map((r) => r.address);
        await store.updateRecipients(msg.id, [taro!], {
          state: 'deferred',
          response: '451 4.3.0 try later',
          countAttempt: true,
          attempt: { at: T0 + 10_000, outcome: 'deferred', response: '451 4.3.0 try later', remote: 'mx.city-a.example:25', durationMs: 12.4 },
        });
        await store.update(msg.id, {
          recipients: [
            { addresses: [taro!], patch: { state: 'delivered', attempt: { at: T0 + 70_000, outcome: 'delivered', response: '250 2.0.0 Ok', remote: 'mx.city-a.example:25' } } },
            // Recorded after, but attempted before the others: the order is `at`'s.
            { addresses: [hanako!], patch: { state: 'bounced', attempt: { at: T0 + 1_000, outcome: 'bounced', response: '550 5.1.1 no such user', remote: '' } } },
          ],
        });
        expect(await store.getAttempts(msg.id)).toEqual([
          { messageId: msg.id, address: hanako, tenantId: 'city-b', at: T0 + 1_000, outcome: 'bounced', response: '550 5.1.1 no such user', remote: '', durationMs: null },
          { messageId: msg.id, address: taro, tenantId: 'city-a', at: T0 + 10_000, outcome: 'deferred', response: '451 4.3.0 try later', remote: 'mx.city-a.example:25', durationMs: 12 },
          { messageId: msg.id, address: taro, tenantId: 'city-a', at: T0 + 70_000, outcome: 'delivered', response: '250 2.0.0 Ok', remote: 'mx.city-a.example:25', durationMs: null },
        ]);
        expect((await store.getRecipients(msg.id)).map((r) => [r.state, r.attempts])).toEqual([['delivered', 1], ['bounced', 0]]);
      });

      it('records one attempt per recipient the patch applies to, in recipient order; none without `attempt`', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        await store.updateRecipients(msg.id, undefined, { action: 'deliver' });
        expect(await store.getAttempts(msg.id)).toEqual([]);
        await store.updateRecipients(msg.id, undefined, { state: 'deferred', attempt: tried('deferred', '421 4.4.2 timeout') });
        const attempts = await store.getAttempts(msg.id);
        expect(attempts.map((a) => [a.address, a.tenantId, a.outcome])).toEqual(msg.recipients.map((r) => [r.address, r.tenantId, 'deferred']));
        expect(await store.getAttempts('unknown00')).toEqual([]);
      });

      it('keeps ties of `at` in the order recorded, and each message its own', async () => {
        const msg = newMessage();
        const other = newMessage();
        await store.insertMessage(msg);
        await store.insertMessage(other);
        const taro = msg.recipients[0]!.address;
        for (const response of ['451 first', '451 second', '250 third']) {
          await store.updateRecipients(msg.id, [taro], { attempt: tried('deferred', response) });
        }
        await store.updateRecipients(other.id, [taro], { attempt: tried('delivered', '250 other') });
        expect((await store.getAttempts(msg.id)).map((a) => a.response)).toEqual(['451 first', '451 second', '250 third']);
        expect((await store.getAttempts(other.id)).map((a) => a.response)).toEqual(['250 other']);
      });

      it('records no attempt of a change that fails', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        await expect(
          store.update(msg.id, {
            recipients: [
              { addresses: [msg.recipients[0]!.address], patch: { state: 'delivered', attempt: tried('delivered', '250 ok') } },
              { addresses: ['nobody@city-a.example.lg.jp'], patch: { state: 'delivered', attempt: tried('delivered', '250 ok') } },
            ],
          }),
        ).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
        await expect(
          store.updateRecipients(msg.id, ['nobody@city-a.example.lg.jp'], { attempt: tried('bounced', '550 no') }),
        ).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
        expect(await store.getAttempts(msg.id)).toEqual([]);
      });
    });

    describe('markDelivered', () => {
      it('marks the named recipients delivered with their attempt, ahead of writes queued before it', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        const [taro, hanako] = msg.recipients.map((r) => r.address);
        const queued = store.updateRecipients(msg.id, [hanako!], { state: 'deferred', response: '451 later' });
        const before = monotonicMs();
        const committedAt = await store.markDelivered(msg.id, [taro!], {
          response: '250 2.0.0 Ok',
          nextAttemptAt: null,
          countAttempt: true,
          attempt: tried('delivered', '250 2.0.0 Ok'),
        });
        await queued;
        expect(committedAt).toBeGreaterThanOrEqual(before);
        expect((await store.getRecipients(msg.id)).map((r) => [r.state, r.response, r.attempts])).toEqual([
          ['delivered', '250 2.0.0 Ok', 1],
          ['deferred', '451 later', 0],
        ]);
        expect((await store.getAttempts(msg.id)).map((a) => [a.address, a.outcome])).toEqual([[taro, 'delivered']]);
      });

      it('rejects an unknown message or recipient, changing nothing', async () => {
        const msg = newMessage();
        await store.insertMessage(msg);
        await expect(store.markDelivered('unknown00', ['x@y'], {})).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
        await expect(
          store.markDelivered(msg.id, [msg.recipients[0]!.address, 'nobody@city-a.example.lg.jp'], { attempt: tried('delivered', '250 ok') }),
        ).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_NOT_FOUND' });
        expect((await store.getRecipients(msg.id)).map((r) => r.state)).toEqual(['pending', 'pending']);
        expect(await store.getAttempts(msg.id)).toEqual([]);
      });
    });

    describe('findMessages', () => {
      const city = (tenant: string, user = 'user') => ({ address: `${user}@${tenant}.example.lg.jp`, tenantId: tenant });
      /** Four messages a second apart, T0 … T0 + 3 s: a (city-a), b (city-b), ab (both), c (city-c). */
      async function seedTracking() {
        const a = newMessage({ receivedAt: T0, mailFrom: 'alice@example.net', headerMessageId: '<a@example.net>', recipients: [city('city-a', 'taro')] });
        const b = newMessage({ receivedAt: T0 + 1000, mailFrom: 'Bob@Example.ORG', headerMessageId: 'b@example.org', recipients: [city('city-b', 'hanako')] });
        const ab = newMessage({ receivedAt: T0 + 2000, mailFrom: 'news_letter@example.com', headerMessageId: null, recipients: [city('city-a', 'taro'), city('city-b', 'jiro')] });
        const c = newMessage({ receivedAt: T0 + 3000, mailFrom: '', recipients: [city('city-c', 'Saburo')] });
        for (const m of [c, a, ab, b]) await store.insertMessage(m);
        return { a: a.id, b: b.id, ab: ab.id, c: c.id };
      }
      async function ids(q: MessageQuery): Promise<string[]> {
        return (await store.findMessages(q)).messages.map((m) => m.id);
      }

      it('returns every message newest first with the total, as getMessage has them', async () => {
        const { a, b, ab, c } = await seedTracking();
        const page = await store.findMessages({});
        expect(page.messages.map((m) => m.id)).toEqual([c, ab, b, a]);
        expect(page.total).toBe(4);
        expect(page.messages[3]).toEqual(await store.getMessage(a));
      });

      it('finds by id, and by header Message-ID with or without its angle brackets', async () => {
        const { a, b } = await seedTracking();
        expect(await ids({ id: b })).toEqual([b]);
        expect(await ids({ id: 'unknown00' })).toEqual([]);
        for (const headerMessageId of ['<a@example.net>', 'a@example.net', ' <a@example.net> ']) expect(await ids({ headerMessageId })).toEqual([a]);
        for (const headerMessageId of ['<b@example.org>', 'b@example.org']) expect(await ids({ headerMessageId })).toEqual([b]);
        expect(await ids({ headerMessageId: 'a@example' })).toEqual([]);
      });

      it('finds the envelope sender by case-insensitive substring, wildcards taken literally', async () => {
        const { a, b, ab } = await seedTracking();
        expect(await ids({ mailFrom: 'bob@example.org' })).toEqual([b]);
        expect(await ids({ mailFrom: 'EXAMPLE' })).toEqual([ab, b, a]);
        expect(await ids({ mailFrom: '_' })).toEqual([ab]);
        expect(await ids({ mailFrom: '%' })).toEqual([]);
        expect(await ids({ mailFrom: 'news\\' })).toEqual([]);
      });

      it('finds a recipient by exact address, case-insensitive', async () => {
        const { a, ab, c } = await seedTracking();
        expect(await ids({ recipient: 'TARO@City-A.example.lg.jp' })).toEqual([ab, a]);
        expect(await ids({ recipient: 'saburo@city-c.example.lg.jp' })).toEqual([c]);
        expect(await ids({ recipient: 'taro@city-a' })).toEqual([]);
      });

      it('scopes to tenants: only messages with a recipient of theirs; [] matches nothing', async () => {
        const { a, b, ab, c } = await seedTracking();
        expect(await store.findMessages({ tenantIds: ['city-a'] })).toMatchObject({ total: 2 });
        expect(await ids({ tenantIds: ['city-a'] })).toEqual([ab, a]);
        expect(await ids({ tenantIds: ['city-b', 'city-c'] })).toEqual([c, ab, b]);
        expect(await ids({ tenantIds: ['city-z'] })).toEqual([]);
        expect(await store.findMessages({ tenantIds: [] })).toEqual({ messages: [], total: 0 });
        expect(await store.findMessages({ tenantIds: [], id: a })).toEqual({ messages: [], total: 0 });
        // Another tenant's message stays out of reach by every other filter.
        expect(await ids({ tenantIds: ['city-a'], id: b })).toEqual([]);
        expect(await ids({ tenantIds: ['city-a'], mailFrom: 'bob' })).toEqual([]);
        expect(await ids({ tenantIds: ['city-a'], headerMessageId: 'b@example.org' })).toEqual([]);
      });

      it("with a scope, finds only the scope's recipients (not another tenant's on a shared message)", async () => {
        const { ab } = await seedTracking();
        expect(await ids({ recipient: 'jiro@city-b.example.lg.jp' })).toEqual([ab]);
        expect(await ids({ recipient: 'jiro@city-b.example.lg.jp', tenantIds: ['city-a'] })).toEqual([]);
        expect(await ids({ recipient: 'jiro@city-b.example.lg.jp', tenantIds: ['city-a', 'city-b'] })).toEqual([ab]);
      });

      it('filters receivedAt in [from, to), and every filter given must hold', async () => {
        const { a, b, ab } = await seedTracking();
        expect(await ids({ from: T0 + 1000, to: T0 + 3000 })).toEqual([ab, b]);
        expect(await ids({ to: T0 + 1000 })).toEqual([a]);
        expect(await ids({ from: T0 + 3001 })).toEqual([]);
        expect(await ids({ recipient: 'taro@city-a.example.lg.jp', from: T0 + 1 })).toEqual([ab]);
        expect(await ids({ recipient: 'taro@city-a.example.lg.jp', mailFrom: 'alice', tenantIds: ['city-a'], to: T0 + 1 })).toEqual([a]);
      });

      it('pages newest first, ties by id descending; the total counts every page; limit at most MAX_FIND_LIMIT', async () => {
        const tied = ['m0000005', 'm0000002', 'm0000006', 'm0000001', 'm0000004', 'm0000003'];
        await Promise.all(tied.map((id) => store.insertMessage(newMessage({ id, receivedAt: T0 }))));
        const expected = [...tied].sort().reverse();
        const pages = [];
        for (let offset = 0; offset < 8; offset += 4) pages.push(await store.findMessages({ limit: 4, offset }));
        expect(pages.map((p) => p.total)).toEqual([6, 6]);
        expect(pages.flatMap((p) => p.messages.map((m) => m.id))).toEqual(expected);
        expect(await store.findMessages({ limit: 0 })).toEqual({ messages: [], total: 6 });

        const many = Array.from({ length: MAX_FIND_LIMIT + 5 - tied.length }, (_, i) => newMessage({ receivedAt: T0 + 1 + i }));
        await Promise.all(many.map((m) => store.insertMessage(m)));
        const big = await store.findMessages({ limit: 10_000 });
        expect([big.messages.length, big.total]).toEqual([MAX_FIND_LIMIT, MAX_FIND_LIMIT + 5]);
        expect((await store.findMessages({})).messages).toHaveLength(DEFAULT_FIND_LIMIT);
      });

      it('rejects a limit or offset that is no count with SEKISHO_ERR_META_QUERY', async () => {
        for (const q of [{ limit: -1 }, { offset: -1 }, { limit: 1.5 }, { offset: Number.NaN }]) {
          await expect(store.findMessages(q)).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_QUERY' });
        }
      });
    });

    describe('countActions', () => {
      const HOUR_MS = 3_600_000;
      /** Inserts a message received at `at` with one recipient per [tenant, action] (null: left unscanned). */
      async function received(at: number, recipients: [string, Action | null][]): Promise<void> {
        const msg = newMessage({
          receivedAt: at,
          recipients: recipients.map(([tenantId], i) => ({ address: `u${i}@${tenantId}.example.lg.jp`, tenantId })),
        });
        await store.insertMessage(msg);
        await store.update(msg.id, {
          recipients: recipients.flatMap(([, action], i) => (action ? [{ addresses: [msg.recipients[i]!.address], patch: { action } }] : [])),
        });
      }

      it('counts recipients by bucket (from from), tenant and action; receivedAt in [from, to)', async () => {
        const from = T0 - HOUR_MS / 2;
        await received(from - 1, [['city-a', 'deliver']]); // before from
        await received(from, [['city-a', 'deliver'], ['city-a', 'deliver'], ['city-b', 'quarantine']]);
        await received(from + HOUR_MS - 1, [['city-a', 'deliver'], ['city-b', null]]);
        await received(from + HOUR_MS, [['city-b', 'reject'], ['city-a', 'sanitize']]);
        await received(from + 3 * HOUR_MS - 1, [['city-a', 'deliver']]);
        await received(from + 3 * HOUR_MS, [['city-a', 'deliver']]); // at to
        expect(await store.countActions({ from, to: from + 3 * HOUR_MS, bucketMs: HOUR_MS })).toEqual([
          { bucket: from, tenantId: 'city-a', action: 'deliver', n: 3 },
          { bucket: from, tenantId: 'city-b', action: null, n: 1 },
          { bucket: from, tenantId: 'city-b', action: 'quarantine', n: 1 },
          { bucket: from + HOUR_MS, tenantId: 'city-a', action: 'sanitize', n: 1 },
          { bucket: from + HOUR_MS, tenantId: 'city-b', action: 'reject', n: 1 },
          { bucket: from + 2 * HOUR_MS, tenantId: 'city-a', action: 'deliver', n: 1 },
        ]);
        expect(await store.countActions({ from, to: from + 3 * HOUR_MS, bucketMs: 3 * HOUR_MS })).toEqual([
          { bucket: from, tenantId: 'city-a', action: 'deliver', n: 4 },
          { bucket: from, tenantId: 'city-a', action: 'sanitize', n: 1 },
          { bucket: from, tenantId: 'city-b', action: null, n: 1 },
          { bucket: from, tenantId: 'city-b', action: 'quarantine', n: 1 },
          { bucket: from, tenantId: 'city-b', action: 'reject', n: 1 },
        ]);
      });

      it("counts only the scope's recipients, even on a message shared with another tenant; [] counts nothing", async () => {
        await received(T0, [['city-a', 'deliver'], ['city-b', 'quarantine']]);
        await received(T0 + 1, [['city-c', 'reject']]);
        const range = { from: T0, to: T0 + HOUR_MS, bucketMs: HOUR_MS };
        expect(await store.countActions({ ...range, tenantIds: ['city-b'] })).toEqual([{ bucket: T0, tenantId: 'city-b', action: 'quarantine', n: 1 }]);
        expect((await store.countActions({ ...range, tenantIds: ['city-a', 'city-c'] })).map((r) => r.tenantId)).toEqual(['city-a', 'city-c']);
        expect(await store.countActions({ ...range, tenantIds: [] })).toEqual([]);
        expect(await store.countActions({ ...range, tenantIds: ['city-z'] })).toEqual([]);
        expect(await store.countActions({ from: T0 + HOUR_MS, to: T0 + 2 * HOUR_MS, bucketMs: HOUR_MS })).toEqual([]);
      });

      it('rejects a bad range or bucket width with SEKISHO_ERR_META_QUERY', async () => {
        const bad = [
          { from: T0, to: T0, bucketMs: 1000 },
          { from: T0, to: T0 + 1000, bucketMs: 0 },
          { from: T0, to: T0 + 1000, bucketMs: -5 },
          { from: T0, to: T0 + 1000, bucketMs: 0.5 },
          { from: T0 + 0.5, to: T0 + 1000, bucketMs: 10 },
          { from: T0, to: T0 + MAX_ACTION_BUCKETS + 1, bucketMs: 1 },
        ];
        for (const q of bad) await expect(store.countActions(q)).rejects.toMatchObject({ code: 'SEKISHO_ERR_META_QUERY' });
        await expect(store.countActions({ from: T0, to: T0 + MAX_ACTION_BUCKETS, bucketMs: 1 })).resolves.toEqual([]);
      });
    });
  });
}
