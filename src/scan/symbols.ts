/**
 * The symbol catalogue: every finding a check may emit, with its group, default score and description.
 * Scores here are defaults only; policy config overrides them (policy.scores). docs/symbols.md mirrors this file
 * (kept in sync by test/unit/scan/symbols.test.ts).
 */
/** Symbol groups: the unit of policy.groupCaps. */
export const symbolGroups = ['headers', 'mime', 'antivirus', 'archive', 'unscannable', 'system', 'bayes', 'spoofing', 'content', 'phishing', 'rules', 'auth', 'reputation', 'rspamd'] as const;
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
  // bayes check (src/scan/checks/bayes/): one bucket of the model's spam probability, SpamAssassin's boundaries
  BAYES_00: { group: 'bayes', score: -3, description: 'Bayes spam probability below 1 % (the model is sure it is ham)' },
  BAYES_05: { group: 'bayes', score: -1.5, description: 'Bayes spam probability 1 % to 5 %' },
  BAYES_20: { group: 'bayes', score: -0.5, description: 'Bayes spam probability 5 % to 20 %' },
  BAYES_40: { group: 'bayes', score: 0, description: 'Bayes spam probability 20 % to 40 %' },
  BAYES_50: { group: 'bayes', score: 0.5, description: 'Bayes spam probability 40 % to 60 % (no opinion)' },
  BAYES_60: { group: 'bayes', score: 1.5, description: 'Bayes spam probability 60 % to 80 %' },
  BAYES_80: { group: 'bayes', score: 3, description: 'Bayes spam probability 80 % to 95 %' },
  BAYES_95: { group: 'bayes', score: 5, description: 'Bayes spam probability 95 % to 99 %' },
  BAYES_99: { group: 'bayes', score: 6, description: 'Bayes spam probability 99 % or more (the model is sure it is spam)' },
  BAYES_UNTRAINED: { group: 'bayes', score: 0, description: 'the Bayes model has not learned enough spam and ham yet (antispam.bayes.minSpamMessages/minHamMessages)' },
  BAYES_FAIL: { group: 'system', score: 0, description: 'the Bayes check failed (model store unreadable, timeout or crash)' },
  // spoofing check (src/scan/checks/spoofing/): our own municipalities impersonated from the internet
  SPOOF_OWN_DOMAIN: { group: 'spoofing', score: 8, description: 'MAIL FROM or header From is in a tenant domain, but the mail comes from the internet (not a trusted relay)' },
  SPOOF_LOOKALIKE_DOMAIN: { group: 'spoofing', score: 8, description: 'MAIL FROM or header From is a look-alike of a tenant domain (homoglyph, IDN, lg-jp variant, swapped/dropped label, one edit)' },
  SPOOF_DISPLAY_NAME: { group: 'spoofing', score: 4, description: 'the From display name names a tenant (甲市, its domain) or a configured official over an address outside our domains' },
  SPOOFING_FAIL: { group: 'system', score: 0, description: 'the spoofing check failed (timeout or crash)' },
  // rules check (src/scan/checks/rules/): built-in header, URL and Japanese phishing rules; rule-file rules are RULE_<NAME>
  HEADER_DATE_MALFORMED: { group: 'headers', score: 1, description: 'the Date header is not an RFC 5322 date-time' },
  HEADER_MESSAGE_ID_MALFORMED: { group: 'headers', score: 1, description: 'the Message-ID header is not <left@right>' },
  REPLYTO_OTHER_DOMAIN: { group: 'headers', score: 1, description: 'Reply-To is in another registrable domain than From (replies go elsewhere)' },
  HTML_ONLY_HIDDEN_TEXT: { group: 'content', score: 2.5, description: 'HTML-only body with text hidden from the reader (display:none, zero font size, text colour = background…)' },
  LINK_TEXT_DOMAIN_MISMATCH: { group: 'content', score: 3, description: 'a link whose text shows one domain and whose target is in another' },
  URL_IP_LITERAL: { group: 'content', score: 2.5, description: 'a link to an IP address instead of a host name' },
  URL_SHORTENER: { group: 'content', score: 1.5, description: 'a link through a URL shortener (bit.ly, t.co, tinyurl.com…) that hides its target' },
  PHISH_JA_ACCOUNT_SUSPENDED: { group: 'phishing', score: 3, description: 'Japanese "your account is suspended/restricted" wording with a link outside official domains' },
  PHISH_JA_IDENTITY_CHECK: { group: 'phishing', score: 3, description: 'Japanese identity-confirmation wording (本人確認, お客様情報の確認) with a link outside official domains' },
  PHISH_JA_PARCEL_REDELIVERY: { group: 'phishing', score: 3, description: 'Japanese parcel-redelivery wording (不在…再配達) with a link outside official domains' },
  PHISH_JA_TAX_REFUND: { group: 'phishing', score: 3, description: 'Japanese tax-refund or unpaid-tax wording (還付金, 未払い…税) with a link outside official domains' },
  PHISH_JA_CARD_FRAUD: { group: 'phishing', score: 3, description: 'Japanese "your credit card was used fraudulently" wording with a link outside official domains' },
  PHISH_JA_PAYMENT_UPDATE: { group: 'phishing', score: 3, description: 'Japanese "update your payment method" wording with a link outside official domains' },
  PHISH_JA_URGENT_DEADLINE: { group: 'phishing', score: 2, description: 'Japanese urgency (緊急/至急) with a 24/48-hour deadline and a link outside official domains' },
  RULES_FAIL: { group: 'system', score: 0, description: 'the rules check failed (timeout or crash)' },
  // auth check (src/scan/checks/auth/): SPF, DKIM, DMARC, ARC; details are Authentication-Results properties
  SPF_PASS: { group: 'auth', score: 0, description: 'SPF pass: the MAIL FROM (or HELO) domain authorises the connecting IP' },
  SPF_HARDFAIL: { group: 'auth', score: 2, description: 'SPF fail: the MAIL FROM (or HELO) domain says the connecting IP must not send its mail (-all)' },
  SPF_SOFTFAIL: { group: 'auth', score: 1, description: 'SPF softfail: the domain says the connecting IP is probably not allowed (~all)' },
  SPF_NEUTRAL: { group: 'auth', score: 0.5, description: 'SPF neutral: the domain makes no assertion about the connecting IP (?all)' },
  SPF_NONE: { group: 'auth', score: 0.5, description: 'SPF none: the MAIL FROM (or HELO) domain publishes no SPF record' },
  SPF_PERMERROR: { group: 'auth', score: 1, description: 'SPF permerror: the SPF record is broken (syntax, more than 10 DNS lookups, several records)' },
  SPF_TEMPERROR: { group: 'system', score: 0, description: 'SPF temperror: a DNS lookup for SPF got no answer (timeout, SERVFAIL); policy must not deliver as if authenticated' },
  DKIM_PASS: { group: 'auth', score: 0, description: 'a DKIM signature verifies (details: header.d and header.s of each)' },
  DKIM_INVALID: { group: 'auth', score: 1, description: 'a DKIM signature does not verify (bad signature, body changed, expired, key too short)' },
  DKIM_NONE: { group: 'auth', score: 0, description: 'the message has no (usable) DKIM signature' },
  DKIM_PERMERROR: { group: 'auth', score: 0.5, description: 'a DKIM signature cannot be checked: its key is missing or unusable in DNS' },
  DKIM_TEMPERROR: { group: 'system', score: 0, description: 'DKIM temperror: the key lookup got no answer (timeout, SERVFAIL); policy must not deliver as if authenticated' },
  DMARC_PASS: { group: 'auth', score: 0, description: 'DMARC pass: SPF or DKIM passed for a domain aligned with the From domain' },
  DMARC_POLICY_REJECT: { group: 'auth', score: 6, description: 'DMARC fails and the From domain asks receivers to reject such mail (p=reject)' },
  DMARC_POLICY_QUARANTINE: { group: 'auth', score: 4, description: 'DMARC fails and the From domain asks receivers to quarantine such mail (p=quarantine)' },
  DMARC_POLICY_NONE: { group: 'auth', score: 1, description: 'DMARC fails; the From domain only monitors (p=none)' },
  DMARC_NONE: { group: 'auth', score: 0.5, description: 'the From domain publishes no DMARC record' },
  DMARC_PERMERROR: { group: 'auth', score: 2, description: 'DMARC cannot be evaluated: no single From address (missing, or several addresses)' },
  DMARC_TEMPERROR: { group: 'system', score: 0, description: 'DMARC temperror: the DMARC record, or an SPF/DKIM lookup it depends on, got no answer; policy must not deliver as if authenticated' },
  ARC_PASS: { group: 'auth', score: 0, description: 'the ARC chain of the forwarders validates' },
  ARC_INVALID: { group: 'auth', score: 1, description: 'the message has an ARC chain that does not validate' },
  ARC_NONE: { group: 'auth', score: 0, description: 'the message has no ARC chain' },
  ARC_TEMPERROR: { group: 'system', score: 0, description: 'the ARC chain could not be validated because a key lookup got no answer' },
  AUTH_RESULTS_FORGED: { group: 'auth', score: 2, description: 'an Authentication-Results header claiming our own hostname came from outside (RFC 8601 §5); delivery removes it' },
  AUTH_FAIL: { group: 'system', score: 0, description: 'the sender authentication check failed (timeout or crash)' },
  // reputation check (src/scan/checks/reputation/): DNSBL for the client IP, URIBL/DBL for body URL domains
  RBL_LISTED: { group: 'reputation', score: 6, description: 'the connecting IP is listed as a spam source by a configured DNSBL (details: zone and return code)' },
  RBL_POLICY: { group: 'reputation', score: 2, description: 'the connecting IP is in a DNSBL policy list (dynamic or end-user address that should not send mail directly)' },
  URIBL_LISTED: { group: 'reputation', score: 6, description: 'a domain of a URL in the body is listed by a configured URI blocklist' },
  DBL_LISTED: { group: 'reputation', score: 6, description: 'a domain of a URL in the body is listed by a configured domain blocklist (DBL)' },
  RBL_TEMPERROR: { group: 'system', score: 0, description: 'a DNSBL lookup for the connecting IP got no answer or an error answer (timeout, SERVFAIL, 127.255.255.x refusal)' },
  URIBL_TEMPERROR: { group: 'system', score: 0, description: 'a URIBL/DBL lookup for a body URL domain got no answer or an error answer' },
  REPUTATION_FAIL: { group: 'system', score: 0, description: 'the reputation check failed (timeout or crash)' },
  // rspamd check (src/scan/checks/rspamd/): Rspamd's action; its own symbols come as unlisted RSPAMD_<NAME> (group rspamd, score 0)
  RSPAMD_REJECT: { group: 'rspamd', score: 10, description: 'Rspamd says reject (its score reached its reject threshold, or a rule such as GTUBE forces it)' },
  RSPAMD_SOFT_REJECT: { group: 'rspamd', score: 0, description: 'Rspamd says try again later (soft reject, e.g. its rate limits)' },
  RSPAMD_REWRITE_SUBJECT: { group: 'rspamd', score: 5, description: 'Rspamd says spam: rewrite the subject' },
  RSPAMD_ADD_HEADER: { group: 'rspamd', score: 5, description: 'Rspamd says probable spam: add a spam header' },
  RSPAMD_GREYLIST: { group: 'rspamd', score: 0, description: 'Rspamd says greylist (suspicious, below its spam threshold)' },
  RSPAMD_NO_ACTION: { group: 'rspamd', score: 0, description: 'Rspamd found nothing to act on' },
  RSPAMD_FAIL: { group: 'system', score: 0, description: 'Rspamd could not be reached, timed out or gave an answer that is not its JSON' },
} as const satisfies Record<string, SymbolInfo>;

export type SymbolName = keyof typeof symbols;

export function symbolInfo(name: string): SymbolInfo | undefined {
  // Own keys only: a plain lookup answered "toString" with Object.prototype.toString, so the config accepted it
  // as a symbol name.
  return Object.hasOwn(symbols, name) ? (symbols as Record<string, SymbolInfo>)[name] : undefined;
}

/** Whether a symbol reports that a check could not run (its engine failed): policy must not deliver. */
export function isFailSymbol(name: string): boolean {
  // `_TEMPERROR`: a DNS answer that did not come (SPF, DKIM, DMARC, ARC, DNSBL) is a check that could not run.
  return name.endsWith('_FAIL') || name.endsWith('_TEMPERROR');
}
