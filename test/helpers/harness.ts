/**
 * Runs a whole Sekisho (ingress + stage workers, in this process) against the test run's private Redis, with
 * its own BullMQ prefix and data dir, two tenants whose downstream servers are real SMTP sinks on loopback.
 * Every timing in the config is shortened so retries and recovery happen within seconds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { deletePrefix } from './redis-keys.ts';
import { validateConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { silentLogger, createLogger, type Logger } from '../../src/log.ts';
import { closeStores, openStores, startIngress, startWorker, type IngressRuntime, type Stores, type WorkerRuntime } from '../../src/runtime.ts';
import type { Check } from '../../src/scan/check.ts';
import { createMimeStructureCheck } from '../../src/scan/checks/mime-structure.ts';
import type { ScanEngines } from '../../src/scan/registry.ts';
import type { Deliverer } from '../../src/delivery/delivery.ts';
import type { AnyStage } from '../../src/queue/stage.ts';
import type { QuarantineKeeper } from '../../src/quarantine/keeper.ts';
import type { Sanitizer } from '../../src/sanitize/sanitizer.ts';
import { testRedisUrl, uniquePrefix } from './redis.ts';
import { SmtpSink } from './smtp-sink.ts';
import { merge } from './merge.ts';

export type DeepPartial<T> = { [K in keyof T]?: T[K] extends object ? (T[K] extends unknown[] ? T[K] : DeepPartial<T[K]>) : T[K] };

export interface HarnessOptions {
  config?: Record<string, unknown>;
  /** Wraps the real stores (fault injection). */
  wrapStores?: (s: Stores) => Stores;
  checks?: Check[];
  engines?: ScanEngines;
  deliverer?: Deliverer;
  /** The worker's sanitizer: by default the real one when a tenant sanitizes; null for none (such mail is held). */
  sanitizer?: Sanitizer | null;
  /** Records the originals of sanitized messages as kept. */
  quarantine?: QuarantineKeeper;
  /** Replaces the list of stages of the worker (the ingress always uses the real list). */
  stages?: readonly AnyStage[];
  /** Keys merged into a base tenant's config, by tenant id (`{ 'town-b': { sanitize: true } }`). */
  tenantOptions?: Record<string, Record<string, unknown>>;
  /** Runs on this data dir (e.g. one a backup was restored into) instead of a new temporary one; stop() removes it too. */
  dataDir?: string;
  /** Do not start the in-process worker (e.g. to run it as a child process). */
  noWorker?: boolean;
  log?: boolean;
}


export { deletePrefix };

export class Harness {
  config!: Config;
  dataDir!: string;
  stores!: Stores;
  ingress!: IngressRuntime;
  worker: WorkerRuntime | undefined;
  readonly sinks: { a: SmtpSink; b: SmtpSink; outbound: SmtpSink };
  readonly #opts: HarnessOptions;
  log: Logger = silentLogger;

  private constructor(opts: HarnessOptions) {
    this.#opts = opts;
    this.sinks = { a: new SmtpSink(), b: new SmtpSink(), outbound: new SmtpSink() };
  }

