/**
 * TenantLists: each tenant's allow and block lists as the worker's policy consults them — the config's
 * (tenants[].allow / tenants[].block) followed by the entries added from the console (SenderListStore), held in
 * memory and reloaded when the store's version() moves.
 *
 * Rule: a failed reload keeps the last good lists (and logs); it never leaves a tenant with the config's lists only
 * once the store's have been read.
 */
import type { Logger } from 'pino';
import type { TenantConfig } from '../config/schema.ts';
import type { SenderListEntry, SenderListStore } from './sender-list-store.ts';

/**
 * How often the worker asks the store whether the lists changed (one indexed read of one row): a sender blocked
 * from the console is blocked for new verdicts within this time.
 */
export const LIST_REFRESH_MS = 5_000;

export interface SenderListsOf {
  readonly allow: readonly string[];
  readonly block: readonly string[];
}

const NONE: SenderListsOf = Object.freeze({ allow: [], block: [] });

export class TenantLists {
  readonly #tenants: readonly TenantConfig[];
  readonly #store: SenderListStore;
  readonly #log: Logger;
  #lists: ReadonlyMap<string, SenderListsOf>;
  /** The store's version the lists were loaded at; undefined before the first load. */
  #version: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The last refresh asked for; each waits for the one before. */
  #refreshed: Promise<void> = Promise.resolve();

  constructor(deps: { tenants: readonly TenantConfig[]; store: SenderListStore; log: Logger }) {
    this.#tenants = deps.tenants;
    this.#store = deps.store;
    this.#log = deps.log.child({ component: 'sender-lists' });
    this.#lists = this.#merge([]);
  }

  /** The tenant's lists, config entries first; empty lists for a tenant with none. */
  of(tenantId: string): SenderListsOf {
    return this.#lists.get(tenantId) ?? NONE;
  }

  allowOf(tenantId: string): readonly string[] {
    return this.of(tenantId).allow;
  }

  blockOf(tenantId: string): readonly string[] {
    return this.of(tenantId).block;
  }

  /**
   * Reloads the lists if the store changed since the last load; a failure is logged and keeps them. A call made
   * while another runs waits for it and reads again, so it sees every change made before the call.
   */
  refresh(): Promise<void> {
    this.#refreshed = this.#refreshed.then(() => this.#refresh());
    return this.#refreshed;
  }

  async #refresh(): Promise<void> {
    try {
      // The version before the entries: a change in between makes the next refresh load again, never miss it.
      const version = await this.#store.version();
      if (version === this.#version) return;
      const entries = await this.#store.list();
      this.#lists = this.#merge(entries);
      this.#version = version;
      this.#log.info({ version, entries: entries.length }, 'sender allow/block lists loaded');
    } catch (err) {
      this.#log.error({ err }, 'sender allow/block lists could not be read; keeping the last good lists');
    }
  }

  #merge(entries: readonly SenderListEntry[]): Map<string, SenderListsOf> {
    const lists = new Map<string, { allow: Set<string>; block: Set<string> }>();
    const of = (id: string) => lists.get(id) ?? lists.set(id, { allow: new Set(), block: new Set() }).get(id)!;
    for (const t of this.#tenants) {
      for (const p of t.allow) of(t.id).allow.add(p);
      for (const p of t.block) of(t.id).block.add(p);
    }
    // An entry the config has already (spelt the same) is not repeated: the config's comes first in the reasons.
    for (const e of entries) of(e.tenantId)[e.list].add(e.pattern);
    return new Map([...lists].map(([id, l]) => [id, Object.freeze({ allow: Object.freeze([...l.allow]), block: Object.freeze([...l.block]) })]));
  }

  /** Refreshes every LIST_REFRESH_MS until stop(). */
  start(): void {
    this.#timer = setInterval(() => void this.refresh(), LIST_REFRESH_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#refreshed;
  }
}
