/**
 * The composition root: the only place that wires real components (Redis, stores, SMTP transports, scan
 * engines) into the ingress, the stage workers and the admin app (STYLE rule 5). The CLI and the integration
 * tests both build Sekisho from these pieces.
 */
import type { Socket } from 'node:net';
import { parseListen } from './listen.ts';
import path from 'node:path';
import type { Logger } from 'pino';
import { readFileSync } from 'node:fs';
import type { AdminContext } from './admin/admin-context.ts';
import { openAdminStores } from './admin/admin-stores.ts';
import { buildAdminApp } from './admin/app.ts';
import { DigestSender, DigestSigner } from './quarantine/digest.ts';
import { ReleaseService } from './quarantine/release.ts';
import { AvCurrencyMonitor } from './scan/av-currency.ts';
import { ClamdClient, type ClamdEndpoint } from './scan/clamd-client.ts';
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
import type { SenderListStore } from './policy/sender-list-store.ts';
import { SqliteSenderListStore } from './policy/sqlite-sender-list-store.ts';
import { TenantLists } from './policy/tenant-lists.ts';
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
  senderLists: SenderListStore;
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
    senderLists: new SqliteSenderListStore(path.join(config.dataDir, 'sender-lists.sqlite')),
  };
}

export async function closeStores(s: Stores): Promise<void> {
  await s.store.close();
  await s.meta.close();
  await s.quarantine.close();
  await s.senderLists.close();
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
  /** The allow/block lists policy consults; refresh() reloads them at once (tests). */
  senderLists: TenantLists;
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
    opts.sanitizer === null ? undefined : (opts.sanitizer ?? (config.tenants.some((t) => t.sanitize !== false) ? new MessageSanitizer(config, opts.log, metrics) : undefined));
  const retention = new RetentionSweeper({ quarantine, meta, store, log: opts.log });
  const senderLists = new TenantLists({ tenants: config.tenants, store: opts.stores.senderLists, log: opts.log });
  await senderLists.refresh();
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
    senderLists,
    routeHealth: new RouteHealth(),
    scanMemory: new ByteBudget(config.queue.scanMemoryBytes),
    log: opts.log,
    metrics,
  });
  const reconciler = new Reconciler({ meta: opts.stores.meta, store: opts.stores.store, pipeline, config }, opts.log, config.queue.reconcileIntervalMs);
  const recovered = await reconciler.run();
  if (recovered) opts.log.info({ unfinished: recovered }, 'recovered unfinished messages from the spool');
  workers.start();
  reconciler.start();
  retention.start(config.quarantine.sweepIntervalMs);
  senderLists.start();
  return {
    pipeline,
    reconciler,
    metrics,
    senderLists,
    async stop() {
      await reconciler.stop();
      await retention.stop();
      await senderLists.stop();
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

/** What the admin process is given by its caller; startAdmin opens the rest (accounts, audit log, clamd client). */
export interface AdminParts {
  stores: Stores;
  pipeline: Pipeline;
  metrics: Metrics;
  remoteMetrics?: AdminContext['remoteMetrics'];
  /** The clamd that rescans originals before release and tells how current its signatures are; absent: releases wait. */
  clamd?: ClamdEndpoint;
  /** The managed clamd's signature directories, for the signature count. */
  clamdDatabaseDirs?: readonly string[];
  /** Only /healthz and /metrics (a side listener of `sekisho ingress|worker --metrics-listen`). */
  metricsOnly?: boolean;
  /** The managed services this process supervises (src/services/supervisor.ts), for /healthz. */
  services?: AdminContext['services'];
}

/** How often due recipient digests are looked for: a digest goes out within this of its hour. */
const DIGEST_CHECK_INTERVAL_MS = 5 * 60_000;
/** Interval of the antivirus currency check: signatures change a few times a day. */
const AV_CURRENCY_INTERVAL_MS = 10 * 60_000;

/** The admin app's context from the process's stores; `close` closes what this opened (not the stores given). */
export function adminContext(config: Config, parts: AdminParts, log: Logger): { ctx: AdminContext; close(): Promise<void> } {
  const admin = openAdminStores(config);
  const { store, meta, quarantine, senderLists } = parts.stores;
  const tenants = new TenantIndex(config.tenants);
  const clamd = parts.clamd ? new ClamdClient(parts.clamd, config.clamav.timeoutMs, { sessions: 1 }) : undefined;
  const av = clamd
    ? new AvCurrencyMonitor({
        client: clamd,
        maxAgeMs: config.clamav.maxDatabaseAgeHours * 3_600_000,
        databaseDirs: parts.clamdDatabaseDirs ?? [],
        log,
        // The gauges once per registry (a process may build two admin apps on one registry: tests, side listeners).
        registry: parts.metrics.registry.getSingleMetric('sekisho_av_current') ? undefined : parts.metrics.registry,
      })
    : undefined;
  // The digest links' key (made on first use): not for a side listener, which serves no digest links.
  const digestSigner = parts.metricsOnly ? undefined : DigestSigner.forDataDir(config.dataDir);
  const release = new ReleaseService({
    quarantine,
    meta,
    store,
    pipeline: parts.pipeline,
    audit: admin.audit,
    tenants,
    hostname: config.hostname,
    rescan: async (raw) => {
      if (!clamd) throw new Error('no clamd for this admin process: set clamav.socket or clamav.host');
      return clamd.scan(raw);
    },
  });
  const ctx: AdminContext = {
    config,
    tenants,
    meta,
    store,
    quarantine,
    senderLists,
    accounts: admin.accounts,
    audit: admin.audit,
    release,
    pipeline: parts.pipeline,
    metrics: parts.metrics,
    remoteMetrics: parts.remoteMetrics,
    avCurrency: av,
    services: parts.services,
    digestSigner,
    now: Date.now,
  };
  av?.start(AV_CURRENCY_INTERVAL_MS);
  const digests =
    digestSigner && config.tenants.some((t) => t.digestHour !== undefined)
      ? new DigestSender({ config, quarantine, meta, store, pipeline: parts.pipeline, signer: digestSigner, log })
      : undefined;
  digests?.start(DIGEST_CHECK_INTERVAL_MS);
  return {
    ctx,
    async close() {
      digests?.stop();
      av?.stop();
      clamd?.close();
      await admin.close();
    },
  };
}

export async function startAdmin(config: Config, parts: AdminParts, log: Logger): Promise<Running & { port: number }> {
  const { ctx, close } = adminContext(config, parts, log);
  const tls = config.admin.tls;
  const app = buildAdminApp(ctx, {
    metricsOnly: parts.metricsOnly,
    https: tls ? { key: readFileSync(tls.key), cert: readFileSync(tls.cert) } : undefined,
  });
  await app.listen(parseListen(config.admin.listen));
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  log.info({ listen: config.admin.listen, port, https: !!tls }, parts.metricsOnly ? 'metrics listening' : 'admin console listening');
  return {
    port,
    async stop() {
      await app.close();
      await close();
    },
  };
}
