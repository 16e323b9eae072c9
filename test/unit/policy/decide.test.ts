/**
 * decide(): symbols × tenant policy → one action. Scores come from config or the catalogue, groups may be
 * capped, thresholds pick the action, forced actions and failed checks can only make it more severe, and a
 * sanitizing tenant gets 'sanitize' instead of delivery — never instead of quarantine or reject.
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../../src/config/load.ts';
import type { Config, TenantConfig } from '../../../src/config/schema.ts';
import { decide, DEFAULT_FORCE_ACTIONS, DEFAULT_GROUP_CAPS, effectivePolicy, type DecideContext } from '../../../src/policy/decide.ts';
import type { Verdict } from '../../../src/scan/runner.ts';
import { symbols } from '../../../src/scan/symbols.ts';

/** A validated config, so the policy has exactly the defaults and shapes production sees. */
function config(policy: Record<string, unknown> = {}, tenant: Record<string, unknown> = {}): Config {
  const r = validateConfig({
    hostname: 'mx.pref.example.lg.jp',
    policy,
    tenants: [{ id: 'city-a', name: '甲市', domains: ['city-a.example.lg.jp'], deliverTo: 'smtp://10.1.2.3', ...tenant }],
  });
  if (!r.ok) throw new Error(r.issues.map((i) => `${i.path}: ${i.message}`).join('\n'));
  return r.config;
}

function verdict(...names: (string | [string, ...string[]])[]): Verdict {
  const hits = names.map((n) => (typeof n === 'string' ? { name: n } : { name: n[0], details: n.slice(1) }));
  const failedChecks = hits.filter((h) => h.name.endsWith('_FAIL')).map((h) => h.name.replace(/_FAIL$/, '').toLowerCase());
  return { symbols: hits, failedChecks, durationsMs: {} };
}

function run(v: Verdict, c: Config = config(), ctx: Partial<DecideContext> = {}) {
  const tenant: TenantConfig = c.tenants[0]!;
  return decide(v, tenant, c.policy, { ageMs: 0, scan: c.scan, ...ctx });
}

describe('score', () => {
  it('no symbols: score 0, deliver, and a reason saying so', () => {
    expect(run(verdict())).toEqual({ action: 'deliver', score: 0, reasons: ['score 0 below every threshold'] });
  });

  it('sums catalogue default scores', () => {
    // HEADER_MISSING_DATE 1 + HEADER_MISSING_MESSAGE_ID 0.5 + MIME_BAD_TRANSFER_ENCODING 1
    const d = run(verdict('HEADER_MISSING_DATE', 'HEADER_MISSING_MESSAGE_ID', 'MIME_BAD_TRANSFER_ENCODING'));
    expect(d.score).toBe(2.5);
    expect(d.action).toBe('deliver');
  });

  it('policy.scores overrides the catalogue per symbol, including with 0 and negative weights', () => {
    const c = config({ scores: { HEADER_MISSING_DATE: 4, HEADER_MISSING_MESSAGE_ID: 0, MIME_BAD_TRANSFER_ENCODING: -2 } });
    expect(run(verdict('HEADER_MISSING_DATE', 'HEADER_MISSING_MESSAGE_ID', 'MIME_BAD_TRANSFER_ENCODING'), c).score).toBe(2);
  });

  it('an unknown symbol scores 0', () => {
    expect(run(verdict('SOMETHING_NEW')).score).toBe(0);
  });

  it('rounds to two decimals (no 0.30000000000000004 in reasons)', () => {
    const c = config({ scores: { HEADER_MISSING_DATE: 0.1, HEADER_MISSING_MESSAGE_ID: 0.2 } });
    expect(run(verdict('HEADER_MISSING_DATE', 'HEADER_MISSING_MESSAGE_ID'), c).score).toBe(0.3);
  });

  it('group caps bound what one group adds', () => {
    // headers: MISSING_FROM 3 + DUPLICATE 2 + MISSING_DATE 1 = 6, capped to 4; mime: DOUBLE_EXTENSION 4 uncapped
    const c = config({ groupCaps: { headers: 4 } });
    const d = run(verdict('HEADER_MISSING_FROM', 'HEADER_DUPLICATE', 'HEADER_MISSING_DATE', 'MIME_DOUBLE_EXTENSION'), c);
    expect(d.score).toBe(8);
    expect(d.action).toBe('deliver-tagged');
  });

  it('a cap of 0 silences a group', () => {
    const c = config({ groupCaps: { headers: 0 } });
    expect(run(verdict('HEADER_MISSING_FROM', 'HEADER_DUPLICATE'), c).score).toBe(0);
  });

  it('caps apply to one group only', () => {
    const c = config({ groupCaps: { mime: 1 } });
    expect(run(verdict('HEADER_MISSING_FROM', 'MIME_DOUBLE_EXTENSION', 'MIME_EXECUTABLE_ATTACHMENT'), c).score).toBe(4);
  });
});

