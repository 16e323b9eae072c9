/**
 * The Japanese spam and ham fixtures (fixtures/mails/spam-ja-*, ham-ja-*) through the spoofing and rules checks
 * together, as the scan runner runs them: the spam gets the symbols it was written for, the ham — a real
 * carrier's notice, a newsletter about the city — gets none.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createRulesCheck } from '../../../../../src/scan/checks/rules/index.ts';
import { createSpoofingCheck } from '../../../../../src/scan/checks/spoofing/index.ts';
import { runChecks } from '../../../../../src/scan/runner.ts';
import { fixture } from '../../../../helpers/check-context.ts';

const domains = ['city-a.example.lg.jp', 'town-b.example.lg.jp'];
const checks = [createSpoofingCheck({ domains, names: ['甲市', '乙町'] }), createRulesCheck({ domains, log: pino({ level: 'silent' }) })];

async function symbolsOf(name: string, mailFrom: string): Promise<string[]> {
  const envelope = { mailFrom, recipients: [{ address: 'soumu@city-a.example.lg.jp', tenantId: 'city-a' }], clientIp: '203.0.113.50', helo: 'mx.example', tls: null };
  const verdict = await runChecks(checks, { messageId: name, envelope, raw: fixture(name), log: pino({ level: 'silent' }) }, { checkTimeoutMs: 10_000 });
  expect(verdict.failedChecks).toEqual([]);
  return verdict.symbols.map((s) => s.name);
}

describe('Japanese spam and ham fixtures', () => {
  it('spam-ja-spoof-city-iso-2022-jp.eml: look-alike of 甲市, its name, Reply-To elsewhere, a shortener, identity check under a deadline', async () => {
    expect(await symbolsOf('spam-ja-spoof-city-iso-2022-jp.eml', 'bounce@city-a.exarnple.lg.jp')).toEqual([
      'PHISH_JA_IDENTITY_CHECK',
      'PHISH_JA_URGENT_DEADLINE',
      'REPLYTO_OTHER_DOMAIN',
      'SPOOF_DISPLAY_NAME',
      'SPOOF_LOOKALIKE_DOMAIN',
      'URL_SHORTENER',
    ]);
  });

  it('spam-ja-redelivery-shift-jis.eml: redelivery wording, a link showing the carrier and going to an IP address', async () => {
    expect(await symbolsOf('spam-ja-redelivery-shift-jis.eml', 'info@delivery-check.example')).toEqual(['LINK_TEXT_DOMAIN_MISMATCH', 'PHISH_JA_PARCEL_REDELIVERY', 'URL_IP_LITERAL']);
  });

  it('ham-ja-redelivery-notice-iso-2022-jp.eml and ham-ja-newsletter-mentions-city-shift-jis.eml: nothing', async () => {
    expect(await symbolsOf('ham-ja-redelivery-notice-iso-2022-jp.eml', 'bounce@kuronekoyamato.co.jp')).toEqual([]);
    expect(await symbolsOf('ham-ja-newsletter-mentions-city-shift-jis.eml', 'bounce@travel.example.com')).toEqual([]);
  });
});
