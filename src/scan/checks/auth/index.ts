/**
 * auth — sender authentication with mailauth: SPF for the connecting IP and the MAIL FROM domain (the HELO name
 * when MAIL FROM is <>), DKIM for every signature, DMARC with policy and alignment, ARC. Each result is a symbol
 * (SPF_SOFTFAIL, DKIM_PASS, DMARC_POLICY_REJECT…) whose details are that result's Authentication-Results
 * properties, so that authentication-results.ts rebuilds our header from the verdict alone.
 *
 * Fail closed: a DNS lookup that got no answer is a `_TEMPERROR`, never a pass and never "no record" (the injected
 * resolver tells the two apart); a DMARC failure that an unanswered SPF or DKIM lookup may have caused is
 * DMARC_TEMPERROR, not a policy verdict. Nothing here trusts the message's own Received or
 * Authentication-Results headers: the client IP, HELO and MAIL FROM are the session's.
 */
import { domainToASCII } from 'node:url';
import { authenticate, type AuthenticateResult, type DKIMResult } from 'mailauth';
import type { Check, CheckContext, Envelope, SymbolHit } from '../../check.ts';
import type { DnsResolver } from '../../dns/resolver.ts';
import type { SymbolName } from '../../symbols.ts';
import { arComment, arProperty, stripForgedAuthResults } from './authentication-results.ts';
import type { AuthConfig } from './config.ts';
import { mailauthResolver } from './mailauth-resolver.ts';

export { authenticationResultsHeader, stripForgedAuthResults } from './authentication-results.ts';
export { authConfigSchema, type AuthConfig } from './config.ts';

export interface AuthCheckOptions {
  config: AuthConfig;
  /** The configured resolver (tests: the loopback test server). */
  resolver: DnsResolver;
  /** Our hostname (config `hostname`): the authserv-id, and the name SPF macros call the receiver (%{r}). */
  hostname: string;
}

const SPF_SYMBOL: Readonly<Record<string, SymbolName>> = {
  pass: 'SPF_PASS',
  fail: 'SPF_HARDFAIL',
  softfail: 'SPF_SOFTFAIL',
  neutral: 'SPF_NEUTRAL',
  none: 'SPF_NONE',
  temperror: 'SPF_TEMPERROR',
  permerror: 'SPF_PERMERROR',
};

/** mailauth's "neutral" comments that mean the key record is unusable: a permanent error (RFC 6376 §6.1.2). */
const DKIM_KEY_PROBLEMS = new Set(['no key', 'unknown key version', 'unknown key type', 'invalid public key']);

type Hit = { name: SymbolName; details?: string[] };

function hit(name: SymbolName, detail: string): Hit {
  return detail ? { name, details: [detail] } : { name };
}

/** IDN domains go into the header as A-labels (the header is 7-bit). */
function ascii(domain: string): string {
  return domainToASCII(domain) || domain;
}

function join(...parts: (string | false | undefined)[]): string {
  return parts.filter(Boolean).join(' ');
}

function spfHits(spf: AuthenticateResult['spf'], env: Envelope): Hit[] {
  const identity = env.mailFrom ? arProperty('smtp.mailfrom', env.mailFrom) : arProperty('smtp.helo', env.helo || env.clientIp);
  if (!spf) return [hit('SPF_TEMPERROR', join(identity, arComment('SPF was not evaluated')))];
  const result = spf.status.result;
  // Unknown words from a future mailauth are not a pass.
  const name = SPF_SYMBOL[result] ?? 'SPF_TEMPERROR';
  const why = (result === 'temperror' || result === 'permerror') && spf.status.comment ? arComment(spf.status.comment) : undefined;
  return [hit(name, join(identity, why))];
}

function dkimSymbol(r: DKIMResult): SymbolName {
  switch (r.status.result) {
    case 'pass':
      return 'DKIM_PASS';
    case 'fail':
    case 'policy': // a key shorter than auth.minKeyBits
      return 'DKIM_INVALID';
    case 'neutral':
      return DKIM_KEY_PROBLEMS.has(r.status.comment ?? '') ? 'DKIM_PERMERROR' : 'DKIM_INVALID';
    case 'permerror':
      return 'DKIM_PERMERROR';
    default:
      return 'DKIM_TEMPERROR';
  }
}

function dkimHits(results: readonly DKIMResult[]): Hit[] {
  return results.map((r) => {
    if (r.status.result === 'none') return { name: 'DKIM_NONE' };
    const status = r.status as DKIMResult['status'] & { underSized?: number };
    const comment = r.status.result === 'policy' ? 'weak key' : r.status.comment;
    return hit(
      dkimSymbol(r),
      join(
        arProperty('header.d', ascii(r.signingDomain)),
        r.selector !== undefined && arProperty('header.s', r.selector),
        comment && arComment(comment),
        status.underSized ? arComment(`l= leaves ${status.underSized} bytes unsigned`) : undefined,
      ),
    );
  });
}

const DMARC_POLICY_SYMBOL: Readonly<Record<string, SymbolName>> = {
  reject: 'DMARC_POLICY_REJECT',
  quarantine: 'DMARC_POLICY_QUARANTINE',
};

