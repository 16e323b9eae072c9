/**
 * The `sekisho` command.
 *   sekisho start [--config FILE]          everything: ingress + admin here (or, with smtp.ingressProcesses > 1, the
 *                                          listening socket here and SMTP sessions in ingress children), the stage
 *                                          workers in child processes
 *   sekisho ingress [--config FILE]        the SMTP ingress alone (needs redis.url); `--from-parent` is internal:
 *                                          an ingress child of `sekisho start`, fed connections over IPC
 *   sekisho worker [--config FILE]         the stage workers alone (needs redis.url)
 *   sekisho admin [--config FILE]          the admin HTTP app alone (needs redis.url)
 *   sekisho check-config FILE              validate a config file; every error with its key path; exit 1 if any
 *   sekisho user add|list|passwd|…         console accounts (src/cli/user.ts)
 *   sekisho audit verify|export            the audit log's hash chain, JSON-lines export (src/cli/audit.ts)
 *   sekisho backup --to DIR|FILE           an online backup of dataDir; sekisho restore --from DIR|FILE (src/cli/backup.ts)
 * With no --config and no SEKISHO_CONFIG, the demo configuration is used (docs/config.md).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { Socket } from 'node:net';
import { setPriority } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { createMetrics, type Metrics } from '../metrics.ts';
import { DEMO_MAILBOX_LISTEN } from '../config/demo.ts';
import { checkConfigFile, formatIssues, loadConfig, type LoadedConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { createLogger, type Logger } from '../log.ts';
import { createLocalChecks } from '../scan/registry.ts';
import { runSpamCommand } from './spam.ts';
import { runAuditCommand } from './audit.ts';
import { runBackupCommand, runRestoreCommand } from './backup.ts';
import { runUserCommand } from './user.ts';
import type { Pipeline } from '../queue/pipeline.ts';
import { closeStores, createPipeline, openStores, startAdmin, startIngress, startWorker, type Running } from '../runtime.ts';
import type { ScanEngines } from '../scan/registry.ts';
import { startDemoMailbox } from '../services/demo-mailbox.ts';
import { configuredClamd, PROJECT_SIGNATURE_DIR, startManagedClamdForConfig } from '../services/clamd.ts';
import { startManagedRedis } from '../services/redis-server.ts';
import { Supervisor } from '../services/supervisor.ts';
import { type ConnectionClosed, IngressDispatcher, type IngressReady, isHandOver } from '../smtp/ingress-dispatcher.ts';

const BIN = fileURLToPath(new URL('../../bin/sekisho.js', import.meta.url));
/** Worker child restarts back off from 1 s to this, so a crash loop does not spin. */
const MAX_RESTART_DELAY_MS = 30_000;
/** Niceness of the worker child relative to the ingress (0 = same, 19 = lowest). */
const WORKER_NICENESS = 5;
/** How long `sekisho start` waits for its first ingress child before it listens anyway. */
const INGRESS_READY_TIMEOUT_MS = 60_000;
/** How long the admin waits for the worker child's metrics before scraping without them. */
const CHILD_METRICS_TIMEOUT_MS = 2_000;
/**
 * What a stop may take beyond smtp.closeTimeoutMs (the grace of open SMTP sessions): the workers finishing their
 * jobs, the stores closing, clamd and redis-server stopping — a few seconds when everything answers. Past
 * smtp.closeTimeoutMs + this, a step waiting on something that will never answer (a dead redis-server) is
 * abandoned: the children are killed and the process exits with 1. systemd's TimeoutStopSec must be longer
 * (docs/systemd/README.md).
 */
const SHUTDOWN_GRACE_MS = 30_000;

/** A process's shutdown deadline, counted from the first SIGTERM/SIGINT. */
function shutdownDeadlineMs(config: Config): number {
  return config.smtp.closeTimeoutMs + SHUTDOWN_GRACE_MS;
}

/** The steps of a stop, by name (logged when one hangs), run in order. */
type StopSteps = Record<string, () => Promise<void>>;

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

