/**
 * Retention (DESIGN §7): a quarantined message, or a sanitized message's original, is kept for its tenant's
 * retention period; then its record becomes `expired` and its bytes leave the spool — once no other tenant's record
 * still holds them and the message itself is finished (`done`). The record stays, so that the console and the audit
 * trail can still say what was held and why.
 */
import type { Logger } from 'pino';
import type { MessageStore } from '../spool/message-store.ts';
import type { MetaStore } from '../spool/meta-store.ts';
import { liveQuarantineStates, type QuarantineStore } from './quarantine-store.ts';

/** Records expired per batch: bounds one transaction and the memory of a sweep after a long outage. */
const SWEEP_BATCH = 500;

export interface RetentionDeps {
  quarantine: QuarantineStore;
  meta: MetaStore;
  store: MessageStore;
  log: Logger;
  now?: () => number;
}

/**
 * Removes a message's bytes from the spool once no live quarantine record holds them and the message is finished
 * (another tenant's delivery may still need them); true when removed. After an expiry, a release or a deletion.
 */
export async function removeUnheldBytes(deps: Pick<RetentionDeps, 'quarantine' | 'meta' | 'store'>, mid: string): Promise<boolean> {
  const stillHeld = (await deps.quarantine.ofMessage(mid)).some((r) => liveQuarantineStates.includes(r.state));
  const msg = await deps.meta.getMessage(mid);
  if (stillHeld || (msg && msg.state !== 'done')) return false;
  await deps.store.delete(mid);
  return true;
}

export class RetentionSweeper {
  readonly #d: RetentionDeps;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<number> | undefined;

  constructor(deps: RetentionDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** Expires every record past its deadline; returns how many. Concurrent calls share one sweep. */
  sweep(): Promise<number> {
    this.#running ??= this.#sweep().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #sweep(): Promise<number> {
    const { quarantine, meta, store, log } = this.#d;
    let expired = 0;
    for (;;) {
      const batch = await quarantine.expireDue(this.#now(), SWEEP_BATCH);
      expired += batch.length;
      for (const mid of new Set(batch.map((r) => r.messageId))) {
        if (await removeUnheldBytes({ quarantine, meta, store }, mid)) log.info({ mid }, 'quarantine retention expired: original removed');
      }
      if (batch.length < SWEEP_BATCH) return expired;
    }
  }

  start(intervalMs: number): void {
    if (intervalMs <= 0) return;
    this.#timer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.#d.log.warn({ err }, 'quarantine retention sweep failed'));
    }, intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running?.catch(() => undefined);
  }
}
