/**
 * Installs a Debian package when a binary Sekisho manages is missing (redis-server, clamd). The two commands
 * of the README must work on a fresh Debian 12 machine as root; elsewhere the error says what to install.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { SekishoError } from '../errors.ts';

let aptUpdated = false;

export function findBinary(name: string, extraDirs: string[] = ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin']): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), ...extraDirs]) {
    const p = `${dir}/${name}`;
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Returns the path of `binary`, installing `pkg` with apt-get first when it is missing. */
export function ensureBinary(binary: string, pkg: string): string {
  const found = findBinary(binary);
  if (found) return found;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot || !findBinary('apt-get')) {
    throw new SekishoError('SEKISHO_ERR_SERVICE_START', `${binary} is not installed; install the Debian package "${pkg}"`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    if (!aptUpdated) {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
      aptUpdated = true;
    }
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', pkg], { stdio: 'ignore', env });
  } catch (err) {
    throw new SekishoError('SEKISHO_ERR_SERVICE_START', `apt-get install ${pkg} failed: ${(err as Error).message}`, { cause: err });
  }
  const after = findBinary(binary);
  if (!after) throw new SekishoError('SEKISHO_ERR_SERVICE_START', `${pkg} installed but ${binary} is still missing`);
  return after;
}
