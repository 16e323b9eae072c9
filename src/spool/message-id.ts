/**
 * Queue ids: 20 lower-case base-36 characters, time-ordered (ms timestamp first) and unguessable (random tail),
 * safe as file names and BullMQ job id parts.
 */
import { randomBytes } from 'node:crypto';

export function newMessageId(now = Date.now()): string {
  const time = now.toString(36).padStart(9, '0');
  const rand = BigInt(`0x${randomBytes(8).toString('hex')}`).toString(36).padStart(13, '0').slice(0, 11);
  return `${time}${rand}`;
}
