/** Opening a listening socket on a configured "host:port" (IPv6 in brackets; port 0 = any free port). */
import type { Server } from 'node:net';

export function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) };
}

/** Listens; resolves with the host and the port actually bound, or rejects with the listen error. */
export function listenOn(server: Server, listen: string): Promise<{ host: string; port: number }> {
  const { host, port } = parseListen(listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve({ host, port: typeof addr === 'object' && addr ? addr.port : port });
    });
  });
}
