/**
 * The true type of an attachment, by magic bytes and structure (DESIGN §6): what the sanitizer converts and what
 * the unscannable check inspects. file-type does the broad magic-byte detection; OLE2 containers, zips, text and
 * a few formats file-type does not know are refined here.
 *
 * The rule a reader must not break: a file name or Content-Type never decides the type of binary data. A hint
 * may only narrow data that is already text: to 'csv' (.csv / text/csv), 'script' (.js, .vbs, .ps1, .bat…) or
 * 'html' (.htm, .html). An .exe named "report.pdf" is 'exe'; a text file named "run.bat" is 'script'.
 *
 * Zip-based code packages (jar, apk, xpi, crx) are 'exe': they run when opened (Java, Android, a browser) and
 * their entries (class files) are nothing a reader needs; treating them as archives would unpack them as if
 * they were documents. Other zip-based formats with no converter (epub, vsdx, odg…) are 'zip'.
 */
import { fileTypeFromBuffer } from 'file-type';
import { cfbStream, readCfb, zipEntries } from './encryption.ts';

export type TrueType =
  | 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'bmp'
  | 'pdf'
  | 'docx' | 'xlsx' | 'pptx' | 'odt' | 'ods' | 'odp' | 'doc' | 'xls' | 'ppt' | 'rtf' | 'jtd'
  | 'ooxml-encrypted'
  | 'zip' | '7z' | 'rar' | 'gzip' | 'tar' | 'lzh' | 'cab' | 'iso'
  | 'exe' | 'elf' | 'macho' | 'msi' | 'lnk' | 'script' | 'html' | 'svg' | 'eml'
  | 'text' | 'csv' | 'unknown';
export type TypeCategory = 'image' | 'pdf' | 'office' | 'archive' | 'executable' | 'text' | 'unknown';
export interface TypeInfo {
  type: TrueType;
  category: TypeCategory;
  /** canonical extension for output names */
  ext: string;
  mime: string;
}

