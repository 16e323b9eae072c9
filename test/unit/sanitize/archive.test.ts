import { readFileSync } from 'node:fs';
import yauzl from 'yauzl';
import { describe, expect, it } from 'vitest';
import type { ArchiveLimits } from '../../../src/scan/archive/inspect-archive.ts';
import { parseMessage } from '../../../src/scan/mime-parts.ts';
import { REMOVED_LIST_NAME, sanitizeZip, type SanitizeZipOptions } from '../../../src/sanitize/archive.ts';
import type { PartResult } from '../../../src/sanitize/types.ts';
import { buildZip, deflateMember, encryptedMember, nestedZipBomb, storeMember, zipOf } from '../../helpers/zip-writer.ts';

const MIB = 1024 * 1024;
const limits: ArchiveLimits = { maxDepth: 3, maxExpandedBytes: 64 * MIB, maxRatio: 200, maxEntries: 1000 };

interface Call {
  name: string;
  bytes: number;
  depth: number;
}

/**
 * A convertEntry standing in for the attachment rules: zips recurse through sanitizeZip, `.exe` is removed, anything
 * else becomes its text uppercased in `<name>.txt`. Every call is recorded.
 */
function converter(opts: Partial<SanitizeZipOptions> = {}) {
  const calls: Call[] = [];
  const convertEntry = async (name: string, data: Buffer, depth: number): Promise<PartResult> => {
    calls.push({ name, bytes: data.length, depth });
    if (data.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1'))) {
      return (await sanitizeZip(data, { filename: name, mode: 'repack', limits, ...opts, depth, convertEntry })).result;
    }
    if (name.endsWith('.exe')) return { kind: 'removed', reason: 'executable', detail: 'a program' };
    const text = Buffer.from(data.toString('utf8').toUpperCase());
    return { kind: 'converted', files: [{ filename: `${name}.txt`, contentType: 'text/plain; charset=utf-8', data: text }], detail: 'uppercased' };
  };
  return { calls, convertEntry };
}

async function sanitize(data: Buffer, opts: Partial<SanitizeZipOptions> = {}) {
  const c = converter(opts);
  const r = await sanitizeZip(data, { filename: '資料.zip', mode: 'repack', limits, convertEntry: c.convertEntry, ...opts });
  return { ...r, calls: c.calls };
}

/** The entries of a zip as yauzl reads them with its own name checks on (it refuses absolute and `..` paths). */
async function unzip(data: Buffer): Promise<Map<string, { data: Buffer; utf8Flag: boolean }>> {
  const zip = await yauzl.fromBufferPromise(data, { lazyEntries: true, strictFileNames: true });
  const out = new Map<string, { data: Buffer; utf8Flag: boolean }>();
  for await (const entry of zip.eachEntry()) {
    const chunks: Buffer[] = [];
    for await (const c of (await zip.openReadStreamPromise(entry)) as AsyncIterable<Buffer>) chunks.push(c);
    out.set(entry.fileName, { data: Buffer.concat(chunks), utf8Flag: (entry.generalPurposeBitFlag & 0x800) !== 0 });
  }
  return out;
}

function convertedZip(result: PartResult): Buffer {
  if (result.kind !== 'converted') throw new Error(`expected a converted archive, got ${result.reason}: ${result.detail}`);
  expect(result.files).toHaveLength(1);
  return (result.files[0] as { data: Buffer }).data;
}

