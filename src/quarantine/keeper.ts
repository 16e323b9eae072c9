/**
 * Turns "these bytes are kept for this tenant" into a quarantine record: who the message was for, what the
 * verdict said, why it is kept and until when (the tenant's retention). The pipeline calls it for every original of
 * a sanitized message and every message it holds back from delivery; it is idempotent, so a re-run job may call
 * it again.
 */
import type { Config } from '../config/schema.ts';
import type { TenantIndex } from '../config/tenants.ts';
import type { MessageRecord, MetaStore } from '../spool/meta-store.ts';
import { buildPreview } from './preview.ts';
import { liveQuarantineStates, type QuarantineKind, type QuarantineStore } from './quarantine-store.ts';

const DAY_MS = 24 * 3_600_000;

/** What a record takes from the message: the caller has it in hand, with the verdict it is acting on. */
export type KeptMessage = Pick<MessageRecord, 'id' | 'mailFrom' | 'subject' | 'verdict'> & {
  /** The message's bytes when the caller has them: the console's preview is made from them here, in the worker. */
  raw?: Buffer;
};

/** What the pipeline needs of the quarantine (WorkerDeps.quarantine). */
export interface QuarantineKeeper {
  keep(msg: KeptMessage, tenantId: string, kind: QuarantineKind, reasons: readonly string[]): Promise<void>;
  /** Whether a live record (held, or in the release workflow) still needs the message's bytes. */
  holds(mid: string): Promise<boolean>;
}

/** When a tenant's quarantined message (or sanitized original) expires. */
export function retentionDeadline(config: Config, tenantRetentionDays: number | undefined, from: number): number {
  return from + (tenantRetentionDays ?? config.quarantine.retentionDays) * DAY_MS;
}

export class StoreQuarantineKeeper implements QuarantineKeeper {
  readonly #store: QuarantineStore;
  readonly #meta: MetaStore;
  readonly #config: Config;
  readonly #tenants: TenantIndex;
  readonly #now: () => number;

  constructor(deps: { store: QuarantineStore; meta: MetaStore; config: Config; tenants: TenantIndex; now?: () => number }) {
    this.#store = deps.store;
    this.#meta = deps.meta;
    this.#config = deps.config;
    this.#tenants = deps.tenants;
    this.#now = deps.now ?? Date.now;
  }

  async holds(mid: string): Promise<boolean> {
    return (await this.#store.ofMessage(mid)).some((r) => liveQuarantineStates.includes(r.state));
  }

  async keep(msg: KeptMessage, tenantId: string, kind: QuarantineKind, reasons: readonly string[]): Promise<void> {
    const recipients = (await this.#meta.getRecipients(msg.id)).filter((r) => r.tenantId === tenantId).map((r) => r.address);
    const now = this.#now();
    const preview = msg.raw ? await buildPreview(msg.raw).catch(() => null) : null;
    await this.#store.hold({
      messageId: msg.id,
      tenantId,
      kind,
      recipients,
      mailFrom: msg.mailFrom,
      subject: msg.subject,
      symbols: [...(msg.verdict?.symbols.map((s) => s.name) ?? []), ...(msg.verdict?.unlistedSymbols?.map((s) => s.name) ?? [])],
      reasons: [...reasons],
      createdAt: now,
      expiresAt: retentionDeadline(this.#config, this.#tenants.byId(tenantId)?.quarantineRetentionDays, now),
      preview,
    });
  }
}
