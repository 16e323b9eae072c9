/**
 * The composition root: the only place that wires real components (Redis, stores, SMTP transports, scan
 * engines) into the ingress, the stage workers and the admin app (STYLE rule 5). The CLI and the integration
 * tests both build Sekisho from these pieces.
 */
import type { Socket } from 'node:net';
import { parseListen } from './listen.ts';
import path from 'node:path';
import type { Logger } from 'pino';
import { buildAdminApp, type AdminDeps } from './admin/app.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import type { Config } from './config/schema.ts';
import { TenantIndex } from './config/tenants.ts';
import { Pipeline } from './queue/pipeline.ts';
import { Reconciler } from './queue/reconciler.ts';
import type { AnyStage } from './queue/stage.ts';
import { stages as defaultStages } from './queue/stages.ts';
import { StageWorkers } from './queue/workers.ts';
import { StoreQuarantineKeeper, type QuarantineKeeper } from './quarantine/keeper.ts';
import type { QuarantineStore } from './quarantine/quarantine-store.ts';
import { RetentionSweeper } from './quarantine/retention.ts';
import { SqliteQuarantineStore } from './quarantine/sqlite-quarantine-store.ts';
import { MessageSanitizer } from './sanitize/message-sanitizer.ts';
import type { Sanitizer } from './sanitize/sanitizer.ts';
import { ByteBudget } from './queue/byte-budget.ts';
import { RouteHealth } from './queue/route-health.ts';
import type { Check } from './scan/check.ts';
import { createChecks, type ScanEngines } from './scan/registry.ts';
import { SmtpDeliverer, type Deliverer } from './delivery/delivery.ts';
import { Ingress } from './smtp/ingress.ts';
import { FileMessageStore } from './spool/file-message-store.ts';
import type { MessageStore } from './spool/message-store.ts';
import type { MetaStore } from './spool/meta-store.ts';
import { SqliteMetaStore } from './spool/sqlite-meta-store.ts';

export interface Stores {
  store: MessageStore;
  meta: MetaStore;
  quarantine: QuarantineStore;
}

/**
 * The stores of one process. The ingress needs each metadata row fsync'd before its 250; the workers' updates
 * do not (see SqliteMetaStoreOptions.synchronous), so they skip the per-commit fsync.
 */
export function openStores(config: Config, role: 'ingress' | 'worker' | 'admin' = 'ingress'): Stores {
  return {
    store: new FileMessageStore(config.dataDir),
    meta: new SqliteMetaStore(path.join(config.dataDir, 'meta.sqlite'), { synchronous: role === 'worker' ? 'normal' : 'full' }),
    quarantine: new SqliteQuarantineStore(path.join(config.dataDir, 'quarantine.sqlite')),
  };
}

export async function closeStores(s: Stores): Promise<void> {
  await s.store.close();
  await s.meta.close();
  await s.quarantine.close();
}

/** The queues of the list of stages (stages.ts), or of the list given (tests). */
export function createPipeline(config: Config, redisUrl: string, stages: readonly AnyStage[] = defaultStages): Pipeline {
  return new Pipeline(redisUrl, config.redis.prefix, config.queue, stages);
}

export interface Running {
  stop(): Promise<void>;
}

function requireEngines(e: ScanEngines | undefined): ScanEngines {
  if (!e) throw new Error('startWorker needs the scan engines (clamd endpoint) or an explicit list of checks');
  return e;
}

export interface WorkerRuntime extends Running {
  pipeline: Pipeline;
  reconciler: Reconciler;
  metrics: Metrics;
}

