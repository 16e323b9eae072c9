import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

/** URL of the private redis-server started by global-setup.ts. */
export function testRedisUrl(): string {
  return inject('redisUrl');
}

/** A BullMQ prefix no other test uses; delete its keys in afterAll/afterEach. */
export function uniquePrefix(name: string): string {
  return `t-${name}-${randomBytes(4).toString('hex')}`;
}
