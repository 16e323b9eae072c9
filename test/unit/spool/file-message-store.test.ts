/**
 * FileMessageStore: the MessageStore contract, plus what only a file driver can get wrong: the on-disk layout,
 * temp files left behind (after failures, after crashes, or removed from under a live writer), paths escaping
 * the spool, and memory use of a large streamed write.
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DirSyncer, FileMessageStore } from '../../../src/spool/file-message-store.ts';
import { SizeLimitError } from '../../../src/spool/message-store.ts';
import {
  collect,
  describeMessageStoreContract,
  failingSource,
  hostileBytes,
  newId,
  sha256,
  trackedSource,
} from './message-store.contract.ts';

function tempDataDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'sekisho-spool-'));
}

describeMessageStoreContract('FileMessageStore', async () => {
  const dir = tempDataDir();
  return { store: new FileMessageStore(dir), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
});

describe('FileMessageStore', () => {
  let dataDir: string;
  let store: FileMessageStore;
  const tmpDir = () => path.join(dataDir, 'spool', 'tmp');

  beforeEach(() => {
    dataDir = tempDataDir();
    store = new FileMessageStore(dataDir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('lays messages out as spool/raw/<last two chars of the id>/<id>.eml and spool/sanitized/<tenant>/<shard>/<id>.eml', async () => {
    const id = `${newId()}q7`;
    await store.write(id, Readable.from([Buffer.from('raw')]));
    await store.write(id, Readable.from([Buffer.from('sanitized')]), { kind: { sanitized: 'city-a' } });
    expect(readdirSync(path.join(dataDir, 'spool', 'raw', 'q7'))).toEqual([`${id}.eml`]);
    expect(readdirSync(path.join(dataDir, 'spool', 'sanitized', 'city-a', 'q7'))).toEqual([`${id}.eml`]);
    expect(readdirSync(tmpDir())).toEqual([]);
  });

  it('creates the data directory when it does not exist', async () => {
    const nested = path.join(dataDir, 'not', 'yet');
    const s = new FileMessageStore(nested);
    await s.write('abcdefgh', Readable.from([Buffer.from('x')]));
    expect(existsSync(path.join(nested, 'spool', 'raw', 'gh', 'abcdefgh.eml'))).toBe(true);
  });

  it('round-trips hostile bytes given in one-byte chunks', async () => {
    const id = newId();
    const bytes = hostileBytes();
    const chunks = Array.from(bytes, (b) => Buffer.from([b]));
    expect(await store.write(id, Readable.from(chunks))).toEqual({ size: bytes.length, sha256: sha256(bytes) });
    expect((await store.read(id)).equals(bytes)).toBe(true);
  });

  it('leaves nothing in tmp (or anywhere) after a SizeLimitError', async () => {
    const id = newId();
    const { source, readToEnd } = trackedSource(Array.from({ length: 20 }, () => randomBytes(64 * 1024)));
    await expect(store.write(id, source, { maxBytes: 256 * 1024 })).rejects.toBeInstanceOf(SizeLimitError);
    expect(readToEnd()).toBe(true);
    expect(readdirSync(tmpDir())).toEqual([]);
    expect(existsSync(path.join(dataDir, 'spool', 'raw', id.slice(-2), `${id}.eml`))).toBe(false);
  });

  it('leaves nothing in tmp after the source fails mid-way', async () => {
    const id = newId();
    const boom = new Error('connection reset');
    await expect(store.write(id, failingSource([randomBytes(100_000), randomBytes(100_000)], boom))).rejects.toBe(boom);
    expect(readdirSync(tmpDir())).toEqual([]);
  });

  it('wraps a filesystem error in SEKISHO_ERR_SPOOL_WRITE with the cause, removing the temp file', async () => {
    const id = `${newId()}xx`;
    // A regular file where the shard directory belongs: the rename into place fails with ENOTDIR.
    writeFileSync(path.join(dataDir, 'spool', 'raw', 'xx'), 'in the way');
    const err = await store.write(id, Readable.from([Buffer.from('hello')])).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SEKISHO_ERR_SPOOL_WRITE', cause: { code: 'ENOTDIR' } });
    expect(readdirSync(tmpDir())).toEqual([]);
  });

  it('still reads the source to its end when the temp file cannot be created', async () => {
    rmSync(tmpDir(), { recursive: true });
    const { source, readToEnd } = trackedSource([randomBytes(1000), randomBytes(1000)]);
    await expect(store.write(newId(), source)).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_WRITE' });
    expect(readToEnd()).toBe(true);
  });

  it('refuses "../x" and similar ids without touching anything outside the spool', async () => {
    const outside = path.join(dataDir, 'spool', 'raw');
    for (const bad of ['../x', '../../../x', 'abcdefgh/../../../x']) {
      await expect(store.write(bad, Readable.from([Buffer.from('escape')]))).rejects.toMatchObject({
        code: 'SEKISHO_ERR_SPOOL_ID',
      });
    }
    expect(readdirSync(outside)).toEqual([]);
    expect(readdirSync(path.join(dataDir, 'spool')).sort()).toEqual(['raw', 'sanitized', 'tmp']);
    expect(readdirSync(dataDir)).toEqual(['spool']);
  });

  it('streams a 50 MB message with small, bounded memory growth (backpressure, no buffering)', async () => {
    const CHUNK_BYTES = 64 * 1024;
    const CHUNKS = 800; // 50 MiB
    // Collecting the source's spent chunks every 2 MiB keeps the test's own garbage out of the measurement:
    // measured growth is then ~4 MB for this store and ~50 MB for one that buffers the message.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const expected = createHash('sha256');
    gc();
    const baseline = process.memoryUsage.rss();
    let peak = baseline;
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < CHUNKS; i++) {
          if (i % 32 === 0) gc();
          // A fresh buffer each time: a store that kept references would hold all 50 MB.
          const chunk = Buffer.alloc(CHUNK_BYTES, i % 251);
          expected.update(chunk);
          peak = Math.max(peak, process.memoryUsage.rss());
          yield chunk;
        }
      })(),
    );
    const id = newId();
    const result = await store.write(id, source);
    expect(result).toEqual({ size: CHUNK_BYTES * CHUNKS, sha256: expected.digest('hex') });
    expect(peak - baseline).toBeLessThan(16 * 1024 * 1024);

    const readBack = createHash('sha256');
    for await (const chunk of store.createReadStream(id)) readBack.update(chunk as Buffer);
    expect(readBack.digest('hex')).toBe(result.sha256);
  });

  it('returns a read stream that can be destroyed early without leaking an error', async () => {
    const id = newId();
    await store.write(id, Readable.from([randomBytes(1024 * 1024)]));
    const stream = store.createReadStream(id);
    for await (const _chunk of stream) break;
    expect(stream.destroyed).toBe(true);
    expect((await collect(store.createReadStream(id))).length).toBe(1024 * 1024);
  });

  describe('temp files left by a crash', () => {
    /** Starts a write that stays in flight until `finish` is called, and returns its temp file name. */
    async function inFlightWrite(s: FileMessageStore) {
      const id = newId();
      const source = new PassThrough();
      const done = s.write(id, source);
      source.write(Buffer.from('first half '));
      await vi.waitFor(() => expect(readdirSync(tmpDir())).toHaveLength(1));
      const name = readdirSync(tmpDir())[0]!;
      const finish = async () => {
        source.end(Buffer.from('second half'));
        await done;
        expect((await s.read(id)).toString()).toBe('first half second half');
      };
      return { name, finish };
    }

    it('are removed when their writer is gone, kept while it may still be writing', async () => {
      const live = await inFlightWrite(store);
      const m = /^[0-9a-z]+\.([0-9a-f]{8})-(\d+)-([0-9a-f]{8})-\d+\.tmp$/.exec(live.name);
      expect(m, live.name).not.toBeNull();
      const [, host, pid, token] = m!;
      expect(Number(pid)).toBe(process.pid);

      const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
      const otherToken = token === '00000000' ? '11111111' : '00000000';
      const otherHost = host === 'ffffffff' ? 'eeeeeeee' : 'ffffffff';
      const files = {
        deadWriter: `${newId()}.${host}-${deadPid}-${token}-0.tmp`,
        earlierProcessSamePid: `${newId()}.${host}-${process.pid}-${otherToken}-0.tmp`,
        liveWriterElsewhere: `${newId()}.${host}-${process.ppid}-${otherToken}-0.tmp`,
        otherHostRecent: `${newId()}.${otherHost}-${deadPid}-${token}-0.tmp`,
        otherHostIdle: `${newId()}.${otherHost}-${deadPid}-${token}-1.tmp`,
        unknownRecent: 'leftover.tmp',
        unknownIdle: 'older-leftover.tmp',
      };
      for (const name of Object.values(files)) writeFileSync(path.join(tmpDir(), name), 'partial');
      const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60_000);
      for (const name of [files.otherHostIdle, files.unknownIdle]) utimesSync(path.join(tmpDir(), name), twoHoursAgo, twoHoursAgo);

      // Another store opening the same dataDir (a worker starting beside a running ingress).
      const second = new FileMessageStore(dataDir);
      expect(readdirSync(tmpDir()).sort()).toEqual(
        [live.name, files.liveWriterElsewhere, files.otherHostRecent, files.unknownRecent].sort(),
      );

      // The write in flight was not disturbed.
      await live.finish();
      await second.close();
    });

    it('of this dataDir do not break a write in flight in another store of the same process', async () => {
      const live = await inFlightWrite(store);
      new FileMessageStore(dataDir);
      expect(readdirSync(tmpDir())).toEqual([live.name]);
      await live.finish();
      expect(readdirSync(tmpDir())).toEqual([]);
    });
  });

  it('lists messages written by another store on the same dataDir', async () => {
    const id = newId();
    await store.write(id, Readable.from([Buffer.from('x')]));
    mkdirSync(path.join(dataDir, 'spool', 'raw', 'not-a-shard-file-but-dir'), { recursive: true });
    writeFileSync(path.join(dataDir, 'spool', 'raw', id.slice(-2), 'stray.txt'), 'x');
    const ids: string[] = [];
    for await (const listed of new FileMessageStore(dataDir).list()) ids.push(listed);
    expect(ids).toEqual([id]);
  });
});

