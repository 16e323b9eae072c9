/**
 * The sanitizer of a worker process: sanitizeMessage() wired to real converters — a pool of converter child
 * processes (images, PDFs, text; per-job deadline, memory limit, concurrency limit) and one resident LibreOffice
 * (Office, ODF, RTF → PDF, in its own network namespace), started on the first document that needs it.
 * Untrusted bytes are rendered and decoded there; this process only splits the MIME structure, sniffs true types and
 * encryption headers, and reads zip directories and inflates entries within the archive limits (as the scan does).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config, SanitizeOptions, TenantConfig } from '../config/schema.ts';
import { sanitizeOptionsSchema } from '../config/schema.ts';
import { retentionDeadline } from '../quarantine/keeper.ts';
import type { Metrics } from '../metrics.ts';
import type { BodyLeaf, SanitizedBody } from './body.ts';
import { ConverterPool, networkIsolationAvailable } from './converter-pool.ts';
import type { BodyOpOptions, ImageOpOptions, PdfOpOptions, TextOpOptions } from './converter-ops.ts';
import type { SafeImage } from './image.ts';
import { LibreOfficeConverter } from './libreoffice.ts';
import type { RebuiltPdf } from './pdf-rebuild.ts';
import { sanitizeMessage, type Converters } from './sanitize-message.ts';
import type { SanitizeRequest, SanitizeResult, Sanitizer } from './sanitizer.ts';

/**
 * A converter child is replaced after this many jobs: MuPDF's and sharp's heaps only grow, and a fresh process
 * also drops whatever a hostile file may have left behind. A start costs about 1.5 s of CPU; a job 0.1–1 s.
 */
const JOBS_PER_CONVERTER_CHILD = 200;

/** The tenant's options with every default filled in; null for a tenant that does not sanitize. */
export function sanitizeOptionsOf(tenant: TenantConfig): SanitizeOptions | null {
  if (tenant.sanitize === false) return null;
  return tenant.sanitize === true ? sanitizeOptionsSchema.parse({}) : tenant.sanitize;
}

/** What the resident LibreOffice needs (src/sanitize/uno-convert.py starts it through Debian's python3-uno). */
const SOFFICE_BIN = '/usr/lib/libreoffice/program/soffice.bin';
const PYTHON_UNO = '/usr/lib/python3/dist-packages/uno.py';

export class MessageSanitizer implements Sanitizer {
  readonly #config: Config;
  readonly #pool: ConverterPool;
  readonly #office: LibreOfficeConverter;
  #officeStarted: Promise<void> | undefined;

  /** `metrics`: where converter and LibreOffice restarts are counted (sekisho_service_restarts_total). */
  constructor(config: Config, log: Logger, metrics?: Pick<Metrics, 'serviceRestarts'>) {
    this.#config = config;
    const s = config.sanitize;
    const isolate = s.isolateNetwork && networkIsolationAvailable();
    if (s.isolateNetwork && !isolate) log.warn('sanitize.isolateNetwork: not root or no unshare; converters run with the network of this process');
    this.#pool = new ConverterPool({
      opsModule: new URL('./converter-ops.ts', import.meta.url),
      processes: s.converterProcesses,
      jobTimeoutMs: s.jobTimeoutMs,
      memoryLimitBytes: s.memoryLimitBytes,
      maxJobsPerChild: JOBS_PER_CONVERTER_CHILD,
      isolateNetwork: isolate,
      onRestart: () => metrics?.serviceRestarts.inc({ service: 'converter' }),
      log: log.child({ component: 'converter-pool' }),
    });
    if (!existsSync(SOFFICE_BIN) || !existsSync(PYTHON_UNO)) {
      log.error(
        { soffice: SOFFICE_BIN },
        'LibreOffice (with python3-uno) is not installed: Office documents will be removed from sanitized mail. Install libreoffice-writer-nogui, libreoffice-calc-nogui, libreoffice-impress-nogui, python3-uno and fonts-noto-cjk (scripts/ensure-deps.sh does)',
      );
    }
    this.#office = new LibreOfficeConverter({
      workDir: path.join(config.dataDir, 'libreoffice', String(process.pid)),
      timeoutMs: s.libreoffice.timeoutMs,
      memoryLimitBytes: s.libreoffice.memoryLimitBytes,
      isolateNetwork: isolate,
      onRestart: () => metrics?.serviceRestarts.inc({ service: 'libreoffice' }),
      log: log.child({ component: 'libreoffice' }),
    });
  }

  #converters(): Converters {
    const s = this.#config.sanitize;
    const pool = this.#pool;
    return {
      body: async (leaves: BodyLeaf[], signal) => pool.run<SanitizedBody>('body', Buffer.alloc(0), { leaves } satisfies BodyOpOptions, signal),
      image: async (data, signal) => {
        const img = await pool.run<SafeImage>('image', data, { maxPixels: s.maxImagePixels } satisfies ImageOpOptions, signal);
        return { filename: '', contentType: img.contentType, ext: img.ext, data: img.data };
      },
      pdf: async (data, opts, signal) => {
        const r = await pool.run<RebuiltPdf>('pdf', data, { ...opts, maxPages: s.maxPages } satisfies PdfOpOptions, signal);
        const files = r.pdf
          ? [{ filename: '', contentType: 'application/pdf', ext: 'pdf', data: r.pdf }]
          : (r.images ?? []).map((i) => ({ filename: '', contentType: i.contentType, ext: i.ext, data: i.data }));
        return { pages: r.pages, files };
      },
      office: async (data, ext, signal) => {
        this.#officeStarted ??= this.#office.start().catch((err: unknown) => {
          this.#officeStarted = undefined; // the next document tries again
          throw err;
        });
        await this.#officeStarted;
        return this.#office.convert(data, ext, signal);
      },
      text: async (data, charset, kind, signal) => pool.run<Buffer>('text', data, { charset, kind } satisfies TextOpOptions, signal),
    };
  }

  async sanitize(req: SanitizeRequest): Promise<SanitizeResult> {
    const options = sanitizeOptionsOf(req.tenant);
    if (!options) throw new Error(`tenant "${req.tenant.id}" does not sanitize`);
    const started = performance.now();
    // The whole message has a deadline too: past it the job fails and is retried, the original never delivered.
    const signal = AbortSignal.any([req.signal, AbortSignal.timeout(this.#config.sanitize.messageTimeoutMs)]);
    const r = await sanitizeMessage({
      raw: req.raw,
      options,
      quarantineId: req.mid,
      retentionDate: new Date(retentionDeadline(this.#config, req.tenant.quarantineRetentionDays, Date.now())),
      tenantName: req.tenant.name,
      archiveLimits: this.#config.clamav.archive,
      converters: this.#converters(),
      signal,
    });
    const summary = r.items.map((i) =>
      i.outcome.kind === 'converted' ? `${i.name}: ${i.outcome.detail} → ${i.outcome.files.join(', ')}` : `${i.name}: removed (${i.outcome.reason}: ${i.outcome.detail})`,
    );
    req.log.info({ tenant: req.tenant.id, body: r.bodyActions, ms: Math.round(performance.now() - started) }, 'sanitized');
    const parts = r.items.map((i) => (i.outcome.kind === 'converted' ? { outcome: 'converted' as const } : { outcome: 'removed' as const, reason: i.outcome.reason }));
    return { message: r.message, summary, header: r.header, parts };
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.#pool.close(), this.#office.stop()]);
  }
}
