/** Opening a listening socket on a configured "host:port" (IPv6 in brackets; port 0 = any free port). */
import type { Server } from 'node:net';

export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

export interface Bound {
  host: string;
  /** The port actually bound (the OS's choice for port 0). */
  port: number;
  /** `listen` with that port, for logs: "127.0.0.1:2525", "[::]:25". */
  address: string;
}

/** Listens; resolves with what was bound, or rejects with the listen error. */
export function listenOn(server: Server, listen: string): Promise<Bound> {
  const { host, port } = parseListen(listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      const bound = typeof addr === 'object' && addr ? addr.port : port;
      resolve({ host, port: bound, address: `${listen.slice(0, listen.lastIndexOf(':'))}:${bound}` });
    });
  });
}
