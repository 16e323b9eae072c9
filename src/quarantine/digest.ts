/**
 * Recipient digests (tenants[].digestHour): once a day, each recipient with held messages gets a mail listing them
 * (Japanese, then English) with one signed, expiring link per message to *request* its release — a release still
 * needs an approver, and malware still needs a prefecture admin. A digest goes through the normal delivery path as
 * a message of our own, once per recipient and day (its id is derived from both).
 *
 * Links carry message, tenant, recipient and expiry, signed with HMAC-SHA256 under a key kept in
 * `dataDir/digest.key` (created on first use, mode 0600). The rule: a link only ever requests the release of a
 * message held for the recipient it names, in that recipient's tenant.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Config, TenantConfig } from '../config/schema.ts';
import { JST_OFFSET_MS, jstDayAndHour } from '../japan-time.ts';
import { composeMessage } from '../mime/compose.ts';
import type { Pipeline } from '../queue/pipeline.ts';
import { spoolOwnMessage } from '../queue/spool-own-message.ts';
import type { MessageStore } from '../spool/message-store.ts';
import type { MetaStore } from '../spool/meta-store.ts';
import { MAX_SEARCH_PAGE, type QuarantineRecord, type QuarantineStore } from './quarantine-store.ts';

const KEY_FILE = 'digest.key';
/** Messages listed in one digest; a recipient with more is told how many more there are. */
const MAX_LISTED = 50;

export interface DigestLink {
  messageId: string;
  tenantId: string;
  recipient: string;
  expires: number;
}

export class DigestSigner {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  /** The key of this installation, made on first use. */
  static forDataDir(dataDir: string): DigestSigner {
    const file = path.join(dataDir, KEY_FILE);
    if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
    return new DigestSigner(Buffer.from(readFileSync(file, 'utf8').trim(), 'hex'));
  }

  sign(l: DigestLink): string {
    return createHmac('sha256', this.#key).update(`${l.messageId}\n${l.tenantId}\n${l.recipient.toLowerCase()}\n${l.expires}`).digest('base64url');
  }

  /** Whether `sig` is this installation's signature of `l` and the link has not expired. */
  verify(l: DigestLink, sig: string, now: number): boolean {
    if (!(l.expires > now)) return false;
    const want = Buffer.from(this.sign(l));
    const got = Buffer.from(sig);
    return want.length === got.length && timingSafeEqual(want, got);
  }
}

export function digestUrl(publicUrl: string, l: DigestLink, sig: string): string {
  const u = new URL('/digest/request', publicUrl);
  u.search = new URLSearchParams({ m: l.messageId, t: l.tenantId, r: l.recipient, e: String(l.expires), s: sig }).toString();
  return u.toString();
}

function digestSubject(n: number): string {
  return `[Sekisho] 隔離メールのお知らせ / Held mail (${n})`;
}

export interface DigestDeps {
  config: Config;
  quarantine: QuarantineStore;
  meta: MetaStore;
  store: MessageStore;
  pipeline: Pick<Pipeline, 'enqueue'>;
  signer: DigestSigner;
  log: Logger;
  now?: () => number;
}

export class DigestSender {
  readonly #d: DigestDeps;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;

