/**
 * A bounded map whose entries expire: DNS answers kept for their TTL. The least recently used entry goes first
 * when the cache is full, so a flood of one-off names (every spam run brings new domains) cannot grow it past
 * `maxEntries`, and the names asked for all day (the big mail senders' IPs) stay.
 */
export class TtlCache<V> {
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { value: V; expiresAtMs: number }>();

  constructor(maxEntries: number, now: () => number) {
    this.#maxEntries = maxEntries;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): V | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    if (e.expiresAtMs <= this.#now()) return undefined;
    this.#entries.set(key, e); // most recently used last
    return e.value;
  }

  /** Keeps `value` for `ttlMs`; a TTL of 0 (or less) is not cached, as DNS says. */
  set(key: string, value: V, ttlMs: number): void {
    this.#entries.delete(key);
    if (ttlMs <= 0 || this.#maxEntries <= 0) return;
    this.#entries.set(key, { value, expiresAtMs: this.#now() + ttlMs });
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
  }
}