describe('thresholds', () => {
  const c = config({ scores: { HEADER_MISSING_DATE: 1 } });
  const withScore = (n: number) => run(verdict(...Array.from({ length: n }, () => 'HEADER_MISSING_DATE')), c);

  it.each([
    [0, 'deliver'],
    [4, 'deliver'],
    [5, 'deliver-tagged'],
    [9, 'deliver-tagged'],
    [10, 'quarantine'],
    [14, 'quarantine'],
    [15, 'reject'],
    [40, 'reject'],
  ] as const)('score %i → %s (defaults tag 5, quarantine 10, reject 15; inclusive)', (score, action) => {
    const d = withScore(score);
    expect(d.score).toBe(score);
    expect(d.action).toBe(action);
  });

  it('reasons name the score and the threshold crossed', () => {
    expect(withScore(5).reasons).toEqual(['score 5 ≥ tag threshold 5']);
    expect(withScore(12).reasons).toEqual(['score 12 ≥ quarantine threshold 10']);
    expect(withScore(15).reasons).toEqual(['score 15 ≥ reject threshold 15']);
  });

  it('configured thresholds replace the defaults', () => {
    const strict = config({ scores: { HEADER_MISSING_DATE: 1 }, thresholds: { tag: 1, quarantine: 2, reject: 3 } });
    expect(run(verdict('HEADER_MISSING_DATE', 'HEADER_MISSING_DATE'), strict).action).toBe('quarantine');
  });
});

describe('forced actions', () => {
  it('by default CLAMAV_VIRUS and HASH_BLOCKLISTED force reject, whatever the score', () => {
    expect(DEFAULT_FORCE_ACTIONS).toEqual({ CLAMAV_VIRUS: 'reject', HASH_BLOCKLISTED: 'reject' });
    const c = config({ scores: { CLAMAV_VIRUS: 0, HASH_BLOCKLISTED: 0 } });
    const d = run(verdict(['CLAMAV_VIRUS', 'Eicar-Test-Signature']), c);
    expect(d).toEqual({ action: 'reject', score: 0, reasons: ['CLAMAV_VIRUS(Eicar-Test-Signature) forces reject'] });
    expect(run(verdict(['HASH_BLOCKLISTED', 'part 2 (a.exe): sha256 ab']), c).action).toBe('reject');
  });

  it('configured forced actions are merged with the defaults', () => {
    const c = config({ forceActions: { ARCHIVE_ENCRYPTED: 'quarantine' } });
    expect(run(verdict('ARCHIVE_ENCRYPTED'), c).action).toBe('quarantine');
    expect(run(verdict('CLAMAV_VIRUS'), c).action).toBe('reject');
  });

  it('config can change a default (a prefecture that quarantines malware instead of rejecting it)', () => {
    const c = config({ forceActions: { CLAMAV_VIRUS: 'quarantine' }, scores: { CLAMAV_VIRUS: 0 } });
    expect(run(verdict('CLAMAV_VIRUS'), c).action).toBe('quarantine');
  });

  it('never make the action milder than the score made it', () => {
    const c = config({ forceActions: { MIME_DOUBLE_EXTENSION: 'deliver-tagged' }, scores: { MIME_DOUBLE_EXTENSION: 20 } });
    const d = run(verdict('MIME_DOUBLE_EXTENSION'), c);
    expect(d.action).toBe('reject');
    expect(d.reasons).toEqual(['score 20 ≥ reject threshold 15', 'MIME_DOUBLE_EXTENSION forces deliver-tagged']);
  });

  it('the most severe of several forced actions wins', () => {
    const c = config({ forceActions: { ARCHIVE_ENCRYPTED: 'quarantine', MIME_DOUBLE_EXTENSION: 'sanitize' } });
    const d = run(verdict('MIME_DOUBLE_EXTENSION', 'ARCHIVE_ENCRYPTED', 'CLAMAV_VIRUS'), c);
    expect(d.action).toBe('reject');
    expect(d.reasons.filter((r) => r.includes('forces'))).toHaveLength(3);
  });
});

