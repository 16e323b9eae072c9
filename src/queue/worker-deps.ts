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
import type { Pipeline } from './pipeline.ts';
import type { ByteBudget } from './byte-budget.ts';
import type { RouteHealth } from './route-health.ts';

/**
 * Where the original of a sanitized message is recorded as kept (the quarantine). Called by the sanitize stage
 * once the tenant's sanitized copy is durable and before it is handed to delivery, again on every re-run of that
 * job: it must be idempotent. The original stays in the spool whatever it does (see keepsOriginal in plan.ts).
 */
export interface OriginalKeeper {
  holdOriginal(mid: string, tenantId: string, reasons: readonly string[]): Promise<void>;
}

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
  /** Records the original of each sanitized message as kept (the quarantine); optional until it exists. */
  quarantine?: OriginalKeeper;
  /** Routes that answered lately: where the scan stage makes the first delivery attempt itself. */
  routeHealth: RouteHealth;
  /** Bytes of messages the scan and sanitize stages hold in memory (queue.scanMemoryBytes). */
  scanMemory: ByteBudget;
  log: Logger;
  metrics: Metrics;
}
