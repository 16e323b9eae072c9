/**
 * How current the antivirus is, from clamd itself: VERSION names the official daily database the running engine
 * has loaded ("ClamAV 1.4.6/27123/Thu Dec  3 04:00:12 2026"), or only the engine ("ClamAV 1.4.6") when it has
 * none, as when freshclam never reached a mirror and only Sekisho's own signatures are loaded. The signature count
 * comes from the database files (database-signatures.ts: clamd does not tell it over its socket).
 * Rule: `ok` only when clamd itself says it has an official database younger than the limit.
 */
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { ClamdClient } from './clamd-client.ts';
import { countDatabaseSignatures, type SignatureCountCache } from './database-signatures.ts';

export type AvCurrencyStatus = 'ok' | 'degraded' | 'unknown';

export interface AvCurrency {
  status: AvCurrencyStatus;
  /** clamd's engine version ("1.4.6"). */
  engine: string | null;
  /** Signatures in clamd's database directories; null when none were given or clamd could not be asked. */
  signatures: number | null;
  /** Version of the official daily database clamd has loaded. */
  officialVersion: number | null;
  /** Its build time, ms since the epoch. */
  officialBuiltAt: number | null;
  ageMs: number | null;
  /** Why the status is not `ok`, in English; null when it is. */
  reason: string | null;
  checkedAt: number;
}

/** What clamd's VERSION answer says. */
export interface ClamdVersion {
  engine: string;
  officialVersion: number | null;
  officialBuiltAt: number | null;
}

const MS_PER_HOUR = 3_600_000;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** `ClamAV <engine>[/<daily version>/<ctime of its build>]`; ctime is "Thu Dec  3 04:00:12 2026". */
const VERSION_REPLY = /^ClamAV (\S+?)(?:\/(\d+)\/\w{3} (\w{3}) +(\d{1,2}) (\d{2}):(\d{2}):(\d{2}) (\d{4}))?$/;
export const OWN_SIGNATURES_ONLY = "only Sekisho's own signatures are loaded (no official ClamAV database)";

/**
 * Parses a VERSION answer; null when it is not one. clamd writes the build time with ctime(), in its own time
 * zone and without naming it: it is read in this process's, which a managed or same-host clamd shares (a remote
 * clamd in another zone shifts the age by the difference).
 */
export function parseClamdVersion(reply: string): ClamdVersion | null {
  const m = VERSION_REPLY.exec(reply.trim());
  if (!m?.[1]) return null;
  if (m[2] === undefined) return { engine: m[1], officialVersion: null, officialBuiltAt: null };
  const month = MONTHS.indexOf(m[3] ?? '');
  if (month < 0) return null;
  const [day, h, min, s, year] = [m[4], m[5], m[6], m[7], m[8]].map(Number) as [number, number, number, number, number];
  return { engine: m[1], officialVersion: Number(m[2]), officialBuiltAt: new Date(year, month, day, h, min, s).getTime() };
}

const hours = (ms: number) => `${Math.round((ms / MS_PER_HOUR) * 10) / 10} h`;

/** The verdict on one VERSION answer at `now`. */
export function assessCurrency(version: ClamdVersion, signatures: number | null, now: number, maxAgeMs: number): AvCurrency {
  const base = { engine: version.engine, signatures, officialVersion: version.officialVersion, officialBuiltAt: version.officialBuiltAt, checkedAt: now };
  if (version.officialBuiltAt === null) return { ...base, status: 'degraded', ageMs: null, reason: OWN_SIGNATURES_ONLY };
  // A build time ahead of our clock (clamd's clock, or its zone) is no reason to alarm: age 0.
  const ageMs = Math.max(0, now - version.officialBuiltAt);
  if (ageMs > maxAgeMs) {
    return { ...base, status: 'degraded', ageMs, reason: `official database is ${hours(Math.floor(ageMs / MS_PER_HOUR) * MS_PER_HOUR)} old (limit ${hours(maxAgeMs)})` };
  }
  return { ...base, status: 'ok', ageMs, reason: null };
}

