/**
 * The error catalogue: every error Sekisho raises on purpose has a stable code `SEKISHO_ERR_<AREA>_<WHAT>`.
 * docs/errors.md lists the same codes; test/unit/errors.test.ts keeps the two in sync.
 */
export const errorCodes = {
  SEKISHO_ERR_CONFIG_INVALID: 'the configuration file failed validation',
  SEKISHO_ERR_CONFIG_READ: 'the configuration file could not be read or parsed as YAML',
  SEKISHO_ERR_SPOOL_WRITE: 'a message could not be written and fsync\'d to the spool',
  SEKISHO_ERR_SPOOL_NOT_FOUND: 'a message id has no file in the spool',
  SEKISHO_ERR_SPOOL_ID: 'a message id is not 8 to 64 characters of [0-9a-z]',
  SEKISHO_ERR_SPOOL_READ: 'a spooled message could not be read or listed',
  SEKISHO_ERR_SPOOL_DELETE: 'a spooled message could not be deleted',
  SEKISHO_ERR_META_NOT_FOUND: 'a message id has no metadata row',
  SEKISHO_ERR_META_DUPLICATE: 'a message id already has a metadata row',
  SEKISHO_ERR_META_SCHEMA: 'the metadata database has a newer schema than this Sekisho knows',
  SEKISHO_ERR_META_UNAVAILABLE: 'a metadata write was refused: the store is closed or its writer thread stopped',
  SEKISHO_ERR_META_QUERY: 'a metadata search or count was given a bad page, time range or bucket width',
  SEKISHO_ERR_QUEUE_ENQUEUE: 'a job could not be added to Redis',
  SEKISHO_ERR_SMTP_SIZE: 'a message exceeded smtp.maxMessageBytes',
  SEKISHO_ERR_DELIVERY_ROUTE: 'a recipient has no route (no tenant owns its domain)',
  SEKISHO_ERR_SERVICE_START: 'a managed service (redis-server, clamd) could not be started',
  SEKISHO_ERR_SCAN_TIMEOUT: 'a check did not finish before scan.checkTimeoutMs',
  SEKISHO_ERR_CLAMAV_UNAVAILABLE: 'clamd could not be reached or answered with an error',
  SEKISHO_ERR_HASH_BLOCKLIST_INVALID: 'the hash blocklist file could not be read or has a malformed line',
  SEKISHO_ERR_AUTH_DUPLICATE: 'an account with that user name already exists',
  SEKISHO_ERR_AUTH_INVALID: 'an account field is not acceptable (role, tenant, weak password, bad TOTP code)',
  SEKISHO_ERR_AUTH_NOT_FOUND: 'no account, session or token has that id or name',
  SEKISHO_ERR_AUDIT_CHAIN: "the audit log's hash chain does not verify: a row was edited, removed or inserted",
  SEKISHO_ERR_AUDIT_WRITE: 'an audit row could not be appended (the action it records is refused)',
  SEKISHO_ERR_QUARANTINE_NOT_FOUND: 'no quarantine record for that message and tenant (or not visible to the caller)',
  SEKISHO_ERR_QUARANTINE_STATE: "the release workflow step is not allowed from the record's current state (already released, expired, deleted)",
  SEKISHO_ERR_QUARANTINE_RESCAN: 'the rescan before a release failed or still detects malware',
  SEKISHO_ERR_QUARANTINE_QUERY: 'a quarantine search has a malformed paging cursor or an unknown state',
  SEKISHO_ERR_LIST_PATTERN: 'an allow/block list entry is not user@domain, domain, *.domain, an IP address or a CIDR block',
  SEKISHO_ERR_LIST_FULL: "a tenant's allow or block list already holds the most entries the console may add",
  SEKISHO_ERR_BACKUP_FAILED: 'a backup could not be taken or written (the target exists, a database or file could not be copied)',
  SEKISHO_ERR_RESTORE_CHECKSUM: "a backup's manifest is missing or a file in it does not match its size and SHA-256",
  SEKISHO_ERR_RESTORE_TARGET: 'the restore target dataDir is not empty, or a Sekisho instance is running on it',
} as const;

export type ErrorCode = keyof typeof errorCodes;

export class SekishoError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SekishoError';
    this.code = code;
  }
}
