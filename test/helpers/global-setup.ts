/**
 * Starts one private redis-server for the whole test run (its own port, nothing on disk), so tests never touch
 * a Redis the machine may already run on 6379. Each test still uses its own BullMQ prefix.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startManagedRedis, type ManagedRedis } from '../../src/services/redis-server.ts';

let redis: ManagedRedis | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-test-redis-'));
  redis = await startManagedRedis({ dir });
  project.provide('redisUrl', redis.url);
}

export async function teardown(): Promise<void> {
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}