export interface AvCurrencyMonitorOptions {
  client: Pick<ClamdClient, 'version'>;
  /** Official database older than this: degraded (clamav.maxDatabaseAgeHours). */
  maxAgeMs: number;
  /**
   * Directories whose signatures clamd loads, for the count (the managed clamd: clamav.databaseDir and
   * PROJECT_SIGNATURE_DIR). Absent: the count is null.
   */
  databaseDirs?: readonly string[];
  now?: () => number;
  log: Logger;
  /** Where the gauges are registered; absent: none. */
  registry?: Registry;
}

/** What a log line is written on a change of: the status and the kind of reason (not the hours in it). */
function changeKey(c: AvCurrency): string {
  if (c.status === 'ok') return 'ok';
  if (c.reason === OWN_SIGNATURES_ONLY) return `${c.status}:own-only`;
  if (c.status === 'degraded') return 'degraded:stale';
  return c.status;
}

export class AvCurrencyMonitor {
  readonly #opts: AvCurrencyMonitorOptions;
  readonly #now: () => number;
  readonly #cache: SignatureCountCache = new Map();
  readonly #gauges: { signatures: Gauge; age: Gauge; current: Gauge } | undefined;
  #latest: AvCurrency | null = null;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<AvCurrency> | undefined;

  constructor(opts: AvCurrencyMonitorOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    const registers = opts.registry ? [opts.registry] : [];
    this.#gauges = opts.registry
      ? {
          signatures: new Gauge({ name: 'sekisho_av_signatures', help: "Signatures in clamd's databases (NaN: unknown)", registers }),
          age: new Gauge({ name: 'sekisho_av_database_age_seconds', help: 'Age of the official ClamAV database clamd has loaded (NaN: none or unknown)', registers }),
          current: new Gauge({ name: 'sekisho_av_current', help: 'clamd has an official database younger than clamav.maxDatabaseAgeHours (1) or not (0)', registers }),
        }
      : undefined;
  }

  latest(): AvCurrency | null {
    return this.#latest;
  }

  /** Asks clamd now; never throws (an unreachable clamd is an `unknown` status). Concurrent calls share one check. */
  refresh(): Promise<AvCurrency> {
    this.#inFlight ??= this.#check().finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  /** Refreshes now and every `intervalMs`; the timer does not keep the process alive. */
  start(intervalMs: number): void {
    this.stop();
    void this.refresh();
    this.#timer = setInterval(() => void this.refresh(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #check(): Promise<AvCurrency> {
    let reply: string;
    try {
      reply = await this.#opts.client.version();
    } catch (err) {
      return this.#record(this.#unknown(`clamd unreachable: ${err instanceof Error ? err.message : String(err)}`));
    }
    const version = parseClamdVersion(reply);
    if (!version) return this.#record(this.#unknown(`clamd's VERSION answer is not understood: ${JSON.stringify(reply)}`));
    const signatures = await countDatabaseSignatures(this.#opts.databaseDirs ?? [], this.#cache);
    return this.#record(assessCurrency(version, signatures, this.#now(), this.#opts.maxAgeMs));
  }

  #unknown(reason: string): AvCurrency {
    return { status: 'unknown', engine: null, signatures: null, officialVersion: null, officialBuiltAt: null, ageMs: null, reason, checkedAt: this.#now() };
  }

  #record(c: AvCurrency): AvCurrency {
    const before = this.#latest;
    this.#latest = c;
    this.#gauges?.signatures.set(c.signatures ?? Number.NaN);
    this.#gauges?.age.set(c.ageMs === null ? Number.NaN : c.ageMs / 1000);
    this.#gauges?.current.set(c.status === 'ok' ? 1 : 0);
    if (!before || changeKey(before) !== changeKey(c)) {
      const fields = { status: c.status, reason: c.reason, signatures: c.signatures, officialVersion: c.officialVersion, ageMs: c.ageMs };
      if (c.status === 'ok') this.#opts.log.info(fields, 'antivirus databases are current');
      else this.#opts.log.warn(fields, `antivirus ${c.status === 'degraded' ? 'not current' : 'currency unknown'}: ${c.reason}`);
    }
    return c;
  }
}