interface Args {
  command: string;
  positional: string[];
  config?: string;
  redisUrl?: string;
  clamdSocket?: string;
  metricsListen?: string;
  /** `ingress` as a child of `sekisho start`: sessions of the connections the parent hands over (IPC). */
  fromParent: boolean;
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
      'from-parent': { type: 'boolean' },
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
    fromParent: values['from-parent'] ?? false,
  };
}

/**
 * Stops the process on SIGTERM/SIGINT (or when its parent goes): runs the steps handed to `ready`, in order, then
 * exits 0. Installed before anything starts: a signal that arrives while a service is still starting (a managed
 * clamd loads its databases for up to a minute) is remembered and acted on once everything started is known.
 * Past `deadlineMs`, or on a second signal, it stops at once: `stopNow` kills the children, and the managed
 * services' exit handlers kill them and remove their run directories (src/services/clamd.ts); exit code 1.
 * Either way no child service (clamd, redis-server) is left running and no temporary directory is left behind.
 */
function shutdownOnSignal(log: Logger, deadlineMs: number): { ready(steps: StopSteps, stopNow?: () => void): void } {
  let steps: StopSteps | undefined;
  let stopNow: (() => void) | undefined;
  let requested: string | undefined;
  let running: string | undefined;
  const exitNow = (why: string) => {
    log.error({ why, step: running }, 'stopping at once: killing the child processes');
    try {
      stopNow?.();
    } catch (err) {
      log.error({ err }, 'killing the child processes failed');
    }
    process.exit(1);
  };
  const stop = async (signal: string, todo: StopSteps) => {
    log.info({ signal, deadlineMs }, 'shutting down');
    for (const [name, step] of Object.entries(todo)) {
      running = name;
      try {
        await step();
      } catch (err) {
        log.error({ err, step: name }, 'shutdown step failed');
      }
    }
    log.info('stopped');
    process.exit(0);
  };
  const request = (signal: string) => {
    if (requested !== undefined) return exitNow(`${signal} while stopping`);
    requested = signal;
    setTimeout(() => exitNow(`not stopped within the shutdown deadline (${deadlineMs} ms)`), deadlineMs).unref();
    if (steps) void stop(signal, steps);
    else log.info({ signal }, 'stop requested while starting: stopping as soon as what is starting is up');
  };
  process.on('SIGTERM', () => request('SIGTERM'));
  process.on('SIGINT', () => request('SIGINT'));
  process.on('disconnect', () => request('parent gone'));
  return {
    ready(todo, kill) {
      steps = todo;
      stopNow = kill;
      if (requested !== undefined) void stop(requested, todo);
    },
  };
}

function requireRedis(config: Config, args: Args, role: string): string {
  const url = args.redisUrl ?? config.redis.url;
  if (!url) throw new Error(`"sekisho ${role}" runs one part of Sekisho and needs redis.url in the config (shared by all parts)`);
  return url;
}

/**
 * The clamd to scan with: the one the parent process passed down, the configured one, or a managed one, which
 * `supervisor` restarts (on the same socket) when it dies and stops.
 */
async function engines(args: Args, config: Config, log: Logger, supervisor: Supervisor): Promise<{ engines: ScanEngines; databaseDirs: string[] }> {
  if (args.clamdSocket) return { engines: { clamd: { socket: args.clamdSocket } }, databaseDirs: [] };
  const configured = configuredClamd(config);
  if (configured) return { engines: { clamd: configured }, databaseDirs: [] };
  const clamd = await supervisor.start('clamd', () => startManagedClamdForConfig(config, log));
  log.info({ socket: clamd.socket }, 'started a managed clamd (clamav.socket/host not configured)');
  // The signature count of a managed clamd comes from the databases it loads (clamd does not tell it).
  return { engines: { clamd: clamd.endpoint }, databaseDirs: [config.clamav.databaseDir, PROJECT_SIGNATURE_DIR] };
}

