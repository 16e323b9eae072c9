/**
 * IP addresses and CIDR blocks as an operator writes them ("192.0.2.10", "198.51.100.0/24", "2001:db8::/32"),
 * and the connecting IP matched against them — an IPv4 client seen through an IPv6 socket ("::ffff:192.0.2.10")
 * counts as the IPv4 address it is. One reading for every list that names IPs (trusted relays, allow/block lists).
 */
import { isIP, type BlockList } from 'node:net';

/** Adds an address or CIDR block to `list`; false, and nothing added, when `entry` is neither. */
export function addIpPattern(list: BlockList, entry: string): boolean {
  const [ip = '', bits, extra] = entry.split('/');
  const family = isIP(ip);
  if (!family || extra !== undefined) return false;
  const type = family === 6 ? 'ipv6' : 'ipv4';
  if (bits === undefined) {
    list.addAddress(ip, type);
    return true;
  }
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 6 ? 128 : 32)) return false;
  list.addSubnet(ip, Number(bits), type);
  return true;
}

/** Whether the connecting IP is in `list`. */
export function inIpList(list: BlockList, ip: string): boolean {
  const bare = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  const family = isIP(bare);
  return family !== 0 && list.check(bare, family === 6 ? 'ipv6' : 'ipv4');
}
