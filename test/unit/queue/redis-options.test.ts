/**
 * redis.url → ioredis options: TCP (with credentials, TLS, db) and a unix socket (the managed redis-server of
 * `sekisho start`), whose path survives the round trip through a URL even with characters a URL reserves.
 */
import { describe, expect, it } from 'vitest';
import { redisOptions } from '../../../src/queue/pipeline.ts';
import { unixRedisUrl } from '../../../src/services/redis-server.ts';

describe('redisOptions', () => {
  it('reads host, port, db and credentials from redis:// and rediss://', () => {
    expect(redisOptions('redis://127.0.0.1:6390/3', false)).toMatchObject({ host: '127.0.0.1', port: 6390, db: 3, tls: undefined });
    expect(redisOptions('rediss://u%40x:p%3Aw@redis.example:6380', true)).toMatchObject({
      host: 'redis.example',
      port: 6380,
      db: 0,
      username: 'u@x',
      password: 'p:w',
      tls: {},
    });
  });

  it('reads a unix socket path and db from unix://, also a path with spaces, ?, # and %', () => {
    for (const socket of ['/srv/sekisho/var/redis/redis.sock', '/tmp/a b/c?d#e%f/日本/redis.sock']) {
      const url = unixRedisUrl(socket, 2);
      const o = redisOptions(url, false);
      expect(o).toMatchObject({ path: socket, db: 2 });
      expect(o).not.toHaveProperty('host');
    }
    expect(redisOptions('unix:///run/redis/redis-server.sock', true)).toMatchObject({ path: '/run/redis/redis-server.sock', db: 0 });
  });
});