describe('failed checks (fail closed)', () => {
  const scan = config().scan;

  it('a _FAIL symbol before scan.failQuarantineAfterMs → tempfail, never deliver', () => {
    const d = run(verdict(['CLAMAV_FAIL', 'clamd: connect ECONNREFUSED']), config(), { ageMs: scan.failQuarantineAfterMs - 1 });
    expect(d.action).toBe('tempfail');
    expect(d.reasons).toEqual(['CLAMAV_FAIL: check failed, scan again later']);
  });

  it('at or after scan.failQuarantineAfterMs → quarantine', () => {
    for (const ageMs of [scan.failQuarantineAfterMs, scan.failQuarantineAfterMs * 10]) {
      const d = run(verdict('CLAMAV_FAIL', 'MIME_FAIL'), config(), { ageMs });
      expect(d.action).toBe('quarantine');
      expect(d.reasons).toEqual([`CLAMAV_FAIL, MIME_FAIL: check still failing after ${scan.failQuarantineAfterMs} ms`]);
    }
  });

  it('uses the configured scan.failQuarantineAfterMs', () => {
    const d = run(verdict('MIME_FAIL'), config(), { ageMs: 1000, scan: { ...scan, failQuarantineAfterMs: 500 } });
    expect(d.action).toBe('quarantine');
  });

  it('a failed check does not hide a more severe finding of another check', () => {
    expect(run(verdict('CLAMAV_VIRUS', 'MIME_FAIL')).action).toBe('reject');
    const c = config({ scores: { MIME_DOUBLE_EXTENSION: 12 } });
    expect(run(verdict('MIME_DOUBLE_EXTENSION', 'CLAMAV_FAIL'), c).action).toBe('quarantine');
  });

  it('a failed check is tempfail even with a configured score of 0 and a forced deliver', () => {
    const c = config({ forceActions: { CLAMAV_FAIL: 'deliver' } });
    expect(run(verdict('CLAMAV_FAIL'), c).action).toBe('tempfail');
  });
});

describe('sanitizing tenants', () => {
  const sanitizing = (policy: Record<string, unknown> = {}) => config(policy, { sanitize: true });

  it('clean mail → sanitize, with a reason naming the tenant', () => {
    expect(run(verdict(), sanitizing())).toEqual({ action: 'sanitize', score: 0, reasons: ['tenant city-a sanitizes every message'] });
  });

  it('tagged mail → sanitize', () => {
    const d = run(verdict('MIME_DOUBLE_EXTENSION', 'HEADER_MISSING_DATE'), sanitizing());
    expect(d.action).toBe('sanitize');
    expect(d.reasons).toEqual(['score 5 ≥ tag threshold 5', 'tenant city-a sanitizes every message']);
  });

  it('never downgrades quarantine, reject or tempfail', () => {
    const c = sanitizing({ scores: { MIME_DOUBLE_EXTENSION: 12 } });
    expect(run(verdict('MIME_DOUBLE_EXTENSION'), c).action).toBe('quarantine');
    expect(run(verdict('CLAMAV_VIRUS'), c).action).toBe('reject');
    expect(run(verdict('CLAMAV_FAIL'), c).action).toBe('tempfail');
  });

  it('a non-sanitizing tenant delivers clean mail', () => {
    expect(run(verdict(), config({}, { sanitize: false })).action).toBe('deliver');
  });
});

