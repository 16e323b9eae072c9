import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { inspectArchive, RATIO_FLOOR_BYTES, type ArchiveLimits } from '../../../../src/scan/archive/inspect-archive.ts';
import { buildZip, deflateMember, encryptedMember, nestedZipBomb, storeMember, zipOf } from '../../../helpers/zip-writer.ts';

/** The defaults of clamav.archive in src/config/schema.ts. */
const limits: ArchiveLimits = { maxDepth: 5, maxExpandedBytes: 200 * 1024 * 1024, maxRatio: 100, maxEntries: 10_000 };
const MiB = 1024 * 1024;

describe('inspectArchive', () => {
  it('passes an ordinary zip of documents', async () => {
    const zip = buildZip([
      deflateMember('議事録.txt', Buffer.from('令和6年度 第3回 情報セキュリティ委員会 議事録\n'.repeat(200))),
      storeMember('photo.jpg', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4])),
    ]);
    const r = await inspectArchive(zip, 'docs.zip', limits);
    expect(r).toMatchObject({ findings: [], overLimit: false });
  });

  it('ignores data that is not an archive, and a truncated zip', async () => {
    expect((await inspectArchive(Buffer.from('plain text'), 'a.txt', limits)).findings).toEqual([]);
    const zip = zipOf('a.txt', Buffer.from('hello'));
    expect(await inspectArchive(zip.subarray(0, 20), 'cut.zip', limits)).toMatchObject({ findings: [], overLimit: false });
  });

  it('rejects a 42.zip-style bomb from declared sizes, inflating only its small upper levels', async () => {
    // 5 levels × 16 copies of 64 MiB leaves: 16^5 × 64 MiB = 64 TiB expanded
    const bomb = nestedZipBomb(5, 16, 64 * MiB);
    expect(bomb.length).toBeLessThan(5 * MiB);
    const r = await inspectArchive(bomb, '42.zip', limits);
    expect(r.overLimit).toBe(true);
    // whichever declared limit trips first (here the ratio of a level of zips of zeros), it trips on declared sizes
    expect(r.findings).toEqual([{ symbol: 'ARCHIVE_LIMIT_EXCEEDED', detail: expect.stringMatching(/^(maxRatio|maxExpandedBytes): 42\.zip\/0\.zip\//) }]);
    // the cost paid: a few inner zips, never a leaf
    expect(r.inflatedBytes).toBeLessThan(4 * MiB);
  });

  it('stops a member that inflates past its declared size (lying header) at the declared size', async () => {
    const liar = { ...deflateMember('small.txt', Buffer.alloc(50 * MiB)), uncompressedSize: 1000 };
    const r = await inspectArchive(buildZip([liar]), 'liar.zip', limits);
    expect(r.overLimit).toBe(true);
    expect(r.findings[0]?.detail).toMatch(/^declaredSize: liar\.zip\/small\.txt inflates past its declared 1000 bytes/);
    expect(r.inflatedBytes).toBeLessThan(MiB);
  });

  it('rejects a ratio bomb (one highly compressed member) without inflating it', async () => {
    const r = await inspectArchive(zipOf('zeros.bin', Buffer.alloc(20 * MiB)), 'ratio.zip', limits);
    expect(r.findings[0]?.detail).toMatch(/^maxRatio: ratio\.zip expands \d+:1 \(limit 100:1\)/);
    expect(r.inflatedBytes).toBe(0);
  });

  it('does not apply the ratio below the floor (a small sparse file compresses well and is harmless)', async () => {
    const r = await inspectArchive(zipOf('blank.csv', Buffer.alloc(RATIO_FLOOR_BYTES / 2, 0x2c)), 'sparse.zip', limits);
    expect(r.overLimit).toBe(false);
  });

  it('rejects too many entries while reading the central directory', async () => {
    const empty = storeMember('e', Buffer.alloc(0));
    const zip = buildZip(Array.from({ length: 50 }, (_, i) => ({ ...empty, name: `e${i}` })));
    const r = await inspectArchive(zip, 'many.zip', { ...limits, maxEntries: 20 });
    expect(r.findings[0]?.detail).toMatch(/^maxEntries: many\.zip: more than 20 entries/);
  });

  it('rejects nesting deeper than maxDepth', async () => {
    let z = zipOf('leaf.txt', Buffer.from('leaf'));
    for (let i = 0; i < 5; i++) z = zipOf(`level${i}.zip`, z);
    expect((await inspectArchive(z, 'deep.zip', limits)).overLimit).toBe(true);
    expect((await inspectArchive(z, 'deep.zip', { ...limits, maxDepth: 6 })).overLimit).toBe(false);
    expect((await inspectArchive(z, 'deep.zip', limits)).findings[0]?.detail).toMatch(/^maxDepth: deep\.zip\/level4\.zip.* is nested deeper than 5 archives/);
  });

  it('reports encrypted members (PPAP) by name and still inspects the others', async () => {
    const zip = buildZip([encryptedMember('見積書.xlsx', 3000), encryptedMember('仕様書.docx', 2000), deflateMember('readme.txt', Buffer.from('パスワードは別途お送りします'))]);
    const r = await inspectArchive(zip, 'ppap.zip', limits);
    expect(r).toMatchObject({ overLimit: false, findings: [{ symbol: 'ARCHIVE_ENCRYPTED', detail: 'ppap.zip: 見積書.xlsx, 仕様書.docx' }] });
  });

  it('reports an encrypted member nested in a plain zip', async () => {
    const inner = buildZip([encryptedMember('secret.pdf', 100)]);
    const r = await inspectArchive(zipOf('inner.zip', inner), 'outer.zip', limits);
    expect(r.findings).toEqual([{ symbol: 'ARCHIVE_ENCRYPTED', detail: 'outer.zip/inner.zip: secret.pdf' }]);
  });

  it('decodes Shift_JIS member names written by Japanese Windows', async () => {
    const sjisName = Buffer.from([0x95, 0xf1, 0x8d, 0x90, 0x2e, 0x78, 0x6c, 0x73]); // 報告.xls in CP932
    const zip = buildZip([{ ...encryptedMember('', 10), legacyName: sjisName }]);
    expect((await inspectArchive(zip, 'sjis.zip', limits)).findings[0]?.detail).toBe('sjis.zip: 報告.xls');
  });

  it('bounds a gzip bomb by inflating no more than the ratio allows', async () => {
    const gz = zlib.gzipSync(Buffer.alloc(30 * MiB));
    // lie in ISIZE so that only inflating can tell
    gz.writeUInt32LE(1000, gz.length - 4);
    const r = await inspectArchive(gz, 'zeros.gz', limits);
    expect(r.findings[0]?.detail).toMatch(/^maxRatio: zeros\.gz expands more than 100:1/);
    expect(r.inflatedBytes).toBeLessThanOrEqual(Math.max(RATIO_FLOOR_BYTES, gz.length * 100) + 64 * 1024);
  });

  it('follows a zip inside a gzip', async () => {
    const gz = zlib.gzipSync(buildZip([encryptedMember('a.doc', 10)]));
    expect((await inspectArchive(gz, 'x.zip.gz', limits)).findings).toEqual([{ symbol: 'ARCHIVE_ENCRYPTED', detail: 'x.zip.gz/(gunzip): a.doc' }]);
  });

  it('stops when its signal aborts', async () => {
    const ac = new AbortController();
    ac.abort(new Error('deadline'));
    await expect(inspectArchive(nestedZipBomb(3, 4, 1024), 'a.zip', limits, ac.signal)).rejects.toThrow('deadline');
  });
});
