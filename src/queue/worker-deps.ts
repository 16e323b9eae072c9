/** What the stage processors need; wired by the composition root (src/runtime.ts) or by tests. */
import type { Logger } from 'pino';
import type { Metrics } from '../admin/metrics.ts';
import type { Config } from '../config/schema.ts';
import type { TenantIndex } from '../config/tenants.ts';
import type { Check } from '../scan/check.ts';
import type { Deliverer } from '../smtp/delivery.ts';
import type { MessageStore } from '../spool/message-store.ts';
import type { MetaStore } from '../spool/meta-store.ts';
import type { Pipeline } from './pipeline.ts';
import type { ByteBudget } from './byte-budget.ts';
import type { RouteHealth } from './route-health.ts';

export interface WorkerDeps {
  config: Config;
  tenants: TenantIndex;
  store: MessageStore;
  meta: MetaStore;
  pipeline: Pipeline;
  checks: Check[];
  deliverer: Deliverer;
  /** Routes that answered lately: where the scan stage makes the first delivery attempt itself. */
  routeHealth: RouteHealth;
  /** Bytes of messages the scan stage holds in memory (queue.scanMemoryBytes). */
  scanMemory: ByteBudget;
  log: Logger;
  metrics: Metrics;
}
