/**
 * The configuration contract (DESIGN.md §3) as a zod schema. Every key has its unit in its name and a default
 * that an ordinary installation can keep; `docs/config.md` documents each of them.
 */
import { z } from 'zod';
import { DOMAIN_NAME } from './domain-name.ts';
import { parseSenderPattern } from '../policy/sender-lists.ts';
import { authConfigSchema } from '../scan/checks/auth/config.ts';
import { bayesConfigSchema } from '../scan/checks/bayes/config.ts';
import { reputationConfigSchema } from '../scan/checks/reputation/config.ts';
import { rspamdConfigSchema } from '../scan/checks/rspamd/config.ts';
import { rulesConfigSchema } from '../scan/checks/rules/config.ts';
import { dnsConfigSchema } from '../scan/dns/config.ts';
import { spoofingConfigSchema } from '../scan/checks/spoofing/config.ts';
import { symbolGroups, symbolInfo, type SymbolGroup } from '../scan/symbols.ts';

/** "host:port" with a numeric port; IPv6 hosts in brackets ("[::1]:25"). */
const listenAddress = z
  .string()
  // abort: without a port, "port must be 0-65535" would be reported as well, and be wrong.
  .regex(/^(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}$/, { message: 'must be "host:port", e.g. "127.0.0.1:2525"', abort: true })
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be 0-65535');

const ms = (def: number) => z.number().int().nonnegative().default(def);

/** Query options of a route URL that src/delivery/delivery.ts understands. */
const ROUTE_OPTIONS = ['requireTLS', 'verifyTLS'];

const deliverTo = z
  .string()
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === 'smtp:' || u.protocol === 'smtps:') && u.hostname !== '';
    } catch {
      return false;
    }
  }, 'must be smtp://host[:port] or smtps://host[:port], optionally with ?requireTLS=true')
  // The delivery client reads these two options and ignores anything else, so a misspelt `?requireTls=true`
  // used to send without TLS, silently.
  .refine((s) => {
    try {
      return [...new URL(s).searchParams].every(([k, v]) => ROUTE_OPTIONS.includes(k) && (v === 'true' || v === 'false'));
    } catch {
      return true; // not a URL: reported by the check above (no `abort` there, it would hide the tenant checks)
    }
  }, 'the only route options are requireTLS=true|false and verifyTLS=true|false');

const domain = z
  .string()
  .min(1)
  .regex(DOMAIN_NAME, 'must be a domain name like city-a.example.lg.jp')
  .transform((d) => d.toLowerCase());

export const actionNames = ['deliver', 'deliver-tagged', 'sanitize', 'quarantine', 'reject', 'tempfail'] as const;
export const actionSchema = z.enum(actionNames);

/**
 * Symbol and group names in policy maps must exist in the catalogue: a typo (`CLAMAV_VIRSU: reject`) would
 * otherwise be accepted and silently never match, i.e. fail open.
 */
/** A symbol named at run time: a rule of the operators' rule file (RULE_<NAME>), or one Rspamd relayed (RSPAMD_<NAME>). */
const RULE_SYMBOL = /^(RULE|RSPAMD)_[A-Z0-9_]+$/;
const symbolKeyed = <T extends z.ZodType>(value: T) =>
  z.record(z.string(), value).superRefine((rec, ctx) => {
    for (const k of Object.keys(rec)) {
      // RULE_<NAME>, RSPAMD_<NAME>: known only once the rule file is read, or Rspamd answers.
      if (!symbolInfo(k) && !RULE_SYMBOL.test(k)) ctx.addIssue({ code: 'custom', path: [k], message: `unknown symbol "${k}" (see docs/symbols.md)` });
    }
  });
const groupKeyed = z.record(z.string(), z.number()).superRefine((rec, ctx) => {
  for (const k of Object.keys(rec)) {
    if (!symbolGroups.includes(k as SymbolGroup)) {
      ctx.addIssue({ code: 'custom', path: [k], message: `unknown symbol group "${k}" (one of ${symbolGroups.join(', ')})` });
    }
  }
});

/** At most this long: a tag is a few characters; a long one would push the real subject out of the mail list. */
const MAX_SUBJECT_TAG_CHARS = 40;
const subjectTag = z
  .string()
  .max(MAX_SUBJECT_TAG_CHARS)
  .refine((s) => !/[\p{Cc}]/u.test(s), 'must not contain control characters');