export async function startWorker(
  config: Config,
  opts: {
    redisUrl: string;
    /** Endpoints of the scan engines; not needed when `checks` is given. */
    engines?: ScanEngines;
    log: Logger;
    stores: Stores;
    deliverer?: Deliverer;
    metrics?: Metrics;
    /** Replaces the registry's checks (tests). */
    checks?: Check[];
    /**
     * The sanitizer (メール無害化): by default the real one when a tenant sanitizes; `null` for none (mail for
     * sanitizing tenants is then held). Closed on stop.
     */
    sanitizer?: Sanitizer | null;
    /** Records held messages and sanitized originals; by default in the stores' QuarantineStore. */
    quarantine?: QuarantineKeeper;
    /** Replaces the list of stages (tests). */
    stages?: readonly AnyStage[];
  },
): Promise<WorkerRuntime> {
  const metrics = opts.metrics ?? createMetrics('worker');
  const pipeline = createPipeline(config, opts.redisUrl, opts.stages);
  const deliverer = opts.deliverer ?? new SmtpDeliverer(config.delivery, config.hostname);
  const checks = opts.checks ?? createChecks(config, requireEngines(opts.engines), opts.log);
  const tenants = new TenantIndex(config.tenants);
  const { store, meta, quarantine } = opts.stores;
  const sanitizer =
    opts.sanitizer === null ? undefined : (opts.sanitizer ?? (config.tenants.some((t) => t.sanitize !== false) ? new MessageSanitizer(config, opts.log) : undefined));
  const retention = new RetentionSweeper({ quarantine, meta, store, log: opts.log });
  const workers = new StageWorkers({
    config,
    tenants,
    store: opts.stores.store,
    meta: opts.stores.meta,
    pipeline,
    checks,
    deliverer,
    sanitizer,
    quarantine: opts.quarantine ?? new StoreQuarantineKeeper({ store: quarantine, meta, config, tenants }),
    routeHealth: new RouteHealth(),
    scanMemory: new ByteBudget(config.queue.scanMemoryBytes),
    log: opts.log,
    metrics,
  });
  const reconciler = new Reconciler({ meta: opts.stores.meta, store: opts.stores.store, pipeline }, opts.log, config.queue.reconcileIntervalMs);
  const recovered = await reconciler.run();
  if (recovered) opts.log.info({ unfinished: recovered }, 'recovered unfinished messages from the spool');
  workers.start();
  reconciler.start();
  retention.start(config.quarantine.sweepIntervalMs);
  return {
    pipeline,
    reconciler,
    metrics,
    async stop() {
      await reconciler.stop();
      await retention.stop();
      await workers.close();
      for (const c of checks) await c.close?.();
      await sanitizer?.close();
      await deliverer.close();
      await pipeline.close();
    },
  };
}

export interface IngressRuntime extends Running {
  /** The SMTP port, or 0 when `external` (nothing listens here). */
  port: number;
  pipeline: Pipeline;
  metrics: Metrics;
  /** Runs the session of a connection accepted elsewhere (`external`: the main process's dispatcher). */
  connect(socket: Socket): Promise<void>;
}

export async function startIngress(
  config: Config,
  opts: { redisUrl: string; log: Logger; stores: Stores; metrics?: Metrics; pipeline?: Pipeline; external?: boolean },
): Promise<IngressRuntime> {
  const metrics = opts.metrics ?? createMetrics('ingress');
  const pipeline = opts.pipeline ?? createPipeline(config, opts.redisUrl);
  const ingress = new Ingress({
    config,
    tenants: new TenantIndex(config.tenants),
    store: opts.stores.store,
    meta: opts.stores.meta,
    pipeline,
    log: opts.log,
    metrics,
    external: opts.external ?? false,
  });
  let port = 0;
  if (opts.external) {
    opts.log.info('SMTP ingress taking connections from the main process');
  } else {
    const bound = await ingress.listen();
    port = bound.port;
    opts.log.info({ listen: bound.address }, 'SMTP ingress listening');
  }
  return {
    port,
    pipeline,
    metrics,
    connect: (socket) => ingress.connect(socket),
    async stop() {
      await ingress.close();
      if (!opts.pipeline) await pipeline.close();
    },
  };
}

export async function startAdmin(config: Config, deps: AdminDeps, log: Logger): Promise<Running & { port: number }> {
  const app = buildAdminApp(deps);
  await app.listen(parseListen(config.admin.listen));
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  log.info({ listen: config.admin.listen, port }, 'admin listening');
  return { port, stop: () => app.close() };
}
