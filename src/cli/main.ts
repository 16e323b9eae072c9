/**
 * The `sekisho` command.
 *   sekisho start [--config FILE]          everything: ingress + admin here, the stage workers in a child process
 *   sekisho ingress [--config FILE]        the SMTP ingress alone (needs redis.url)
 *   sekisho worker [--config FILE]         the stage workers alone (needs redis.url)
 *   sekisho admin [--config FILE]          the admin HTTP app alone (needs redis.url)
 *   sekisho check-config FILE              validate a config file; every error with its key path; exit 1 if any
 * With no --config and no SEKISHO_CONFIG, the demo configuration is used (docs/config.md).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { createMetrics, type Metrics } from '../admin/metrics.ts';
import { DEMO_MAILBOX_LISTEN } from '../config/demo.ts';
import { checkConfigFile, formatIssues, loadConfig, type LoadedConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { createLogger, type Logger } from '../log.ts';
import { Pipeline } from '../queue/pipeline.ts';
import { closeStores, openStores, startAdmin, startIngress, startWorker, type Running } from '../runtime.ts';
import type { ScanEngines } from '../scan/registry.ts';
import { startDemoMailbox } from '../services/demo-mailbox.ts';
import { startClamdForConfig } from '../services/clamd.ts';
import { startManagedRedis } from '../services/redis-server.ts';

const BIN = fileURLToPath(new URL('../../bin/sekisho.js', import.meta.url));
/** Worker child restarts back off from 1 s to this, so a crash loop does not spin. */
const MAX_RESTART_DELAY_MS = 30_000;
/** Niceness of the worker child relative to the ingress (0 = same, 19 = lowest). */
const WORKER_NICENESS = 5;
/** How long the admin waits for the worker child's metrics before scraping without them. */
const CHILD_METRICS_TIMEOUT_MS = 2_000;

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

interface Args {
  command: string;
  positional: string[];
  config?: string;
  redisUrl?: string;
  clamdSocket?: string;
  metricsListen?: string;
}

function parse(argv: string[]): Args {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      'redis-url': { type: 'string' },
      'clamd-socket': { type: 'string' },
      'metrics-listen': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command = values.help ? 'help' : 'start', ...positional] = positionals;
  return {
    command,
    positional,
    config: values.config,
    redisUrl: values['redis-url'],
    clamdSocket: values['clamd-socket'],
    metricsListen: values['metrics-listen'],
  };
}

/**
 * Stops the process on SIGTERM/SIGINT (or when its parent goes): runs the cleanups handed to `ready`, in order,
 * then exits. Installed before anything starts: a signal that arrives while a service is still starting (a managed
 * clamd loads its databases for up to a minute) is remembered and acted on once everything started is known, so
 * that no child service (clamd, redis-server) is left running and no temporary directory is left behind.
 */
function shutdownOnSignal(log: Logger): { ready(steps: (() => Promise<void>)[]): void } {
  let steps: (() => Promise<void>)[] | undefined;
  let requested: string | undefined;
  let stopping = false;
  const stop = async (signal: string, cleanups: (() => Promise<void>)[]) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    for (const step of cleanups) {
      try {
        await step();
      } catch (err) {
        log.error({ err }, 'shutdown step failed');
      }
    }
    log.info('stopped');
    process.exit(0);
  };
  const request = (signal: string) => {
    if (steps) {
      void stop(signal, steps);
    } else if (requested === undefined) {
      requested = signal;
      log.info({ signal }, 'stop requested while starting: stopping as soon as what is starting is up');
    }
  };
  process.on('SIGTERM', () => request('SIGTERM'));
  process.on('SIGINT', () => request('SIGINT'));
  process.on('disconnect', () => request('parent gone'));
  return {
    ready(cleanups) {
      steps = cleanups;
      if (requested !== undefined) void stop(requested, cleanups);
    },
  };
}

function requireRedis(config: Config, args: Args, role: string): string {
  const url = args.redisUrl ?? config.redis.url;
  if (!url) throw new Error(`"sekisho ${role}" runs one part of Sekisho and needs redis.url in the config (shared by all parts)`);
  return url;
}

