/**
 * Closing a message: once every recipient is in a final state the message becomes `done`, its summary line is
 * logged (STYLE rule 9), and its bytes leave the spool unless the plan keeps the original (a recipient's copy is
 * held in quarantine, or a sanitized copy went out in its place) and a live quarantine record still holds it.
 */
import type { Logger } from 'pino';
import { keepsOriginal } from '../policy/plan.ts';
import { isOpenRecipient } from '../spool/meta-store.ts';
import type { WorkerDeps } from './worker-deps.ts';

export async function finalizeIfDone(deps: Pick<WorkerDeps, 'meta' | 'store' | 'quarantine'>, mid: string, log: Logger): Promise<boolean> {
  const msg = await deps.meta.getMessage(mid);
  if (!msg || msg.state !== 'delivering') return false;
  const rcpts = await deps.meta.getRecipients(mid);
  if (rcpts.some(isOpenRecipient)) return false;
  // Durable before the spool file goes: a power cut must not bring back a `delivering` record without its bytes.
  await deps.meta.update(mid, { message: { state: 'done' }, durable: true });
  const count = (s: string) => rcpts.filter((r) => r.state === s).length;
  // Kept only while a quarantine record still needs it: one that expired (or was released) before the message was
  // done — another tenant's delivery retried for days — would otherwise leave bytes nothing ever removes.
  const keep = keepsOriginal(rcpts) && (deps.quarantine ? await deps.quarantine.holds(mid) : true);
  if (!keep) await deps.store.delete(mid);
  log.info(
    {
      summary: true,
      from: msg.mailFrom,
      origin: msg.origin,
      delivered: count('delivered'),
      bounced: count('bounced'),
      quarantined: count('quarantined'),
      rejected: count('rejected'),
      actions: [...new Set(rcpts.map((r) => r.action))],
      delayMs: Date.now() - msg.receivedAt,
      size: msg.size,
    },
    'message done',
  );
  return true;
}
