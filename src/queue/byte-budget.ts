/**
 * A budget of bytes held in memory at once, shared by the jobs of one worker process. The scan stage reads a whole
 * message (and its decoded parts) into memory, so its job concurrency alone does not bound memory: sixteen 50 MB
 * messages would hold well over a gigabyte. A job asks for its message's size before it reads it and gives it
 * back when it ends. Requests are served in order (a big message is not starved by a stream of small ones); one
 * larger than the whole budget runs when nothing else holds any.
 */
export class ByteBudget {
  readonly limit: number;
  #used = 0;
  readonly #waiting: Array<{ bytes: number; grant: () => void }> = [];

  constructor(limit: number) {
    if (!(limit > 0)) throw new RangeError(`a byte budget must be positive, not ${limit}`);
    this.limit = limit;
  }

  /** Bytes granted and not yet released. */
  get used(): number {
    return this.#used;
  }

  /** Requests waiting for their turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Resolves with a release function once `bytes` (at most the whole budget) can be held. */
  acquire(bytes: number): Promise<() => void> {
    const want = Math.min(Math.max(0, bytes), this.limit);
    return new Promise((resolve) => {
      const grant = () => {
        this.#used += want;
        let released = false;
        resolve(() => {
          if (released) return;
          released = true;
          this.#used -= want;
          this.#drain();
        });
      };
      if (this.#waiting.length === 0 && this.#used + want <= this.limit) grant();
      else this.#waiting.push({ bytes: want, grant });
    });
  }

  #drain(): void {
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0] as { bytes: number; grant: () => void };
      if (this.#used + next.bytes > this.limit) return;
      this.#waiting.shift();
      next.grant();
    }
  }
}