/** The clamd to scan with: the one the parent process passed down, the configured one, or a managed one. */
async function engines(args: Args, config: Config, log: Logger): Promise<{ engines: ScanEngines; stop: () => Promise<void> }> {
  if (args.clamdSocket) return { engines: { clamd: { socket: args.clamdSocket } }, stop: async () => undefined };
  const clamd = await startClamdForConfig(config, log);
  if (clamd.managed) log.info({ socket: clamd.managed.socket }, 'started a managed clamd (clamav.socket/host not configured)');
  return { engines: { clamd: clamd.endpoint }, stop: () => clamd.stop() };
}

async function metricsListener(listen: string | undefined, config: Config, metrics: Metrics, pipeline: Pipeline, stores: ReturnType<typeof openStores>, log: Logger): Promise<Running | undefined> {
  if (!listen) return undefined;
  return startAdmin({ ...config, admin: { listen } }, { meta: stores.meta, pipeline, metrics }, log);
}

async function runStart(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'main' });
  const shutdown = shutdownOnSignal(log);
  mkdirSync(config.dataDir, { recursive: true });
  const cleanups: (() => Promise<void>)[] = [];

  if (loaded.demo) {
    const [host = '127.0.0.1', port = '2526'] = DEMO_MAILBOX_LISTEN.split(':');
    const box = await startDemoMailbox(path.join(config.dataDir, 'demo-mailbox'), host, Number(port));
    log.info({ dir: box.dir, port: box.port }, 'demo mailbox listening (the demo tenant delivers here)');
    cleanups.push(() => box.close());
  }

  let redisUrl = args.redisUrl ?? config.redis.url;
  let stopRedis: (() => Promise<void>) | undefined;
  if (!redisUrl) {
    const redis = await startManagedRedis({ dir: path.join(config.dataDir, 'redis'), persist: true });
    redisUrl = redis.url;
    stopRedis = redis.stop;
    log.info({ url: redis.url }, 'started a managed redis-server (redis.url is not configured)');
  }

  const scan = await engines(args, config, log);
  const stores = openStores(config);
  const ingress = await startIngress(config, { redisUrl, log, stores });

  // The stage workers parse hostile bytes: they run in child processes (queue.workerProcesses), each restarted if
  // it dies. Several of them share the BullMQ queues; each has its own clamd sessions, SMTP pools and SQLite writer.
  let stopping = false;
  const childArgs = ['worker', '--redis-url', redisUrl, ...(loaded.file ? ['--config', loaded.file] : [])];
  const clamd = scan.engines.clamd;
  if ('socket' in clamd) childArgs.push('--clamd-socket', clamd.socket);
  const slots = Array.from({ length: config.queue.workerProcesses }, (_, index) => ({
    index,
    child: undefined as ChildProcess | undefined,
    restartDelay: 1_000,
  }));
  const spawnWorker = (slot: (typeof slots)[number]) => {
    const c = fork(BIN, childArgs, { stdio: 'inherit' });
    slot.child = c;
    // Accepting mail (durably, fast, while SMTP clients wait) comes before processing it: under a burst the
    // ingress keeps its CPU and the workers work off the backlog. The managed clamd is niced likewise
    // (services/clamd.ts).
    if (c.pid !== undefined) {
      try {
        setPriority(c.pid, WORKER_NICENESS);
      } catch (err) {
        log.warn({ err }, 'could not lower the worker priority');
      }
    }
    const startedAt = Date.now();
    c.on('exit', (code, signal) => {
      if (stopping) return;
      if (Date.now() - startedAt > MAX_RESTART_DELAY_MS) slot.restartDelay = 1_000;
      log.error({ code, signal, worker: slot.index, restartInMs: slot.restartDelay }, 'worker process exited; restarting');
      setTimeout(() => spawnWorker(slot), slot.restartDelay).unref();
      slot.restartDelay = Math.min(slot.restartDelay * 2, MAX_RESTART_DELAY_MS);
    });
  };
  for (const slot of slots) spawnWorker(slot);

  const childMetrics = (c: ChildProcess | undefined): Promise<MetricsJson[]> => {
    if (!c?.connected) return Promise.resolve([]);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        c.off('message', onMessage);
        resolve([]);
      }, CHILD_METRICS_TIMEOUT_MS);
      const onMessage = (m: unknown) => {
        const msg = m as { type?: string; metrics?: MetricsJson };
        if (msg.type !== 'metrics' || !msg.metrics) return;
        clearTimeout(timer);
        c.off('message', onMessage);
        resolve([msg.metrics]);
      };
      c.on('message', onMessage);
      c.send({ type: 'metrics?' });
    });
  };
  const remoteMetrics = async (): Promise<MetricsJson[]> => (await Promise.all(slots.map((s) => childMetrics(s.child)))).flat();
  const admin = await startAdmin(config, { meta: stores.meta, pipeline: ingress.pipeline, metrics: ingress.metrics, remoteMetrics }, log);

  shutdown.ready([
    () => ingress.stop(),
    () => admin.stop(),
    async () => {
      stopping = true;
      await Promise.all(
        slots.map(({ child: c }) =>
          c && c.exitCode === null && c.signalCode === null
            ? new Promise<void>((resolve) => {
                c.once('exit', () => resolve());
                c.kill('SIGTERM');
              })
            : undefined,
        ),
      );
    },
    () => closeStores(stores),
    () => scan.stop(),
    async () => stopRedis?.(),
    ...cleanups,
  ]);
  log.info({ smtp: config.smtp.listen, admin: config.admin.listen, demo: loaded.demo, dataDir: config.dataDir }, 'Sekisho started');
}

