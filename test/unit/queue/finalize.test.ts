/**
 * finalizeIfDone against the real stores: a held original stays in the spool while a live quarantine record needs
 * it, and leaves with the message when its record expired (or was released) before the message was done.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load.ts';
import { TenantIndex } from '../../../src/config/tenants.ts';
import { StoreQuarantineKeeper } from '../../../src/quarantine/keeper.ts';
import { SqliteQuarantineStore } from '../../../src/quarantine/sqlite-quarantine-store.ts';
import { finalizeIfDone } from '../../../src/queue/finalize.ts';
import { FileMessageStore } from '../../../src/spool/file-message-store.ts';
import { SqliteMetaStore } from '../../../src/spool/sqlite-meta-store.ts';
import { newMessage } from '../../helpers/new-message.ts';

const log = pino({ level: 'silent' });
const DAY = 24 * 3_600_000;

describe('finalizeIfDone and the quarantine', () => {
  let dir: string;
  let store: FileMessageStore;
  let meta: SqliteMetaStore;
  let qstore: SqliteQuarantineStore;
  let keeper: StoreQuarantineKeeper;
  let clock: number;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'sekisho-fin-'));
    store = new FileMessageStore(dir);
    meta = new SqliteMetaStore(path.join(dir, 'meta.sqlite'));
    qstore = new SqliteQuarantineStore(path.join(dir, 'q.sqlite'));
    const r = validateConfig({ hostname: 'h', tenants: [{ id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:25' }] });
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    clock = Date.UTC(2026, 11, 1);
    keeper = new StoreQuarantineKeeper({ store: qstore, meta, config: r.config, tenants: new TenantIndex(r.config.tenants), now: () => clock });
  });
  afterEach(async () => {
    await Promise.all([store.close(), meta.close(), qstore.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A message whose only recipient is held (quarantined), its record made by the keeper. */
  async function held(): Promise<string> {
    const msg = newMessage({ recipients: [{ address: 'u@city-a.example.lg.jp', tenantId: 'city-a' }] });
    await store.write(msg.id, Readable.from([Buffer.from('Subject: x\r\n\r\nbody\r\n')]));
    await meta.insertMessage(msg);
    await keeper.keep({ ...msg, verdict: null }, 'city-a', 'held', ['score 12 ≥ quarantine threshold 10']);
    await meta.update(msg.id, { message: { state: 'delivering' }, recipients: [{ patch: { state: 'quarantined', action: 'quarantine' } }] });
    return msg.id;
  }

  it('keeps the bytes of a held message while its record is live', async () => {
    const mid = await held();
    expect(await finalizeIfDone({ meta, store, quarantine: keeper }, mid, log)).toBe(true);
    expect(await store.exists(mid)).toBe(true);
    expect((await qstore.get(mid, 'city-a'))?.expiresAt).toBe(clock + 14 * DAY);
  });

  it('removes them when the record expired before the message was done', async () => {
    const mid = await held();
    await qstore.expireDue(clock + 15 * DAY, 10);
    expect(await finalizeIfDone({ meta, store, quarantine: keeper }, mid, log)).toBe(true);
    expect(await store.exists(mid)).toBe(false);
  });
});