describe('content that cannot be scanned (ARCHIVE_ENCRYPTED, DOC_ENCRYPTED, PDF_ENCRYPTED, ARCHIVE_UNOPENABLE)', () => {
  it.each(['ARCHIVE_ENCRYPTED', 'DOC_ENCRYPTED', 'PDF_ENCRYPTED', 'ARCHIVE_UNOPENABLE'])('%s is held for a tenant that does not sanitize', (name) => {
    const d = run(verdict([name, '請求書.zip: ZipCrypto']));
    expect(d.action).toBe('quarantine');
    expect(d.reasons).toContain(`${name}: content that cannot be scanned is held (tenants[].unscannable)`);
  });

  it('is delivered tagged, not held, with tenants[].unscannable: deliver-tagged — however many such parts', () => {
    const d = run(verdict('DOC_ENCRYPTED', 'ARCHIVE_ENCRYPTED', 'PDF_ENCRYPTED'), config({}, { unscannable: 'deliver-tagged' }));
    expect(d).toMatchObject({ action: 'deliver-tagged', score: 5 });
  });

  it('deliver-tagged never lowers a more severe action', () => {
    expect(run(verdict('DOC_ENCRYPTED', 'CLAMAV_VIRUS'), config({}, { unscannable: 'deliver-tagged' })).action).toBe('reject');
  });

  it('is sanitized for a sanitizing tenant (the sanitizer removes that part)', () => {
    const d = run(verdict('ARCHIVE_ENCRYPTED', 'PDF_ENCRYPTED'), config({}, { sanitize: true }));
    expect(d.action).toBe('sanitize');
    expect(d.reasons).toContain('ARCHIVE_ENCRYPTED, PDF_ENCRYPTED: the sanitizer removes what cannot be scanned');
  });
});

describe('allow and block lists', () => {
  const from = (mailFrom: string) => ({ sender: { mailFrom, headerFrom: null, clientIp: '198.51.100.7' } });

  it('an allowed sender skips the score thresholds', () => {
    const c = config({}, { allow: ['partner.example.co.jp'] });
    const d = run(verdict('MIME_DOUBLE_EXTENSION', 'HEADER_DUPLICATE', 'HEADER_MISSING_FROM'), c, from('a@partner.example.co.jp'));
    expect(d.action).toBe('deliver');
    expect(d.reasons).toContain('sender matches partner.example.co.jp on the allow list of city-a: score thresholds skipped');
  });

  it('never lets an allowed sender through malware, unscannable content or a failed check', () => {
    const c = config({}, { allow: ['partner.example.co.jp'] });
    expect(run(verdict('CLAMAV_VIRUS'), c, from('a@partner.example.co.jp')).action).toBe('reject');
    expect(run(verdict('DOC_ENCRYPTED'), c, from('a@partner.example.co.jp')).action).toBe('quarantine');
    expect(run(verdict('CLAMAV_FAIL'), c, from('a@partner.example.co.jp')).action).toBe('tempfail');
  });

  it('a blocked sender is rejected, and the block list wins over the allow list', () => {
    const c = config({}, { allow: ['*.example.co.jp'], block: ['spam.example.co.jp', '198.51.100.0/24'] });
    const d = run(verdict(), c, from('a@spam.example.co.jp'));
    expect(d.action).toBe('reject');
    expect(d.reasons).toContain('sender matches spam.example.co.jp on the block list of city-a');
    expect(run(verdict(), c, from('a@ok.example.co.jp')).action).toBe('reject'); // blocked by the IP
  });

  it('the lists do nothing without a sender, and a sanitizing tenant still sanitizes an allowed sender', () => {
    expect(run(verdict('MIME_DOUBLE_EXTENSION', 'HEADER_DUPLICATE', 'HEADER_MISSING_FROM'), config({}, { allow: ['x.example'] })).action).toBe('deliver-tagged');
    expect(run(verdict(), config({}, { allow: ['x.example'], sanitize: true }), from('a@x.example')).action).toBe('sanitize');
  });
});