  constructor(deps: DigestDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** Sends today's digests of every tenant whose digest hour has come; returns how many were queued. */
  async runDue(): Promise<number> {
    let sent = 0;
    const { day, hour } = jstDayAndHour(this.#now());
    for (const tenant of this.#d.config.tenants) {
      if (tenant.digestHour === undefined || hour < tenant.digestHour) continue;
      sent += await this.sendTenant(tenant, day);
    }
    return sent;
  }

  /** One digest per recipient of the tenant's held records; idempotent per day (the digest id comes from it). */
  async sendTenant(tenant: TenantConfig, day: string): Promise<number> {
    const byRecipient = new Map<string, QuarantineRecord[]>();
    for (let offset = 0; ; offset += MAX_SEARCH_PAGE) {
      const { records } = await this.#d.quarantine.search({ tenantIds: [tenant.id], state: 'held', limit: MAX_SEARCH_PAGE, offset });
      for (const r of records) for (const rcpt of r.recipients) byRecipient.set(rcpt, [...(byRecipient.get(rcpt) ?? []), r]);
      if (records.length < MAX_SEARCH_PAGE) break;
    }
    let sent = 0;
    for (const [recipient, records] of byRecipient) {
      const id = `dg${createHash('sha256').update(`${day}\n${tenant.id}\n${recipient}`).digest('hex').slice(0, 30)}`;
      const compose = () => this.#compose(tenant, recipient, records);
      const fresh = await spoolOwnMessage(this.#d, {
        id,
        origin: 'dsn',
        // Composed only when read: on every pass after the first of the day the digest is already spooled.
        body: Readable.from(
          (function* () {
            yield compose();
          })(),
        ),
        mailFrom: '',
        helo: this.#d.config.hostname,
        route: tenant.id,
        recipients: [recipient],
        subject: digestSubject(records.length),
        headerMessageId: null,
        now: this.#now(),
      });
      if (fresh) sent++;
    }
    if (sent) this.#d.log.info({ tenant: tenant.id, day, digests: sent }, 'recipient digests queued');
    return sent;
  }

  #compose(tenant: TenantConfig, recipient: string, records: readonly QuarantineRecord[]): Buffer {
    const { config, signer } = this.#d;
    const expires = this.#now() + config.admin.digestLinkTtlMs;
    const lines = records.slice(0, MAX_LISTED).map((r) => {
      const link: DigestLink = { messageId: r.messageId, tenantId: r.tenantId, recipient, expires };
      const when = new Date(r.createdAt + JST_OFFSET_MS).toISOString().slice(0, 16).replace('T', ' ');
      return [`■ ${when}  ${r.mailFrom || '<>'}`, `  件名 / Subject: ${r.subject ?? ''}`, `  理由 / Why: ${r.reasons.join('; ')}`, `  解除申請 / Request release: ${digestUrl(config.admin.publicUrl!, link, signer.sign(link))}`].join('\n');
    });
    const more = records.length > MAX_LISTED ? [`…ほか ${records.length - MAX_LISTED} 件 / and ${records.length - MAX_LISTED} more`] : [];
    const validUntil = new Date(expires + JST_OFFSET_MS).toISOString().slice(0, 10);
    const text = [
      `${tenant.name} ${recipient} 様`,
      '',
      `次のメールはセキュリティ上の理由で隔離されています（${records.length} 件）。`,
      '必要なメールは下のリンクから解除を申請してください。申請は管理者が承認してから届きます。',
      `リンクの有効期限: ${validUntil}`,
      '',
      `These messages to you are held for security reasons (${records.length}). To ask for one, open its link: an administrator approves each release. Links are valid until ${validUntil}.`,
      '',
      ...lines,
      ...more,
      '',
    ].join('\n');
    const subject = digestSubject(records.length);
    const now = this.#now();
    return composeMessage(
      [
        { name: 'From', value: `Sekisho <postmaster@${config.hostname}>` },
        { name: 'To', value: recipient },
        { name: 'Subject', value: subject },
        { name: 'Date', value: new Date(now).toUTCString().replace('GMT', '+0000') },
        { name: 'Message-ID', value: `<digest.${now.toString(36)}.${randomBytes(6).toString('hex')}@${config.hostname}>` },
        { name: 'Auto-Submitted', value: 'auto-generated' },
      ],
      { kind: 'leaf', contentType: 'text/plain; charset=UTF-8', encoding: 'base64', body: text },
    );
  }

  start(intervalMs: number): void {
    this.#timer = setInterval(() => {
      this.runDue().catch((err: unknown) => this.#d.log.warn({ err }, 'recipient digests failed'));
    }, intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

