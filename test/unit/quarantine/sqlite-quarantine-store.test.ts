/** SqliteQuarantineStore: the QuarantineStore contract, and that records survive reopening the file. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteQuarantineStore } from '../../../src/quarantine/sqlite-quarantine-store.ts';
import { describeQuarantineStoreContract, record } from './quarantine-store.contract.ts';

describeQuarantineStoreContract('sqlite', async ({ now }) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-q-'));
  return { store: new SqliteQuarantineStore(path.join(dir, 'q.sqlite'), { now }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('SqliteQuarantineStore', () => {
  it('keeps its records across a reopen (a second process sees them)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sekisho-q-'));
    try {
      const file = path.join(dir, 'nested', 'q.sqlite');
      const a = new SqliteQuarantineStore(file);
      await a.hold(record());
      const b = new SqliteQuarantineStore(file);
      expect((await b.get('m1', 'city-a'))?.subject).toBe(record().subject);
      await a.close();
      await b.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