describe('tenant overrides', () => {
  it('are merged key by key over the global policy', () => {
    const c = config(
      { scores: { HEADER_MISSING_DATE: 3, HEADER_DUPLICATE: 3 }, thresholds: { reject: 30, quarantine: 20, tag: 8 }, forceActions: { ARCHIVE_ENCRYPTED: 'quarantine' } },
      { policy: { scores: { HEADER_DUPLICATE: 6 }, thresholds: { tag: 4 }, groupCaps: { mime: 2 }, subjectTag: '【迷惑メール】' } },
    );
    expect(effectivePolicy(c.policy, c.tenants[0]!)).toEqual({
      scores: { HEADER_MISSING_DATE: 3, HEADER_DUPLICATE: 6 },
      groupCaps: { ...DEFAULT_GROUP_CAPS, mime: 2 },
      thresholds: { reject: 30, quarantine: 20, tag: 4, headers: 0 },
      forceActions: { ...DEFAULT_FORCE_ACTIONS, ARCHIVE_ENCRYPTED: 'quarantine' },
      subjectTag: '【迷惑メール】',
    });
  });

  // Regression: with `policySchema.partial()` a tenant that only lowered `tag` got reject 15 / quarantine 10
  // back from the schema defaults, overriding a stricter or laxer global policy.
  it('a tenant that sets one threshold keeps the global others', () => {
    const c = config({ thresholds: { reject: 30, quarantine: 20 } }, { policy: { thresholds: { tag: 3 } } });
    const d = run(verdict(['HEADER_MISSING_FROM'], ['HEADER_DUPLICATE', 'from'], 'MIME_DOUBLE_EXTENSION', 'MIME_EXECUTABLE_ATTACHMENT', 'MIME_TOO_DEEP'), c);
    expect(d.score).toBe(18);
    expect(d.action).toBe('deliver-tagged');
  });

  it('a tenant can force an action the global policy does not', () => {
    const c = config({}, { policy: { forceActions: { ARCHIVE_ENCRYPTED: 'quarantine' } } });
    const d = run(verdict(['ARCHIVE_ENCRYPTED', 'mitsumori.zip']), c);
    expect(d.action).toBe('quarantine');
    expect(d.reasons).toContain('ARCHIVE_ENCRYPTED(mitsumori.zip) forces quarantine');
  });

  it('a tenant can relax a default forced action', () => {
    const c = config({}, { policy: { forceActions: { CLAMAV_VIRUS: 'quarantine' }, scores: { CLAMAV_VIRUS: 0 } } });
    expect(run(verdict('CLAMAV_VIRUS'), c).action).toBe('quarantine');
  });

  it('do not leak into the global policy object', () => {
    const c = config({ scores: { HEADER_DUPLICATE: 1 } }, { policy: { scores: { HEADER_DUPLICATE: 9 } } });
    effectivePolicy(c.policy, c.tenants[0]!);
    expect(c.policy.scores).toEqual({ HEADER_DUPLICATE: 1 });
  });
});

describe('reasons', () => {
  it('are human readable sentences for each rule that applied, in order', () => {
    const c = config({ scores: { MIME_DOUBLE_EXTENSION: 11 } });
    const d = run(verdict(['MIME_DOUBLE_EXTENSION', '請求書.pdf.exe'], ['CLAMAV_FAIL', 'timeout']), c);
    expect(d.reasons).toEqual(['score 11 ≥ quarantine threshold 10', 'CLAMAV_FAIL: check failed, scan again later']);
    for (const r of d.reasons) expect(r).not.toMatch(/undefined|NaN|\[object/);
  });

  it('every catalogue symbol alone gives a defined action and a finite score', () => {
    for (const name of Object.keys(symbols)) {
      const d = run(verdict(name));
      expect(Number.isFinite(d.score)).toBe(true);
      expect(['deliver', 'deliver-tagged', 'sanitize', 'quarantine', 'reject', 'tempfail']).toContain(d.action);
      expect(d.reasons.length).toBeGreaterThan(0);
    }
  });
});
