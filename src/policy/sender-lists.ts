/**
 * Per-tenant allow and block lists (tenants[].allow / tenants[].block): which senders skip the score thresholds and
 * which are refused. An entry names an envelope or header From address, its domain (exact, or with `*.` its
 * subdomains too), or the connecting IP (an address or a CIDR block). Matching is case-insensitive and exact:
 * `example.com` does not match `evil-example.com`, nor `mail.example.com` without `*.`.
 */
import { BlockList, isIP } from 'node:net';
import { addIpPattern, inIpList } from '../ip-list.ts';

export type SenderPattern =
  | { kind: 'address'; address: string }
  | { kind: 'domain'; domain: string; subdomains: boolean }
  | { kind: 'ip'; list: BlockList };

const DOMAIN = /^(?=.{1,253}$)([a-z0-9_-]{1,63}\.)*[a-z0-9-]{1,63}$/;

/** The entry parsed, or null when it is none of the accepted forms (the config schema reports it). */
export function parseSenderPattern(raw: string): SenderPattern | null {
  const s = raw.trim().toLowerCase();
  if (isIP(s.split('/')[0] ?? '')) {
    const list = new BlockList();
    return addIpPattern(list, s) ? { kind: 'ip', list } : null;
  }
  const at = s.lastIndexOf('@');
  if (at > 0) return DOMAIN.test(s.slice(at + 1)) ? { kind: 'address', address: s } : null;
  const bare = s.startsWith('@') ? s.slice(1) : s;
  if (bare.startsWith('*.')) return DOMAIN.test(bare.slice(2)) ? { kind: 'domain', domain: bare.slice(2), subdomains: true } : null;
  return DOMAIN.test(bare) ? { kind: 'domain', domain: bare, subdomains: false } : null;
}

export interface Sender {
  /** Envelope sender; '' for <>. */
  mailFrom: string;
  /** The header From address, when there is one. */
  headerFrom: string | null;
  clientIp: string;
}

function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}

function matches(p: SenderPattern, sender: Sender): boolean {
  const addresses = [sender.mailFrom, sender.headerFrom].filter((a): a is string => !!a && a.includes('@')).map((a) => a.toLowerCase());
  switch (p.kind) {
    case 'address':
      return addresses.includes(p.address);
    case 'domain':
      return addresses.some((a) => {
        const d = domainOf(a);
        return d === p.domain || (p.subdomains && d.endsWith(`.${p.domain}`));
      });
    case 'ip':
      return inIpList(p.list, sender.clientIp);
  }
}

/** The first entry of `list` that matches the sender, as written in the config; null when none does. */
export function matchSenderList(list: readonly string[], sender: Sender): string | null {
  for (const entry of list) {
    const p = parseSenderPattern(entry);
    if (p && matches(p, sender)) return entry;
  }
  return null;
}
