/**
 * clamav — antivirus through clamd, archive-aware, fail closed.
 *
 * What: the raw message and every decoded MIME part (base64/quoted-printable decoded, parts of attached
 * message/rfc822 included) go to clamd by INSTREAM; each signature clamd names becomes a detail of CLAMAV_VIRUS.
 * Why both: clamd's MIME parser and ours disagree on malformed mail, and malware hides in that gap; scanning the
 * raw bytes and our decoded parts closes it from both sides.
 *
 * Except a part the raw message already carries byte for byte (isCoveredByRaw): an inline text part (text/*, no
 * file name, not an attachment) of the top-level message, sent without transfer encoding (none, 7bit, 8bit or
 * binary), so that its bytes are the raw message's. clamd matches its signatures against the whole raw stream, so
 * those bytes were already scanned, in place; a separate INSTREAM of them would cost clamd and us a scan per
 * message (most mail has such a body) for nothing. Nothing is skipped when the raw message is withheld
 * (below) or when our parse found the structure damaged (the case the double scan is for). Decoded parts,
 * attachments, parts of attached messages and archives are always scanned on their own.
 *
 * Archives are opened first, within clamav.archive limits (archive/inspect-archive.ts): an attachment over a limit
 * is reported as ARCHIVE_LIMIT_EXCEEDED and neither it nor the raw message that carries it is handed to clamd (a
 * zip bomb costs milliseconds here instead of clamd's MaxScanSize); an encrypted member is ARCHIVE_ENCRYPTED (PPAP:
 * it cannot be scanned). clamd's own alerts for what it could not scan map to the same symbols:
 * Heuristics.Encrypted.* → ARCHIVE_ENCRYPTED, Heuristics.Limits.Exceeded.* → ARCHIVE_LIMIT_EXCEEDED.
 *
 * The INSTREAMs go over persistent clamd sessions (clamd-client.ts), ended by close().
 *
 * clamd unreachable, too slow or answering with an error → CheckFailedError, which the runner turns into
 * CLAMAV_FAIL: policy retries and never delivers the message unscanned.
 */
import type { Check, CheckContext, SymbolHit } from '../check.ts';
import { CheckFailedError } from '../check.ts';
import { inspectArchive, isInspectableArchive, type ArchiveLimits } from '../archive/inspect-archive.ts';
import { ClamdClient, type ClamdEndpoint } from '../clamd-client.ts';
import type { MimePart } from '../mime-parts.ts';

export interface ClamavCheckOptions {
  /** clamd's unix socket or TCP address: the managed clamd's, or clamav.socket / clamav.host. */
  clamd: ClamdEndpoint;
  /** Budget of one INSTREAM (connect, send, scan, reply): clamav.timeoutMs. */
  timeoutMs: number;
  archive: ArchiveLimits;
}

/**
 * INSTREAM connections one message keeps open at once for its decoded parts, so that a message with many
 * attachments uses several of clamd's threads while other messages in the pipeline still get theirs (MaxThreads).
 */
const MAX_PARALLEL_SCANS = 4;
/**
 * clamd sessions kept open between messages: one per message of the default queue.scanConcurrency (16), most of
 * which make one INSTREAM (the raw message) or two at a time. Scans beyond it still run, on a connection each; an
 * idle session costs clamd one file descriptor (it counts towards MaxQueue, 200 in the managed clamd).
 */
const CLAMD_SESSIONS = 16;
/** Content-Transfer-Encodings that leave a part's bytes as they are in the raw message. */
const IDENTITY_ENCODINGS = new Set(['', '7bit', '8bit', 'binary']);

const HEURISTIC_ENCRYPTED = /^Heuristics\.Encrypted\./;
const HEURISTIC_LIMITS = /^Heuristics\.Limits\.Exceeded\./;

interface ScanJob {
  label: string;
  data: Buffer;
  /** Scanned by the raw message's INSTREAM already, unless that one is withheld (isCoveredByRaw). */
  coveredByRaw?: boolean;
}

function partLabel(path: string, filename: string | null): string {
  return filename ? `part ${path} (${filename})` : `part ${path}`;
}