const INFO: Record<TrueType, Omit<TypeInfo, 'type'>> = {
  jpeg: { category: 'image', ext: 'jpg', mime: 'image/jpeg' },
  png: { category: 'image', ext: 'png', mime: 'image/png' },
  gif: { category: 'image', ext: 'gif', mime: 'image/gif' },
  webp: { category: 'image', ext: 'webp', mime: 'image/webp' },
  tiff: { category: 'image', ext: 'tif', mime: 'image/tiff' },
  bmp: { category: 'image', ext: 'bmp', mime: 'image/bmp' },
  pdf: { category: 'pdf', ext: 'pdf', mime: 'application/pdf' },
  docx: { category: 'office', ext: 'docx', mime: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document' },
  xlsx: { category: 'office', ext: 'xlsx', mime: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' },
  pptx: { category: 'office', ext: 'pptx', mime: 'application/vnd.openxmlformats-officedocument.presentationml.presentation' },
  odt: { category: 'office', ext: 'odt', mime: 'application/vnd.oasis.opendocument.text' },
  ods: { category: 'office', ext: 'ods', mime: 'application/vnd.oasis.opendocument.spreadsheet' },
  odp: { category: 'office', ext: 'odp', mime: 'application/vnd.oasis.opendocument.presentation' },
  doc: { category: 'office', ext: 'doc', mime: 'application/msword' },
  xls: { category: 'office', ext: 'xls', mime: 'application/vnd.ms-excel' },
  ppt: { category: 'office', ext: 'ppt', mime: 'application/vnd.ms-powerpoint' },
  rtf: { category: 'office', ext: 'rtf', mime: 'application/rtf' },
  jtd: { category: 'office', ext: 'jtd', mime: 'application/x-js-taro' },
  'ooxml-encrypted': { category: 'office', ext: 'bin', mime: 'application/x-ooxml-encrypted' },
  zip: { category: 'archive', ext: 'zip', mime: 'application/zip' },
  '7z': { category: 'archive', ext: '7z', mime: 'application/x-7z-compressed' },
  rar: { category: 'archive', ext: 'rar', mime: 'application/vnd.rar' },
  gzip: { category: 'archive', ext: 'gz', mime: 'application/gzip' },
  tar: { category: 'archive', ext: 'tar', mime: 'application/x-tar' },
  lzh: { category: 'archive', ext: 'lzh', mime: 'application/x-lzh-compressed' },
  cab: { category: 'archive', ext: 'cab', mime: 'application/vnd.ms-cab-compressed' },
  iso: { category: 'archive', ext: 'iso', mime: 'application/x-iso9660-image' },
  exe: { category: 'executable', ext: 'exe', mime: 'application/x-msdownload' },
  elf: { category: 'executable', ext: 'elf', mime: 'application/x-elf' },
  macho: { category: 'executable', ext: 'macho', mime: 'application/x-mach-binary' },
  msi: { category: 'executable', ext: 'msi', mime: 'application/x-msi' },
  lnk: { category: 'executable', ext: 'lnk', mime: 'application/x-ms-shortcut' },
  script: { category: 'executable', ext: 'txt', mime: 'text/plain' },
  html: { category: 'text', ext: 'html', mime: 'text/html' },
  svg: { category: 'image', ext: 'svg', mime: 'image/svg+xml' },
  eml: { category: 'text', ext: 'eml', mime: 'message/rfc822' },
  text: { category: 'text', ext: 'txt', mime: 'text/plain' },
  csv: { category: 'text', ext: 'csv', mime: 'text/csv' },
  unknown: { category: 'unknown', ext: 'bin', mime: 'application/octet-stream' },
};

function info(type: TrueType): TypeInfo {
  return { type, ...INFO[type] };
}

/** file-type's extension → ours, where the mapping is one to one or a family (macro-enabled, templates). */
const FROM_FILE_TYPE: Record<string, TrueType> = {
  jpg: 'jpeg', png: 'png', apng: 'png', gif: 'gif', webp: 'webp', tif: 'tiff', bmp: 'bmp',
  pdf: 'pdf', ai: 'pdf',
  docx: 'docx', docm: 'docx', dotx: 'docx', dotm: 'docx',
  xlsx: 'xlsx', xlsm: 'xlsx', xltx: 'xlsx', xltm: 'xlsx',
  pptx: 'pptx', pptm: 'pptx', potx: 'pptx', potm: 'pptx', ppsx: 'pptx', ppsm: 'pptx',
  odt: 'odt', ott: 'odt', ods: 'ods', ots: 'ods', odp: 'odp', otp: 'odp',
  rtf: 'rtf',
  zip: 'zip', epub: 'zip', vsdx: 'zip', '3mf': 'zip', odg: 'zip', otg: 'zip',
  jar: 'exe', apk: 'exe', xpi: 'exe', crx: 'exe', class: 'exe', chm: 'exe',
  '7z': '7z', rar: 'rar', gz: 'gzip', 'tar.gz': 'gzip', tar: 'tar', lzh: 'lzh', cab: 'cab',
  exe: 'exe', elf: 'elf', macho: 'macho', lnk: 'lnk',
};

/**
 * Root storage CLSIDs of Windows Installer files, as stored (little-endian fields), the way cfb reports them:
 * {000C1084-…} package (.msi), {000C1086-…} patch (.msp), {000C1082-…} transform (.mst).
 */
const MSI_CLSIDS = new Set(['84100c0000000000c000000000000046', '86100c0000000000c000000000000046', '82100c0000000000c000000000000046']);

function oleType(data: Buffer): TrueType {
  const cfb = readCfb(data);
  if (!cfb) return 'unknown';
  if (cfbStream(cfb, 'EncryptedPackage') && cfbStream(cfb, 'EncryptionInfo')) return 'ooxml-encrypted';
  if (cfbStream(cfb, 'WordDocument')) return 'doc';
  if (cfbStream(cfb, 'Workbook') || cfbStream(cfb, 'Book')) return 'xls';
  if (cfbStream(cfb, 'PowerPoint Document')) return 'ppt';
  if (MSI_CLSIDS.has(cfb.FileIndex[0]?.clsid?.toLowerCase() ?? '')) return 'msi';
  // 一太郎 documents keep their text in JustSystems' segmented storage ("\x04JSRV_SegmentInformation" and
  // friends) next to a "DocumentText" stream.
  if (cfb.FullPaths.some((p) => /JSRV_|\/DocumentText$/.test(p))) return 'jtd';
  return 'unknown';
}

/** The stored "mimetype" member of an ODF package, or '' (ODF requires it first and uncompressed). */
function odfMimetype(data: Buffer): string {
  const entry = zipEntries(data)?.find((e) => e.name === 'mimetype');
  if (!entry || entry.method !== 0 || entry.localOffset + 30 > data.length) return '';
  const start = entry.localOffset + 30 + data.readUInt16LE(entry.localOffset + 26) + data.readUInt16LE(entry.localOffset + 28);
  return data.toString('latin1', start, Math.min(start + entry.compressedSize, start + 100, data.length));
}

/** A zip that file-type took for a plain zip may still be an OOXML or ODF package written in an unusual order. */
function zipType(data: Buffer): TrueType {
  const names = zipEntries(data)?.map((e) => e.name) ?? [];
  if (names.includes('[Content_Types].xml')) {
    if (names.some((n) => n.startsWith('word/'))) return 'docx';
    if (names.some((n) => n.startsWith('xl/'))) return 'xlsx';
    if (names.some((n) => n.startsWith('ppt/'))) return 'pptx';
  }
  const odf = odfMimetype(data);
  if (odf === INFO.odt.mime) return 'odt';
  if (odf === INFO.ods.mime) return 'ods';
  if (odf === INFO.odp.mime) return 'odp';
  if (names.includes('META-INF/MANIFEST.MF') && names.some((n) => n.endsWith('.class'))) return 'exe';
  return 'zip';
}

/** ISO 9660 / UDF volume descriptors start at sector 16 (byte 32768) with a five-letter identifier. */
function isIso(data: Buffer): boolean {
  const id = data.toString('latin1', 0x8001, 0x8006);
  return id === 'CD001' || id === 'BEA01' || id === 'NSR02' || id === 'NSR03';
}

const DECODERS = ['utf-8', 'shift_jis', 'euc-jp', 'iso-2022-jp'] as const;

/** Whether the bytes are text in one of the encodings Japanese mail uses: no NUL, no stray control bytes. */
export function isText(data: Buffer): boolean {
  // An index loop: the iterator form cost about 0.4 ms per 100 KB.
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    // TAB, LF, FF, CR, SUB (DOS end of file) and ESC (ISO-2022-JP's shifts) are text; other C0 bytes are not
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0c && b !== 0x0d && b !== 0x1a && b !== 0x1b) return false;
  }
  return DECODERS.some((enc) => {
    try {
      new TextDecoder(enc, { fatal: true }).decode(data);
      return true;
    } catch {
      return false;
    }
  });
}

