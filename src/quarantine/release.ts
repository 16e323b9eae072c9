/**
 * The release workflow (原本取り出し, DESIGN §7): request → approve → release, or reject, delete, deliver the
 * sanitized copy again, download. Every path that changes a quarantine record — console page, JSON API, bulk
 * action — goes through here, so the rules below hold for all of them:
 *   - who may take each step (`stepRoles`), and only within their tenant; a tenant admin never approves their own
 *     request (four eyes), a prefecture admin may release directly;
 *   - before anything leaves, the original is scanned again by clamd with today's signatures; what is still
 *     detected (or cannot be scanned) stays, unless a prefecture admin overrides with a reason;
 *   - each state change is a compare-and-set, so two approvers racing, or a double click, release once; the
 *     release message has an id derived from the record, so a retry after a crash spools and delivers it once;
 *   - every step, allowed or refused, is in the audit log, written before the step's answer.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Role } from '../admin/auth/roles.ts';
import type { AuditEntry, AuditLog } from '../admin/audit/audit-log.ts';
import type { TenantIndex } from '../config/tenants.ts';
import { SekishoError } from '../errors.ts';
import { encodeHeader } from '../mime/compose.ts';
import { OUTBOUND_ROUTE, type Pipeline } from '../queue/pipeline.ts';
import { spoolOwnMessage } from '../queue/spool-own-message.ts';
import { newMessageId } from '../spool/message-id.ts';
import type { MessageStore } from '../spool/message-store.ts';
import { prefixedStream } from '../spool/prefixed-stream.ts';
import type { MetaStore } from '../spool/meta-store.ts';
import type { QuarantineRecord, QuarantineState, QuarantineStore } from './quarantine-store.ts';
import { removeUnheldBytes } from './retention.ts';

/** Who acts: an account of the console (or the CLI), with the address it came from. */
export interface Actor {
  name: string;
  role: Role;
  /** The tenant of a tenant role; null for prefecture-wide roles. */
  tenantId: string | null;
  ip: string | null;
}

export interface RecordRef {
  messageId: string;
  tenantId: string;
}

/** What clamd says of the original today. */
export interface Rescan {
  found: string[];
}

export interface ReleaseDeps {
  quarantine: QuarantineStore;
  meta: MetaStore;
  store: MessageStore;
  pipeline: Pick<Pipeline, 'enqueue'>;
  audit: AuditLog;
  tenants: TenantIndex;
  hostname: string;
  /** Scans the original with the current signatures (clamd INSTREAM of the raw bytes; clamd decodes the MIME). */
  rescan(raw: Buffer): Promise<Rescan>;
  now?: () => number;
}

export type Step = 'request' | 'approve' | 'reject' | 'release' | 'delete' | 'redeliver' | 'download' | 'view';

/** The roles that may take each step (within their own tenant for tenant roles). */
export const stepRoles: Record<Step, readonly Role[]> = {
  view: ['admin', 'tenant-admin', 'tenant-staff'],
  request: ['admin', 'tenant-admin', 'tenant-staff'],
  approve: ['admin', 'tenant-admin'],
  reject: ['admin', 'tenant-admin'],
  release: ['admin'],
  delete: ['admin', 'tenant-admin'],
  redeliver: ['admin', 'tenant-admin'],
  download: ['admin', 'tenant-admin'],
};

/** The states each step starts from (download: while the original is kept for the record). */
export const stepFrom: Record<Exclude<Step, 'view'>, readonly QuarantineState[]> = {
  request: ['held'],
  approve: ['release-requested'],
  reject: ['release-requested'],
  release: ['held', 'release-requested', 'approved'],
  delete: ['held', 'release-requested', 'approved', 'rejected'],
  redeliver: ['held', 'release-requested', 'approved', 'rejected', 'released'],
  download: ['held', 'release-requested', 'approved', 'rejected'],
};

/** Whether `actor` may take `step` on records of `tenantId` (the console hides what this refuses). */
export function mayTake(actor: Pick<Actor, 'role' | 'tenantId'>, step: Step, tenantId: string): boolean {
  if (!stepRoles[step].includes(actor.role)) return false;
  return actor.role === 'admin' || actor.tenantId === tenantId;
}

