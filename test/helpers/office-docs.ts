/**
 * Japanese Office test documents, made without the internet: flat ODF (.fodt/.fods/.fodp) written here with a
 * known page count (explicit page breaks, one page per sheet, one per slide), then saved as docx/xlsx/pptx/rtf/odt
 * /doc/xls/ppt — and as password-protected .doc/.xls/.odt — by a one-off soffice driven over UNO (its own profile
 * in the given directory, stopped afterwards). LibreOffice 7.4 cannot save an encrypted docx/xlsx, so those are
 * encrypted here the way Office does it (MS-OFFCRYPTO agile encryption, AES-256 + SHA-512, in an OLE2 container).
 */
import { spawn } from 'node:child_process';
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import CFB from 'cfb';

/** Every page of every document carries this sentence (and a page marker), so pdftotext can tell a blank page. */
export const JAPANESE_SENTENCE = '無害化試験の文書です';

/** The password of the encrypted documents. */
export const DOC_PASSWORD = 'himitsu';

export interface OfficeDoc {
  path: string;
  /** Pages LibreOffice's PDF of it must have. */
  pages: number;
}

/** One-off converter: starts soffice.bin, saves each [source, target, filter, password] and quits. */
const SAVE_AS_PY = String.raw`
import json, subprocess, sys, time, uno
from com.sun.star.beans import PropertyValue
from com.sun.star.connection import NoConnectException
def prop(n, v):
    p = PropertyValue(); p.Name = n; p.Value = v; return p
profile, pipe, jobs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
args = ["/usr/lib/libreoffice/program/soffice.bin", "--headless", "--invisible", "--norestore", "--nodefault",
        "--nolockcheck", "-env:UserInstallation=" + profile, "--accept=pipe,name=" + pipe + ";urp;"]
proc = subprocess.Popen(args)
local = uno.getComponentContext()
resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
deadline = time.monotonic() + 60
while True:
    try:
        ctx = resolver.resolve("uno:pipe,name=" + pipe + ";urp;StarOffice.ComponentContext"); break
    except NoConnectException:
        if proc.poll() == 81: proc = subprocess.Popen(args)
        if time.monotonic() > deadline: proc.kill(); sys.exit("soffice did not start")
        time.sleep(0.1)
desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
try:
    for src, dst, filt, password in jobs:
        doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(src), "_blank", 0, (prop("Hidden", True),))
        props = [prop("FilterName", filt), prop("Overwrite", True)]
        if password: props.append(prop("Password", password))
        doc.storeToURL(uno.systemPathToFileUrl(dst), tuple(props))
        doc.close(True)
finally:
    try:
        desktop.terminate()
        proc.wait(10)
    except Exception:
        proc.kill()
        proc.wait()
`;

const NS = [
  'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"',
  'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"',
  'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"',
  'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"',
  'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"',
  'xmlns:presentation="urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"',
  'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"',
  'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"',
  'xmlns:xlink="http://www.w3.org/1999/xlink"',
].join(' ');

function flatOdf(mimetype: string, inner: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<office:document ${NS} office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.${mimetype}">${inner}</office:document>\n`;
}

/** A one-page text document showing an image linked (not embedded) from `url`. */
export function flatTextWithLinkedImage(url: string): string {
  const image = `<draw:frame draw:name="i" text:anchor-type="as-char" svg:width="2cm" svg:height="2cm"><draw:image xlink:href="${url}" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/></draw:frame>`;
  return flatOdf('text', `<office:body><office:text><text:p>${JAPANESE_SENTENCE}${image}</text:p></office:text></office:body>`);
}

/** A text document of `pages` pages, each starting with a page break and the sentence. */
export function flatText(pages: number): string {
  const paras = Array.from({ length: pages }, (_, i) => `<text:p${i > 0 ? ' text:style-name="PB"' : ''}>${JAPANESE_SENTENCE}。${i + 1}頁目（ページ）</text:p>`);
  return flatOdf(
    'text',
    '<office:automatic-styles><style:style style:name="PB" style:family="paragraph"><style:paragraph-properties fo:break-before="page"/></style:style></office:automatic-styles>' +
      `<office:body><office:text>${paras.join('')}</office:text></office:body>`,
  );
}

