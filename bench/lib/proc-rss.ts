/**
 * Memory of a process tree, read from /proc: the sum of RSS (what the brief asks for; counts shared library
 * pages once per process, which flatters nothing and inflates multi-process systems such as Postfix) and the sum
 * of PSS (shared pages divided among their users — the fairer "how much memory does this system use").
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const pageBytes = (() => {
  try {
    return Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;
  } catch {
    return 4096;
  }
})();

interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
}

function readStat(pid: number): ProcInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    return { pid, ppid: Number(fields[1]), comm };
  } catch {
    return null; // exited meanwhile
  }
}

/** Every live process that descends from one of `roots` (roots included). */
export function processTree(roots: readonly number[]): ProcInfo[] {
  const children = new Map<number, ProcInfo[]>();
  const byPid = new Map<number, ProcInfo>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readStat(Number(entry));
    if (info === null) continue;
    byPid.set(info.pid, info);
    const list = children.get(info.ppid);
    if (list) list.push(info);
    else children.set(info.ppid, [info]);
  }
  const out: ProcInfo[] = [];
  const seen = new Set<number>();
  const stack = roots.filter((p) => byPid.has(p));
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    if (seen.has(pid)) continue;
    seen.add(pid);
    const info = byPid.get(pid);
    if (info) out.push(info);
    for (const child of children.get(pid) ?? []) stack.push(child.pid);
  }
  return out;
}

/** Resident bytes of one process (0 when it is gone). */
export function rssBytes(pid: number): number {
  try {
    const statm = readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ');
    return Number(statm[1]) * pageBytes;
  } catch {
    return 0;
  }
}

/** Proportional set size of one process in bytes (0 when it is gone or unreadable). */
export function pssBytes(pid: number): number {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1');
    const m = /^Pss:\s+(\d+) kB/m.exec(rollup);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface MemorySample {
  at: number;
  rss: number;
  pss: number;
  pids: number[];
  /** RSS per process name, e.g. { node: 1.2e8, 'redis-server': 9e6 }. */
  byName: Record<string, number>;
}

/** Sums RSS and PSS over the tree of `roots` right now. */
export function sampleTree(roots: readonly number[], withPss = true): MemorySample {
  const procs = processTree(roots);
  let rss = 0;
  let pss = 0;
  const byName: Record<string, number> = {};
  for (const p of procs) {
    const r = rssBytes(p.pid);
    rss += r;
    if (withPss) pss += pssBytes(p.pid);
    byName[p.comm] = (byName[p.comm] ?? 0) + r;
  }
  return { at: Date.now(), rss, pss, pids: procs.map((p) => p.pid), byName };
}

/**
 * Samples a process tree every `intervalMs` and keeps the peaks. `roots` is called at each sample so that a
 * system whose root pid appears later (Postfix's master) is followed.
 */
export class TreeSampler {
  readonly #roots: () => number[];
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | null = null;
  #peakRss: MemorySample | null = null;
  #peakPss = 0;
  #last: MemorySample | null = null;
  #pids = new Set<number>();
  #count = 0;

  constructor(roots: () => number[], intervalMs: number) {
    this.#roots = roots;
    this.#intervalMs = intervalMs;
  }

  start(): this {
    this.sample();
    this.#timer = setInterval(() => this.sample(), this.#intervalMs);
    return this;
  }

  /** Takes one sample now and folds it into the peaks. */
  sample(): MemorySample {
    const s = sampleTree(this.#roots());
    this.#count += 1;
    this.#last = s;
    if (this.#peakRss === null || s.rss > this.#peakRss.rss) this.#peakRss = s;
    if (s.pss > this.#peakPss) this.#peakPss = s.pss;
    for (const pid of s.pids) this.#pids.add(pid);
    return s;
  }

  /** The peaks so far, without stopping. */
  peaks(): { peakRss: number; peakPss: number; peakByName: Record<string, number> } {
    return { peakRss: this.#peakRss?.rss ?? 0, peakPss: this.#peakPss, peakByName: this.#peakRss?.byName ?? {} };
  }

  /** Forgets the peaks (e.g. after a baseline was taken). */
  resetPeaks(): void {
    this.#peakRss = null;
    this.#peakPss = 0;
  }

  stop(): { peakRss: number; peakPss: number; peakByName: Record<string, number>; samples: number } {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.sample();
    return {
      peakRss: this.#peakRss?.rss ?? 0,
      peakPss: this.#peakPss,
      peakByName: this.#peakRss?.byName ?? {},
      samples: this.#count,
    };
  }

  get last(): MemorySample | null {
    return this.#last;
  }

  /** Every pid seen in the tree so far (to make sure all of them are gone at the end). */
  get pidsSeen(): number[] {
    return [...this.#pids];
  }
}

/** Start time (clock ticks since boot) of a process, or null when it is gone: with the pid, a unique identity. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * Processes a bench run started (directly or through the system under test), remembered by pid and start time so
 * that a later SIGKILL never reaches an unrelated process that reused a pid.
 */
export class ProcessSet {
  readonly #known = new Map<number, string>();

  add(pids: Iterable<number>): void {
    for (const pid of pids) {
      if (this.#known.has(pid)) continue;
      const t = startTime(pid);
      if (t !== null) this.#known.set(pid, t);
    }
  }

  /** Known processes that are still the same processes and still alive (zombies excluded). */
  alive(): number[] {
    return [...this.#known].filter(([pid, t]) => startTime(pid) === t && !isZombie(pid)).map(([pid]) => pid);
  }

  killAll(): void {
    for (const pid of this.alive()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}
