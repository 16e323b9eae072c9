/**
 * RetentionSweeper against the real stores: an expired original leaves the spool only once no other tenant's
 * record holds it and the message is done; the record stays as `expired`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RetentionSweeper } from '../../../src/quarantine/retention.ts';
import { SqliteQuarantineStore } from '../../../src/quarantine/sqlite-quarantine-store.ts';
import { FileMessageStore } from '../../../src/spool/file-message-store.ts';
import { SqliteMetaStore } from '../../../src/spool/sqlite-meta-store.ts';
import { newMessage } from '../../helpers/new-message.ts';
import { record } from './quarantine-store.contract.ts';

const DAY = 24 * 3_600_000;

describe('RetentionSweeper', () => {
  let dir: string;
  let quarantine: SqliteQuarantineStore;
  let meta: SqliteMetaStore;
  let store: FileMessageStore;
  let clock: number;
  let sweeper: RetentionSweeper;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sekisho-ret-'));
    quarantine = new SqliteQuarantineStore(path.join(dir, 'q.sqlite'));
    meta = new SqliteMetaStore(path.join(dir, 'meta.sqlite'));
    store = new FileMessageStore(dir);
    clock = Date.UTC(2026, 11, 1);
    sweeper = new RetentionSweeper({ quarantine, meta, store, log: pino({ level: 'silent' }), now: () => clock });
  });
  afterEach(async () => {
    await sweeper.stop();
    await quarantine.close();
    await meta.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function spooled(state: 'done' | 'delivering'): Promise<string> {
    const msg = newMessage();
    await store.write(msg.id, Readable.from([Buffer.from('Subject: x\r\n\r\nbody\r\n')]));
    await meta.insertMessage(msg);
    await meta.update(msg.id, { message: { state: state === 'done' ? 'delivering' : state } });
    if (state === 'done') await meta.update(msg.id, { message: { state: 'done' } });
    return msg.id;
  }

  it('removes the bytes of a done message once its only record expires, and keeps the record', async () => {
    const mid = await spooled('done');
    await quarantine.hold(record({ messageId: mid, createdAt: clock, expiresAt: clock + 14 * DAY }));
    expect(await sweeper.sweep()).toBe(0);
    expect(await store.exists(mid)).toBe(true);
    clock += 14 * DAY;
    expect(await sweeper.sweep()).toBe(1);
    expect(await store.exists(mid)).toBe(false);
    expect((await quarantine.get(mid, 'city-a'))?.state).toBe('expired');
  });

  it("keeps the bytes while another tenant's record still holds them", async () => {
    const mid = await spooled('done');
    await quarantine.hold(record({ messageId: mid, tenantId: 'city-a', expiresAt: clock + DAY }));
    await quarantine.hold(record({ messageId: mid, tenantId: 'city-b', expiresAt: clock + 30 * DAY }));
    clock += 2 * DAY;
    expect(await sweeper.sweep()).toBe(1);
    expect(await store.exists(mid)).toBe(true);
    clock += 30 * DAY;
    expect(await sweeper.sweep()).toBe(1);
    expect(await store.exists(mid)).toBe(false);
  });

  it('keeps the bytes of a message still being delivered', async () => {
    const mid = await spooled('delivering');
    await quarantine.hold(record({ messageId: mid, expiresAt: clock + DAY }));
    clock += 2 * DAY;
    expect(await sweeper.sweep()).toBe(1);
    expect(await store.exists(mid)).toBe(true);
  });
});