/** A spreadsheet of `sheets` small sheets (one PDF page each); `rows` rows on the first one make it large. */
export function flatSpreadsheet(sheets: number, rows = 1): string {
  const row = (r: number) =>
    `<table:table-row><table:table-cell office:value-type="string"><text:p>${JAPANESE_SENTENCE} 行${r}</text:p></table:table-cell><table:table-cell office:value-type="float" office:value="${r}"><text:p>${r}</text:p></table:table-cell></table:table-row>`;
  const tables = Array.from({ length: sheets }, (_, i) => `<table:table table:name="シート${i + 1}">${Array.from({ length: i === 0 ? rows : 1 }, (_, r) => row(r + 1)).join('')}</table:table>`);
  return flatOdf('spreadsheet', `<office:body><office:spreadsheet>${tables.join('')}</office:spreadsheet></office:body>`);
}

/** A presentation of `slides` slides, each with one text box. */
export function flatPresentation(slides: number): string {
  const pages = Array.from(
    { length: slides },
    (_, i) =>
      `<draw:page draw:name="s${i + 1}" draw:master-page-name="Default"><draw:frame svg:x="2cm" svg:y="3cm" svg:width="22cm" svg:height="4cm"><draw:text-box><text:p>${JAPANESE_SENTENCE}。スライド${i + 1}</text:p></draw:text-box></draw:frame></draw:page>`,
  );
  return flatOdf(
    'presentation',
    '<office:automatic-styles><style:page-layout style:name="PM1"><style:page-layout-properties fo:page-width="28cm" fo:page-height="21cm"/></style:page-layout></office:automatic-styles>' +
      '<office:master-styles><style:master-page style:name="Default" style:page-layout-name="PM1"/></office:master-styles>' +
      `<office:body><office:presentation>${pages.join('')}</office:presentation></office:body>`,
  );
}

export type OfficeDocName =
  | 'docx' | 'doc' | 'rtf' | 'odt' | 'xlsx' | 'xls' | 'ods' | 'pptx' | 'ppt' | 'odp'
  | 'encrypted.doc' | 'encrypted.xls' | 'encrypted.odt' | 'encrypted.docx' | 'encrypted.xlsx';

const TEXT_PAGES = 3;
const SHEETS = 2;
const SLIDES = 4;

/** Writes the documents into `dir` (one soffice run, a few seconds) and says where each is and its page count. */
export async function makeOfficeDocs(dir: string): Promise<Record<OfficeDocName, OfficeDoc>> {
  const src = { text: path.join(dir, 'src.fodt'), sheet: path.join(dir, 'src.fods'), slides: path.join(dir, 'src.fodp') };
  await writeFile(src.text, flatText(TEXT_PAGES));
  await writeFile(src.sheet, flatSpreadsheet(SHEETS));
  await writeFile(src.slides, flatPresentation(SLIDES));
  const jobs: [OfficeDocName, keyof typeof src, string, string][] = [
    ['docx', 'text', 'MS Word 2007 XML', ''],
    ['doc', 'text', 'MS Word 97', ''],
    ['rtf', 'text', 'Rich Text Format', ''],
    ['odt', 'text', 'writer8', ''],
    ['xlsx', 'sheet', 'Calc MS Excel 2007 XML', ''],
    ['xls', 'sheet', 'MS Excel 97', ''],
    ['ods', 'sheet', 'calc8', ''],
    ['pptx', 'slides', 'Impress MS PowerPoint 2007 XML', ''],
    ['ppt', 'slides', 'MS PowerPoint 97', ''],
    ['odp', 'slides', 'impress8', ''],
    ['encrypted.doc', 'text', 'MS Word 97', DOC_PASSWORD],
    ['encrypted.odt', 'text', 'writer8', DOC_PASSWORD],
    ['encrypted.xls', 'sheet', 'MS Excel 97', DOC_PASSWORD],
  ];
  const pagesOf = { text: TEXT_PAGES, sheet: SHEETS, slides: SLIDES };
  const out = {} as Record<OfficeDocName, OfficeDoc>;
  const list = jobs.map(([name, from, filter, password]) => {
    out[name] = { path: path.join(dir, `doc.${name}`), pages: pagesOf[from] };
    return [src[from], out[name].path, filter, password];
  });
  await saveAs(dir, list);
  for (const kind of ['docx', 'xlsx'] as const) {
    const name = `encrypted.${kind}` as const;
    out[name] = { path: path.join(dir, `doc.${name}`), pages: out[kind].pages };
    await writeFile(out[name].path, encryptOoxml(await readFile(out[kind].path), DOC_PASSWORD));
  }
  return out;
}