describe('sanitizeZip', () => {
  it('repacks converted entries under their path plus suffix, UTF-8 flagged, with removals listed ja then en', async () => {
    const zip = buildZip([
      deflateMember('資料/報告書.docx', Buffer.from('quarterly report')),
      storeMember('メモ.txt', Buffer.from('memo')),
      deflateMember('資料/', Buffer.alloc(0)),
      deflateMember('tool.exe', Buffer.from('MZ')),
    ]);
    const r = await sanitize(zip);
    expect(r.result).toMatchObject({ kind: 'converted', files: [{ filename: '資料.zip', contentType: 'application/zip' }] });
    const out = await unzip(convertedZip(r.result));
    expect([...out.keys()].sort()).toEqual(['_sekisho-removed.txt', 'メモ.txt.txt', '資料/報告書.docx.txt'].sort());
    expect(out.get('資料/報告書.docx.txt')?.data.toString()).toBe('QUARTERLY REPORT');
    expect(out.get('メモ.txt.txt')?.data.toString()).toBe('MEMO');
    expect([...out.values()].every((e) => e.utf8Flag)).toBe(true);
    const listing = out.get(REMOVED_LIST_NAME)?.data.toString('utf8') ?? '';
    expect(listing).toMatch(/^\ufeffこの圧縮ファイル/);
    expect(listing.indexOf('・tool.exe → 削除：実行ファイル')).toBeGreaterThan(0);
    expect(listing.indexOf('- tool.exe → a program or script')).toBeGreaterThan(listing.indexOf('・tool.exe'));
    // convertEntry sees the file name without its directories, one level deeper than the archive
    expect(r.calls.map((c) => [c.name, c.depth])).toEqual([
      ['報告書.docx', 2],
      ['メモ.txt', 2],
      ['tool.exe', 2],
    ]);
    expect(r.entries.map((e) => [e.path, e.result.kind])).toEqual([
      ['資料/報告書.docx', 'converted'],
      ['メモ.txt', 'converted'],
      ['tool.exe', 'removed'],
    ]);
  });

  it('decodes CP932 names written without the UTF-8 flag (a trail byte 0x5C is not a separator)', async () => {
    // 資料\表①髙.txt in CP932: 表 is 95 5C, ① (NEC) 87 40, 髙 (IBM) FB FC; the lone 5C is a real backslash
    const legacyName = Buffer.from('8e9197bf5c955c8740fbfc2e747874', 'hex');
    const r = await sanitize(buildZip([{ ...deflateMember('', Buffer.from('x')), legacyName }]));
    expect(r.entries.map((e) => e.path)).toEqual(['資料/表①髙.txt']);
    const out = await unzip(convertedZip(r.result));
    expect(out.get('資料/表①髙.txt.txt')?.utf8Flag).toBe(true);
  });

  it('follows nested zips down to maxDepth, and removes the whole archive when one is deeper', async () => {
    const nested = zipOf('outer/inner.zip', zipOf('a.txt', Buffer.from('deep')));
    const ok = await sanitize(nested, { limits: { ...limits, maxDepth: 2 } });
    const outer = await unzip(convertedZip(ok.result));
    const inner = await unzip(outer.get('outer/inner.zip')?.data ?? Buffer.alloc(0));
    expect(inner.get('a.txt.txt')?.data.toString()).toBe('DEEP');

    const tooDeep = await sanitize(nested, { limits: { ...limits, maxDepth: 1 } });
    expect(tooDeep.result).toMatchObject({ kind: 'removed', reason: 'archive-limit' });
    expect(tooDeep.result.kind === 'removed' && tooDeep.result.detail).toMatch(/nested deeper than 1/);
  });

  it('removes a 42.zip-style bomb with bounded work: no leaf is ever inflated', async () => {
    const bomb = nestedZipBomb(4, 16, 16 * MIB); // 16^4 × 16 MiB = 1 TiB expanded
    const r = await sanitize(bomb);
    expect(r.result).toMatchObject({ kind: 'removed', reason: 'archive-limit' });
    expect(r.calls.filter((c) => c.name.endsWith('.dat'))).toEqual([]);
    const inflated = r.calls.reduce((n, c) => n + c.bytes, 0);
    expect(inflated).toBeLessThanOrEqual(limits.maxExpandedBytes);

    // with no ratio or depth limit, the total declared size over the tree stops it just the same
    const noRatio = await sanitize(bomb, { limits: { ...limits, maxRatio: Infinity, maxDepth: 10 } });
    expect(noRatio.result.kind === 'removed' && noRatio.result.detail).toMatch(/expands to more than 67108864 bytes in all/);
    expect(noRatio.calls.filter((c) => c.name.endsWith('.dat'))).toEqual([]);
  });

  it('counts the limits over the whole tree: nested archives each under the limit, together over it, remove the outermost', async () => {
    const inner = zipOf('zeros.bin', Buffer.alloc(20 * MIB));
    const tree = buildZip([deflateMember('1.zip', inner), deflateMember('2.zip', inner), deflateMember('3.zip', inner)]);
    const treeLimits = { ...limits, maxExpandedBytes: 50 * MIB, maxRatio: Infinity };
    expect((await sanitize(inner, { limits: treeLimits })).result.kind).toBe('converted');
    const r = await sanitize(tree, { limits: treeLimits });
    expect(r.result).toMatchObject({ kind: 'removed', reason: 'archive-limit' });
    expect(r.calls.filter((c) => c.name === 'zeros.bin')).toHaveLength(2);
  });

  it('removes the zip bomb of fixtures/mails/av-zip-bomb-42.eml', async () => {
    const parsed = await parseMessage(readFileSync(new URL('../../../fixtures/mails/av-zip-bomb-42.eml', import.meta.url)));
    const part = parsed.parts.find((p) => p.filename?.endsWith('.zip'));
    expect(part).toBeDefined();
    const r = await sanitize(part?.content ?? Buffer.alloc(0));
    expect(r.result).toMatchObject({ kind: 'removed', reason: 'archive-limit' });
    expect(r.calls.filter((c) => c.bytes > MIB)).toEqual([]);
  });

  it('rejects from declared sizes (ratio, total, entry count) before inflating, and stops a lying header', async () => {
    const zeros = deflateMember('zeros.txt', Buffer.alloc(32 * MIB));
    const ratio = await sanitize(buildZip([zeros]));
    expect(ratio.result).toMatchObject({ kind: 'removed', reason: 'archive-limit' });
    expect(ratio.calls).toEqual([]);

    const many = await sanitize(buildZip(Array.from({ length: 20 }, (_, i) => deflateMember(`${i}.txt`, Buffer.from('x')))), {
      limits: { ...limits, maxEntries: 10 },
    });
    expect(many.result.kind === 'removed' && many.result.detail).toMatch(/more than 10 entries/);
    expect(many.calls).toEqual([]);

    const liar = { ...deflateMember('liar.txt', Buffer.alloc(4 * MIB, 0x41)), uncompressedSize: 100 };
    const lying = await sanitize(buildZip([deflateMember('first.txt', Buffer.from('ok')), liar]));
    expect(lying.result).toMatchObject({ kind: 'removed', reason: 'archive-limit' });
    expect(lying.result.kind === 'removed' && lying.result.detail).toMatch(/liar\.txt inflates past its declared 100 bytes/);
    expect(lying.calls.map((c) => c.name)).toEqual(['first.txt']);
  });

  it('removes encrypted entries and lists them; an archive of nothing but encrypted entries is removed "encrypted"', async () => {
    const r = await sanitize(buildZip([encryptedMember('秘密.docx', 1000), deflateMember('readme.txt', Buffer.from('hi'))]));
    expect(r.entries.find((e) => e.path === '秘密.docx')?.result).toMatchObject({ kind: 'removed', reason: 'encrypted' });
    const out = await unzip(convertedZip(r.result));
    expect(out.get(REMOVED_LIST_NAME)?.data.toString()).toMatch(/・秘密\.docx → 削除：パスワード付き/);
    expect(r.calls.map((c) => c.name)).toEqual(['readme.txt']);

    const ppap = await sanitize(buildZip([encryptedMember('a.docx', 10), deflateMember('b.exe', Buffer.from('MZ'))]));
    expect(ppap.result).toMatchObject({ kind: 'removed', reason: 'encrypted' });
    expect(ppap.result.kind === 'removed' && ppap.result.detail).toMatch(/a\.docx \(encrypted\), b\.exe \(executable\)/);
  });

  it('normalises zip-slip and spoofing names, and keeps entries whose cleaned names collide apart', async () => {
    const names = ['../../etc/passwd', '/abs/x.txt', 'C:\\Windows\\win.ini', 'a/./b/../c.txt', '..\\..\\evil.txt', 'invoice\u202Etxt.exe.doc', 'c.txt', './c.txt'];
    const r = await sanitize(buildZip(names.map((n) => deflateMember(n, Buffer.from(n)))));
    expect(r.entries.map((e) => e.path)).toEqual(['etc/passwd', 'abs/x.txt', 'Windows/win.ini', 'a/b/c.txt', 'evil.txt', 'invoicetxt.exe.doc', 'c.txt', 'c.txt']);
    const out = await unzip(convertedZip(r.result)); // strictFileNames: yauzl would refuse `..` or absolute paths
    expect([...out.keys()]).toEqual([
      'etc/passwd.txt',
      'abs/x.txt.txt',
      'Windows/win.ini.txt',
      'a/b/c.txt.txt',
      'evil.txt.txt',
      'invoicetxt.exe.doc.txt',
      'c.txt.txt',
      'c.txt (2).txt',
    ]);
    expect(out.get('c.txt (2).txt')?.data.toString()).toBe('./C.TXT');
  });

  it('attaches the converted files one by one in individual mode, naming the removed ones in the detail', async () => {
    const zip = buildZip([
      deflateMember('a/report.docx', Buffer.from('one')),
      deflateMember('b/report.docx', Buffer.from('two')),
      deflateMember('setup.exe', Buffer.from('MZ')),
    ]);
    const r = await sanitize(zip, { mode: 'individual' });
    if (r.result.kind !== 'converted') throw new Error(r.result.detail);
    expect(r.result.files.map((f) => [f.filename, f.data.toString()])).toEqual([
      ['report.docx.txt', 'ONE'],
      ['report.docx (2).txt', 'TWO'],
    ]);
    expect(r.result.detail).toMatch(/removed: setup\.exe \(executable\)/);
  });

  it('removes a corrupt entry (CRC mismatch) alone, and an unreadable or empty zip whole', async () => {
    const corrupt = { ...deflateMember('bad.txt', Buffer.from('payload')), crc32: 0x12345678 };
    const r = await sanitize(buildZip([corrupt, deflateMember('good.txt', Buffer.from('fine'))]));
    expect(r.entries.find((e) => e.path === 'bad.txt')?.result).toMatchObject({ kind: 'removed', reason: 'conversion-failed' });
    expect((await unzip(convertedZip(r.result))).get('good.txt.txt')?.data.toString()).toBe('FINE');

    expect((await sanitize(Buffer.from('PK\x03\x04 not really a zip'))).result).toMatchObject({ kind: 'removed', reason: 'conversion-failed' });
    expect((await sanitize(buildZip([]))).result).toMatchObject({ kind: 'removed', reason: 'conversion-failed', detail: '資料.zip holds no files' });
  });

  it('rejects with the signal’s reason when aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('worker shutting down'));
    await expect(sanitize(zipOf('a.txt', Buffer.from('a')), { signal: controller.signal })).rejects.toThrow('worker shutting down');
  });
});
