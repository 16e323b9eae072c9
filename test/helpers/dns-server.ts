/**
 * A real authoritative DNS server on 127.0.0.1 for tests of DNS-based checks (SPF, DKIM, DMARC, DNSBL): UDP and
 * TCP on one OS-chosen port, zones given per test as plain records. Unknown names answer NXDOMAIN, a known name
 * without the asked type answers NOERROR with no records (NODATA). A CNAME is followed inside the zone.
 * Failures on demand: `drop(name)` never answers (the client times out), `servfail(name)` answers SERVFAIL,
 * `refuse(name)` answers REFUSED. Every query is recorded in `queries`, so tests can count what reached the wire.
 *
 * A UDP answer larger than the client's EDNS payload size (512 bytes without EDNS) is sent truncated (TC), as a
 * real server does, so the client retries over TCP.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import dnsPacket, { type Answer, type DecodedPacket, type Packet, type Question } from 'dns-packet';

export type TestRecordType = 'A' | 'AAAA' | 'TXT' | 'MX' | 'CNAME' | 'PTR';

export type TestRecord =
  | { name: string; type: 'A' | 'AAAA' | 'CNAME' | 'PTR'; ttl?: number; data: string }
  /** One string, or the character-strings of one TXT record (each ≤ 255 bytes; a longer string is split). */
  | { name: string; type: 'TXT'; ttl?: number; data: string | string[] }
  | { name: string; type: 'MX'; ttl?: number; data: { preference: number; exchange: string } };