async function metricsListener(listen: string | undefined, config: Config, metrics: Metrics, pipeline: Pipeline, stores: ReturnType<typeof openStores>, log: Logger): Promise<Running | undefined> {
  if (!listen) return undefined;
  return startAdmin({ ...config, admin: { ...config.admin, listen } }, { stores, pipeline, metrics, metricsOnly: true }, log);
}

async function runStart(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'main' });
  const shutdown = shutdownOnSignal(log, shutdownDeadlineMs(config));
  mkdirSync(config.dataDir, { recursive: true });
  const cleanups: StopSteps = {};
  const metrics = createMetrics('ingress');
  // The managed redis-server and clamd: restarted when they die, on the same socket (the children reconnect).
  const supervisor = new Supervisor({ log, metrics });

  if (loaded.demo) {
    const [host = '127.0.0.1', port = '2526'] = DEMO_MAILBOX_LISTEN.split(':');
    const box = await startDemoMailbox(path.join(config.dataDir, 'demo-mailbox'), host, Number(port));
    log.info({ dir: box.dir, port: box.port }, 'demo mailbox listening (the demo tenant delivers here)');
    cleanups.demoMailbox = () => box.close();
  }

  let redisUrl = args.redisUrl ?? config.redis.url;
  if (!redisUrl) {
    const redis = await supervisor.start('redis', () => startManagedRedis({ dir: path.join(config.dataDir, 'redis'), persist: true, unixSocket: true }));
    redisUrl = redis.url;
    log.info({ url: redis.url }, 'started a managed redis-server (redis.url is not configured)');
  }

  const scan = await engines(args, config, log, supervisor);
  const stores = openStores(config);
  const configArgs = ['--redis-url', redisUrl, ...(loaded.file ? ['--config', loaded.file] : [])];

  // SMTP sessions: in this process, or (smtp.ingressProcesses > 1) in children that this process's dispatcher
  // hands the accepted connections to.
  let ingressStop: () => Promise<void>;
  let ingressChildren: ChildSet | undefined;
  let pipeline: Pipeline;
  if (config.smtp.ingressProcesses > 1) {
    pipeline = createPipeline(config, redisUrl);
    const dispatcher = new IngressDispatcher(config.smtp, log, metrics);
    ingressChildren = new ChildSet('ingress', config.smtp.ingressProcesses, ['ingress', '--from-parent', ...configArgs], 0, log, (c) =>
      dispatcher.addChild(c),
    );
    const ready = await Promise.race([dispatcher.whenReady().then(() => true), sleep(INGRESS_READY_TIMEOUT_MS, undefined, { ref: false }).then(() => false)]);
    if (!ready) log.warn({ waitedMs: INGRESS_READY_TIMEOUT_MS }, 'no ingress process is ready yet; listening anyway (connections get 421 until one is)');
    const { address } = await dispatcher.listen();
    log.info({ listen: address, processes: config.smtp.ingressProcesses }, 'SMTP ingress listening');
    const children = ingressChildren;
    ingressStop = async () => {
      await dispatcher.close();
      // Each child lets its sessions finish (smtp.closeTimeoutMs), as the in-process ingress does.
      await children.stop();
      await pipeline.close();
    };
  } else {
    const ingress = await startIngress(config, { redisUrl, log, stores, metrics });
    pipeline = ingress.pipeline;
    ingressStop = () => ingress.stop();
  }

  // The stage workers parse hostile bytes: they run in child processes (queue.workerProcesses), each restarted if
  // it dies. Several of them share the BullMQ queues; each has its own clamd sessions, SMTP pools and SQLite writer.
  // Accepting mail (durably, fast, while SMTP clients wait) comes before processing it: under a burst the ingress
  // keeps its CPU and the workers work off the backlog (niced; the managed clamd likewise, services/clamd.ts).
  const workerArgs = ['worker', ...configArgs];
  const clamd = scan.engines.clamd;
  if ('socket' in clamd) workerArgs.push('--clamd-socket', clamd.socket);
  const workers = new ChildSet('worker', config.queue.workerProcesses, workerArgs, WORKER_NICENESS, log);

  const remoteMetrics = async (): Promise<MetricsJson[]> =>
    (await Promise.all([...workers.processes(), ...(ingressChildren?.processes() ?? [])].map(childMetrics))).flat();
  const admin = await startAdmin(
    config,
    { stores, pipeline, metrics, remoteMetrics, clamd, clamdDatabaseDirs: scan.databaseDirs, services: supervisor },
    log,
  );

  shutdown.ready(
    {
      ingress: ingressStop,
      admin: () => admin.stop(),
      workers: () => workers.stop(),
      stores: () => closeStores(stores),
      services: () => supervisor.stop(),
      ...cleanups,
    },
    () => {
      workers.kill();
      ingressChildren?.kill();
      supervisor.kill();
    },
  );
  log.info({ smtp: config.smtp.listen, admin: config.admin.listen, demo: loaded.demo, dataDir: config.dataDir }, 'Sekisho started');
}