/** Four eyes: a request is approved by someone other than its requester, unless by a prefecture admin. */
export function mayApprove(actor: Pick<Actor, 'role' | 'name'>, rec: { requestedBy: string | null }): boolean {
  return actor.role === 'admin' || rec.requestedBy !== actor.name;
}

/** The tenants whose records `actor` may see: undefined for all, else a list (empty: none). */
export function visibleTenants(actor: Pick<Actor, 'role' | 'tenantId'>): readonly string[] | undefined {
  if (actor.role === 'admin') return undefined;
  if ((actor.role === 'tenant-admin' || actor.role === 'tenant-staff') && actor.tenantId) return [actor.tenantId];
  return [];
}

/** A step refused: `status` is the HTTP status the API answers with. */
export class WorkflowError extends SekishoError {
  constructor(
    code: 'SEKISHO_ERR_QUARANTINE_NOT_FOUND' | 'SEKISHO_ERR_QUARANTINE_STATE' | 'SEKISHO_ERR_QUARANTINE_RESCAN' | 'SEKISHO_ERR_AUTH_INVALID',
    message: string,
    readonly status: number,
    /** Signatures clamd still finds, for a refused release. */
    readonly found: string[] = [],
  ) {
    super(code, message);
    this.name = 'WorkflowError';
  }
}

/** The id of the message that carries a released original: one per record, so a repeat finds it. */
export function releaseMessageId(ref: RecordRef): string {
  return `${ref.messageId}r${createHash('sha256').update(ref.tenantId).digest('hex').slice(0, 10)}`;
}

export interface StepOptions {
  reason?: string | null;
  /** A prefecture admin's reason to release what clamd still detects (a false positive). */
  override?: string | null;
}

export class ReleaseService {
  readonly #d: ReleaseDeps;
  readonly #now: () => number;