/**
 * An inline text part whose bytes the raw message holds verbatim: the raw message's INSTREAM has scanned them.
 * Verbatim because, without a transfer encoding, mime-parts.ts hands over the body bytes as the splitter read them
 * (a test there holds it to that). Not checked with raw.includes(): Buffer search is quadratic on crafted input
 * (a part of 'a'×N + 'b' + 'a'×N after megabytes of 'a' costs minutes of CPU).
 */
function isCoveredByRaw(part: MimePart): boolean {
  return (
    part.embeddedDepth === 0 &&
    IDENTITY_ENCODINGS.has(part.transferEncoding) &&
    part.contentType.startsWith('text/') &&
    part.filename === null &&
    (part.disposition === null || part.disposition === 'inline')
  );
}

/** Runs `jobs` through `fn`, at most `limit` at a time; the first failure stops the others (their signal aborts). */
async function eachLimited<T>(jobs: readonly T[], limit: number, outer: AbortSignal, fn: (job: T, signal: AbortSignal) => Promise<void>): Promise<void> {
  const stop = new AbortController();
  const signal = AbortSignal.any([outer, stop.signal]);
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      signal.throwIfAborted();
      const job = jobs[next++] as T;
      try {
        await fn(job, signal);
      } catch (err) {
        stop.abort(err);
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
}

export function createClamavCheck(opts: ClamavCheckOptions): Check {
  const client = new ClamdClient(opts.clamd, opts.timeoutMs, { sessions: CLAMD_SESSIONS });

  return {
    name: 'clamav',
    failSymbol: 'CLAMAV_FAIL',
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const found = new Map<string, Set<string>>();
      const add = (symbol: string, detail: string) => {
        const set = found.get(symbol) ?? new Set<string>();
        set.add(detail);
        found.set(symbol, set);
      };

      const { parts, notes } = await ctx.parsed();
      const jobs: ScanJob[] = [];
      let withheld = false;
      for (const part of parts) {
        if (part.content.length === 0) continue;
        const label = partLabel(part.path, part.filename);
        const archive = isInspectableArchive(part.content);
        if (archive) {
          const inspection = await inspectArchive(part.content, part.filename ?? `part ${part.path}`, opts.archive, ctx.signal);
          for (const f of inspection.findings) add(f.symbol, f.detail);
          if (inspection.overLimit) {
            withheld = true;
            ctx.log.info({ part: label, findings: inspection.findings }, 'archive over a limit: not handed to clamd');
            continue;
          }
        }
        jobs.push({ label, data: part.content, coveredByRaw: !archive && isCoveredByRaw(part) });
      }
      const skip = !withheld && notes.length === 0;
      const toScan = skip ? jobs.filter((j) => !j.coveredByRaw) : jobs;
      if (toScan.length < jobs.length) {
        ctx.log.debug({ parts: jobs.filter((j) => j.coveredByRaw).map((j) => j.label) }, 'inline text covered by the raw message: not scanned again');
      }

      const scanOne = async (job: ScanJob, signal: AbortSignal) => {
        const { found: names } = await client.scan(job.data, signal);
        ctx.log.debug({ part: job.label, bytes: job.data.length, found: names }, 'clamd scanned');
        for (const name of names) {
          ctx.log.info({ part: job.label, signature: name }, 'clamd alert');
          if (HEURISTIC_ENCRYPTED.test(name)) add('ARCHIVE_ENCRYPTED', `${job.label}: ${name}`);
          else if (HEURISTIC_LIMITS.test(name)) add('ARCHIVE_LIMIT_EXCEEDED', `${job.label}: ${name}`);
          else add('CLAMAV_VIRUS', name);
        }
      };
      try {
        // The raw message first: clamd unpacks it and caches the hash of every clean file it extracted, so the
        // decoded parts that follow are mostly cache hits (hashing, not scanning). Scanning both at once would
        // double clamd's work for every attachment.
        if (!withheld) await scanOne({ label: 'raw message', data: ctx.raw }, ctx.signal);
        await eachLimited(toScan, MAX_PARALLEL_SCANS, ctx.signal, scanOne);
      } catch (err) {
        throw new CheckFailedError(`clamd: ${(err as Error).message}`, { cause: err });
      }

      return [...found].map(([name, details]) => ({ name, details: [...details].sort() }));
    },
    close() {
      client.close();
    },
  };
}
