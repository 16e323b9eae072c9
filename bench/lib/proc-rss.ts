/**
 * Memory and CPU of a process tree, read from /proc: the sum of RSS (what the brief asks for; counts shared
 * library pages once per process, which inflates multi-process systems such as Postfix), the sum of PSS (shared
 * pages divided among their users — the fairer "how much memory does this system use"), and CPU time (its own
 * plus that of children it reaped), next to the whole machine's busy time so that a run can tell how much of the
 * CPU something else took.
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

const ticksPerSecond = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcInfo {
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

/** Labels by "pid comm" (a reused pid with another program gets a fresh label). */
const labels = new Map<string, string>();

/**
 * A short name for a process in breakdowns: its comm, except that the parts of Sekisho (all "node") are told
 * apart by their sub-command ("sekisho start", "sekisho worker").
 */
export function processLabel(p: ProcInfo): string {
  const key = `${p.pid} ${p.comm}`;
  const known = labels.get(key);
  if (known !== undefined) return known;
  let label = p.comm;
  try {
    const argv = readFileSync(`/proc/${p.pid}/cmdline`, 'latin1').split('\0');
    const i = argv.findIndex((a) => a.endsWith('sekisho.js'));
    if (i >= 0) label = `sekisho ${argv[i + 1] ?? ''}`.trim();
  } catch {
    // exited meanwhile
  }
  labels.set(key, label);
  return label;
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

/** Sums RSS (and PSS when asked) over `procs` right now. */
export function sampleProcs(procs: readonly ProcInfo[], withPss: boolean): MemorySample {
  let rss = 0;
  let pss = 0;
  const byName: Record<string, number> = {};
  for (const p of procs) {
    const r = rssBytes(p.pid);
    rss += r;
    if (withPss) pss += pssBytes(p.pid);
    const name = processLabel(p);
    byName[name] = (byName[name] ?? 0) + r;
  }
  return { at: Date.now(), rss, pss, pids: procs.map((p) => p.pid), byName };
}

/**
 * CPU seconds of the tree, by process label: user+system of each live member plus what each reaped from its
 * exited children.
 */
export function treeCpuByLabel(roots: readonly number[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of processTree(roots)) {
    try {
      const stat = readFileSync(`/proc/${p.pid}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      const label = processLabel(p);
      out.set(label, (out.get(label) ?? 0) + ticks / ticksPerSecond);
    } catch {
      // exited meanwhile; its parent's cutime/cstime will carry it
    }
  }
  return out;
}

/** CPU seconds of the whole tree (see treeCpuByLabel). */
export function treeCpuSeconds(roots: readonly number[]): number {
  let sum = 0;
  for (const v of treeCpuByLabel(roots).values()) sum += v;
  return sum;
}

/** CPU seconds all cores of the machine spent not idle since boot. */
export function machineBusySeconds(): number {
  const f = (readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  return busy / ticksPerSecond;
}

export interface CpuShare {
  /** CPU seconds of the system under test. */
  system: number;
  /** CPU seconds of the bench itself (generator and sink). */
  bench: number;
  /** CPU seconds everything else on the machine used meanwhile — noise in every figure when large. */
  other: number;
  wall: number;
  cores: number;
  /** CPU seconds of the system under test by process label. */
  systemByProcess: Record<string, number>;
}

/**
 * CPU accounting over one run. The bench's own CPU is its process tree (the generator and the sink) minus the
 * parts of the system under test that it started (`spawnedRoots`: Sekisho, or Postfix's clamd and clamav-milter);
 * `systemRoots` is the whole system under test.
 */
export class CpuMeter {
  readonly #system: () => number[];
  readonly #spawned: () => number[];
  #t0 = 0;
  #sys0 = new Map<string, number>();
  #spawned0 = 0;
  #bench0 = 0;
  #machine0 = 0;

  constructor(systemRoots: () => number[], spawnedRoots: () => number[]) {
    this.#system = systemRoots;
    this.#spawned = spawnedRoots;
  }

  start(): this {
    this.#t0 = Date.now();
    this.#sys0 = treeCpuByLabel(this.#system());
    this.#spawned0 = treeCpuSeconds(this.#spawned());
    this.#bench0 = treeCpuSeconds([process.pid]);
    this.#machine0 = machineBusySeconds();
    return this;
  }

  stop(cores: number): CpuShare {
    const byLabel = treeCpuByLabel(this.#system());
    const systemByProcess: Record<string, number> = {};
    let system = 0;
    for (const [label, secs] of byLabel) {
      const used = secs - (this.#sys0.get(label) ?? 0);
      systemByProcess[label] = Number(used.toFixed(2));
      system += used;
    }
    const spawned = treeCpuSeconds(this.#spawned()) - this.#spawned0;
    const bench = treeCpuSeconds([process.pid]) - this.#bench0 - spawned;
    const machine = machineBusySeconds() - this.#machine0;
    const wall = (Date.now() - this.#t0) / 1000;
    return { system, bench, other: Math.max(0, machine - system - bench), wall, cores, systemByProcess };
  }
}

/** The tree is re-read from /proc every this many samples; in between only the known members' statm is read. */
const treeRefreshEvery = 5;
/** PSS (smaps_rollup walks page tables: costly) is read every this many samples. */
const pssEvery = 10;

/**
 * Samples a process tree every `intervalMs` and keeps the peaks. `roots` is called at each tree refresh so that
 * a system whose root pid appears later (Postfix's master) is followed. Kept cheap (about 1 % of a core at
 * 100 ms), since it shares the machine with what it measures.
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
  #procs: ProcInfo[] = [];

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
    if (this.#count % treeRefreshEvery === 0) this.#procs = processTree(this.#roots());
    const s = sampleProcs(this.#procs, this.#count % pssEvery === 0);
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
    this.#count = 0;
    this.#peakRss = null;
    this.#peakPss = 0;
  }

  stop(): { peakRss: number; peakPss: number; peakByName: Record<string, number>; samples: number } {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#count = 0; // a final sample with a fresh tree and PSS
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
