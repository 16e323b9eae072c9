/**
 * Puts a message Sekisho made itself (a DSN, a released original) on the delivery path: spooled durably, recorded
 * in the MetaStore with its recipients already decided, and handed to the `deliver` stage — no scan, since what it
 * carries was scanned (or made here). The rule: the id is the caller's, so a caller that repeats itself with the
 * same id (a release clicked twice, a crash and retry) spools and delivers it once; the deliver stage's per-recipient
 * states do the rest.
 */
import type { Readable } from 'node:stream';
import { SekishoError } from '../errors.ts';
import type { MessageStore } from '../spool/message-store.ts';
import type { MessageOrigin, MetaStore } from '../spool/meta-store.ts';
import type { StoredVerdict } from '../spool/stored-verdict.ts';
import { routeHandOff, type Pipeline } from './pipeline.ts';

export interface OwnMessage {
  id: string;
  origin: Exclude<MessageOrigin, 'smtp'>;
  body: Readable;
  mailFrom: string;
  helo: string;
  /** One route (tenant id, or the outbound route) for every recipient. */
  route: string;
  recipients: readonly string[];
  subject: string | null;
  headerMessageId: string | null;
  /** The verdict the message was released with (delivery rebuilds its headers from it), or none. */
  verdict?: StoredVerdict | null;
  now: number;
}

export interface OwnMessageDeps {
  store: MessageStore;
  meta: MetaStore;
  pipeline: Pick<Pipeline, 'enqueue'>;
}

/** Spools, records and enqueues `m`; returns false when a message with that id was already recorded (nothing new). */
export async function spoolOwnMessage(deps: OwnMessageDeps, m: OwnMessage): Promise<boolean> {
  const { store, meta } = deps;
  const known = await meta.getMessage(m.id);
  if (known) {
    // Recorded before (a repeat, or a crash after the insert): make sure it is moving, never spool it again.
    if (known.state === 'received' || known.state === 'delivering') await startDelivery(deps, m);
    return false;
  }
  const written = await store.write(m.id, m.body);
  try {
    await meta.insertMessage({
      id: m.id,
      origin: m.origin,
      receivedAt: m.now,
      mailFrom: m.mailFrom,
      clientIp: '127.0.0.1',
      helo: m.helo,
      tls: null,
      size: written.size,
      sha256: written.sha256,
      headerMessageId: m.headerMessageId,
      subject: m.subject,
      recipients: m.recipients.map((address) => ({ address, tenantId: m.route })),
    });
  } catch (err) {
    // Two callers raced on one id: the other one recorded it and enqueues it.
    if (err instanceof SekishoError && err.code === 'SEKISHO_ERR_META_DUPLICATE') return false;
    throw err;
  }
  await startDelivery(deps, m);
  return true;
}

async function startDelivery(deps: OwnMessageDeps, m: OwnMessage): Promise<void> {
  await deps.meta.update(m.id, {
    recipients: [{ patch: { action: 'deliver' } }],
    message: { state: 'delivering', ...(m.verdict ? { verdict: m.verdict } : {}) },
  });
  await deps.pipeline.enqueue(routeHandOff('deliver', m.id, m.route));
}