describe('DirSyncer (group fsync of a shard directory)', () => {
  it('gives every caller an fsync that started after its call, sharing one queued fsync among the callers of a burst', async () => {
    const started: { dir: string; done: () => void; fail: (e: Error) => void }[] = [];
    const syncer = new DirSyncer(
      (dir) =>
        new Promise<void>((resolve, reject) => {
          started.push({ dir, done: resolve, fail: reject });
        }),
    );
    const first = syncer.sync('/a');
    expect(started).toHaveLength(1);
    // Two callers while the first fsync runs: neither may be served by it; both share the next one.
    const second = syncer.sync('/a');
    const third = syncer.sync('/a');
    expect(second).toBe(third);
    const other = syncer.sync('/b'); // another directory has its own fsync
    expect(started.map((s) => s.dir)).toEqual(['/a', '/b']);
    started[0]!.done();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(started.map((s) => s.dir)).toEqual(['/a', '/b', '/a']);
    // A caller during the second fsync gets a third one; a failure reaches exactly the callers that shared it.
    const fourth = syncer.sync('/a');
    started[2]!.fail(new Error('EIO'));
    await expect(second).rejects.toThrow('EIO');
    await new Promise((r) => setImmediate(r));
    expect(started).toHaveLength(4);
    started[3]!.done();
    await expect(fourth).resolves.toBeUndefined();
    started[1]!.done();
    await other;
  });
});