const policySchema = z
  .object({
    /** Score per symbol name; symbols not listed score their catalogue default. */
    scores: symbolKeyed(z.number()).default({}),
    /** Maximum total a symbol group may contribute (e.g. { headers: 5 }). */
    groupCaps: groupKeyed.default({}),
    /** Score thresholds, checked from the most severe down. */
    thresholds: z
      .object({
        reject: z.number().default(15),
        quarantine: z.number().default(10),
        tag: z.number().default(5),
        /** Delivered mail scoring at least this gets X-Spam-Score and X-Spam-Status (the symbol list). */
        headers: z.number().default(0),
      })
      .strict() // was not strict: a typo like `rejcet: 20` was silently dropped
      .prefault({}),
    /** A symbol that forces an action whatever the score (e.g. CLAMAV_VIRUS: quarantine). */
    forceActions: symbolKeyed(actionSchema).default({}),
    /** Put in front of the Subject of mail delivered tagged (e.g. 【迷惑メール】); empty: the subject is left alone. */
    subjectTag: subjectTag.default(''),
  })
  .strict();

/**
 * A tenant's overrides: only the keys it sets, no defaults. (It used to be `policySchema.partial()`, whose
 * threshold defaults filled every unset threshold with 15/10/5 and so overrode the global thresholds.)
 */
const tenantPolicySchema = z
  .object({
    scores: symbolKeyed(z.number()).optional(),
    groupCaps: groupKeyed.optional(),
    thresholds: z
      .object({ reject: z.number().optional(), quarantine: z.number().optional(), tag: z.number().optional(), headers: z.number().optional() })
      .strict()
      .optional(),
    forceActions: symbolKeyed(actionSchema).optional(),
    subjectTag: subjectTag.optional(),
  })
  .strict();

export type PolicyConfig = z.infer<typeof policySchema>;

/** Placeholders a notice template may use; anything else in `{{…}}` is a configuration error. */
export const noticePlaceholders = ['items', 'quarantineId', 'retentionDate', 'tenantName'] as const;
const noticeTemplate = z
  .string()
  .min(1)
  .refine(
    (s) => [...s.matchAll(/\{\{\s*([^}]*?)\s*\}\}/g)].every((m) => (noticePlaceholders as readonly string[]).includes(m[1]!)),
    `unknown placeholder: a notice template may use ${noticePlaceholders.map((p) => `{{${p}}}`).join(', ')}`,
  );

/** What a sanitizing tenant gets (DESIGN §6); `sanitize: true` means every default. */
export const sanitizeOptionsSchema = z
  .object({
    /** Converted documents (PDF, Office) come out as one PDF of page images, or as one PNG/JPEG per page. */
    attachmentsAs: z.enum(['pdf', 'images']).default('pdf'),
    /** Archives: their converted entries repacked into a new zip, attached one by one, or the archive removed. */
    archives: z.enum(['repack', 'individual', 'remove']).default('repack'),
    /** Resolution at which document pages are rendered. */
    dpi: z.number().int().min(72).max(300).default(150),
    /** Notice templates at the top of the body; Japanese first, then English. */
    notice: z.object({ ja: noticeTemplate.optional(), en: noticeTemplate.optional() }).strict().optional(),
  })
  .strict();
export type SanitizeOptions = z.infer<typeof sanitizeOptionsSchema>;

/** An allow/block list entry: an address, a domain, `*.domain`, an IP address or a CIDR block. */
const senderPattern = z
  .string()
  .min(1)
  .transform((s) => s.trim().toLowerCase())
  .refine((s) => parseSenderPattern(s) !== null, 'must be user@domain, domain, *.domain, an IP address or a CIDR block (e.g. 203.0.113.0/24)');

const tenantSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be lower-case letters, digits and "-"'),
    name: z.string().min(1),
    domains: z.array(domain).min(1),
    deliverTo,
    /** true → every mail to this tenant is sanitized with the default options; or an object of options. */
    sanitize: z.union([z.boolean(), sanitizeOptionsSchema]).default(false),
    /**
     * Mail with content that can be neither scanned nor converted (encrypted archives and documents, archives no
     * engine opens) for a tenant that does not sanitize: held in quarantine, or delivered with a tag.
     */
    unscannable: z.enum(['quarantine', 'deliver-tagged']).default('quarantine'),
    /**
     * Senders whose mail skips the score thresholds (malware, unscannable content and failed checks still apply),
     * and senders whose mail is rejected. The block list wins. Entries: `user@example.com`, `example.com` (that
     * domain), `*.example.com` (its subdomains too), an IP address or a CIDR block (the connecting IP).
     */
    allow: z.array(senderPattern).default([]),
    block: z.array(senderPattern).default([]),
    /** Days a quarantined message (and a sanitized message's original) is kept; default quarantine.retentionDays. */
    quarantineRetentionDays: z.number().int().positive().optional(),
    /**
     * Where a released original goes: by default to its recipients; or to this one address (e.g. an internet-side
     * mailbox where staff open risky mail on a separate PC), through its tenant's route or delivery.outboundRelay.
     */
    releaseTo: z.email().optional(),
    /**
     * Hour of the day (0–23, Japan time) at which each recipient with held messages gets a digest mail listing them,
     * with signed links to request their release (needs admin.publicUrl). Absent: no digests.
     */
    digestHour: z.number().int().min(0).max(23).optional(),
    /** Per-tenant policy overrides, merged key by key over the global policy. */
    policy: tenantPolicySchema.optional(),
  })
  .strict();

