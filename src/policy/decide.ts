/**
 * Policy: turns one message's verdict into one action for one tenant's recipients (DESIGN §1). Checks never see
 * this; weights, caps, thresholds and forced actions all come from config (global, then the tenant's overrides).
 * Every decision carries human-readable reasons that end up in the log, the metadata row and SMTP replies.
 */
import type { Action, Config, PolicyConfig, TenantConfig } from '../config/schema.ts';
import type { Verdict } from '../scan/runner.ts';
import { isFailSymbol, symbolInfo, type SymbolInfo } from '../scan/symbols.ts';
import { matchSenderList, type Sender } from './sender-lists.ts';

export interface Decision {
  action: Action;
  score: number;
  reasons: string[];
}

/** Most severe first: when several rules apply, the first of these wins. */
const SEVERITY: readonly Action[] = ['reject', 'quarantine', 'tempfail', 'sanitize', 'deliver-tagged', 'deliver'];

/** Forced actions that apply unless config overrides them: malware is never delivered. */
export const DEFAULT_FORCE_ACTIONS: Readonly<Record<string, Action>> = {
  CLAMAV_VIRUS: 'reject',
  HASH_BLOCKLISTED: 'reject',
};

/**
 * Content that can be neither scanned nor converted (DESIGN §6): held for a tenant that does not sanitize (or
 * delivered tagged, tenants[].unscannable); a sanitizing tenant gets the message without that part.
 */
export const UNSCANNABLE_SYMBOLS: readonly string[] = ['ARCHIVE_ENCRYPTED', 'DOC_ENCRYPTED', 'PDF_ENCRYPTED', 'ARCHIVE_UNOPENABLE'];

/**
 * Group caps that apply unless config overrides them: several unscannable parts are still one finding ("this
 * mail carries something nobody can look into"), which tenants[].unscannable handles; their scores must not add
 * up to a quarantine behind that option's back.
 */
export const DEFAULT_GROUP_CAPS: Readonly<Record<string, number>> = { unscannable: 5 };

function mostSevere(a: Action, b: Action): Action {
  return SEVERITY.indexOf(a) <= SEVERITY.indexOf(b) ? a : b;
}

export function effectivePolicy(global: PolicyConfig, tenant: TenantConfig): PolicyConfig {
  const t = tenant.policy ?? {};
  return {
    scores: { ...global.scores, ...t.scores },
    groupCaps: { ...DEFAULT_GROUP_CAPS, ...global.groupCaps, ...t.groupCaps },
    thresholds: { ...global.thresholds, ...t.thresholds },
    forceActions: { ...DEFAULT_FORCE_ACTIONS, ...global.forceActions, ...t.forceActions },
    subjectTag: t.subjectTag ?? global.subjectTag,
  };
}

export interface DecideContext {
  /** Milliseconds since the message was received. */
  ageMs: number;
  scan: Config['scan'];
  /** Who sent it, for the tenant's allow and block lists; without it the lists do not apply. */
  sender?: Sender;
  /** The tenant's allow and block lists with those added from the console (TenantLists); default its config's. */
  lists?: { readonly allow: readonly string[]; readonly block: readonly string[] };
  /** What the checks say of symbols outside the catalogue (rule-file rules): their group and default score. */
  describe?: (name: string) => SymbolInfo | undefined;
}

export function decide(verdict: Verdict, tenant: TenantConfig, global: PolicyConfig, ctx: DecideContext): Decision {
  const policy = effectivePolicy(global, tenant);
  const reasons: string[] = [];
  let action: Action = 'deliver';

  // Score: configured weight, else the catalogue default; positive contributions capped per group.
  const byGroup = new Map<string, number>();
  let score = 0;
  for (const s of verdict.symbols) {
    const info = symbolInfo(s.name) ?? ctx.describe?.(s.name);
    const weight = policy.scores[s.name] ?? info?.score ?? 0;
    const group = info?.group ?? 'other';
    const cap = policy.groupCaps[group];
    const sofar = byGroup.get(group) ?? 0;
    const add = cap !== undefined && weight > 0 ? Math.max(0, Math.min(weight, cap - sofar)) : weight;
    byGroup.set(group, sofar + add);
    score += add;
  }
  score = Math.round(score * 100) / 100;

  if (score >= policy.thresholds.reject) {
    action = 'reject';
    reasons.push(`score ${score} ≥ reject threshold ${policy.thresholds.reject}`);
  } else if (score >= policy.thresholds.quarantine) {
    action = 'quarantine';
    reasons.push(`score ${score} ≥ quarantine threshold ${policy.thresholds.quarantine}`);
  } else if (score >= policy.thresholds.tag) {
    action = 'deliver-tagged';
    reasons.push(`score ${score} ≥ tag threshold ${policy.thresholds.tag}`);
  }

  // The lists come before the forced actions: an allowed sender skips the score thresholds only, never a finding.
  const lists = ctx.lists ?? tenant;
  const blocked = ctx.sender ? matchSenderList(lists.block, ctx.sender) : null;
  const allowed = ctx.sender && !blocked ? matchSenderList(lists.allow, ctx.sender) : null;
  if (blocked) {
    action = mostSevere(action, 'reject');
    reasons.push(`sender matches ${blocked} on the block list of ${tenant.id}`);
  } else if (allowed) {
    action = 'deliver';
    reasons.push(`sender matches ${allowed} on the allow list of ${tenant.id}: score thresholds skipped`);
  }

  for (const s of verdict.symbols) {
    const forced = policy.forceActions[s.name];
    if (forced) {
      action = mostSevere(action, forced);
      reasons.push(`${s.name}${s.details?.length ? `(${s.details.join(', ')})` : ''} forces ${forced}`);
    }
  }

  const unscannable = verdict.symbols.filter((s) => UNSCANNABLE_SYMBOLS.includes(s.name)).map((s) => s.name);
  if (unscannable.length) {
    if (tenant.sanitize) {
      reasons.push(`${unscannable.join(', ')}: the sanitizer removes what cannot be scanned`);
    } else {
      const held = tenant.unscannable === 'quarantine';
      action = mostSevere(action, held ? 'quarantine' : 'deliver-tagged');
      reasons.push(`${unscannable.join(', ')}: content that cannot be scanned is ${held ? 'held' : 'delivered tagged'} (tenants[].unscannable)`);
    }
  }

  // Fail closed: a check that could not run means "not yet", and after scan.failQuarantineAfterMs "never".
  const failed = verdict.symbols.filter((s) => isFailSymbol(s.name)).map((s) => s.name);
  if (failed.length) {
    if (ctx.ageMs < ctx.scan.failQuarantineAfterMs) {
      action = mostSevere(action, 'tempfail');
      reasons.push(`${failed.join(', ')}: check failed, scan again later`);
    } else {
      action = mostSevere(action, 'quarantine');
      reasons.push(`${failed.join(', ')}: check still failing after ${ctx.scan.failQuarantineAfterMs} ms`);
    }
  }

  if (tenant.sanitize && (action === 'deliver' || action === 'deliver-tagged')) {
    action = 'sanitize';
    reasons.push(`tenant ${tenant.id} sanitizes every message`);
  }
  if (!reasons.length) reasons.push(`score ${score} below every threshold`);
  return { action, score, reasons };
}
