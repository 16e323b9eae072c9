import DataStream from 'nodemailer/lib/smtp-connection/data-stream.js';
import { describe, expect, it } from 'vitest';
import { installFastDotStuffing, needsEncoding, nodemailerTransform } from '../../../src/smtp/dot-stuffing.ts';

/** Runs `chunks` through a DataStream, with the fast path or with nodemailer's byte-by-byte encoder only. */
async function encode(chunks: Buffer[], fast: boolean): Promise<{ out: Buffer; inBytes: number; outBytes: number }> {
  const ds = new DataStream();
  if (!fast) (ds as unknown as { _transform: unknown })._transform = nodemailerTransform;
  const out: Buffer[] = [];
  ds.on('data', (b: Buffer) => out.push(b));
  const ended = new Promise((resolve) => ds.on('end', resolve));
  for (const c of chunks) ds.write(c);
  ds.end();
  await ended;
  return { out: Buffer.concat(out), inBytes: ds.inByteCount, outBytes: ds.outByteCount };
}

/** Deterministic pseudo-random generator, so that a failure can be reproduced from its seed. */
function rng(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x80000000;
  };
}

describe('DATA dot-stuffing fast path', () => {
  installFastDotStuffing();

  it('is installed on nodemailer DataStream and keeps the original for what it cannot clear', () => {
    expect(DataStream.prototype._transform).not.toBe(nodemailerTransform);
    installFastDotStuffing();
    expect(DataStream.prototype._transform).not.toBe(nodemailerTransform);
  });

  it('clears plain CRLF text and refuses each case the encoder would change', () => {
    const ok = Buffer.from('Subject: x\r\n\r\nline one.\r\nline two\r\n');
    expect(needsEncoding(ok, false)).toBe(false);
    expect(needsEncoding(ok, 0x0a)).toBe(false);
    expect(needsEncoding(Buffer.from('a\r\n.b\r\n'), false)).toBe(true); // a line starting with a dot
    expect(needsEncoding(Buffer.from('.a\r\n'), false)).toBe(true); // at the start of the data
    expect(needsEncoding(Buffer.from('.a\r\n'), 0x0a)).toBe(true); // after a line end in the previous chunk
    expect(needsEncoding(Buffer.from('.a\r\n'), 0x61)).toBe(false); // mid-line
    expect(needsEncoding(Buffer.from('a\nb\r\n'), false)).toBe(true); // bare LF
    expect(needsEncoding(Buffer.from('a\rb\r\n'), false)).toBe(true); // bare CR
    expect(needsEncoding(Buffer.from('\na'), 0x0d)).toBe(false); // CRLF split over two chunks
    expect(needsEncoding(Buffer.from('\n.a'), 0x0d)).toBe(true); // ... followed by a dot
    expect(needsEncoding(Buffer.from('a'), 0x0d)).toBe(true); // a CR that ended the previous chunk was bare
    expect(needsEncoding(Buffer.from('\na'), 0x61)).toBe(true); // an LF after a non-CR in the previous chunk
    expect(needsEncoding(Buffer.from('ab\r'), false)).toBe(false); // a trailing CR waits for the next chunk
  });

  it('produces the same bytes and counts as nodemailer on random input split at random points', async () => {
    const alphabet = [0x0d, 0x0a, 0x2e, 0x61, 0x0d, 0x0a, 0x61, 0x62];
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      // Mostly CRLF text (so that the fast path is taken), with random hostile bytes in some inputs.
      const hostile = seed % 3 === 0;
      const bytes: number[] = [];
      const len = Math.floor(r() * 300);
      for (let i = 0; i < len; i++) {
        if (hostile) bytes.push(alphabet[Math.floor(r() * alphabet.length)] as number);
        else if (r() < 0.06) bytes.push(0x0d, 0x0a);
        else bytes.push(0x61 + Math.floor(r() * 3) - (r() < 0.05 ? 0x33 : 0));
      }
      const data = Buffer.from(bytes);
      const chunks: Buffer[] = [];
      for (let off = 0; off < data.length; ) {
        const n = 1 + Math.floor(r() * 40);
        chunks.push(data.subarray(off, off + n));
        off += n;
      }
      const fast = await encode(chunks, true);
      const slow = await encode(chunks, false);
      expect(fast.out.toString('latin1'), `seed ${seed}`).toBe(slow.out.toString('latin1'));
      expect([fast.inBytes, fast.outBytes], `seed ${seed}`).toEqual([slow.inBytes, slow.outBytes]);
    }
  });

  it('passes a clean 100 KB message through unchanged, terminated by CRLF.CRLF', async () => {
    const body = Buffer.from('the council meeting minutes. budget report\r\n'.repeat(2400));
    const { out } = await encode([body.subarray(0, 65536), body.subarray(65536)], true);
    expect(out.equals(Buffer.concat([body, Buffer.from('.\r\n')]))).toBe(true);
  });
});