/** Runs the one-off converter on `[source, target, filter, password]` jobs. */
export async function saveAs(dir: string, jobs: string[][]): Promise<void> {
  const profile = `file://${path.join(dir, 'save-as-profile')}`;
  const pipe = `sekisho-test-${process.pid}-${Date.now()}`;
  const child = spawn('/usr/bin/python3', ['-c', SAVE_AS_PY, profile, pipe, JSON.stringify(jobs)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { PATH: '/usr/bin:/bin', HOME: dir, SAL_USE_VCLPLUGIN: 'svp' },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`making the Office test documents failed (${code}): ${stderr}`);
}

const SPIN_COUNT = 100_000;
const SEGMENT_BYTES = 4096;
const BLOCK_KEY = {
  verifierInput: Buffer.from('fea7d2763b4b9e79', 'hex'),
  verifierValue: Buffer.from('d7aa0f6d3061344e', 'hex'),
  keyValue: Buffer.from('146e0be7abacd0d6', 'hex'),
  hmacKey: Buffer.from('5fb2ad010cb9e1f6', 'hex'),
  hmacValue: Buffer.from('a0677f02b22c8433', 'hex'),
};

const sha512 = (...parts: Buffer[]) => createHash('sha512').update(Buffer.concat(parts)).digest();

function aes(key: Buffer, iv: Buffer, data: Buffer): Buffer {
  const c = createCipheriv('aes-256-cbc', key, iv.subarray(0, 16)).setAutoPadding(false);
  const padded = Buffer.alloc(Math.ceil(data.length / 16) * 16);
  data.copy(padded);
  return Buffer.concat([c.update(padded), c.final()]);
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** An Office-encrypted OOXML file (what Word/Excel save with "Encrypt with password"): agile, AES-256, SHA-512. */
export function encryptOoxml(plain: Buffer, password: string): Buffer {
  const keySalt = randomBytes(16);
  const passwordSalt = randomBytes(16);
  const secretKey = randomBytes(32);
  let h = sha512(passwordSalt, Buffer.from(password, 'utf16le'));
  for (let i = 0; i < SPIN_COUNT; i++) h = sha512(uint32(i), h);
  const passwordKey = (block: Buffer) => sha512(h, block).subarray(0, 32);

  const segments = [];
  for (let i = 0; i * SEGMENT_BYTES < plain.length; i++) {
    segments.push(aes(secretKey, sha512(keySalt, uint32(i)), plain.subarray(i * SEGMENT_BYTES, (i + 1) * SEGMENT_BYTES)));
  }
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(plain.length));
  const encryptedPackage = Buffer.concat([size, ...segments]);

  const verifier = randomBytes(16);
  const hmacKey = randomBytes(64);
  const hmacValue = createHmac('sha512', hmacKey).update(encryptedPackage).digest();
  const b64 = (b: Buffer) => b.toString('base64');
  const algo = 'saltSize="16" blockSize="16" keyBits="256" hashSize="64" cipherAlgorithm="AES" cipherChaining="ChainingModeCBC" hashAlgorithm="SHA512"';
  const xml =
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n' +
    '<encryption xmlns="http://schemas.microsoft.com/office/2006/encryption" xmlns:p="http://schemas.microsoft.com/office/2006/keyEncryptor/password">' +
    `<keyData ${algo} saltValue="${b64(keySalt)}"/>` +
    `<dataIntegrity encryptedHmacKey="${b64(aes(secretKey, sha512(keySalt, BLOCK_KEY.hmacKey), hmacKey))}" encryptedHmacValue="${b64(aes(secretKey, sha512(keySalt, BLOCK_KEY.hmacValue), hmacValue))}"/>` +
    '<keyEncryptors><keyEncryptor uri="http://schemas.microsoft.com/office/2006/keyEncryptor/password">' +
    `<p:encryptedKey spinCount="${SPIN_COUNT}" ${algo} saltValue="${b64(passwordSalt)}"` +
    ` encryptedVerifierHashInput="${b64(aes(passwordKey(BLOCK_KEY.verifierInput), passwordSalt, verifier))}"` +
    ` encryptedVerifierHashValue="${b64(aes(passwordKey(BLOCK_KEY.verifierValue), passwordSalt, sha512(verifier)))}"` +
    ` encryptedKeyValue="${b64(aes(passwordKey(BLOCK_KEY.keyValue), passwordSalt, secretKey))}"/>` +
    '</keyEncryptor></keyEncryptors></encryption>';
  const info = Buffer.concat([Buffer.from([4, 0, 4, 0, 0x40, 0, 0, 0]), Buffer.from(xml)]);

  const container = CFB.utils.cfb_new();
  CFB.utils.cfb_add(container, '/EncryptionInfo', info);
  CFB.utils.cfb_add(container, '/EncryptedPackage', encryptedPackage);
  return Buffer.from(CFB.write(container, { type: 'buffer' }) as Uint8Array);
}