export const configSchema = z
  .object({
    hostname: z.string().min(1),
    smtp: z
      .object({
        listen: listenAddress.default('127.0.0.1:2525'),
        /**
         * SMTP session processes of `sekisho start`. With more than one, the main process accepts each connection,
         * applies the connection limits, and hands it to the ingress child with the fewest open connections: one
         * event loop accepts one core's worth of mail. (`sekisho ingress` is always one process.)
         */
        ingressProcesses: z.number().int().positive().default(1),
        maxMessageBytes: z.number().int().positive().default(52_428_800),
        maxRecipients: z.number().int().positive().default(100),
        /** Concurrent connections from one IP; more get `421 4.7.0`. */
        maxConnectionsPerIp: z.number().int().positive().default(20),
        /** Connections all together; more get `421 4.3.2`. */
        maxConnections: z.number().int().positive().default(1000),
        /** New connections from one IP per minute; more get `421 4.7.0`. */
        connectionRatePerIpPerMinute: z.number().int().positive().default(600),
        /** Idle time before a connection is closed with `421 4.4.2` (slowloris guard). */
        socketTimeoutMs: ms(60_000),
        /**
         * Pause before the greeting. A client that sends anything before the greeting is refused with `421`
         * (an early talker, as Postfix's postscreen pregreet test; spambots often do it). 0 greets at once.
         */
        greetPauseMs: ms(0),
        /** Unrecognised or out-of-sequence commands before the connection is closed. */
        maxBadCommands: z.number().int().positive().default(10),
        /**
         * NOOP, RSET, VRFY, EXPN, HELP and ETRN between two accepted messages before each counts as a bad command
         * (Postfix's smtpd_junk_command_limit): a client cannot hold a connection open forever with NOOPs.
         */
        maxJunkCommands: z.number().int().positive().default(100),
        /** How long the ingress waits for the verdict after DATA so that it can answer 550 in-session. */
        verdictWaitMs: ms(0),
        /** On shutdown, how long open SMTP sessions may finish their transaction before they get 421. */
        closeTimeoutMs: ms(30_000),
        /** Reverse DNS of clients for the Received header (needs a working resolver). */
        reverseLookup: z.boolean().default(false),
        tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
      })
      .strict()
      .prefault({}),
    redis: z
      .object({
        url: z.string().regex(/^(rediss?|unix):\/\//, 'must be redis://host:port/db, rediss://… or unix:///path/redis.sock?db=N').optional(),
        /** Key prefix of every BullMQ key, so that several installations (or tests) share one Redis. */
        prefix: z.string().min(1).default('sekisho'),
      })
      .strict()
      .prefault({}),
    dataDir: z.string().min(1).default('./var'),
    admin: z
      .object({
        listen: listenAddress.default('127.0.0.1:8025'),
        /** PEM files of the console's certificate and key: HTTPS. Required when `listen` is not a loopback address. */
        tls: z.object({ cert: z.string().min(1), key: z.string().min(1) }).strict().optional(),
        /** A session ends after this long without a request… */
        sessionIdleMs: ms(30 * 60_000),
        /** …and this long after login, whatever happens. */
        sessionMaxMs: ms(12 * 3_600_000),
        /** Failed logins in a row that lock an account… */
        maxFailedLogins: z.number().int().positive().default(5),
        /** …for this long. */
        lockoutMs: ms(15 * 60_000),
        /** Login attempts per client address per minute (any account); more are answered 429. */
        loginAttemptsPerMinute: z.number().int().positive().default(20),
        /** The console's address as users reach it (https://…): the links of recipient digests point here. */
        publicUrl: z.url().optional(),
        /** How long a digest's release-request link stays valid. */
        digestLinkTtlMs: ms(7 * 86_400_000),
        /** Roles that must enrol a TOTP second factor (`sekisho user totp`) before they can log in. */
        requireTotp: z.array(z.enum(['admin', 'tenant-admin', 'tenant-staff', 'operator', 'auditor'])).default([]),
      })
      .strict()
      .superRefine((a, ctx) => {
        const host = a.listen.slice(0, a.listen.lastIndexOf(':')).replace(/^\[|\]$/g, '');
        const loopback = host === 'localhost' || host === '::1' || host.startsWith('127.');
        if (!loopback && !a.tls) {
          ctx.addIssue({ code: 'custom', path: ['tls'], message: `the console listens on ${a.listen}, beyond loopback: set admin.tls (cert and key) for HTTPS` });
        }
      })
      .prefault({}),
    log: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .prefault({}),
    queue: z
      .object({
        /**
         * Worker child processes of `sekisho start`, each with scanConcurrency + deliverConcurrency jobs at once.
         * (`sekisho worker` is one: run it several times for more.)
         */
        workerProcesses: z.number().int().positive().default(1),
        /**
         * Scan jobs at once per worker process. Each also makes its message's first delivery attempt, so most of
         * its time is waiting (clamd, the tenant's server, the metadata commit), not CPU.
         */
        scanConcurrency: z.number().int().positive().default(16),
        /** Bytes of messages the scan jobs of one worker process hold in memory at once (a bigger one runs alone). */
        scanMemoryBytes: z.number().int().positive().default(256 * 1024 * 1024),
        deliverConcurrency: z.number().int().positive().default(16),
        /** Failed attempts (crashes, not downstream deferrals) before a message is held as `failed`. */
        maxAttempts: z.number().int().positive().default(5),
        /** Base delay between such attempts; doubled each time. */
        attemptBackoffMs: ms(2_000),
        /** How often the spool is compared with Redis to re-enqueue what Redis lost. */
        reconcileIntervalMs: ms(30_000),
        /** BullMQ job lock; a worker that dies mid-job loses its jobs to another worker after about this long. */
        lockDurationMs: ms(30_000),
      })
      .strict()
      .prefault({}),
    scan: z
      .object({
        /** Deadline of one check; past it the runner emits `<CHECK>_FAIL`. */
        checkTimeoutMs: ms(30_000),
        /** When a check failed: scan again after this delay… */
        failRetryDelayMs: ms(60_000),
        /** …until this long after receipt; then the message is quarantined (never delivered unscanned). */
        failQuarantineAfterMs: ms(3_600_000),
      })
      .strict()
      .prefault({}),
    delivery: z
      .object({
        retryInitialDelayMs: ms(300_000),
        retryMaxDelayMs: ms(3_600_000),
        /** After this long since receipt a temporary failure becomes permanent (DSN to the sender). */
        giveUpAfterMs: ms(5 * 24 * 3_600_000),
        /** Send one "delayed" DSN after this long (0 = never). */
        delayNoticeAfterMs: ms(4 * 3_600_000),
        connectTimeoutMs: ms(30_000),
        /** Inactivity limit of one SMTP conversation with a downstream server. */
        socketTimeoutMs: ms(300_000),
        /** Pooled connections per tenant route. */
        maxConnectionsPerRoute: z.number().int().positive().default(5),
        /** Route for DSNs to senders outside every tenant (the prefecture's outbound relay). */
        outboundRelay: deliverTo.optional(),
      })
      .strict()
      .prefault({}),
    clamav: z
      .object({
        /** clamd's unix socket; with neither socket nor host, Sekisho runs a clamd of its own. */
        socket: z.string().min(1).optional(),
        host: z.string().min(1).optional(),
        port: z.number().int().min(1).max(65535).default(3310),
        timeoutMs: ms(25_000),
        /** Official signature directory (freshclam's) for the managed clamd. */
        databaseDir: z.string().min(1).default('/var/lib/clamav'),
        /** SHA-256 blocklist maintained by the SOC (one hex hash per line, `#` comments); reloaded on change. */
        hashBlocklistFile: z.string().min(1).optional(),
        /** Managed clamd only: how long it may take to load its databases (official ones: ~30 s on 2 cores). */
        startTimeoutMs: ms(180_000),
        /**
         * Official databases older than this make health `degraded` (freshclam publishes daily several times a day;
         * two days without one means updates are failing).
         */
        maxDatabaseAgeHours: z.number().positive().default(48),
        /** Managed clamd only: scanning threads (each scans one stream; more than the cores only queues). */
        maxThreads: z.number().int().positive().default(8),
        /**
         * Managed clamd only: its run directory, with its temporary files (every stream it scans, every member it
         * unpacks), in memory (a private directory under /dev/shm) instead of the system temporary directory. Scans
         * cost about half the CPU, and far less while the spool's fsyncs keep the disk's journal busy.
         */
        tempInMemory: z.boolean().default(true),
        archive: z
          .object({
            maxDepth: z.number().int().positive().default(5),
            maxExpandedBytes: z.number().int().positive().default(200 * 1024 * 1024),
            maxRatio: z.number().positive().default(100),
            maxEntries: z.number().int().positive().default(10_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .superRefine((c, ctx) => {
        if (c.socket && c.host) ctx.addIssue({ code: 'custom', path: [], message: 'set either clamav.socket or clamav.host, not both' });
      })
      .prefault({}),
    sanitize: z
      .object({
        /** Converter child processes per worker process (images, PDFs, text); also the conversions at once. */
        converterProcesses: z.number().int().positive().default(2),
        /** Deadline of one conversion; past it the child is killed and the part removed with a notice. */
        jobTimeoutMs: ms(60_000),
        /** Resident memory of one converter child; past it the child is killed and the part removed. */
        memoryLimitBytes: z.number().int().min(128 * 1024 * 1024).default(1024 * 1024 * 1024),
        /** Pages rendered per document; a longer one is removed with a notice. */
        maxPages: z.number().int().positive().default(200),
        /** Pixels of one decoded image (decompression bombs); a larger one is removed with a notice. */
        maxImagePixels: z.number().int().positive().default(100_000_000),
        /** Converter children and LibreOffice each in a network namespace of their own (needs root; else a warning). */
        isolateNetwork: z.boolean().default(true),
        /** Deadline of a whole message's sanitization; the job then fails and is retried (never delivered raw). */
        messageTimeoutMs: ms(600_000),
        libreoffice: z
          .object({
            /** Deadline of one document in LibreOffice; past it its process group is killed and restarted. */
            timeoutMs: ms(60_000),
            /** Address-space limit of the resident soffice process. */
            memoryLimitBytes: z.number().int().positive().default(2 * 1024 * 1024 * 1024),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    quarantine: z
      .object({
        /** Days a quarantined message is kept before its bytes are removed (the record stays as `expired`). */
        retentionDays: z.number().int().positive().default(14),
        /** How often expired quarantine records are swept. */
        sweepIntervalMs: ms(3_600_000),
      })
      .strict()
      .prefault({}),
    /** The antispam checks' settings (scores and actions are policy's). */
    antispam: z
      .object({
        dns: dnsConfigSchema.prefault({}),
        auth: authConfigSchema.prefault({}),
        reputation: reputationConfigSchema.prefault({}),
        spoofing: spoofingConfigSchema.prefault({}),
        rules: rulesConfigSchema.prefault({}),
        bayes: bayesConfigSchema.prefault({}),
        rspamd: rspamdConfigSchema.prefault({}),
      })
      .strict()
      .prefault({}),
    policy: policySchema.prefault({}),
    // The cross-tenant checks sit on the array and run even when other keys or tenants have errors (`when`): as a
    // root refinement, zod skipped them as soon as anything else failed (a missing hostname, a bad deliverTo),
    // so a file's duplicate tenants only showed up after its other errors were fixed. Hence the defensive reads.
    tenants: z
      .array(tenantSchema)
      .min(1, 'at least one tenant is needed')
      .superRefine(
        (tenants: readonly unknown[], ctx) => {
          const seenIds = new Set<string>();
          const seenDomains = new Map<string, string>();
          tenants.forEach((t, i) => {
            if (!t || typeof t !== 'object') return;
            const { id, domains } = t as { id?: unknown; domains?: unknown };
            if (typeof id !== 'string') return;
            if (seenIds.has(id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicate tenant id "${id}"` });
            seenIds.add(id);
            if (!Array.isArray(domains)) return;
            domains.forEach((raw: unknown, j) => {
              if (typeof raw !== 'string') return;
              const d = raw.toLowerCase();
              const owner = seenDomains.get(d);
              if (owner !== undefined) {
                ctx.addIssue({ code: 'custom', path: [i, 'domains', j], message: `domain "${d}" already belongs to tenant "${owner}"` });
              }
              seenDomains.set(d, id);
            });
          });
        },
        { when: (payload) => Array.isArray(payload.value) },
      ),
  })
  .strict()
  .superRefine((c, ctx) => {
    c.tenants.forEach((t, i) => {
      if (t.digestHour !== undefined && !c.admin.publicUrl) {
        ctx.addIssue({ code: 'custom', path: ['tenants', i, 'digestHour'], message: 'recipient digests link to the console: set admin.publicUrl' });
      }
    });
  });

export type Config = z.infer<typeof configSchema>;
export type TenantConfig = Config['tenants'][number];
export type Action = z.infer<typeof actionSchema>;
