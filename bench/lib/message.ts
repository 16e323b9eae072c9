/**
 * Bench messages: ordinary, well-formed plain-text mail (so that no check of the system under test has a reason
 * to hold it), each with a unique `X-Bench-Id` header by which the sink times its arrival. Bodies are built once
 * per size and shared; no line starts with "." so the bytes need no dot-stuffing on the wire.
 */
export const benchDomain = 'bench.example.lg.jp';
export const benchSender = 'sender@bench-sender.example.org';

const words = (
  'the council meeting minutes budget report schedule for next week please find attached revised plan ' +
  'regarding school district water supply road maintenance disaster drill notice residents application ' +
  'deadline approved pending review contact office hours thank you regards department section'
).split(' ');

/** Deterministic text of exactly `bytes` bytes in CRLF lines of at most 76 characters, ending with CRLF. */
export function textBody(bytes: number): Buffer {
  const lines: string[] = [];
  let size = 0;
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  while (size < bytes) {
    let line = '';
    while (line.length < 60) line += (line === '' ? '' : ' ') + words[rand() % words.length];
    const room = bytes - size - 2;
    if (room <= 0) {
      lines.push('');
      break;
    }
    if (line.length > room) line = 'x'.repeat(room);
    lines.push(line);
    size += line.length + 2;
  }
  return Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1');
}

export interface BenchMessage {
  id: string;
  from: string;
  rcpt: string;
  /** The message bytes (header + body) in order; the DATA terminator is not included. */
  chunks: Iterable<Buffer>;
  bytes: number;
}

function header(id: string, rcpt: string, extra: string[] = []): string {
  return [
    `From: Bench Sender <${benchSender}>`,
    `To: <${rcpt}>`,
    `Subject: bench message ${id}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: <${id}@bench-sender.example.org>`,
    'MIME-Version: 1.0',
    `X-Bench-Id: ${id}`,
    ...extra,
  ]
    .map((l) => `${l}\r\n`)
    .join('');
}

/** Makes messages of about `totalBytes` bytes each (header included); one body buffer shared by all. */
export function messageFactory(totalBytes: number): (id: string, seq: number) => BenchMessage {
  const sample = header('x'.repeat(24), `user00@${benchDomain}`, [
    'Content-Type: text/plain; charset=us-ascii',
    'Content-Transfer-Encoding: 7bit',
  ]);
  const body = textBody(Math.max(64, totalBytes - Buffer.byteLength(sample) - 2));
  return (id, seq) => {
    const rcpt = `user${String(seq % 100).padStart(2, '0')}@${benchDomain}`;
    const head = Buffer.from(
      `${header(id, rcpt, ['Content-Type: text/plain; charset=us-ascii', 'Content-Transfer-Encoding: 7bit'])}\r\n`,
      'latin1',
    );
    return { id, from: benchSender, rcpt, chunks: [head, body], bytes: head.length + body.length };
  };
}

/**
 * One big message of about `totalBytes`: a short text part and a base64 attachment, produced chunk by chunk so
 * that the generator never holds it whole.
 */
export function bigMessage(id: string, totalBytes: number): BenchMessage {
  const boundary = `----=_bench_${id}`;
  const rcpt = `big@${benchDomain}`;
  const head = Buffer.from(
    header(id, rcpt, [`Content-Type: multipart/mixed; boundary="${boundary}"`]) +
      '\r\n' +
      `--${boundary}\r\n` +
      'Content-Type: text/plain; charset=us-ascii\r\n\r\n' +
      'A large attachment for the memory bound of the ingress.\r\n' +
      `--${boundary}\r\n` +
      'Content-Type: application/octet-stream; name="bench.bin"\r\n' +
      'Content-Transfer-Encoding: base64\r\n' +
      'Content-Disposition: attachment; filename="bench.bin"\r\n\r\n',
    'latin1',
  );
  const tail = Buffer.from(`--${boundary}--\r\n`, 'latin1');
  // 1,000 lines of 76 base64 characters (57 pseudo-random bytes each), repeated.
  const raw = Buffer.alloc(57);
  let seed = 987654321;
  const lines: string[] = [];
  for (let i = 0; i < 1_000; i++) {
    for (let j = 0; j < raw.length; j++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      raw[j] = seed >>> 16;
    }
    lines.push(`${raw.toString('base64')}\r\n`);
  }
  const block = Buffer.from(lines.join(''), 'latin1');
  const lineBytes = 78;
  const bodyLines = Math.max(1, Math.floor((totalBytes - head.length - tail.length) / lineBytes));
  const fullBlocks = Math.floor(bodyLines / 1_000);
  const rest = block.subarray(0, (bodyLines % 1_000) * lineBytes);
  const bytes = head.length + fullBlocks * block.length + rest.length + tail.length;
  function* chunks(): Generator<Buffer> {
    yield head;
    for (let i = 0; i < fullBlocks; i++) yield block;
    if (rest.length > 0) yield rest;
    yield tail;
  }
  return { id, from: benchSender, rcpt, chunks: { [Symbol.iterator]: chunks }, bytes };
}
