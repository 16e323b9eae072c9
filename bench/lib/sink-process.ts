/**
 * The bench sink, run as a child process of bench/relay.ts (so that it has an event loop, and a CPU, of its own):
 * an SMTP server on 127.0.0.1 that accepts everything, discards the bytes and records when each message with an
 * `X-Bench-Id` header fully arrived. Talks to its parent over IPC only (see sink.ts).
 */
import { SMTPServer } from 'smtp-server';
import type { SinkReply, SinkRequest } from './sink.ts';
import { now } from './util.ts';

/** The header block is searched for X-Bench-Id within this many bytes; bench headers are far smaller. */
const maxHeadBytes = 256 * 1024;

let prefix = '\u0000';
let arrivals = new Map<string, number>();
let duplicates = 0;
let others = 0;
let bytes = 0;
let lastArrival = 0;

const server = new SMTPServer({
  name: 'bench-sink.localdomain',
  banner: 'bench sink',
  disableReverseLookup: true,
  authOptional: true,
  disabledCommands: ['AUTH'],
  hideSTARTTLS: true,
  logger: false,
  maxClients: 2_000,
  socketTimeout: 120_000,
  onData(stream, _session, callback) {
    let head = '';
    let id: string | null = null;
    let searching = true;
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (!searching) return;
      head += chunk.toString('latin1', 0, Math.min(chunk.length, maxHeadBytes));
      const end = head.search(/\r?\n\r?\n/);
      const block = end >= 0 ? head.slice(0, end) : head;
      const m = /^X-Bench-Id:[ \t]*(\S+)/im.exec(block);
      if (m) id = m[1] ?? null;
      if (m || end >= 0 || head.length >= maxHeadBytes) {
        searching = false;
        head = '';
      }
    });
    stream.on('end', () => {
      const t = now();
      bytes += size;
      if (id !== null && id.startsWith(prefix)) {
        if (arrivals.has(id)) duplicates += 1;
        else arrivals.set(id, t);
        lastArrival = t;
      } else {
        others += 1;
      }
      callback(null, 'Ok: discarded by the bench sink');
    });
    stream.on('error', (err) => callback(err));
  },
});

server.on('error', (err) => {
  console.error('bench sink error:', err);
});

function reply(msg: SinkReply): void {
  process.send?.(msg);
}

process.on('message', (req: SinkRequest) => {
  switch (req.type) {
    case 'reset':
      prefix = req.prefix;
      arrivals = new Map();
      duplicates = 0;
      others = 0;
      bytes = 0;
      lastArrival = 0;
      reply({ type: 'ok', seq: req.seq });
      break;
    case 'stats':
      reply({ type: 'stats', seq: req.seq, count: arrivals.size, duplicates, others, bytes, lastArrival });
      break;
    case 'arrivals':
      reply({ type: 'arrivals', seq: req.seq, arrivals: [...arrivals] });
      break;
    case 'stop':
      server.close(() => process.exit(0));
      setTimeout(() => process.exit(0), 2_000).unref();
      break;
  }
});

// The parent went away (crash, kill): nothing left to serve.
process.on('disconnect', () => process.exit(0));

server.listen(0, '127.0.0.1', () => {
  const address = server.server.address();
  if (address === null || typeof address === 'string') throw new Error('sink: no port');
  reply({ type: 'listening', seq: 0, port: address.port });
});
