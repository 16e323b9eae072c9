/**
 * A minimal zip writer for building hostile archives in tests: members may be stored or deflated, may lie about
 * their uncompressed size, may be flagged encrypted, and compressed bytes may be reused across members (so a
 * 42.zip-style bomb is built by compressing one leaf once).
 */
import zlib from 'node:zlib';

export interface ZipMember {
  name: string;
  /** Bytes as they go into the archive (already deflated when method is 8). */
  stored: Buffer;
  /** 99: WinZip AES (the real method is in the 0x9901 extra field). */
  method: 0 | 8 | 99;
  crc32: number;
  /** What the headers declare; a liar declares less than the member inflates to. */
  uncompressedSize: number;
  encrypted?: boolean;
  /** Name bytes in a legacy code page (e.g. CP932), written without the UTF-8 flag; `name` is then ignored. */
  legacyName?: Buffer;
  /** Extra field, written in both the local and the central header. */
  extra?: Buffer;
}

/** A deflated member; compress once, reuse the result in as many members (or archives) as wanted. */
export function deflateMember(name: string, data: Buffer): ZipMember {
  return { name, stored: zlib.deflateRawSync(data, { level: 9 }), method: 8, crc32: zlib.crc32(data), uncompressedSize: data.length };
}

export function storeMember(name: string, data: Buffer): ZipMember {
  return { name, stored: data, method: 0, crc32: zlib.crc32(data), uncompressedSize: data.length };
}

/** A member flagged as ZipCrypto-encrypted (12-byte encryption header + opaque bytes), as PPAP mail carries. */
export function encryptedMember(name: string, size: number): ZipMember {
  const stored = Buffer.alloc(12 + size, 0xa5);
  return { name, stored, method: 0, crc32: 0, uncompressedSize: size, encrypted: true };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/**
 * A member really encrypted with ZipCrypto (APPNOTE 6.1, "traditional PKWARE encryption") under `password`, stored:
 * `unzip -P password` extracts it. The 12-byte header's filler is fixed, so the bytes are reproducible.
 */
export function zipCryptoMember(name: string, data: Buffer, password: string): ZipMember {
  const keys = [0x12345678, 0x23456789, 0x34567890];
  const crcByte = (crc: number, b: number) => ((crc >>> 8) ^ (CRC_TABLE[(crc ^ b) & 0xff] as number)) >>> 0;
  const update = (b: number) => {
    keys[0] = crcByte(keys[0] as number, b);
    keys[1] = (Math.imul(((keys[1] as number) + ((keys[0] as number) & 0xff)) >>> 0, 134775813) + 1) >>> 0;
    keys[2] = crcByte(keys[2] as number, (keys[1] as number) >>> 24);
  };
  for (const b of Buffer.from(password, 'utf8')) update(b);
  const crc32 = zlib.crc32(data);
  const plain = Buffer.concat([Buffer.alloc(11, 0x5a), Buffer.from([crc32 >>> 24]), data]);
  const out = Buffer.alloc(plain.length);
  for (let i = 0; i < plain.length; i++) {
    const t = ((keys[2] as number) | 2) & 0xffff;
    out[i] = (plain[i] as number) ^ ((Math.imul(t, t ^ 1) >>> 8) & 0xff);
    update(plain[i] as number);
  }
  return { name, stored: out, method: 0, crc32, uncompressedSize: data.length, encrypted: true };
}

/**
 * A member flagged as WinZip AES-256 (method 99, extra field 0x9901: AE-2, strength 3, real method deflate) with
 * opaque bytes for the salt, password verifier, data and authentication code: enough for every header parser.
 */
export function aesMember(name: string, size: number): ZipMember {
  const extra = Buffer.from([0x01, 0x99, 0x07, 0x00, 0x02, 0x00, 0x41, 0x45, 0x03, 0x08, 0x00]);
  return { name, stored: Buffer.alloc(16 + 2 + size + 10, 0x3c), method: 99, crc32: 0, uncompressedSize: size, encrypted: true, extra };
}

export function buildZip(members: readonly ZipMember[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const name = m.legacyName ?? Buffer.from(m.name, 'utf8');
    const extra = m.extra ?? Buffer.alloc(0);
    const flags = (m.legacyName ? 0 : 0x800) | (m.encrypted ? 1 : 0);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(m.method, 8);
    local.writeUInt32LE(m.crc32, 14);
    local.writeUInt32LE(m.stored.length, 18);
    local.writeUInt32LE(m.uncompressedSize, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(m.method, 10);
    central.writeUInt32LE(m.crc32, 16);
    central.writeUInt32LE(m.stored.length, 20);
    central.writeUInt32LE(m.uncompressedSize, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt16LE(extra.length, 30);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, extra, m.stored);
    centrals.push(central, name, extra);
    offset += local.length + name.length + extra.length + m.stored.length;
  }
  const cd = Buffer.concat(centrals);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(members.length, 8);
  eocd.writeUInt16LE(members.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

/** One zip holding one file. */
export function zipOf(name: string, data: Buffer): Buffer {
  return buildZip([deflateMember(name, data)]);
}

/**
 * A 42.zip-style bomb: `levels` levels of zips, each holding `fanOut` copies of the level below; the leaves are
 * `leafBytes` of zeros. Expanded size: fanOut^levels × leafBytes; the result is a few tens of KB.
 */
export function nestedZipBomb(levels: number, fanOut: number, leafBytes: number): Buffer {
  const leaf = deflateMember('0.dat', Buffer.alloc(leafBytes));
  let level = buildZip(Array.from({ length: fanOut }, (_, i) => ({ ...leaf, name: `${i}.dat` })));
  for (let l = 1; l < levels; l++) {
    const inner = deflateMember('0.zip', level);
    level = buildZip(Array.from({ length: fanOut }, (_, i) => ({ ...inner, name: `${i}.zip` })));
  }
  return level;
}