  static async start(opts: HarnessOptions = {}): Promise<Harness> {
    const h = new Harness(opts);
    await Promise.all(Object.values(h.sinks).map((s) => s.start()));
    h.dataDir = opts.dataDir ?? mkdtempSync(path.join(os.tmpdir(), 'sekisho-it-'));
    const base = {
      hostname: 'mx.pref.test.lg.jp',
      smtp: { listen: '127.0.0.1:0', closeTimeoutMs: 2_000 },
      redis: { url: testRedisUrl(), prefix: uniquePrefix('it') },
      dataDir: h.dataDir,
      admin: { listen: '127.0.0.1:0' },
      log: { level: 'warn' },
      queue: { reconcileIntervalMs: 500, lockDurationMs: 2_000, attemptBackoffMs: 100, maxAttempts: 3 },
      scan: { checkTimeoutMs: 5_000, failRetryDelayMs: 300, failQuarantineAfterMs: 60_000 },
      delivery: {
        retryInitialDelayMs: 300,
        retryMaxDelayMs: 1_000,
        giveUpAfterMs: 60_000,
        delayNoticeAfterMs: 0,
        connectTimeoutMs: 2_000,
        socketTimeoutMs: 10_000,
        outboundRelay: h.sinks.outbound.url,
      },
      tenants: [
        { id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: h.sinks.a.url },
        { id: 'town-b', name: '乙町', domains: ['town-b.example.lg.jp', 'Town-B.Example.JP'], deliverTo: h.sinks.b.url },
      ],
    };
    base.tenants = base.tenants.map((t) => ({ ...t, ...opts.tenantOptions?.[t.id] }));
    const r = validateConfig(merge(base, opts.config ?? {}));
    if (!r.ok) throw new Error(`bad test config: ${JSON.stringify(r.issues)}`);
    h.config = r.config;
    if (opts.log) h.log = createLogger('debug');
    const real = openStores(h.config);
    h.stores = opts.wrapStores ? opts.wrapStores(real) : real;
    h.ingress = await startIngress(h.config, { redisUrl: h.config.redis.url!, log: h.log, stores: h.stores });
    if (!opts.noWorker) await h.startWorker();
    return h;
  }

  get port(): number {
    return this.ingress.port;
  }

  async startWorker(): Promise<WorkerRuntime> {
    this.worker = await startWorker(this.config, {
      redisUrl: this.config.redis.url!,
      engines: this.#opts.engines,
      log: this.log,
      stores: this.stores,
      // Without a clamd endpoint, the structure check alone (the antivirus tests pass `engines`).
      checks: this.#opts.checks ?? (this.#opts.engines ? undefined : [createMimeStructureCheck()]),
      deliverer: this.#opts.deliverer,
      sanitizer: this.#opts.sanitizer,
      quarantine: this.#opts.quarantine,
      stages: this.#opts.stages,
    });
    return this.worker;
  }

  async stopWorker(): Promise<void> {
    await this.worker?.stop();
    this.worker = undefined;
  }

  /** Polls the MetaStore until `pred` holds; a hang guard, not a timing assertion. */
  async waitForState(mid: string, pred: (states: string[], msgState: string | undefined) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const msg = await this.stores.meta.getMessage(mid);
      const rcpts = await this.stores.meta.getRecipients(mid);
      if (pred(rcpts.map((r) => r.state), msg?.state)) return;
      if (Date.now() > deadline) {
        throw new Error(`message ${mid} did not reach the expected state: ${msg?.state} ${JSON.stringify(rcpts)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** All keys of this harness's BullMQ prefix are removed, the data dir deleted, the sinks closed. */
  async stop(): Promise<void> {
    await this.ingress.stop().catch(() => undefined);
    await this.stopWorker().catch(() => undefined);
    await closeStores(this.stores).catch(() => undefined);
    await Promise.all(Object.values(this.sinks).map((s) => s.close()));
    await deletePrefix(this.config.redis.url!, this.config.redis.prefix);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** `target` with some methods replaced (fault injection); the rest bound to the real object (#private-safe). */
export function override<T extends object>(target: T, patch: Partial<Record<keyof T, unknown>>): T {
  return new Proxy(target, {
    get(t, prop, receiver) {
      if (Object.prototype.hasOwnProperty.call(patch, prop)) return (patch as Record<PropertyKey, unknown>)[prop];
      const v = Reflect.get(t, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}


/** The queue id from "250 2.0.0 Ok: queued as <id>". */
export function queuedId(reply: string): string {
  const m = /queued as ([0-9a-z]+)/.exec(reply);
  if (!m?.[1]) throw new Error(`not a queued reply: ${reply}`);
  return m[1];
}