async function runWorkerRole(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'worker' });
  const shutdown = shutdownOnSignal(log);
  const redisUrl = requireRedis(config, args, 'worker');
  const scan = await engines(args, config, log);
  const stores = openStores(config, 'worker');
  const worker = await startWorker(config, { redisUrl, engines: scan.engines, log, stores });
  process.on('message', (m: unknown) => {
    if ((m as { type?: string }).type !== 'metrics?') return;
    worker.metrics.registry
      .getMetricsAsJSON()
      .then((metrics) => process.send?.({ type: 'metrics', metrics }))
      .catch(() => undefined);
  });
  const extra = await metricsListener(args.metricsListen, config, worker.metrics, worker.pipeline, stores, log);
  shutdown.ready([async () => extra?.stop(), () => worker.stop(), () => closeStores(stores), () => scan.stop()]);
  log.info('stage workers running');
}

async function runIngressRole(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'ingress' });
  const shutdown = shutdownOnSignal(log);
  const redisUrl = requireRedis(config, args, 'ingress');
  const stores = openStores(config);
  const ingress = await startIngress(config, { redisUrl, log, stores });
  const extra = await metricsListener(args.metricsListen, config, ingress.metrics, ingress.pipeline, stores, log);
  shutdown.ready([() => ingress.stop(), async () => extra?.stop(), () => closeStores(stores)]);
}

async function runAdminRole(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'admin' });
  const shutdown = shutdownOnSignal(log);
  const redisUrl = requireRedis(config, args, 'admin');
  const stores = openStores(config, 'admin');
  const pipeline = new Pipeline(redisUrl, config.redis.prefix, config.queue);
  const admin = await startAdmin(config, { meta: stores.meta, pipeline, metrics: createMetrics('admin') }, log);
  shutdown.ready([() => admin.stop(), () => pipeline.close(), () => closeStores(stores)]);
}

function checkConfig(file: string | undefined): number {
  if (!file) {
    console.error('usage: sekisho check-config FILE');
    return 2;
  }
  const r = checkConfigFile(file);
  if (r.ok) {
    console.log(`${file}: OK (${r.config.tenants.length} tenant(s))`);
    return 0;
  }
  console.error(`${file}: ${r.issues.length} error(s)\n${formatIssues(r.issues)}`);
  return 1;
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  switch (args.command) {
    case 'check-config':
      process.exitCode = checkConfig(args.positional[0] ?? args.config);
      return;
    case 'start':
      return runStart(loadConfig(args.config), args);
    case 'worker':
      return runWorkerRole(loadConfig(args.config), args);
    case 'ingress':
      return runIngressRole(loadConfig(args.config), args);
    case 'admin':
      return runAdminRole(loadConfig(args.config), args);
    default:
      console.log('usage: sekisho start|ingress|worker|admin [--config FILE] | sekisho check-config FILE');
      process.exitCode = args.command === 'help' ? 0 : 2;
  }
}

main().catch((err: unknown) => {
  console.error(`sekisho: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
