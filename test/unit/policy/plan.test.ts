/**
 * The delivery plan: what each action means for a tenant's recipients — state, next stage, recorded reason,
 * headers added on delivery, which bytes are sent, whether the original stays — asserted for every action, with
 * and without a sanitizer, so that a new action cannot slip through without a meaning.
 */
import { describe, expect, it } from 'vitest';
import { actionNames, type Action } from '../../../src/config/schema.ts';
import {
  deliveryBody,
  headerChanges,
  subjectTagFor,
  keepsOriginal,
  mustRescan,
  planDelivery,
  sessionRejectReply,
  type TenantPlan,
} from '../../../src/policy/plan.ts';
import type { StoredDecision, StoredVerdict } from '../../../src/spool/stored-verdict.ts';

const RECIPIENTS = [
  { address: 'a1@city-a.example.lg.jp', tenantId: 'city-a' },
  { address: 'b1@town-b.example.lg.jp', tenantId: 'town-b' },
  { address: 'a2@city-a.example.lg.jp', tenantId: 'city-a' },
];

function decision(action: Action, reasons: string[] = [`because ${action}`], score = 1): StoredDecision {
  return { action, score, reasons };
}

function planFor(action: Action, sanitizer: boolean): TenantPlan {
  const [plan] = planDelivery(new Map([['city-a', decision(action)]]), RECIPIENTS, { sanitizer });
  if (!plan) throw new Error('no plan');
  return plan;
}

const verdict: StoredVerdict = {
  symbols: [{ name: 'HEADER_MISSING_DATE' }, { name: 'MIME_DOUBLE_EXTENSION', details: ['a.pdf.exe'] }],
  unlistedSymbols: [{ name: 'FLAKY_FAIL' }],
  failedChecks: [],
  durationsMs: {},
  decisions: { 'city-a': decision('deliver-tagged', [], 6.5) },
  scannedAt: 1,
};

