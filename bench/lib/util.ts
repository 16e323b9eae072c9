/**
 * Small helpers shared by the bench scripts: a wall clock that child processes share, bounded waiting, free
 * loopback ports.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

/** Milliseconds since the epoch with sub-millisecond resolution; comparable between processes on one host. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export { freePort } from '../../src/services/redis-server.ts';

/**
 * Polls `probe` every `intervalMs` until it returns true; false when `timeoutMs` passed first. `probe` may throw,
 * which counts as "not yet".
 */
export async function waitFor(
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await probe()) return true;
    } catch {
      // not ready yet
    }
    if (Date.now() >= deadline) return false;
    await sleep(intervalMs);
  }
}

/** Reads one SMTP greeting line from host:port; true when it starts with 220. */
export function smtpGreets(port: number, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.includes('\n')) {
        socket.write('QUIT\r\n');
        finish(data.startsWith('220'));
      }
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
  });
}

/** Keeps the last `max` lines written to it (a child's output, for error reports). */
export class LineRing {
  readonly #max: number;
  readonly #lines: string[] = [];
  #partial = '';

  constructor(max: number) {
    this.#max = max;
  }

  push(chunk: string): void {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop() ?? '';
    for (const line of parts) {
      this.#lines.push(line.length > 2_000 ? `${line.slice(0, 2_000)}…` : line);
      if (this.#lines.length > this.#max) this.#lines.shift();
    }
  }

  text(): string {
    return [...this.#lines, this.#partial].filter((l) => l !== '').join('\n');
  }
}
