/**
 * A NewMessage for MetaStore tests and bench/meta.ts: every field set, two recipients in two tenants, a Japanese
 * subject. No vitest import, so that a benchmark can use it too.
 */
import { randomBytes } from 'node:crypto';
import type { NewMessage } from '../../src/spool/meta-store.ts';

/** The receivedAt of newMessage(): a fixed instant, so tests assert times exactly. */
export const T0 = 1_750_000_000_000;

export function newMessage(overrides: Partial<NewMessage> = {}): NewMessage {
  return {
    id: randomBytes(8).toString('hex'),
    origin: 'smtp',
    receivedAt: T0,
    mailFrom: 'sender@example.net',
    clientIp: '203.0.113.7',
    helo: 'mail.example.net',
    tls: 'TLS_AES_256_GCM_SHA384',
    size: 1234,
    sha256: 'a'.repeat(64),
    headerMessageId: '<abc@example.net>',
    subject: '【重要】会議のお知らせ',
    recipients: [
      { address: 'taro@city-a.example.lg.jp', tenantId: 'city-a' },
      { address: 'hanako@city-b.example.lg.jp', tenantId: 'city-b' },
    ],
    ...overrides,
  };
}