/** Bytes of the start of a text looked at for HTML, SVG, mail and script markers. */
const TEXT_SNIFF_BYTES = 8192;

const SCRIPT_MARKERS = [
  /^#!/,
  /^\s*@?echo\s+off\b/im,
  /<hta:application\b/i,
  /\bWScript\.(Shell|CreateObject|Echo|Sleep|Arguments)\b/i,
  /\bnew\s+ActiveXObject\s*\(/i,
  /\bCreateObject\s*\(\s*"(WScript|Scripting|Shell|MSXML2|ADODB)\./i,
  /\b(Invoke-Expression|Invoke-WebRequest|Start-BitsTransfer|Set-ExecutionPolicy)\b/i,
  /\bNew-Object\s+(System\.)?Net\.WebClient\b/i,
  /\[(System\.)?Convert\]::FromBase64String\b/i,
];
/** Windows Script Host files: a <job> or <package> holding <script> elements. */
function isWsf(head: string): boolean {
  return /<(job|package)\b/i.test(head) && /<script\b/i.test(head);
}
const SCRIPT_EXTENSIONS = new Set(['js', 'jse', 'vbs', 'vbe', 'ps1', 'psm1', 'bat', 'cmd', 'hta', 'wsf', 'wsh', 'sh', 'py', 'pl']);
const HTML_EXTENSIONS = new Set(['htm', 'html', 'xhtml', 'shtml']);
/** Whitespace, comments and an XML declaration before the root element; each piece matches one way only. */
const PROLOGUE = String.raw`(?:\s|<!--(?:(?!-->)[\s\S])*-->|<\?xml[^>]*>|<!doctype\s+svg[^>]*>)*`;
const HTML_START = new RegExp(`^${PROLOGUE}<(!doctype\\s+html|html|head|body|script|iframe|meta|title|frameset)\\b`, 'i');
const SVG_START = new RegExp(`^${PROLOGUE}<svg\\b`, 'i');
/** RFC 5322 header fields that, two or more at the start of a text, make it a message. */
const MAIL_HEADER = /^(received|from|to|subject|date|message-id|mime-version|return-path|content-type):/i;

function looksLikeMail(head: string): boolean {
  const lines = head.split(/\r?\n/, 40);
  let known = 0;
  for (const line of lines) {
    if (line === '') break;
    if (/^[ \t]/.test(line)) continue;
    if (!/^[\x21-\x39\x3b-\x7e]+:/.test(line)) return false;
    if (MAIL_HEADER.test(line)) known++;
  }
  return known >= 2;
}

function extensionOf(filename: string | null | undefined): string {
  const m = /\.([A-Za-z0-9]+)[\s.]*$/.exec(filename ?? '');
  return m?.[1]?.toLowerCase() ?? '';
}

function textType(data: Buffer, hints: { filename?: string | null; contentType?: string | null }): TrueType {
  const head = data.toString('latin1', 0, TEXT_SNIFF_BYTES).replace(/^\xef\xbb\xbf/, '');
  const ext = extensionOf(hints.filename);
  if (SCRIPT_MARKERS.some((re) => re.test(head)) || isWsf(head) || SCRIPT_EXTENSIONS.has(ext)) return 'script';
  if (SVG_START.test(head)) return 'svg';
  if (HTML_START.test(head) || HTML_EXTENSIONS.has(ext)) return 'html';
  if (looksLikeMail(head)) return 'eml';
  if (ext === 'csv' || ext === 'tsv' || /^text\/(csv|tab-separated-values)\b/i.test(hints.contentType ?? '')) return 'csv';
  return 'text';
}

/** The true type of `data`. Hints only narrow text (see the file header); they never make binary data text. */
export async function detectType(data: Buffer, hints: { filename?: string | null; contentType?: string | null } = {}): Promise<TypeInfo> {
  const ft = await fileTypeFromBuffer(data).catch(() => undefined);
  if (ft) {
    if (ft.ext === 'cfb') return info(oleType(data));
    if (ft.ext === 'zip') return info(zipType(data));
    const mapped = FROM_FILE_TYPE[ft.ext];
    if (mapped) return info(mapped);
  }
  if (isIso(data)) return info('iso');
  // Text formats file-type names (xml, ics, vcf…) are text like any other: scripts and HTML are told apart below.
  if (data.length > 0 && isText(data)) return info(textType(data, hints));
  return info('unknown');
}