  constructor(deps: ReleaseDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /** The record, when `actor` may see it; else SEKISHO_ERR_QUARANTINE_NOT_FOUND (never "forbidden": no probing). */
  async get(actor: Actor, ref: RecordRef): Promise<QuarantineRecord> {
    const rec = mayTake(actor, 'view', ref.tenantId) ? await this.#d.quarantine.get(ref.messageId, ref.tenantId) : undefined;
    if (!rec) throw new WorkflowError('SEKISHO_ERR_QUARANTINE_NOT_FOUND', `no quarantine record ${ref.messageId}/${ref.tenantId}`, 404);
    return rec;
  }

  async request(actor: Actor, ref: RecordRef, opts: StepOptions = {}): Promise<QuarantineRecord> {
    const rec = await this.#allowed(actor, ref, 'request', opts);
    return this.#move(actor, rec, 'request', 'release-requested', opts);
  }

  /** Approves a request and releases the original (what clamd still detects needs a prefecture admin's override). */
  async approve(actor: Actor, ref: RecordRef, opts: StepOptions = {}): Promise<QuarantineRecord> {
    const rec = await this.#allowed(actor, ref, 'approve', opts);
    if (!mayApprove(actor, rec)) {
      await this.#audit(actor, 'quarantine.approve', rec, opts, 'denied', { why: 'own request' });
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', 'a release request must be approved by someone other than its requester', 409);
    }
    const raw = await this.#rescanned(actor, rec, 'quarantine.approve', opts);
    const approved = await this.#move(actor, rec, 'approve', 'approved', opts);
    return this.#release(actor, approved, raw, opts);
  }

  async reject(actor: Actor, ref: RecordRef, opts: StepOptions = {}): Promise<QuarantineRecord> {
    const rec = await this.#allowed(actor, ref, 'reject', opts);
    return this.#move(actor, rec, 'reject', 'rejected', opts);
  }

  /** A prefecture admin's direct release (also finishes an approved record whose release did not go out). */
  async release(actor: Actor, ref: RecordRef, opts: StepOptions = {}): Promise<QuarantineRecord> {
    const rec = await this.#allowed(actor, ref, 'release', opts);
    const raw = await this.#rescanned(actor, rec, 'quarantine.release', opts);
    return this.#release(actor, rec, raw, opts);
  }

  async delete(actor: Actor, ref: RecordRef, opts: StepOptions = {}): Promise<QuarantineRecord> {
    const rec = await this.#allowed(actor, ref, 'delete', opts);
    const deleted = await this.#move(actor, rec, 'delete', 'deleted', opts);
    await removeUnheldBytes(this.#d, rec.messageId);
    return deleted;
  }

  /** Sends the tenant's sanitized copy of a kept original again (e.g. the recipient deleted it); a new message each time. */
  async redeliver(actor: Actor, ref: RecordRef, opts: StepOptions = {}): Promise<string> {
    const rec = await this.#allowed(actor, ref, 'redeliver', opts);
    const kind = { sanitized: rec.tenantId };
    if (rec.kind !== 'original' || !(await this.#d.store.exists(rec.messageId, kind))) {
      await this.#audit(actor, 'quarantine.redeliver', rec, opts, 'failed', { why: 'no sanitized copy' });
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', 'this record has no sanitized copy to deliver again', 409);
    }
    const id = newMessageId(this.#now());
    await this.#spool(rec, id, this.#d.store.createReadStream(rec.messageId, kind), this.#releasedHeader(actor, rec, 'redelivered'));
    await this.#audit(actor, 'quarantine.redeliver', rec, opts, 'ok', { message: id });
    return id;
  }

  /** The original's bytes for an admin to download as .eml (audited). */
  async download(actor: Actor, ref: RecordRef): Promise<{ record: QuarantineRecord; body: Readable }> {
    const rec = await this.get(actor, ref);
    if (!mayTake(actor, 'download', rec.tenantId)) {
      await this.#audit(actor, 'quarantine.download', rec, {}, 'denied', {});
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', 'only administrators may download originals', 403);
    }
    if (!(await this.#d.store.exists(rec.messageId))) {
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', `the original is no longer kept (record ${rec.state})`, 410);
    }
    await this.#audit(actor, 'quarantine.download', rec, {}, 'ok', {});
    return { record: rec, body: this.#d.store.createReadStream(rec.messageId) };
  }

  async #allowed(actor: Actor, ref: RecordRef, step: Exclude<Step, 'view' | 'download'>, opts: StepOptions): Promise<QuarantineRecord> {
    const rec = await this.get(actor, ref);
    if (!mayTake(actor, step, rec.tenantId)) {
      await this.#audit(actor, `quarantine.${step}`, rec, opts, 'denied', { role: actor.role });
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', `the role ${actor.role} may not ${step} a quarantined message`, 403);
    }
    if (!stepFrom[step].includes(rec.state)) {
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', `cannot ${step} a record that is ${rec.state}`, 409);
    }
    if ((step === 'reject' || step === 'delete') && !opts.reason?.trim()) {
      throw new WorkflowError('SEKISHO_ERR_AUTH_INVALID', `a reason is required to ${step}`, 400);
    }
    return rec;
  }

  async #move(actor: Actor, rec: QuarantineRecord, step: Exclude<Step, 'view' | 'download'>, to: QuarantineState, opts: StepOptions): Promise<QuarantineRecord> {
    // Audited first: a step the audit log cannot record is not taken (SEKISHO_ERR_AUDIT_WRITE propagates).
    await this.#audit(actor, `quarantine.${step}`, rec, opts, 'ok', { from: rec.state, to });
    const moved = await this.#d.quarantine.transition(rec.messageId, rec.tenantId, {
      from: stepFrom[step],
      to,
      by: actor.name,
      reason: opts.reason?.trim() || null,
      at: this.#now(),
    });
    if (!moved) throw this.#raced(rec);
    return moved;
  }

  #raced(rec: QuarantineRecord): WorkflowError {
    return new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', `record ${rec.messageId}/${rec.tenantId} was changed by someone else first`, 409);
  }

  /** The original, scanned again; refuses (audited) what clamd still detects unless a prefecture admin overrides. */
  async #rescanned(actor: Actor, rec: QuarantineRecord, action: string, opts: StepOptions): Promise<Buffer> {
    if (!(await this.#d.store.exists(rec.messageId))) {
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_STATE', `the original of ${rec.messageId} is no longer kept`, 410);
    }
    const raw = await this.#d.store.read(rec.messageId);
    let result: Rescan;
    try {
      result = await this.#d.rescan(raw);
    } catch (err) {
      await this.#audit(actor, action, rec, opts, 'failed', { rescan: (err as Error).message });
      throw new WorkflowError('SEKISHO_ERR_QUARANTINE_RESCAN', `the rescan before release failed, nothing was released: ${(err as Error).message}`, 503);
    }
    if (result.found.length) {
      const override = opts.override?.trim();
      if (actor.role !== 'admin' || !override) {
        await this.#audit(actor, action, rec, opts, 'denied', { found: result.found });
        throw new WorkflowError(
          'SEKISHO_ERR_QUARANTINE_RESCAN',
          `still detected by the antivirus (${result.found.join(', ')}): only a prefecture administrator can release it, with a reason`,
          409,
          result.found,
        );
      }
      await this.#audit(actor, 'quarantine.release-override', rec, opts, 'ok', { found: result.found });
    }
    return raw;
  }

  async #release(actor: Actor, rec: QuarantineRecord, raw: Buffer, opts: StepOptions): Promise<QuarantineRecord> {
    const id = releaseMessageId(rec);
    // Spooled before the state moves: a crash in between leaves the record approved (or held) with its release
    // recorded under the same id, and the next release finds it instead of sending a second copy.
    await this.#spool(rec, id, Readable.from([raw]), this.#releasedHeader(actor, rec, 'released'));
    await this.#audit(actor, 'quarantine.release', rec, opts, 'ok', { message: id, ...(opts.override?.trim() ? { override: opts.override.trim() } : {}) });
    const released = await this.#d.quarantine.transition(rec.messageId, rec.tenantId, {
      from: stepFrom.release,
      to: 'released',
      by: actor.name,
      reason: opts.reason?.trim() || null,
      at: this.#now(),
      releaseMessageId: id,
      ...(opts.override?.trim() ? { overrideReason: opts.override.trim() } : {}),
    });
    if (!released) throw this.#raced(rec);
    await removeUnheldBytes(this.#d, rec.messageId);
    return released;
  }

  #releasedHeader(actor: Actor, rec: QuarantineRecord, what: 'released' | 'redelivered'): string {
    const value = `${what} from quarantine ${rec.messageId} by ${actor.name} on ${new Date(this.#now()).toISOString()}`;
    return encodeHeader({ name: 'X-Sekisho-Released', value });
  }

  /** Spools `body` behind `header` as a message of our own to the record's release target. */
  async #spool(rec: QuarantineRecord, id: string, body: Readable, header: string): Promise<void> {
    const msg = await this.#d.meta.getMessage(rec.messageId);
    const target = this.#d.tenants.byId(rec.tenantId)?.releaseTo;
    const route = target ? (this.#d.tenants.forAddress(target)?.id ?? OUTBOUND_ROUTE) : rec.tenantId;
    await spoolOwnMessage(this.#d, {
      id,
      origin: 'release',
      body: prefixedStream(Buffer.from(header, 'utf8'), body),
      mailFrom: rec.mailFrom,
      helo: this.#d.hostname,
      route,
      recipients: target ? [target] : rec.recipients,
      subject: rec.subject,
      headerMessageId: msg?.headerMessageId ?? null,
      verdict: msg?.verdict ?? null,
      now: this.#now(),
    });
  }

  async #audit(actor: Actor, action: string, rec: RecordRef, opts: StepOptions, outcome: AuditEntry['outcome'], details: Record<string, unknown>): Promise<void> {
    await this.#d.audit.append({
      at: this.#now(),
      actor: actor.name,
      role: actor.role,
      tenantId: rec.tenantId,
      ip: actor.ip,
      action,
      target: `quarantine:${rec.messageId}/${rec.tenantId}`,
      reason: opts.reason?.trim() || null,
      outcome,
      details,
    });
  }
}
