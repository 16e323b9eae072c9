/**
 * The AuditLog contract: every driver's test file calls describeAuditLogContract with a factory for a fresh,
 * empty log. Covers the chain format (seq, prevHash, hash as documented in audit-log.ts), canonical hashing of
 * details, newest-first listing with filters and totals, verify on an intact log, and an export a third party can
 * verify line by line. Tampering is driver-specific: each driver's own test file edits and removes rows.
 */
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditChainChecker, auditHash, GENESIS_HASH, type AuditEntry, type AuditLog, type AuditRecord } from '../../../src/admin/audit/audit-log.ts';

export interface AuditLogFixture {
  log: AuditLog;
  cleanup(): Promise<void>;
}

export const T0 = Date.UTC(2026, 11, 1, 9, 0, 0);

export function entry(over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    at: T0,
    actor: 'sato.hanako',
    role: 'tenant-admin',
    tenantId: 'city-a',
    ip: '192.0.2.7',
    action: 'quarantine.approve',
    target: 'm0123456789abcdef',
    reason: '差出人に電話で確認済み',
    outcome: 'ok',
    details: { recipients: ['a@city-a.example.lg.jp'], symbols: ['ARCHIVE_ENCRYPTED'] },
    ...over,
  };
}

/** Everything written to a stream until it ends. */
export async function collect(write: (out: NodeJS.WritableStream) => Promise<number>): Promise<{ n: number; lines: string[] }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const n = await write(out);
  out.end();
  const text = Buffer.concat(chunks).toString('utf8');
  return { n, lines: text === '' ? [] : text.replace(/\n$/, '').split('\n') };
}

export function describeAuditLogContract(name: string, make: () => Promise<AuditLogFixture>): void {
  describe(`AuditLog contract: ${name}`, () => {
    let fx: AuditLogFixture;
    let log: AuditLog;
    beforeEach(async () => {
      fx = await make();
      log = fx.log;
    });
    afterEach(async () => {
      await log.close();
      await fx.cleanup();
    });

    it('chains records: seq from 1, genesis prevHash, hash = sha256(prevHash + "\\n" + canonical {seq, ...entry})', async () => {
      const r1 = await log.append(entry());
      expect(r1).toEqual({ ...entry(), seq: 1, prevHash: GENESIS_HASH, hash: auditHash(GENESIS_HASH, 1, entry()) });
      expect(r1.hash).toMatch(/^[0-9a-f]{64}$/);
      const r2 = await log.append(entry({ action: 'quarantine.release', at: T0 + 1 }));
      expect(r2).toMatchObject({ seq: 2, prevHash: r1.hash, hash: auditHash(r1.hash, 2, r2) });
    });

    it('hashes details canonically: key order does not matter, values do, undefined keys are dropped', async () => {
      const a = auditHash(GENESIS_HASH, 1, entry({ details: { b: 1, a: { y: [1, { q: 2, p: 1 }], x: null } } }));
      const b = auditHash(GENESIS_HASH, 1, entry({ details: { a: { x: null, y: [1, { p: 1, q: 2 }] }, b: 1, c: undefined } }));
      const c = auditHash(GENESIS_HASH, 1, entry({ details: { a: { x: null, y: [{ p: 1, q: 2 }, 1] }, b: 1 } }));
      expect(a).toBe(b);
      expect(a).not.toBe(c);
      const r = await log.append(entry({ details: { when: new Date(T0), skip: undefined, n: 1 } }));
      // Stored as JSON round-trips it: the record read back hashes to the same value.
      const { records } = await log.list();
      expect(records[0]).toEqual(r);
      expect(r.details).toEqual({ when: new Date(T0).toISOString(), n: 1 });
      expect(auditHash(r.prevHash, r.seq, records[0]!)).toBe(r.hash);
    });

    it('refuses a malformed entry with SEKISHO_ERR_AUDIT_WRITE and appends nothing', async () => {
      await expect(log.append(entry({ outcome: 'maybe' as never }))).rejects.toMatchObject({ code: 'SEKISHO_ERR_AUDIT_WRITE' });
      await expect(log.append(entry({ actor: '' }))).rejects.toMatchObject({ code: 'SEKISHO_ERR_AUDIT_WRITE' });
      await expect(log.append(entry({ at: 1.5 }))).rejects.toMatchObject({ code: 'SEKISHO_ERR_AUDIT_WRITE' });
      await expect(log.append(entry({ details: { big: 'x'.repeat(100_000) } }))).rejects.toMatchObject({ code: 'SEKISHO_ERR_AUDIT_WRITE' });
      expect((await log.list()).total).toBe(0);
      expect((await log.append(entry())).seq).toBe(1);
    });

    it('lists newest first with filters, totals and paging', async () => {
      await log.append(entry({ at: T0, actor: 'admin', action: 'login', tenantId: null }));
      await log.append(entry({ at: T0 + 10, action: 'quarantine.request', actor: 'staff' }));
      await log.append(entry({ at: T0 + 20, action: 'quarantine.approve' }));
      await log.append(entry({ at: T0 + 30, action: 'quarantine.approve', tenantId: 'town-b' }));
      const all = await log.list();
      expect(all.total).toBe(4);
      expect(all.records.map((r) => r.seq)).toEqual([4, 3, 2, 1]);
      expect((await log.list({ action: 'quarantine.approve' })).records.map((r) => r.seq)).toEqual([4, 3]);
      expect((await log.list({ tenantId: 'city-a' })).records.map((r) => r.seq)).toEqual([3, 2]);
      expect((await log.list({ actor: 'admin' })).records.map((r) => r.seq)).toEqual([1]);
      expect((await log.list({ from: T0 + 10, to: T0 + 30 })).records.map((r) => r.seq)).toEqual([3, 2]);
      const page = await log.list({ limit: 2, offset: 1 });
      expect(page).toMatchObject({ total: 4 });
      expect(page.records.map((r) => r.seq)).toEqual([3, 2]);
    });

    it('verify: an intact log (and an empty one) is ok', async () => {
      expect(await log.verify()).toEqual({ ok: true, checked: 0, problems: [] });
      for (let i = 0; i < 25; i++) await log.append(entry({ at: T0 + i, details: { i } }));
      expect(await log.verify()).toEqual({ ok: true, checked: 25, problems: [] });
    });

    it('exports JSON lines oldest first that a third party verifies with the documented hash alone', async () => {
      const written: AuditRecord[] = [];
      for (let i = 0; i < 5; i++) written.push(await log.append(entry({ at: T0 + i * 1000, details: { i, 日本語: '甲市' } })));
      const all = await collect((out) => log.exportJsonl(out));
      expect(all.n).toBe(5);
      const parsed = all.lines.map((l) => JSON.parse(l) as AuditRecord);
      expect(parsed).toEqual(written);
      const checker = new AuditChainChecker();
      for (const r of parsed) checker.push(r);
      expect(checker.problems).toEqual([]);
      expect(checker.last).toEqual({ seq: 5, hash: written[4]!.hash });
      const some = await collect((out) => log.exportJsonl(out, { from: T0 + 1000, to: T0 + 3000, limit: 1 }));
      expect(some.lines.map((l) => (JSON.parse(l) as AuditRecord).seq)).toEqual([2, 3]);
    });
  });
}
