/**
 * The symbol catalogue: every finding a check may emit, with its group, default score and description.
 * Scores here are defaults only; policy config overrides them (policy.scores). docs/symbols.md mirrors this file
 * (kept in sync by test/unit/scan/symbols.test.ts).
 */
/** Symbol groups: the unit of policy.groupCaps. */
export const symbolGroups = ['headers', 'mime', 'antivirus', 'archive', 'unscannable', 'system'] as const;
export type SymbolGroup = (typeof symbolGroups)[number];

export interface SymbolInfo {
  group: SymbolGroup;
  /** Default score when policy.scores does not name the symbol. */
  score: number;
  description: string;
}

export const symbols = {
  // mime-structure check
  MIME_MALFORMED: { group: 'mime', score: 3, description: 'MIME structure cannot be parsed consistently (missing or unterminated boundary, bad nesting)' },
  MIME_BOUNDARY_MISSING: { group: 'mime', score: 3, description: 'multipart Content-Type without a boundary parameter' },
  MIME_UNTERMINATED_MULTIPART: { group: 'mime', score: 2, description: 'multipart body without its closing boundary' },
  MIME_TOO_DEEP: { group: 'mime', score: 5, description: 'MIME nesting deeper than the parser limit' },
  MIME_BAD_TRANSFER_ENCODING: { group: 'mime', score: 1, description: 'Content-Transfer-Encoding is not 7bit/8bit/binary/base64/quoted-printable' },
  MIME_DOUBLE_EXTENSION: { group: 'mime', score: 4, description: 'attachment named like "invoice.pdf.exe" (hidden executable extension)' },
  MIME_EXECUTABLE_ATTACHMENT: { group: 'mime', score: 4, description: 'attachment with an executable or script file name extension' },
  HEADER_MISSING_DATE: { group: 'headers', score: 1, description: 'no Date header (RFC 5322 §3.6 requires one)' },
  HEADER_MISSING_FROM: { group: 'headers', score: 3, description: 'no From header (RFC 5322 §3.6 requires one)' },
  HEADER_MISSING_MESSAGE_ID: { group: 'headers', score: 0.5, description: 'no Message-ID header' },
  HEADER_DUPLICATE: { group: 'headers', score: 2, description: 'a header that must appear once appears more than once (From, Date, Subject, …)' },
  HEADER_8BIT_UNENCODED: { group: 'headers', score: 0.5, description: 'raw 8-bit bytes in a header without SMTPUTF8 (not RFC 2047-encoded)' },
  HEADER_OVERSIZED: { group: 'headers', score: 2, description: 'header section larger than the parser limit' },
  MIME_FAIL: { group: 'system', score: 0, description: 'the MIME structure check failed (timeout or crash)' },
  // antivirus (issue 3)
  CLAMAV_VIRUS: { group: 'antivirus', score: 100, description: 'ClamAV found malware; details name the signature(s)' },
  CLAMAV_FAIL: { group: 'system', score: 0, description: 'clamd could not be reached, timed out or answered with an error' },
  HASH_BLOCKLISTED: { group: 'antivirus', score: 100, description: "an attachment's SHA-256 is in the SOC's blocklist" },
  // the failSymbol of the hash-blocklist check; it was missing from the catalogue
  HASH_BLOCKLIST_FAIL: { group: 'system', score: 0, description: 'the hash blocklist check failed (timeout or crash)' },
  ARCHIVE_LIMIT_EXCEEDED: { group: 'archive', score: 10, description: 'an archive exceeds depth, expanded size, ratio or entry limits (zip bomb)' },
  // content that can be neither scanned nor converted (unscannable check; zip encryption comes from clamav)
  ARCHIVE_ENCRYPTED: { group: 'unscannable', score: 5, description: 'an encrypted archive (zip ZipCrypto/AES, 7z, RAR) that cannot be scanned (PPAP)' },
  ARCHIVE_UNOPENABLE: { group: 'unscannable', score: 5, description: 'an archive that neither Sekisho nor clamd can open (RAR, LZH, ACE…), so its contents were not scanned' },
  DOC_ENCRYPTED: { group: 'unscannable', score: 5, description: 'a password-protected Office document (OOXML EncryptedPackage, legacy RC4/XOR) that cannot be scanned' },
  PDF_ENCRYPTED: { group: 'unscannable', score: 5, description: 'a PDF that needs a password to open (the empty user password does not open it)' },
  UNSCANNABLE_FAIL: { group: 'system', score: 0, description: 'the unscannable-content check failed (timeout or crash)' },
} as const satisfies Record<string, SymbolInfo>;

export type SymbolName = keyof typeof symbols;

export function symbolInfo(name: string): SymbolInfo | undefined {
  // Own keys only: a plain lookup answered "toString" with Object.prototype.toString, so the config accepted it
  // as a symbol name.
  return Object.hasOwn(symbols, name) ? (symbols as Record<string, SymbolInfo>)[name] : undefined;
}

/** Whether a symbol reports that a check could not run (its engine failed): policy must not deliver. */
export function isFailSymbol(name: string): boolean {
  return name.endsWith('_FAIL');
}
