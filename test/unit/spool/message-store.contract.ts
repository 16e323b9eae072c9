/**
 * The MessageStore contract (DESIGN §5, STYLE rule 6): every driver's test file calls
 * describeMessageStoreContract with a factory for a fresh, empty store. What the ingress and the pipeline rely
 * on is asserted here once: exact bytes, size and SHA-256, kinds kept apart, not-found and invalid-id errors,
 * and that a failed write (size limit, broken source) leaves nothing behind and still consumes the source.
 */
import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SizeLimitError, type MessageKind, type MessageStore } from '../../../src/spool/message-store.ts';

/** Two sanitizing tenants' copies of one message. */
const SAN_A: MessageKind = { sanitized: 'city-a' };
const SAN_B: MessageKind = { sanitized: 'town-b' };

export interface MessageStoreFixture {
  store: MessageStore;
  cleanup(): Promise<void>;
}

export function newId(): string {
  return randomBytes(8).toString('hex');
}

export function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** A header line in ISO-2022-JP ("日本" between ESC $ B and ESC ( B), then every byte value 0x00–0xFF. */
export function hostileBytes(): Buffer {
  const jis = Buffer.from([0x1b, 0x24, 0x42, 0x46, 0x7c, 0x4b, 0x5c, 0x1b, 0x28, 0x42]);
  const everyByte = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  return Buffer.concat([Buffer.from('Subject: '), jis, Buffer.from('\r\n\r\n'), everyByte, Buffer.from(everyByte).reverse()]);
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A source that records whether it was read to its end. */
export function trackedSource(chunks: Buffer[]): { source: Readable; readToEnd(): boolean } {
  let done = false;
  const source = Readable.from(
    (function* () {
      yield* chunks;
      done = true;
    })(),
  );
  return { source, readToEnd: () => done };
}

/** A source that yields `chunks` and then fails, like an SMTP client that disconnects mid-DATA. */
export function failingSource(chunks: Buffer[], error: Error): Readable {
  return Readable.from(
    (function* () {
      yield* chunks;
      throw error;
    })(),
  );
}

async function listAll(store: MessageStore): Promise<string[]> {
  const ids: string[] = [];
  for await (const id of store.list()) ids.push(id);
  return ids.sort();
}

export function describeMessageStoreContract(name: string, make: () => Promise<MessageStoreFixture>): void {
  describe(`MessageStore contract: ${name}`, () => {
    let fx: MessageStoreFixture;
    let store: MessageStore;
    beforeEach(async () => {
      fx = await make();
      store = fx.store;
    });
    afterEach(async () => {
      await store.close();
      await fx.cleanup();
    });

    it('round-trips every byte value and ISO-2022-JP escapes exactly, with size and sha256 of the bytes', async () => {
      const id = newId();
      const bytes = hostileBytes();
      const result = await store.write(id, Readable.from([bytes]));
      expect(result).toEqual({ size: bytes.length, sha256: sha256(bytes) });
      expect((await store.read(id)).equals(bytes)).toBe(true);
      expect((await collect(store.createReadStream(id))).equals(bytes)).toBe(true);
    });

    it('concatenates many chunks of different sizes in order', async () => {
      const id = newId();
      const chunks = Array.from({ length: 500 }, (_, i) => randomBytes((i * 37) % 3000));
      const all = Buffer.concat(chunks);
      expect(await store.write(id, Readable.from(chunks))).toEqual({ size: all.length, sha256: sha256(all) });
      expect((await store.read(id)).equals(all)).toBe(true);
    });

    it('stores an empty message', async () => {
      const id = newId();
      expect(await store.write(id, Readable.from([Buffer.alloc(0)]))).toEqual({ size: 0, sha256: sha256(Buffer.alloc(0)) });
      expect(await store.read(id)).toHaveLength(0);
      expect(await store.exists(id)).toBe(true);
    });

    it('keeps raw and sanitized apart; raw is the default kind', async () => {
      const id = newId();
      await store.write(id, Readable.from([Buffer.from('raw bytes')]));
      expect(await store.exists(id)).toBe(true);
      expect(await store.exists(id, 'raw')).toBe(true);
      expect(await store.exists(id, SAN_A)).toBe(false);
      await expect(store.read(id, SAN_A)).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_NOT_FOUND' });

      await store.write(id, Readable.from([Buffer.from('sanitized bytes')]), { kind: SAN_A });
      expect((await store.read(id, SAN_A)).toString()).toBe('sanitized bytes');
      expect((await store.read(id)).toString()).toBe('raw bytes');
    });

    it("keeps each tenant's sanitized copy apart from the other tenants'", async () => {
      const id = newId();
      await store.write(id, Readable.from([Buffer.from('raw')]));
      await store.write(id, Readable.from([Buffer.from('for a')]), { kind: SAN_A });
      expect(await store.exists(id, SAN_B)).toBe(false);
      await store.write(id, Readable.from([Buffer.from('for b')]), { kind: SAN_B });
      expect((await store.read(id, SAN_A)).toString()).toBe('for a');
      expect((await store.read(id, SAN_B)).toString()).toBe('for b');
      expect(await collect(store.createReadStream(id, SAN_B))).toEqual(Buffer.from('for b'));
      await store.delete(id);
      expect(await store.exists(id, SAN_A)).toBe(false);
      expect(await store.exists(id, SAN_B)).toBe(false);
    });

    it('refuses a sanitized key that is not a tenant id (path traversal) and leaves nothing behind', async () => {
      const id = newId();
      for (const sanitized of ['../raw', '..', 'a/b', '', 'A', 'x'.repeat(64), 'a\\b', '.hidden']) {
        await expect(store.write(id, Readable.from([Buffer.from('x')]), { kind: { sanitized } })).rejects.toThrow(/tenant id/);
        await expect(store.read(id, { sanitized })).rejects.toThrow(/tenant id/);
        await expect(store.exists(id, { sanitized })).rejects.toThrow(/tenant id/);
      }
      expect(await store.exists(id)).toBe(false);
      expect(await listAll(store)).not.toContain(id);
    });

    it('replaces the content when an id is written again', async () => {
      const id = newId();
      await store.write(id, Readable.from([Buffer.from('first')]), { kind: SAN_A });
      await store.write(id, Readable.from([Buffer.from('second')]), { kind: SAN_A });
      expect((await store.read(id, SAN_A)).toString()).toBe('second');
    });

    it('reports a missing id as SEKISHO_ERR_SPOOL_NOT_FOUND from read and as an error event of the stream', async () => {
      const id = newId();
      expect(await store.exists(id)).toBe(false);
      await expect(store.read(id)).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_NOT_FOUND' });
      await expect(collect(store.createReadStream(id))).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_NOT_FOUND' });
      await expect(collect(store.createReadStream(id, SAN_A))).rejects.toMatchObject({
        code: 'SEKISHO_ERR_SPOOL_NOT_FOUND',
      });
    });

    it('accepts exactly maxBytes', async () => {
      const id = newId();
      const bytes = randomBytes(1000);
      expect(await store.write(id, Readable.from([bytes.subarray(0, 400), bytes.subarray(400)]), { maxBytes: 1000 })).toEqual({
        size: 1000,
        sha256: sha256(bytes),
      });
    });

    it('rejects one byte over maxBytes with SizeLimitError, after reading the source to its end, storing nothing', async () => {
      const id = newId();
      const { source, readToEnd } = trackedSource([randomBytes(600), randomBytes(401), randomBytes(5000)]);
      const err = await store.write(id, source, { maxBytes: 1000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SizeLimitError);
      expect((err as SizeLimitError).limitBytes).toBe(1000);
      // The SMTP ingress can answer 552 only once the whole DATA stream is consumed.
      expect(readToEnd()).toBe(true);
      expect(await store.exists(id)).toBe(false);
      expect(await listAll(store)).toEqual([]);
    });

    it('rejects with the source error when the source fails mid-way, storing nothing', async () => {
      const id = newId();
      const boom = new Error('client went away');
      await expect(store.write(id, failingSource([randomBytes(70_000), randomBytes(70_000)], boom))).rejects.toBe(boom);
      expect(await store.exists(id)).toBe(false);
      expect(await listAll(store)).toEqual([]);
    });

    // Regression: the file store opened its temp file before it read the source, and an error of the source in that
    // moment (the SMTP client gone just after DATA) was an 'error' event nobody listened to: the ingress crashed.
    it('rejects with the source error when the source fails before the store has begun to read it', async () => {
      const id = newId();
      const boom = new Error('client went away');
      const source = new PassThrough();
      const written = store.write(id, source);
      source.destroy(boom);
      await expect(written).rejects.toBe(boom);
      expect(await store.exists(id)).toBe(false);
      expect(await listAll(store)).toEqual([]);
    });

    it('rejects ids outside [0-9a-z]{8,64} with SEKISHO_ERR_SPOOL_ID from every method', async () => {
      for (const bad of ['../x', '../../etc/passwd', 'ABCDEFGH', 'abcdefg', 'a'.repeat(65), 'abcdefgh/..', 'abcdefgh\0', '']) {
        const { source, readToEnd } = trackedSource([Buffer.from('x')]);
        await expect(store.write(bad, source)).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_ID' });
        expect(readToEnd()).toBe(true);
        await expect(store.read(bad)).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_ID' });
        await expect(store.exists(bad)).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_ID' });
        await expect(store.delete(bad)).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_ID' });
        await expect(collect(store.createReadStream(bad))).rejects.toMatchObject({ code: 'SEKISHO_ERR_SPOOL_ID' });
      }
      expect(await listAll(store)).toEqual([]);
    });

    it('accepts ids of 8 and of 64 characters', async () => {
      for (const id of ['a1b2c3d4', 'z9'.repeat(32)]) {
        await store.write(id, Readable.from([Buffer.from(id)]));
        expect((await store.read(id)).toString()).toBe(id);
      }
    });

    it('deletes every kind of an id, and deleting an unknown id is no error', async () => {
      const id = newId();
      const other = newId();
      await store.write(id, Readable.from([Buffer.from('raw')]));
      await store.write(id, Readable.from([Buffer.from('sanitized')]), { kind: SAN_A });
      await store.write(other, Readable.from([Buffer.from('other')]));
      await store.delete(id);
      expect(await store.exists(id)).toBe(false);
      expect(await store.exists(id, SAN_A)).toBe(false);
      expect((await store.read(other)).toString()).toBe('other');
      await store.delete(id);
      await store.delete(newId());
    });

    it('lists every id that has a raw message, once, and no sanitized-only id', async () => {
      const raw = Array.from({ length: 40 }, newId);
      const sanitizedOnly = newId();
      for (const id of raw) await store.write(id, Readable.from([Buffer.from(id)]));
      await store.write(raw[0]!, Readable.from([Buffer.from('s')]), { kind: SAN_A });
      await store.write(sanitizedOnly, Readable.from([Buffer.from('s')]), { kind: SAN_A });
      expect(await listAll(store)).toEqual([...raw].sort());
    });

    it('takes concurrent writes of ids that share a shard', async () => {
      const ids = Array.from({ length: 20 }, (_, i) => `${newId()}${String(i).padStart(2, '0')}zz`);
      const bodies = ids.map(() => randomBytes(20_000));
      const results = await Promise.all(ids.map((id, i) => store.write(id, Readable.from([bodies[i]!]))));
      expect(results.map((r) => r.sha256)).toEqual(bodies.map(sha256));
      for (const [i, id] of ids.entries()) expect((await store.read(id)).equals(bodies[i]!)).toBe(true);
    });
  });
}
