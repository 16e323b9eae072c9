/**
 * A unix-socket proxy in front of a real clamd, for the tests of ClamdClient's connections: it counts the
 * connections clients open, and can break the next command in the ways a clamd session breaks (closed under the
 * client, "COMMAND READ TIMED OUT", a reply numbered for another request) or hold it unanswered.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * What happens to a command instead of reaching clamd:
 *   close           the connection is closed without a reply (clamd restarted, or ended the session)
 *   read-timed-out  "COMMAND READ TIMED OUT\n", then close (clamd's ReadTimeout on an idle session)
 *   wrong-number    "99: stream: OK\0" (a verdict numbered for another request)
 *   hold            nothing, ever (a hung clamd)
 */
export type Sabotage = 'close' | 'read-timed-out' | 'wrong-number' | 'hold';

export interface ClamdProxy {
  endpoint: { socket: string };
  /** Client connections accepted so far. */
  readonly connections: number;
  /** Client connections open now. */
  readonly open: number;
  /** Commands held by `hold` whose connection is still open. */
  readonly held: number;
  /** The next `count` commands (the first bytes a client sends after its previous command was answered) get `mode`. */
  sabotage(mode: Sabotage, count?: number): void;
  /** Sends `text` to every client connection that is waiting for nothing (unsolicited bytes on an idle session). */
  poke(text: string): void;
  close(): Promise<void>;
}

export async function startClamdProxy(clamdSocket: string): Promise<ClamdProxy> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-clamd-proxy-'));
  const socket = path.join(dir, 'proxy.sock');
  const clients = new Set<{ client: net.Socket; upstream: net.Socket; waiting: boolean; held: boolean }>();
  const plan: Sabotage[] = [];
  let connections = 0;

  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect({ path: clamdSocket });
    const c = { client, upstream, waiting: false, held: false };
    clients.add(c);
    const drop = () => {
      clients.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d: Buffer) => {
      if (c.held) return;
      if (!c.waiting) {
        c.waiting = true;
        const mode = plan.shift();
        if (mode === 'close') return drop();
        if (mode === 'read-timed-out') {
          client.end('COMMAND READ TIMED OUT\n');
          upstream.destroy();
          return;
        }
        if (mode === 'wrong-number') {
          c.held = true;
          client.write('99: stream: OK\0');
          return;
        }
        if (mode === 'hold') {
          c.held = true;
          return;
        }
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (d.includes(0)) c.waiting = false;
      client.write(d);
    });
    client.on('close', drop);
    upstream.on('close', () => client.end());
    client.on('error', drop);
    upstream.on('error', drop);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));

  return {
    endpoint: { socket },
    get connections() {
      return connections;
    },
    get open() {
      return clients.size;
    },
    get held() {
      return [...clients].filter((c) => c.held).length;
    },
    sabotage(mode, count = 1) {
      for (let i = 0; i < count; i++) plan.push(mode);
    },
    poke(text) {
      for (const c of clients) if (!c.waiting) c.client.write(text);
    },
    async close() {
      for (const c of clients) {
        c.client.destroy();
        c.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
