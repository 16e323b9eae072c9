/**
 * Lookup of tenants by recipient domain (exact, case-insensitive: subdomains are not implied, so
 * "x.city-a.example.lg.jp" is not city-a's) and by id.
 */
import type { Config, TenantConfig } from './schema.ts';

export class TenantIndex {
  readonly #byDomain = new Map<string, TenantConfig>();
  readonly #byId = new Map<string, TenantConfig>();

  constructor(tenants: Config['tenants']) {
    for (const t of tenants) {
      this.#byId.set(t.id, t);
      for (const d of t.domains) this.#byDomain.set(d.toLowerCase(), t);
    }
  }

  /** The tenant that owns the domain of `address`, if any. */
  forAddress(address: string): TenantConfig | undefined {
    const at = address.lastIndexOf('@');
    if (at < 1 || at === address.length - 1) return undefined;
    return this.#byDomain.get(address.slice(at + 1).toLowerCase().replace(/\.$/, ''));
  }

  byId(id: string): TenantConfig | undefined {
    return this.#byId.get(id);
  }

  get all(): TenantConfig[] {
    return [...this.#byId.values()];
  }
}