function dmarcHits(res: AuthenticateResult, spf: Hit[], dkim: Hit[]): Hit[] {
  const from = res.dkim.headerFrom?.length === 1 ? res.dkim.headerFrom[0] : undefined;
  const dmarc = res.dmarc;
  if (!dmarc || from === undefined) return [hit('DMARC_PERMERROR', arComment('no single From address to evaluate'))];
  const fromProp = arProperty('header.from', ascii(from.slice(from.lastIndexOf('@') + 1)));
  switch (dmarc.status.result) {
    case 'pass':
      return [hit('DMARC_PASS', fromProp)];
    case 'none':
      return [hit('DMARC_NONE', fromProp)];
    case 'fail': {
      // A pass that SPF or DKIM could have given, had DNS answered, is not known to have failed.
      const unsure = [...spf, ...dkim].some((h) => h.name === 'SPF_TEMPERROR' || h.name === 'DKIM_TEMPERROR');
      if (unsure) return [hit('DMARC_TEMPERROR', join(fromProp, arComment('SPF or DKIM could not be evaluated')))];
      const policy = (dmarc.policy || 'none').toLowerCase();
      const pct = typeof dmarc.pct === 'number' && dmarc.pct < 100 ? ` pct=${dmarc.pct}` : '';
      const sp = dmarc.sp && dmarc.sp !== dmarc.p ? ` sp=${dmarc.sp}` : '';
      return [hit(DMARC_POLICY_SYMBOL[policy] ?? 'DMARC_POLICY_NONE', join(fromProp, arComment(`p=${dmarc.p || 'none'}${sp}${pct}`)))];
    }
    default:
      return [hit('DMARC_TEMPERROR', fromProp)];
  }
}

interface ArcChainEntry {
  'arc-seal'?: { parsed?: { d?: { value?: unknown }; s?: { value?: unknown } } };
  'arc-message-signature'?: { parsed?: { d?: { value?: unknown }; s?: { value?: unknown } } };
}

/** The key names an ARC chain's seals and message signatures need (`s._domainkey.d`, lower case). */
function arcKeyNames(res: AuthenticateResult): Set<string> {
  const chain = (res.dkim as { arc?: { chain?: ArcChainEntry[] | false } }).arc?.chain;
  const names = new Set<string>();
  for (const entry of chain || []) {
    for (const h of [entry['arc-seal'], entry['arc-message-signature']]) {
      const d = h?.parsed?.d?.value;
      const s = h?.parsed?.s?.value;
      if (typeof d === 'string' && typeof s === 'string') names.add(`${s}._domainkey.${d}`.toLowerCase());
    }
  }
  return names;
}

function arcHits(res: AuthenticateResult, failedNames: ReadonlySet<string>): Hit[] {
  const arc = res.arc;
  if (!arc) return [{ name: 'ARC_NONE' }];
  const instance = typeof arc.i === 'number' && arc.i > 0 ? `i=${arc.i}` : '';
  switch (arc.status.result) {
    case 'pass':
      return [hit('ARC_PASS', instance && arComment(instance))];
    case 'none':
      return [{ name: 'ARC_NONE' }];
    default: {
      // mailauth reports every ARC problem as fail; one caused by an unanswered key lookup is ours to retry.
      const keyLookupFailed = [...arcKeyNames(res)].some((n) => failedNames.has(n));
      const why = keyLookupFailed ? 'ARC key lookup failed' : arc.status.comment;
      return [hit(keyLookupFailed ? 'ARC_TEMPERROR' : 'ARC_INVALID', join(instance, why) && arComment(join(instance, why)))];
    }
  }
}

/** One hit per symbol (two passing signatures are one DKIM_PASS with two details), in the order found. */
function merge(hits: readonly Hit[]): SymbolHit[] {
  const byName = new Map<SymbolName, string[]>();
  for (const h of hits) byName.set(h.name, [...(byName.get(h.name) ?? []), ...(h.details ?? [])]);
  return [...byName].map(([name, details]) => (details.length ? { name, details } : { name }));
}

export function createAuthCheck(opts: AuthCheckOptions): Check {
  return {
    name: 'auth',
    failSymbol: 'AUTH_FAIL',
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const dns = mailauthResolver(opts.resolver, ctx.signal);
      const res = await authenticate(ctx.raw, {
        ip: ctx.envelope.clientIp,
        helo: ctx.envelope.helo,
        sender: ctx.envelope.mailFrom,
        mta: opts.hostname,
        resolver: dns.resolve,
        minBitLength: opts.config.minKeyBits,
        trustReceived: false,
        disableBimi: true,
      });
      ctx.signal.throwIfAborted();
      const spf = spfHits(res.spf, ctx.envelope);
      const dkim = dkimHits(res.dkim.results);
      if (dns.failedNames.size) ctx.log.info({ failed: [...dns.failedNames].slice(0, 10) }, 'DNS lookups failed during authentication');
      // Results claiming to be ours that came from outside (RFC 8601 §5): delivery removes them.
      const forged: Hit[] = stripForgedAuthResults(ctx.raw, opts.hostname).length !== ctx.raw.length ? [{ name: 'AUTH_RESULTS_FORGED' }] : [];
      return merge([...spf, ...dkim, ...dmarcHits(res, spf, dkim), ...arcHits(res, dns.failedNames), ...forged]);
    },
  };
}
