/**
 * Per-IP admission control for the ingress: a cap on concurrent connections from one address and a sliding
 * one-minute window of new connections per address. IPv6 clients are grouped by /64, the unit one host
 * usually controls, so rotating addresses inside one prefix does not escape the limits.
 */
export type Refusal = 'ip-concurrency' | 'ip-rate';

/** The window of the connection rate limit. */
const RATE_WINDOW_MS = 60_000;
/** How often idle per-IP entries are swept; bounds the maps to the addresses seen in the last window. */
const SWEEP_INTERVAL_MS = 60_000;

export function clientKey(ip: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4?.[1]) return v4[1];
  if (!ip.includes(':')) return ip;
  // Expand "::" and keep the first four hextets (/64).
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const full = ip.includes('::') ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
  return `${full.slice(0, 4).map((x) => x.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

export class ConnectionLimiter {
  readonly #maxPerIp: number;
  readonly #ratePerMinute: number;
  readonly #open = new Map<string, number>();
  readonly #recent = new Map<string, number[]>();
  readonly #sessions = new Map<string, string>();
  readonly #sweep: NodeJS.Timeout;
  readonly #now: () => number;

  constructor(opts: { maxPerIp: number; ratePerIpPerMinute: number; now?: () => number }) {
    this.#maxPerIp = opts.maxPerIp;
    this.#ratePerMinute = opts.ratePerIpPerMinute;
    this.#now = opts.now ?? Date.now;
    this.#sweep = setInterval(() => this.#prune(), SWEEP_INTERVAL_MS).unref();
  }

  /** Admits the connection (and counts it) or says why not. */
  admit(sessionId: string, ip: string): Refusal | undefined {
    const key = clientKey(ip);
    const now = this.#now();
    const times = (this.#recent.get(key) ?? []).filter((t) => now - t < RATE_WINDOW_MS);
    if (times.length >= this.#ratePerMinute) {
      this.#recent.set(key, times);
      return 'ip-rate';
    }
    times.push(now);
    this.#recent.set(key, times);
    const open = this.#open.get(key) ?? 0;
    if (open >= this.#maxPerIp) return 'ip-concurrency';
    this.#open.set(key, open + 1);
    this.#sessions.set(sessionId, key);
    return undefined;
  }

  release(sessionId: string): void {
    const key = this.#sessions.get(sessionId);
    if (key === undefined) return;
    this.#sessions.delete(sessionId);
    const open = (this.#open.get(key) ?? 1) - 1;
    if (open <= 0) this.#open.delete(key);
    else this.#open.set(key, open);
  }

  #prune(): void {
    const now = this.#now();
    for (const [key, times] of this.#recent) {
      const live = times.filter((t) => now - t < RATE_WINDOW_MS);
      if (live.length) this.#recent.set(key, live);
      else this.#recent.delete(key);
    }
  }

  stop(): void {
    clearInterval(this.#sweep);
  }
}
