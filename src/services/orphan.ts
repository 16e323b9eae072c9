/**
 * A managed service (clamd, redis-server) left running by a Sekisho that was SIGKILLed holds our socket and our
 * files: the next start stops it first — only when its pid file names a live process whose command line shows it is
 * ours (the service's name and a path of our own), never a process that merely reused the pid.
 */
import { existsSync, readFileSync } from 'node:fs';

/** How long an orphan gets to stop on SIGTERM before SIGKILL. */
const ORPHAN_STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 100;

export async function stopOrphan(pidFile: string, mustContain: readonly string[]): Promise<boolean> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return false;
  }
  if (!mustContain.every((s) => cmdline.includes(s))) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + ORPHAN_STOP_TIMEOUT_MS;
  while (existsSync(`/proc/${pid}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, POLL_MS));
  if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
  return true;
}
