/** SqliteSenderListStore: the SenderListStore contract, and that a second process sees changes and their version. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteSenderListStore } from '../../../src/policy/sqlite-sender-list-store.ts';
import { describeSenderListStoreContract, entry } from './sender-list-store.contract.ts';

describeSenderListStoreContract('sqlite', async ({ now }) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-sl-'));
  return { store: new SqliteSenderListStore(path.join(dir, 'sender-lists.sqlite'), { now }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('SqliteSenderListStore', () => {
  it('a second connection to the file (another process) sees the entries, and the version move', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-sl-'));
    try {
      const file = path.join(dir, 'nested', 'sender-lists.sqlite');
      const admin = new SqliteSenderListStore(file);
      const worker = new SqliteSenderListStore(file);
      const before = await worker.version();
      const e = await admin.add(entry());
      expect(await worker.version()).not.toBe(before);
      expect(await worker.list()).toEqual([e]);
      const after = await worker.version();
      expect(await admin.remove(e.id, 'admin-b')).toBe(true);
      expect(await worker.version()).not.toBe(after);
      expect(await worker.list()).toEqual([]);
      const last = await worker.version();
      await admin.close();
      await worker.close();
      const reopened = new SqliteSenderListStore(file);
      expect(await reopened.version()).toBe(last);
      await reopened.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