export interface DnsQueryLog {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

/**
 * The resolver timeout tests give a resolver asking this server. Not shorter: the server answers on the test's own
 * event loop, and after a loop blocked this long (CPU shared with other test workers) the resolver's timer fires
 * before the answer waiting in the socket is read. Tests that drop queries wait this long per lookup.
 */
export const TEST_DNS_TIMEOUT_MS = 1_000;

const DEFAULT_TTL = 300;
/** A UDP answer without EDNS must fit in this (RFC 1035 §4.2.1). */
const CLASSIC_UDP_BYTES = 512;
const RCODE_NXDOMAIN = 3;
const RCODE_SERVFAIL = 2;
const RCODE_REFUSED = 5;
/** CNAME chains longer than this inside the zone are answered as they stand (a loop must not hang the server). */
const MAX_CNAME_HOPS = 8;

function norm(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

/** TXT character-strings are at most 255 bytes: long strings are split, as zone files do. */
function txtStrings(data: string | string[]): string[] {
  return (Array.isArray(data) ? data : [data]).flatMap((s) => {
    const out: string[] = [];
    for (let i = 0; i < s.length; i += 255) out.push(s.slice(i, i + 255));
    return out.length ? out : [''];
  });
}

export class TestDnsServer {
  readonly #udp: Socket;
  readonly #tcp: Server;
  readonly #sockets = new Set<TcpSocket>();
  #records: TestRecord[] = [];
  readonly #dropped = new Set<string>();
  readonly #servfail = new Set<string>();
  readonly #refused = new Set<string>();
  /** Every query received, in order. */
  readonly queries: DnsQueryLog[] = [];
  port = 0;

  private constructor() {
    this.#udp = createSocket('udp4');
    this.#tcp = createServer((sock) => this.#onTcp(sock));
  }

  /** Starts a server on 127.0.0.1 (UDP and TCP on the same OS-chosen port) serving `records`. */
  static async start(records: TestRecord[] = []): Promise<TestDnsServer> {
    for (let attempt = 0; ; attempt++) {
      const server = new TestDnsServer();
      server.#records = [...records];
      try {
        await server.#listen();
        return server;
      } catch (err) {
        await server.close();
        // The UDP port chosen by the OS may be taken on TCP: pick another.
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 10) throw err;
      }
    }
  }

  async #listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#udp.once('error', reject);
      this.#udp.bind(0, '127.0.0.1', () => {
        this.#udp.off('error', reject);
        resolve();
      });
    });
    this.port = this.#udp.address().port;
    this.#udp.on('message', (msg, rinfo) => {
      const reply = this.#answer(msg, 'udp');
      if (reply) this.#udp.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve, reject) => {
      this.#tcp.once('error', reject);
      this.#tcp.listen(this.port, '127.0.0.1', () => {
        this.#tcp.off('error', reject);
        resolve();
      });
    });
  }

  /** "127.0.0.1:port", the form resolver configs take. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Replaces the zone. */
  setRecords(records: TestRecord[]): void {
    this.#records = [...records];
  }

  add(...records: TestRecord[]): void {
    this.#records.push(...records);
  }

  /** Queries for `name` (any type) get no answer at all: the client times out. */
  drop(name: string): void {
    this.#dropped.add(norm(name));
  }

  /** Queries for `name` (any type) are answered SERVFAIL. */
  servfail(name: string): void {
    this.#servfail.add(norm(name));
  }

  /** Queries for `name` (any type) are answered REFUSED. */
  refuse(name: string): void {
    this.#refused.add(norm(name));
  }

  /** Every query for every name is dropped: "DNS is down". */
  dropAll(): void {
    this.#dropped.add('*');
  }

  /** Undoes drop/servfail/refuse/dropAll. */
  heal(): void {
    this.#dropped.clear();
    this.#servfail.clear();
    this.#refused.clear();
  }

  /** Queries received for `name` (and `type`, when given). */
  count(name: string, type?: string): number {
    return this.queries.filter((q) => q.name === norm(name) && (type === undefined || q.type === type)).length;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await Promise.all([
      new Promise<void>((resolve) => {
        try {
          this.#udp.close(() => resolve());
        } catch {
          resolve(); // never bound
        }
      }),
      new Promise<void>((resolve) => (this.#tcp.listening ? this.#tcp.close(() => resolve()) : resolve())),
    ]);
  }

  #onTcp(sock: TcpSocket): void {
    this.#sockets.add(sock);
    sock.on('close', () => this.#sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const reply = this.#answer(msg, 'tcp');
        if (!reply) continue;
        const head = Buffer.alloc(2);
        head.writeUInt16BE(reply.length);
        sock.write(Buffer.concat([head, reply]));
      }
    });
  }

  #answer(msg: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    let query: DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return undefined;
    }
    const q = query.questions?.[0];
    if (!q) return undefined;
    const name = norm(q.name);
    this.queries.push({ name, type: q.type, transport });
    if (this.#dropped.has('*') || this.#dropped.has(name)) return undefined;

    const reply = (rcode: number, answers: Answer[] = [], flags = 0): Packet => ({
      type: 'response',
      id: query.id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | flags | rcode,
      questions: [q],
      answers,
    });
    let packet: Packet;
    if (this.#servfail.has(name)) packet = reply(RCODE_SERVFAIL);
    else if (this.#refused.has(name)) packet = reply(RCODE_REFUSED);
    else packet = this.#lookup(q, reply);

    const encoded = dnsPacket.encode(packet);
    if (transport === 'tcp') return encoded;
    const opt = query.additionals?.find((a) => a.type === 'OPT');
    const limit = opt && 'udpPayloadSize' in opt ? Math.max(CLASSIC_UDP_BYTES, opt.udpPayloadSize) : CLASSIC_UDP_BYTES;
    return encoded.length <= limit ? encoded : dnsPacket.encode({ ...packet, answers: [], flags: (packet.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE });
  }

  #lookup(q: Question, reply: (rcode: number, answers?: Answer[]) => Packet): Packet {
    const answers: Answer[] = [];
    let name = norm(q.name);
    for (let hop = 0; hop <= MAX_CNAME_HOPS; hop++) {
      const here = this.#records.filter((r) => norm(r.name) === name);
      if (!here.length) return reply(answers.length ? 0 : RCODE_NXDOMAIN, answers);
      const exact = here.filter((r) => r.type === q.type);
      const cname = here.find((r) => r.type === 'CNAME');
      if (exact.length || !cname || q.type === 'CNAME') return reply(0, [...answers, ...exact.map(toAnswer)]);
      answers.push(toAnswer(cname));
      name = norm(cname.data as string);
    }
    return reply(0, answers);
  }
}

function toAnswer(r: TestRecord): Answer {
  const base = { name: r.name.replace(/\.$/, ''), ttl: r.ttl ?? DEFAULT_TTL, class: 'IN' as const };
  switch (r.type) {
    case 'TXT':
      return { ...base, type: 'TXT', data: txtStrings(r.data) };
    case 'MX':
      return { ...base, type: 'MX', data: { preference: r.data.preference, exchange: r.data.exchange } };
    default:
      return { ...base, type: r.type, data: r.data };
  }
}
