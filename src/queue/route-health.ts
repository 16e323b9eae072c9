/**
 * Which delivery routes answered lately, as seen by this worker process. The scan stage makes a message's first
 * delivery attempt itself (no separate `deliver` job) only for a route whose last attempt did not defer, or whose
 * last deferral is older than `holdMs`; mail for a route that is down goes straight to a `deliver` job instead, so
 * that a tenant whose server times out does not hold the scan slots the other tenants' mail needs (as Postfix's
 * queue manager stops sending to a destination it has marked dead).
 */
export class RouteHealth {
  readonly #lastDeferral = new Map<string, number>();
  readonly #holdMs: number;
  readonly #now: () => number;

  constructor(holdMs = 60_000, now: () => number = Date.now) {
    this.#holdMs = holdMs;
    this.#now = now;
  }

  /** `ok`: every recipient of the attempt was accepted or refused for good (nothing deferred). */
  record(route: string, ok: boolean): void {
    if (ok) this.#lastDeferral.delete(route);
    else this.#lastDeferral.set(route, this.#now());
  }

  /** Whether the scan stage may try this route at once. */
  answering(route: string): boolean {
    const at = this.#lastDeferral.get(route);
    return at === undefined || this.#now() - at >= this.#holdMs;
  }
}
