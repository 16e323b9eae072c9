/**
 * Delivery status notifications to the envelope sender (RFC 3464): a bounce for recipients that failed for good,
 * one "delayed" notice for recipients still being retried. A DSN is spooled and delivered like any message
 * (durable, retried), but with the null sender, so it can never cause another DSN; none goes to the null sender.
 * The route is the sender's tenant when the sender is one of ours, else delivery.outboundRelay.
 */
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { buildDsn, type DsnRecipient } from '../delivery/dsn.ts';
import type { MessageRecord } from '../spool/meta-store.ts';
import { newMessageId } from '../spool/message-id.ts';
import { OUTBOUND_ROUTE } from './pipeline.ts';
import { spoolOwnMessage } from './spool-own-message.ts';
import type { WorkerDeps } from './worker-deps.ts';

/**
 * Bytes of the original read for the DSN's quoted headers. buildDsn itself keeps only the header section (up to
 * the first empty line, never the body); this bounds the I/O, so a bounce of a 50 MB message reads 64 KiB, not 50 MB.
 */
const MAX_QUOTED_HEADER_BYTES = 64 * 1024;

/** The first `max` bytes of a spooled message. */
async function readHead(store: WorkerDeps['store'], id: string, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const stream = store.createReadStream(id);
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size >= max) break;
    }
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, max);
}

export async function notifySender(
  deps: Pick<WorkerDeps, 'config' | 'tenants' | 'store' | 'meta' | 'pipeline'>,
  msg: MessageRecord,
  recipients: DsnRecipient[],
  log: Logger,
): Promise<string | undefined> {
  if (!msg.mailFrom || msg.origin === 'dsn' || !recipients.length) return undefined;
  const { config, tenants, store } = deps;
  const head = await readHead(store, msg.id, MAX_QUOTED_HEADER_BYTES);
  const delayed = recipients.every((r) => r.action === 'delayed');
  const dsn = buildDsn({
    reportingMta: config.hostname,
    originalMessageId: msg.id,
    arrivalDate: msg.receivedAt,
    sender: msg.mailFrom,
    recipients,
    originalHeaders: head,
    messageIdDomain: config.hostname,
    willRetryUntil: delayed ? msg.receivedAt + config.delivery.giveUpAfterMs : undefined,
  });
  const id = newMessageId();
  await spoolOwnMessage(deps, {
    id,
    origin: 'dsn',
    body: Readable.from([dsn]),
    mailFrom: '',
    helo: config.hostname,
    route: tenants.forAddress(msg.mailFrom)?.id ?? OUTBOUND_ROUTE,
    recipients: [msg.mailFrom],
    subject: delayed ? 'Delayed Mail' : 'Undelivered Mail Returned to Sender',
    headerMessageId: null,
    now: Date.now(),
  });
  log.info({ dsn: id, to: msg.mailFrom, kind: delayed ? 'delayed' : 'failed', recipients: recipients.map((r) => r.address) }, 'DSN queued');
  return id;
}