/**
 * Child processes of `sekisho start` of one kind (`sekisho worker`, or `sekisho ingress --from-parent`), each
 * restarted with a backoff when it dies, until `stop`.
 */
class ChildSet {
  readonly #slots: { index: number; child?: ChildProcess; restartDelay: number }[];
  #stopping = false;

  constructor(
    readonly kind: string,
    count: number,
    readonly args: string[],
    readonly niceness: number,
    readonly log: Logger,
    readonly onSpawn?: (child: ChildProcess) => void,
  ) {
    this.#slots = Array.from({ length: count }, (_, index) => ({ index, restartDelay: 1_000 }));
    for (const slot of this.#slots) this.#spawn(slot);
  }

  #spawn(slot: { index: number; child?: ChildProcess; restartDelay: number }): void {
    const c = fork(BIN, this.args, { stdio: 'inherit' });
    slot.child = c;
    if (c.pid !== undefined && this.niceness !== 0) {
      try {
        setPriority(c.pid, this.niceness);
      } catch (err) {
        this.log.warn({ err, kind: this.kind }, 'could not lower the priority of a child process');
      }
    }
    this.onSpawn?.(c);
    const startedAt = Date.now();
    c.on('exit', (code, signal) => {
      if (this.#stopping) return;
      if (Date.now() - startedAt > MAX_RESTART_DELAY_MS) slot.restartDelay = 1_000;
      this.log.error({ code, signal, kind: this.kind, index: slot.index, restartInMs: slot.restartDelay }, `${this.kind} process exited; restarting`);
      setTimeout(() => {
        if (!this.#stopping) this.#spawn(slot);
      }, slot.restartDelay).unref();
      slot.restartDelay = Math.min(slot.restartDelay * 2, MAX_RESTART_DELAY_MS);
    });
  }

  processes(): ChildProcess[] {
    return this.#slots.flatMap((s) => (s.child ? [s.child] : []));
  }

  /** SIGKILL to each, at once (a shutdown past its deadline). No more restarts. */
  kill(): void {
    this.#stopping = true;
    for (const c of this.processes()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }

  /** SIGTERM to each (they stop gracefully); resolves when all have exited. No more restarts. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all(
      this.processes().map((c) =>
        c.exitCode === null && c.signalCode === null
          ? new Promise<void>((resolve) => {
              c.once('exit', () => resolve());
              c.kill('SIGTERM');
            })
          : undefined,
      ),
    );
  }
}

/** A child's metrics registry over IPC (`metrics?` → `metrics`), or nothing if it does not answer in time. */
function childMetrics(c: ChildProcess): Promise<MetricsJson[]> {
  if (!c.connected) return Promise.resolve([]);
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
}

/** Answers the parent's `metrics?` with this process's registry (children of `sekisho start`). */
function answerMetricsRequests(metrics: Metrics): void {
  process.on('message', (m: unknown) => {
    if ((m as { type?: string }).type !== 'metrics?') return;
    metrics.registry
      .getMetricsAsJSON()
      .then((json) => process.send?.({ type: 'metrics', metrics: json }))
      .catch(() => undefined);
  });
}

async function runWorkerRole(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'worker' });
  const shutdown = shutdownOnSignal(log, shutdownDeadlineMs(config));
  const redisUrl = requireRedis(config, args, 'worker');
  const metrics = createMetrics('worker');
  const supervisor = new Supervisor({ log, metrics });
  const scan = await engines(args, config, log, supervisor);
  const stores = openStores(config, 'worker');
  const worker = await startWorker(config, { redisUrl, engines: scan.engines, log, stores, metrics });
  answerMetricsRequests(worker.metrics);
  const extra = await metricsListener(args.metricsListen, config, worker.metrics, worker.pipeline, stores, log);
  shutdown.ready(
    { metrics: async () => extra?.stop(), worker: () => worker.stop(), stores: () => closeStores(stores), services: () => supervisor.stop() },
    () => supervisor.kill(),
  );
  log.info('stage workers running');
}

async function runIngressRole(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'ingress' });
  const shutdown = shutdownOnSignal(log, shutdownDeadlineMs(config));
  const redisUrl = requireRedis(config, args, 'ingress');
  const stores = openStores(config);
  const ingress = await startIngress(config, { redisUrl, log, stores, external: args.fromParent });
  if (args.fromParent) {
    // A child of `sekisho start` (smtp.ingressProcesses > 1): its connections come from the parent's dispatcher,
    // which is told when each one closes (it holds the connection limits).
    answerMetricsRequests(ingress.metrics);
    process.on('message', (m: unknown, handle: unknown) => {
      if (!isHandOver(m) || !(handle instanceof Socket)) return;
      const closed: ConnectionClosed = { type: 'smtp-closed', id: m.id };
      void ingress.connect(handle).then(() => {
        if (process.connected) process.send?.(closed);
      });
    });
    const ready: IngressReady = { type: 'ingress-ready' };
    process.send?.(ready);
  }
  const extra = await metricsListener(args.metricsListen, config, ingress.metrics, ingress.pipeline, stores, log);
  shutdown.ready({ ingress: () => ingress.stop(), metrics: async () => extra?.stop(), stores: () => closeStores(stores) });
}

