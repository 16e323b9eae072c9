/**
 * Our DnsResolver in the shape mailauth asks for: `(name, rrtype) => answers` like `dns.promises.resolve`, "no
 * record" as an error coded ENODATA (mailauth counts SPF void lookups by that code), and a lookup that failed as
 * an error that mailauth reads as a temporary error everywhere. SPF needs care: mailauth swallows a failed
 * `include:` lookup unless the error carries `spfResult`, so every failure carries `spfResult: temperror`.
 */
import type { DNSResolver } from 'mailauth';
import { DnsTempError, type DnsResolver } from '../../dns/resolver.ts';

export type MailauthResolver = DNSResolver;

export interface RecordingResolver {
  resolve: MailauthResolver;
  /** Lower-case names whose lookup failed (timeout, SERVFAIL…) during this message's evaluation. */
  readonly failedNames: ReadonlySet<string>;
}

/** What mailauth's resolver contract calls an error: an Error with a `code` (and `spfResult` for SPF). */
class MailauthDnsError extends Error {
  readonly code: string;
  readonly spfResult?: { error: 'temperror'; text: string };
  constructor(message: string, code: string, temporary: boolean, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MailauthDnsError';
    this.code = code;
    if (temporary) this.spfResult = { error: 'temperror', text: message };
  }
}

/**
 * DKIM and ARC key lookups one message may cause; keys beyond are answered "no record" without asking (those
 * signatures are DKIM_PERMERROR, never a pass). mailauth verifies every signature, so without this a message with
 * a thousand DKIM-Signature headers would make us send a thousand queries to names of the sender's choosing.
 * Mail passing through mailing lists and forwarders carries a few signatures.
 */
export const MAX_KEY_LOOKUPS_PER_MESSAGE = 20;

/** One resolver per message: it records which names failed, and stops asking once `signal` is aborted. */
export function mailauthResolver(dns: DnsResolver, signal: AbortSignal): RecordingResolver {
  const failedNames = new Set<string>();
  let keyLookups = 0;
  const lookup = async (name: string, rrtype: string): Promise<unknown[]> => {
    if (/\._domainkey\./i.test(name) && ++keyLookups > MAX_KEY_LOOKUPS_PER_MESSAGE) return [];
    switch (rrtype) {
      case 'A':
        return (await dns.a(name, signal)).map((r) => r.address);
      case 'AAAA':
        return (await dns.aaaa(name, signal)).map((r) => r.address);
      case 'TXT':
        return dns.txt(name, signal);
      case 'MX':
        return dns.mx(name, signal);
      case 'PTR':
        return dns.ptr(name, signal);
      default:
        throw new DnsTempError(name, rrtype, 'ENOTIMP');
    }
  };
  const resolve: MailauthResolver = async (name, rrtype) => {
    let answers: unknown[];
    try {
      answers = await lookup(name, rrtype);
    } catch (err) {
      failedNames.add(name.toLowerCase());
      const code = err instanceof DnsTempError ? err.code : 'EUNKNOWN';
      throw new MailauthDnsError(`DNS ${rrtype} ${name}: ${code}`, code, true, { cause: err });
    }
    if (answers.length === 0) throw new MailauthDnsError(`DNS ${rrtype} ${name}: no record`, 'ENODATA', false);
    // mailauth's type says strings; at run time it takes what dns.promises.resolve gives (MX as objects).
    return answers as string[];
  };
  return { resolve, failedNames };
}
