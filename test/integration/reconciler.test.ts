/**
 * The reconciler against real Redis and a real SQLite MetaStore: a full pass on start; afterwards one only when
 * Redis lost its data (its epoch mark is gone) or when the last full pass is FULL_PASS_INTERVAL_MS old — so that a
 * large deferred backlog is not walked every queue.reconcileIntervalMs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { Pipeline } from '../../src/queue/pipeline.ts';
import { Reconciler } from '../../src/queue/reconciler.ts';
import type { StageJobData } from '../../src/queue/stage.ts';
import { stages } from '../../src/queue/stages.ts';
import { FileMessageStore } from '../../src/spool/file-message-store.ts';
import { SqliteMetaStore } from '../../src/spool/sqlite-meta-store.ts';
import { deletePrefix } from '../helpers/harness.ts';
import { newMessage } from '../helpers/new-message.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

let dir: string;
let prefix: string;
let meta: SqliteMetaStore;
let pipeline: Pipeline;
let redis: Redis;
let config: Config;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-reconciler-'));
  prefix = uniquePrefix('reconciler');
  const r = validateConfig({
    hostname: 'mx.test',
    tenants: [{ id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: 'smtp://127.0.0.1:2526' }],
  });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  config = r.config;
  meta = new SqliteMetaStore(path.join(dir, 'meta.sqlite'));
  pipeline = new Pipeline(testRedisUrl(), prefix, r.config.queue, stages);
  redis = new Redis(testRedisUrl());
});

afterEach(async () => {
  await pipeline.close();
  await meta.close();
  redis.disconnect();
  await deletePrefix(testRedisUrl(), prefix);
  rmSync(dir, { recursive: true, force: true });
});

it('passes on start; later only when Redis lost its data or the last pass is ten minutes old', async () => {
  let now = 1_000_000;
  const reconciler = new Reconciler({ meta, store: new FileMessageStore(dir), pipeline, config }, pino({ level: 'silent' }), 30_000, () => now);
  const msg = newMessage();
  await meta.insertMessage(msg);
  const job = async () => pipeline.queue('scan').getJob(`scan-${msg.id}`);

  expect(await reconciler.run()).toBe(1);
  expect(await job()).toBeDefined();

  // A job lost while Redis kept its data (removed by hand): the next ticks leave it for the safety-net pass.
  await (await job())!.remove();
  now += 30_000;
  expect(await reconciler.tick()).toBeUndefined();
  expect(await job()).toBeUndefined();

  // Ten minutes after the last full pass, one runs anyway.
  now += 10 * 60_000;
  expect(await reconciler.tick()).toBe(1);
  expect(await job()).toBeDefined();

  // Redis lost everything (here: our prefix's keys, the epoch mark among them): the next tick passes at once.
  await deletePrefix(testRedisUrl(), prefix);
  expect(await job()).toBeUndefined();
  now += 30_000;
  expect(await reconciler.tick()).toBe(1);
  expect(await job()).toBeDefined();
  now += 30_000;
  expect(await reconciler.tick()).toBeUndefined();
});

it('after the wall clock stepped back, brings a deferred delivery that now looks hours away forward to now', async () => {
  const reconciler = new Reconciler({ meta, store: new FileMessageStore(dir), pipeline, config }, pino({ level: 'silent' }), 30_000);
  const msg = newMessage();
  await meta.insertMessage(msg);
  // After one attempt, deferred "in an hour": its retry was due retryInitialDelayMs after it, so the clock went back.
  const hourAhead = Date.now() + 3_600_000;
  await meta.update(msg.id, {
    message: { state: 'delivering' },
    recipients: [{ patch: { action: 'deliver', state: 'deferred', nextAttemptAt: hourAhead, countAttempt: true } }],
  });
  await pipeline.enqueue({ stage: 'deliver', data: { mid: msg.id, route: 'city-a' } as StageJobData, delayMs: 3_600_000 });
  const job = async () => pipeline.queue('deliver').getJob(`deliver-${msg.id}-city-a`);
  const dueAt = async () => {
    const j = (await job())!;
    return j.timestamp + j.delay;
  };
  expect(await dueAt()).toBeGreaterThan(Date.now() + 3_000_000);

  await reconciler.run();
  expect(await dueAt()).toBeLessThanOrEqual(Date.now() + 1_000);
  expect(await (await job())!.isDelayed()).toBe(true);
});