async function runAdminRole(loaded: LoadedConfig, args: Args): Promise<void> {
  const { config } = loaded;
  const log = createLogger(config.log.level, { role: 'admin' });
  const shutdown = shutdownOnSignal(log, shutdownDeadlineMs(config));
  const redisUrl = requireRedis(config, args, 'admin');
  const stores = openStores(config, 'admin');
  const pipeline = createPipeline(config, redisUrl);
  const admin = await startAdmin(config, { stores, pipeline, metrics: createMetrics('admin'), clamd: configuredClamd(config) }, log);
  shutdown.ready({ admin: () => admin.stop(), pipeline: () => pipeline.close(), stores: () => closeStores(stores) });
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
  // `sekisho spam …` has options of its own (--spam, --ham, --tenant, --json): it parses its arguments itself.
  if (process.argv[2] === 'spam') {
    process.exitCode = await runSpamCommand(process.argv.slice(3), {
      loadConfig,
      bayesConfig: (c) => c.antispam.bayes,
      localChecks: (c, log) => createLocalChecks(c, log),
    });
    return;
  }
  // `sekisho user …` and `sekisho audit …` likewise.
  if (process.argv[2] === 'backup' || process.argv[2] === 'restore') {
    const run = process.argv[2] === 'backup' ? runBackupCommand : runRestoreCommand;
    process.exitCode = await run(process.argv.slice(3), { loadConfig });
    return;
  }
  if (process.argv[2] === 'user' || process.argv[2] === 'audit') {
    const run = process.argv[2] === 'user' ? runUserCommand : runAuditCommand;
    process.exitCode = await run(process.argv.slice(3), { loadConfig });
    return;
  }
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
      console.log('usage: sekisho start|ingress|worker|admin [--config FILE] | sekisho check-config FILE | sekisho spam train|classify … | sekisho user … | sekisho audit verify|export | sekisho backup|restore …');
      process.exitCode = args.command === 'help' ? 0 : 2;
  }
}

main().catch((err: unknown) => {
  console.error(`sekisho: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
