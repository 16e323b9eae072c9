/** What the stage processors need; wired by the composition root (src/runtime.ts) or by tests. */
import type { Logger } from 'pino';
import type { Config } from '../config/schema.ts';
import type { TenantIndex } from '../config/tenants.ts';
import type { Deliverer } from '../delivery/delivery.ts';
import type { Metrics } from '../metrics.ts';
import type { Sanitizer } from '../sanitize/sanitizer.ts';
import type { Check } from '../scan/check.ts';
import type { MessageStore } from '../spool/message-store.ts';
import type { MetaStore } from '../spool/meta-store.ts';
import type { QuarantineKeeper } from '../quarantine/keeper.ts';
import type { TenantLists } from '../policy/tenant-lists.ts';
import type { Pipeline } from './pipeline.ts';
import type { ByteBudget } from './byte-budget.ts';
import type { RouteHealth } from './route-health.ts';

export interface WorkerDeps {
  config: Config;
  tenants: TenantIndex;
  store: MessageStore;
  meta: MetaStore;
  /** The queues, and the list of stages they were made from. */
  pipeline: Pipeline;
  checks: Check[];
  deliverer: Deliverer;
  /** The sanitizer (メール無害化); without one, mail for a sanitizing tenant is held, never delivered unsanitized. */
  sanitizer?: Sanitizer;
  /**
   * Records every original of a sanitized message and every message held back from delivery in the quarantine
   * (idempotent: re-run jobs call it again). Tests that do not look at the quarantine may leave it out.
   */
  quarantine?: QuarantineKeeper;
  /** The tenants' allow/block lists with the console's entries; without it, policy uses the config's only. */
  senderLists?: TenantLists;
  /** Routes that answered lately: where the scan stage makes the first delivery attempt itself. */
  routeHealth: RouteHealth;
  /** Bytes of messages the scan and sanitize stages hold in memory (queue.scanMemoryBytes). */
  scanMemory: ByteBudget;
  log: Logger;
  metrics: Metrics;
}