describe('the delivery plan', () => {
  // action → [state, next stage, response, delivered bytes] with a sanitizer, and without one.
  const expected: Record<Action, { with: [string, string | null, string | null]; without: [string, string | null, string | null]; body: string | null }> = {
    deliver: { with: ['pending', 'deliver', null], without: ['pending', 'deliver', null], body: 'raw' },
    'deliver-tagged': { with: ['pending', 'deliver', null], without: ['pending', 'deliver', null], body: 'raw' },
    sanitize: {
      with: ['pending', 'sanitize', null],
      without: ['quarantined', null, 'quarantined: sanitizer not available; because sanitize'],
      body: 'sanitized',
    },
    quarantine: { with: ['quarantined', null, 'quarantined: because quarantine'], without: ['quarantined', null, 'quarantined: because quarantine'], body: null },
    reject: {
      with: ['quarantined', null, 'quarantined: rejected by policy after acceptance; because reject'],
      without: ['quarantined', null, 'quarantined: rejected by policy after acceptance; because reject'],
      body: null,
    },
    tempfail: { with: ['pending', null, null], without: ['pending', null, null], body: null },
  };

  it.each(actionNames.map((a) => [a]))('gives %s its state, next stage, reason and delivered bytes', (action) => {
    const want = expected[action];
    for (const sanitizer of [true, false]) {
      const p = planFor(action, sanitizer);
      expect([p.state, p.next, p.response]).toEqual(sanitizer ? want.with : want.without);
      expect(p.action).toBe(action);
      expect(p.recipients).toEqual(['a1@city-a.example.lg.jp', 'a2@city-a.example.lg.jp']);
    }
    expect(deliveryBody(action)).toBe(want.body);
  });

  it('never lets a sanitizing tenant be delivered the raw bytes, with or without a sanitizer', () => {
    expect(planFor('sanitize', true).next).not.toBe('deliver');
    expect(planFor('sanitize', false).next).toBeNull();
    expect(deliveryBody('sanitize')).toBe('sanitized');
    expect(deliveryBody(null)).toBeNull();
  });

  it('plans each tenant of the message on its own, skipping tenants without recipients', () => {
    const plans = planDelivery(
      new Map([
        ['city-a', decision('deliver')],
        ['town-b', decision('sanitize')],
        ['gone', decision('quarantine')],
      ]),
      RECIPIENTS,
      { sanitizer: true },
    );
    expect(plans.map((p) => [p.tenantId, p.recipients, p.next])).toEqual([
      ['city-a', ['a1@city-a.example.lg.jp', 'a2@city-a.example.lg.jp'], 'deliver'],
      ['town-b', ['b1@town-b.example.lg.jp'], 'sanitize'],
    ]);
  });

  const marks = (headers: number, subjectTag = '') => ({ thresholds: { reject: 15, quarantine: 10, tag: 5, headers }, subjectTag });

  it('tags deliver-tagged with the score and every symbol name, and adds nothing for other actions', () => {
    expect(headerChanges('deliver-tagged', 'city-a', verdict, marks(100))).toEqual([
      { name: 'X-Sekisho-Verdict', value: 'tagged; score=6.5' },
      { name: 'X-Sekisho-Symbols', value: 'HEADER_MISSING_DATE, MIME_DOUBLE_EXTENSION, FLAKY_FAIL' },
    ]);
    expect(headerChanges('deliver-tagged', 'city-a', null, marks(100))).toEqual([
      { name: 'X-Sekisho-Verdict', value: 'tagged; score=0' },
      { name: 'X-Sekisho-Symbols', value: 'none' },
    ]);
    for (const a of actionNames.filter((a) => a !== 'deliver-tagged' && a !== 'deliver')) expect(headerChanges(a, 'city-a', verdict, marks(0))).toEqual([]);
  });

  it('adds X-Spam-Score and X-Spam-Status from thresholds.headers on, to delivered mail only', () => {
    expect(headerChanges('deliver-tagged', 'city-a', verdict, marks(0)).slice(0, 2)).toEqual([
      { name: 'X-Spam-Score', value: '6.5' },
      { name: 'X-Spam-Status', value: 'Yes, score=6.5 required=5 tests=HEADER_MISSING_DATE, MIME_DOUBLE_EXTENSION, FLAKY_FAIL' },
    ]);
    expect(headerChanges('deliver', 'city-a', null, marks(0))).toEqual([
      { name: 'X-Spam-Score', value: '0' },
      { name: 'X-Spam-Status', value: 'No, score=0 required=5 tests=none' },
    ]);
    expect(headerChanges('deliver', 'city-a', null, marks(1))).toEqual([]);
    expect(headerChanges('sanitize', 'city-a', verdict, marks(0))).toEqual([]);
  });

  it('tags the subject of mail delivered tagged, only when a tag is configured', () => {
    expect(subjectTagFor('deliver-tagged', marks(0, '【迷惑メール】'))).toBe('【迷惑メール】');
    expect(subjectTagFor('deliver', marks(0, '【迷惑メール】'))).toBeNull();
    expect(subjectTagFor('deliver-tagged', marks(0))).toBeNull();
  });

  it('keeps the original when a copy is held or a sanitized copy went out instead, and only then', () => {
    expect(keepsOriginal([{ action: 'deliver', state: 'delivered' }, { action: 'deliver', state: 'bounced' }])).toBe(false);
    expect(keepsOriginal([{ action: 'deliver', state: 'delivered' }, { action: 'quarantine', state: 'quarantined' }])).toBe(true);
    expect(keepsOriginal([{ action: 'sanitize', state: 'delivered' }])).toBe(true);
    expect(keepsOriginal([{ action: 'sanitize', state: 'bounced' }])).toBe(true);
    expect(keepsOriginal([{ action: 'reject', state: 'rejected' }])).toBe(false);
  });

  it('rejects in the session only when every tenant rejects; the forcing finding leads the reply', () => {
    const both = new Map([
      ['city-a', decision('reject', ['score 20 ≥ reject threshold 15', 'CLAMAV_VIRUS(Eicar) forces reject'])],
      ['town-b', decision('reject', ['CLAMAV_VIRUS(Eicar) forces reject'])],
    ]);
    expect(sessionRejectReply(both)).toBe('CLAMAV_VIRUS(Eicar) forces reject; score 20 ≥ reject threshold 15');
    expect(sessionRejectReply(new Map([...both, ['c', decision('quarantine')]]))).toBeNull();
    expect(sessionRejectReply(new Map())).toBeNull();
    expect(sessionRejectReply(new Map([['a', decision('reject', ['x'.repeat(1000)])]]))?.length).toBe(300);
  });

  it('scans again when any tenant got tempfail', () => {
    expect(mustRescan(new Map([['a', decision('deliver')], ['b', decision('tempfail')]]))).toBe(true);
    expect(mustRescan(new Map([['a', decision('deliver')]]))).toBe(false);
  });
});
