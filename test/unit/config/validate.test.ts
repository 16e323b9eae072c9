/**
 * validateConfig: the config contract (DESIGN §3). Every error names its exact key path and a reason, every
 * error of a file is reported at once, and a valid config comes back with its defaults, resolved and frozen.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { demoConfig } from '../../../src/config/demo.ts';
import { validateConfig, type ConfigIssue } from '../../../src/config/load.ts';
import type { Config } from '../../../src/config/schema.ts';

const BASE_DIR = path.resolve('/etc/sekisho');

function tenant(id: string, domain: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { id, name: `${id} 市`, domains: [domain], deliverTo: 'smtp://10.1.2.3:25', ...extra };
}

function minimal(): Record<string, unknown> {
  return { hostname: 'mx.pref.example.lg.jp', tenants: [tenant('city-a', 'city-a.example.lg.jp'), tenant('town-b', 'town-b.example.lg.jp')] };
}

function valid(raw: unknown): Config {
  const r = validateConfig(raw, BASE_DIR);
  if (!r.ok) throw new Error(`expected a valid config, got:\n${r.issues.map((i) => `${i.path}: ${i.message}`).join('\n')}`);
  return r.config;
}

function issues(raw: unknown): ConfigIssue[] {
  const r = validateConfig(raw, BASE_DIR);
  if (r.ok) throw new Error('expected validation to fail');
  return r.issues;
}

function isDeepFrozen(o: unknown, seen = new Set<unknown>()): boolean {
  if (o === null || typeof o !== 'object' || seen.has(o)) return true;
  seen.add(o);
  return Object.isFrozen(o) && Object.values(o).every((v) => isDeepFrozen(v, seen));
}

describe('a valid configuration', () => {
  const full = {
    hostname: 'mx.pref.example.lg.jp',
    smtp: {
      listen: '0.0.0.0:25',
      ingressProcesses: 2,
      maxMessageBytes: 10_485_760,
      maxRecipients: 50,
      maxConnectionsPerIp: 5,
      maxConnections: 200,
      connectionRatePerIpPerMinute: 60,
      socketTimeoutMs: 30_000,
      greetPauseMs: 250,
      maxBadCommands: 3,
      maxJunkCommands: 20,
      verdictWaitMs: 20_000,
      closeTimeoutMs: 10_000,
      reverseLookup: true,
      tls: { cert: 'tls/mx.crt', key: '/etc/ssl/private/mx.key' },
    },
    redis: { url: 'redis://10.0.0.5:6379/2', prefix: 'sekisho-prod' },
    dataDir: 'var',
    admin: { listen: '[::1]:8025' },
    log: { level: 'warn' },
    queue: { workerProcesses: 2, scanConcurrency: 2, scanMemoryBytes: 1_048_576, deliverConcurrency: 8, maxAttempts: 3, attemptBackoffMs: 1000, reconcileIntervalMs: 10_000, lockDurationMs: 60_000 },
    scan: { checkTimeoutMs: 10_000, failRetryDelayMs: 30_000, failQuarantineAfterMs: 7_200_000 },
    delivery: {
      retryInitialDelayMs: 60_000,
      retryMaxDelayMs: 600_000,
      giveUpAfterMs: 86_400_000,
      delayNoticeAfterMs: 0,
      connectTimeoutMs: 10_000,
      socketTimeoutMs: 60_000,
      maxConnectionsPerRoute: 2,
      outboundRelay: 'smtp://relay.pref.example.lg.jp:25?requireTLS=true',
    },
    clamav: {
      socket: '/run/clamav/clamd.ctl',
      port: 3310,
      timeoutMs: 30_000,
      databaseDir: '/var/lib/clamav',
      hashBlocklistFile: 'blocklist.sha256',
      startTimeoutMs: 60_000,
      maxThreads: 4,
      tempInMemory: false,
      archive: { maxDepth: 3, maxExpandedBytes: 104_857_600, maxRatio: 50, maxEntries: 1000 },
    },
    policy: {
      scores: { HEADER_MISSING_MESSAGE_ID: 1, MIME_DOUBLE_EXTENSION: 8 },
      groupCaps: { headers: 4 },
      thresholds: { reject: 20, quarantine: 12, tag: 6 },
      forceActions: { MIME_DOUBLE_EXTENSION: 'quarantine' },
    },
    tenants: [
      tenant('city-a', 'City-A.Example.LG.JP', { sanitize: false }),
      tenant('town-b', 'town-b.example.lg.jp', {
        deliverTo: 'smtps://10.1.3.4:465?verifyTLS=true',
        sanitize: true,
        policy: { thresholds: { tag: 3 }, forceActions: { ARCHIVE_ENCRYPTED: 'quarantine' } },
      }),
    ],
  };

  it('passes with every key set, and keeps the values', () => {
    const c = valid(full);
    expect(c.smtp.listen).toBe('0.0.0.0:25');
    expect(c.smtp.verdictWaitMs).toBe(20_000);
    expect(c.redis.url).toBe('redis://10.0.0.5:6379/2');
    expect(c.admin.listen).toBe('[::1]:8025');
    expect(c.delivery.outboundRelay).toBe('smtp://relay.pref.example.lg.jp:25?requireTLS=true');
    expect(c.clamav.archive.maxRatio).toBe(50);
    expect(c.policy.forceActions).toEqual({ MIME_DOUBLE_EXTENSION: 'quarantine' });
    expect(c.tenants[1]!.policy).toEqual({ thresholds: { tag: 3 }, forceActions: { ARCHIVE_ENCRYPTED: 'quarantine' } });
  });

  it('lower-cases domains', () => {
    expect(valid(full).tenants[0]!.domains).toEqual(['city-a.example.lg.jp']);
  });

  it('is deep-frozen: no part of it can be changed afterwards', () => {
    const c = valid(full);
    expect(isDeepFrozen(c)).toBe(true);
    expect(() => {
      (c.smtp as { maxMessageBytes: number }).maxMessageBytes = 1;
    }).toThrow(TypeError);
    expect(() => (c.tenants[0]!.domains as string[]).push('evil.example')).toThrow(TypeError);
  });

  it('resolves dataDir and the other file paths against the base directory (the config file’s)', () => {
    const c = valid(full);
    expect(c.dataDir).toBe(path.join(BASE_DIR, 'var'));
    expect(c.smtp.tls).toEqual({ cert: path.join(BASE_DIR, 'tls/mx.crt'), key: '/etc/ssl/private/mx.key' });
    expect(c.clamav.hashBlocklistFile).toBe(path.join(BASE_DIR, 'blocklist.sha256'));
  });

  it('fills in every default when only the required keys are given', () => {
    const c = valid(minimal());
    expect(c.smtp).toEqual({
      listen: '127.0.0.1:2525',
      ingressProcesses: 1,
      maxMessageBytes: 52_428_800,
      maxRecipients: 100,
      maxConnectionsPerIp: 20,
      maxConnections: 1000,
      connectionRatePerIpPerMinute: 600,
      socketTimeoutMs: 60_000,
      greetPauseMs: 0,
      maxBadCommands: 10,
      maxJunkCommands: 100,
      verdictWaitMs: 0,
      closeTimeoutMs: 30_000,
      reverseLookup: false,
    });
    expect(c.redis).toEqual({ prefix: 'sekisho' });
    expect(c.dataDir).toBe(path.join(BASE_DIR, 'var'));
    expect(c.admin.listen).toBe('127.0.0.1:8025');
    expect(c.scan).toEqual({ checkTimeoutMs: 30_000, failRetryDelayMs: 60_000, failQuarantineAfterMs: 3_600_000 });
    expect(c.delivery.retryInitialDelayMs).toBe(300_000);
    expect(c.delivery.retryMaxDelayMs).toBe(3_600_000);
    expect(c.policy).toEqual({ scores: {}, groupCaps: {}, thresholds: { reject: 15, quarantine: 10, tag: 5, headers: 0 }, forceActions: {}, subjectTag: '' });
    expect(c.tenants[0]!.sanitize).toBe(false);
    expect(c.tenants[0]!.policy).toBeUndefined();
  });

  it('keeps an absolute dataDir as it is', () => {
    expect(valid({ ...minimal(), dataDir: '/srv/sekisho' }).dataDir).toBe('/srv/sekisho');
  });

  it('the demo configuration validates (relative to the working directory)', () => {
    const r = validateConfig(demoConfig);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.dataDir).toBe(path.resolve('var'));
    expect(r.config.tenants.map((t) => t.id)).toEqual(['city', 'town']);
    expect(isDeepFrozen(r.config)).toBe(true);
  });

  it('does not freeze or change the object it was given', () => {
    const raw = minimal();
    valid(raw);
    expect(Object.isFrozen(raw)).toBe(false);
    expect(raw).toEqual(minimal());
  });

  it('accepts IPv6 listen addresses, smtps routes and route options', () => {
    const c = valid({
      ...minimal(),
      smtp: { listen: '[::]:25' },
      tenants: [tenant('city-a', 'city-a.example.lg.jp', { deliverTo: 'smtp://[fd00::1]:2525?requireTLS=true&verifyTLS=false' })],
    });
    expect(c.smtp.listen).toBe('[::]:25');
  });
});

describe('errors name their key path and a reason', () => {
  const cases: { name: string; mutate: (c: Record<string, unknown>) => void; path: string; reason: RegExp }[] = [
    { name: 'missing hostname', mutate: (c) => delete c.hostname, path: 'hostname', reason: /expected string/ },
    { name: 'empty hostname', mutate: (c) => (c.hostname = ''), path: 'hostname', reason: /./ },
    { name: 'listen without port', mutate: (c) => (c.smtp = { listen: '127.0.0.1' }), path: 'smtp.listen', reason: /host:port/ },
    { name: 'listen with port 70000', mutate: (c) => (c.smtp = { listen: '127.0.0.1:70000' }), path: 'smtp.listen', reason: /port must be 0-65535/ },
    { name: 'admin listen without host', mutate: (c) => (c.admin = { listen: ':8025' }), path: 'admin.listen', reason: /host:port/ },
    { name: 'deliverTo http://', mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.deliverTo = 'http://10.1.2.3:25'), path: 'tenants[1].deliverTo', reason: /smtp:\/\/host/ },
    { name: 'deliverTo without host', mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.deliverTo = 'smtp://'), path: 'tenants[1].deliverTo', reason: /smtp:\/\/host/ },
    { name: 'deliverTo not a URL', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.deliverTo = '10.1.2.3:25'), path: 'tenants[0].deliverTo', reason: /smtp:\/\/host/ },
    { name: 'deliverTo with a misspelt option', mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.deliverTo = 'smtp://10.1.2.3?requireTls=true'), path: 'tenants[1].deliverTo', reason: /requireTLS=true\|false/ },
    { name: 'deliverTo with a bad option value', mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.deliverTo = 'smtp://10.1.2.3?requireTLS=yes'), path: 'tenants[1].deliverTo', reason: /requireTLS=true\|false/ },
    { name: 'outboundRelay http://', mutate: (c) => (c.delivery = { outboundRelay: 'http://relay' }), path: 'delivery.outboundRelay', reason: /smtp:\/\/host/ },
    { name: 'redis url of another scheme', mutate: (c) => (c.redis = { url: 'http://127.0.0.1:6379' }), path: 'redis.url', reason: /redis:\/\// },
    { name: 'duplicate tenant id', mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.id = 'city-a'), path: 'tenants[1].id', reason: /duplicate tenant id "city-a"/ },
    { name: 'tenant id with capitals', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.id = 'City_A'), path: 'tenants[0].id', reason: /lower-case/ },
    {
      name: 'domain in two tenants (case-insensitively)',
      mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.domains = ['town-b.example.lg.jp', 'CITY-A.example.lg.jp']),
      path: 'tenants[1].domains[1]',
      reason: /domain "city-a.example.lg.jp" already belongs to tenant "city-a"/,
    },
    { name: 'not a domain', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.domains = ['user@city-a.example.lg.jp']), path: 'tenants[0].domains[0]', reason: /domain name/ },
    { name: 'tenant without domains', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.domains = []), path: 'tenants[0].domains', reason: /./ },
    { name: 'no tenants', mutate: (c) => (c.tenants = []), path: 'tenants', reason: /at least one tenant/ },
    { name: 'typo smtp.maxMesageBytes', mutate: (c) => (c.smtp = { maxMesageBytes: 1000 }), path: 'smtp.maxMesageBytes', reason: /unknown key \(did you mean "maxMessageBytes"\?\)/ },
    { name: 'unknown top-level key', mutate: (c) => (c.datadir = './var'), path: 'datadir', reason: /unknown key \(did you mean "dataDir"\?\)/ },
    { name: 'unknown tenant key', mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.sanitise = true), path: 'tenants[1].sanitise', reason: /did you mean "sanitize"/ },
    { name: 'unknown nested key', mutate: (c) => (c.clamav = { archive: { maxDeph: 3 } }), path: 'clamav.archive.maxDeph', reason: /did you mean "maxDepth"/ },
    { name: 'unknown key far from any', mutate: (c) => (c.smtp = { banner: 'hello' }), path: 'smtp.banner', reason: /^unknown key$/ },
    { name: 'typo in a threshold', mutate: (c) => (c.policy = { thresholds: { rejcet: 20 } }), path: 'policy.thresholds.rejcet', reason: /did you mean "reject"/ },
    { name: 'typo in a tenant threshold', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.policy = { thresholds: { tga: 3 } }), path: 'tenants[0].policy.thresholds.tga', reason: /did you mean "tag"/ },
    { name: 'unknown symbol in scores', mutate: (c) => (c.policy = { scores: { CLAMAV_VIRSU: 5 } }), path: 'policy.scores.CLAMAV_VIRSU', reason: /unknown symbol "CLAMAV_VIRSU"/ },
    { name: 'unknown symbol in a tenant’s forceActions', mutate: (c) => ((c.tenants as Record<string, unknown>[])[1]!.policy = { forceActions: { EICAR: 'reject' } }), path: 'tenants[1].policy.forceActions.EICAR', reason: /unknown symbol "EICAR"/ },
    // Regression: symbolInfo('toString') found Object.prototype.toString, so this passed as a symbol name.
    { name: 'inherited property as a symbol name', mutate: (c) => (c.policy = { scores: { toString: 5 } }), path: 'policy.scores.toString', reason: /unknown symbol "toString"/ },
    { name: 'unknown group in groupCaps', mutate: (c) => (c.policy = { groupCaps: { header: 3 } }), path: 'policy.groupCaps.header', reason: /unknown symbol group "header"/ },
    { name: 'unknown action', mutate: (c) => (c.policy = { forceActions: { CLAMAV_VIRUS: 'drop' } }), path: 'policy.forceActions.CLAMAV_VIRUS', reason: /quarantine/ },
    { name: 'string instead of number', mutate: (c) => (c.smtp = { maxMessageBytes: '50MB' }), path: 'smtp.maxMessageBytes', reason: /expected number/ },
    { name: 'fractional count', mutate: (c) => (c.queue = { scanConcurrency: 1.5 }), path: 'queue.scanConcurrency', reason: /integer|int/ },
    { name: 'negative duration', mutate: (c) => (c.scan = { checkTimeoutMs: -1 }), path: 'scan.checkTimeoutMs', reason: />=\s*0|too small/i },
    { name: 'string instead of boolean', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.sanitize = 'yes'), path: 'tenants[0].sanitize', reason: /must be true, false or an object of options/ },
    { name: 'misspelt sanitize option', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.sanitize = { attachmentsAs: 'pfd' }), path: 'tenants[0].sanitize.attachmentsAs', reason: /pdf/ },
    { name: 'unknown notice placeholder', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.sanitize = { notice: { ja: '{{quarantineID}}' } }), path: 'tenants[0].sanitize.notice.ja', reason: /unknown placeholder/ },
    { name: 'bad allow-list entry', mutate: (c) => ((c.tenants as Record<string, unknown>[])[0]!.allow = ['203.0.113.0/40']), path: 'tenants[0].allow[0]', reason: /CIDR/ },
    { name: 'control character in the subject tag', mutate: (c) => (c.policy = { subjectTag: '【迷惑】\r\nBcc: x@y' }), path: 'policy.subjectTag', reason: /control/ },
    { name: 'object instead of list', mutate: (c) => (c.tenants = { 'city-a': {} }), path: 'tenants', reason: /expected array/ },
    { name: 'unknown log level', mutate: (c) => (c.log = { level: 'verbose' }), path: 'log.level', reason: /info/ },
    { name: 'clamd port out of range', mutate: (c) => (c.clamav = { host: 'clamd', port: 0 }), path: 'clamav.port', reason: /./ },
    { name: 'clamav socket and host', mutate: (c) => (c.clamav = { socket: '/run/clamd.ctl', host: 'clamd' }), path: 'clamav', reason: /either clamav.socket or clamav.host/ },
  ];

  it.each(cases)('$name → $path', ({ mutate, path: keyPath, reason }) => {
    const raw = minimal();
    mutate(raw);
    const found = issues(raw);
    const at = found.filter((i) => i.path === keyPath);
    expect(at, JSON.stringify(found)).not.toHaveLength(0);
    expect(at.map((i) => i.message).join(' / ')).toMatch(reason);
    // Exactly one reason per problem: no second, misleading message at the same key.
    expect(at).toHaveLength(1);
  });

  it('a root that is not a mapping is reported at (root)', () => {
    expect(issues(null)).toEqual([{ path: '(root)', message: expect.stringMatching(/expected object/) }]);
    expect(issues(['hostname'])[0]!.path).toBe('(root)');
  });

  it('reports several errors at once, across sections and tenants', () => {
    const raw = minimal();
    delete raw.hostname;
    raw.smtp = { listen: '127.0.0.1', maxMesageBytes: 1 };
    const tenants = raw.tenants as Record<string, unknown>[];
    tenants[1]!.deliverTo = 'http://10.1.2.3';
    tenants[1]!.domains = ['city-a.example.lg.jp'];
    tenants.push(tenant('city-a', 'other.example.lg.jp'));
    const paths = issues(raw).map((i) => i.path);
    expect(paths).toEqual(
      expect.arrayContaining(['hostname', 'smtp.listen', 'smtp.maxMesageBytes', 'tenants[1].deliverTo', 'tenants[1].domains[0]', 'tenants[2].id']),
    );
    expect(paths).toHaveLength(6);
  });

  // Regression: the tenant checks ran on the root object, which zod skips once another key is missing, so a
  // file without hostname hid its duplicate tenants until the hostname was fixed.
  it('duplicate tenants are reported even when hostname is missing', () => {
    const raw = minimal();
    delete raw.hostname;
    (raw.tenants as Record<string, unknown>[])[1]!.id = 'city-a';
    expect(issues(raw).map((i) => i.path)).toEqual(['hostname', 'tenants[1].id']);
  });
});

describe('tenant policy overrides', () => {
  // Regression: the tenant policy was `policySchema.partial()`, whose threshold defaults turned a tenant's
  // `{ tag: 3 }` into `{ reject: 15, quarantine: 10, tag: 3 }`, silently undoing the global thresholds.
  it('keep only the keys the tenant sets (no defaults that would override the global policy)', () => {
    const raw = minimal();
    raw.policy = { thresholds: { reject: 30, quarantine: 20 } };
    (raw.tenants as Record<string, unknown>[])[0]!.policy = { thresholds: { tag: 3 } };
    const c = valid(raw);
    expect(c.tenants[0]!.policy).toEqual({ thresholds: { tag: 3 } });
    expect(c.policy.thresholds).toEqual({ reject: 30, quarantine: 20, tag: 5, headers: 0 });
  });
});
