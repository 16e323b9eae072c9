/**
 * The resident LibreOffice converter against a real soffice: Japanese documents of every Office family come out as
 * PDFs with the expected page count and the Japanese text on them (in a CJK font); a hung or killed soffice costs
 * one document and the next still converts; password-protected documents are refused as encrypted. As root, soffice
 * runs as `nobody`, so an image a document links from a root-only path never reaches the PDF.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LibreOfficeConverter } from '../../src/sanitize/libreoffice.ts';
import { ConversionError } from '../../src/sanitize/types.ts';
import { flatTextWithLinkedImage, JAPANESE_SENTENCE, makeOfficeDocs, type OfficeDoc, type OfficeDocName } from '../helpers/office-docs.ts';

/** Short enough that the hang test stays quick, long enough for a cold first document on a busy machine. */
const TEST_TIMEOUT_MS = 15_000;
const IS_ROOT = process.getuid?.() === 0;
/** The colour of the linked test images: nothing else on the page has it. */
const SECRET_RGB = [0x12, 0xab, 0x34] as const;

let dir: string;
let docs: Record<OfficeDocName, OfficeDoc>;
let lo: LibreOfficeConverter;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-lo-test-'));
  docs = await makeOfficeDocs(dir);
  lo = new LibreOfficeConverter({ workDir: path.join(dir, 'work'), timeoutMs: TEST_TIMEOUT_MS });
  await lo.start();
});

afterAll(async () => {
  await lo?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function pdfFile(pdf: Buffer): string {
  const file = path.join(dir, `check-${Math.random().toString(36).slice(2)}.pdf`);
  writeFileSync(file, pdf);
  return file;
}

function pageCount(file: string): number {
  const info = execFileSync('pdfinfo', [file], { encoding: 'utf8' });
  return Number(/^Pages:\s+(\d+)/m.exec(info)?.[1]);
}

/** The text of each page (pdftotext separates pages with a form feed). */
function pageTexts(file: string): string[] {
  return execFileSync('pdftotext', ['-enc', 'UTF-8', file, '-'], { encoding: 'utf8' }).split('\f').slice(0, -1);
}

/** A killed process may linger as a zombie until init reaps it: that counts as gone. */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Pixels of page 1 within a small distance of `rgb`, rendered by poppler's pdftoppm at 72 dpi. */
async function pixelsOfColour(pdf: Buffer, rgb: readonly [number, number, number]): Promise<number> {
  const png = execFileSync('pdftoppm', ['-r', '72', '-f', '1', '-l', '1', '-png', '-'], { input: pdf, maxBuffer: 64 * 1024 * 1024 });
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let n = 0;
  for (let i = 0; i < data.length; i += info.channels) {
    if (Math.abs(data[i]! - rgb[0]) <= 8 && Math.abs(data[i + 1]! - rgb[1]) <= 8 && Math.abs(data[i + 2]! - rgb[2]) <= 8) n++;
  }
  return n;
}

/** The Uid, Gid and Groups lines of a process, as numbers. */
function credentials(pid: number): { uid: number[]; gid: number[]; groups: number[]; noNewPrivs: string | undefined } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const nums = (key: string) => (new RegExp(`^${key}:(.*)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
  return { uid: nums('Uid'), gid: nums('Gid'), groups: nums('Groups'), noNewPrivs: /^NoNewPrivs:\s*(\d)/m.exec(status)?.[1] };
}

async function expectError(p: Promise<unknown>, reason: string): Promise<ConversionError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConversionError);
  expect((err as ConversionError).reason).toBe(reason);
  return err as ConversionError;
}

describe('LibreOfficeConverter', () => {
  const kinds: OfficeDocName[] = ['docx', 'doc', 'rtf', 'odt', 'xlsx', 'xls', 'ods', 'pptx', 'ppt', 'odp'];
  it.each(kinds)('converts a Japanese .%s to a PDF with the expected pages, none blank', async (kind) => {
    const doc = docs[kind];
    const pdf = await lo.convert(readFileSync(doc.path), kind);
    const file = pdfFile(pdf);
    expect(pageCount(file)).toBe(doc.pages);
    const texts = pageTexts(file);
    expect(texts).toHaveLength(doc.pages);
    for (const t of texts) expect(t).toContain(JAPANESE_SENTENCE);
    // The Japanese is set in a CJK font, not in boxes of a Latin fallback.
    expect(execFileSync('pdffonts', [file], { encoding: 'utf8' })).toMatch(/CJK/);
  });

  it('refuses password-protected documents as encrypted, without waiting for the deadline', async () => {
    const encrypted = [['encrypted.docx', 'docx'], ['encrypted.xlsx', 'xlsx'], ['encrypted.doc', 'doc'], ['encrypted.xls', 'xls'], ['encrypted.odt', 'odt']] as const;
    for (const [name, ext] of encrypted) {
      const err = await expectError(lo.convert(readFileSync(docs[name].path), ext), 'encrypted');
      expect(err.message).toMatch(/password/);
    }
    // Refused as encrypted, not by killing a stuck soffice.
    const pid = lo.pid;
    expect(await lo.convert(readFileSync(docs.docx.path), 'docx')).toBeInstanceOf(Buffer);
    expect(lo.pid).toBe(pid);
  });

  it('refuses 一太郎 and types it does not handle, without starting anything', async () => {
    const err = await expectError(lo.convert(Buffer.from('JTD'), 'jtd'), 'unsupported-type');
    expect(err.message).toContain('一太郎');
    await expectError(lo.convert(Buffer.from('MZ'), 'exe'), 'unsupported-type');
    await expectError(lo.convert(Buffer.from('x'), '../../etc/passwd'), 'unsupported-type');
  });

  it('reports garbage as conversion-failed and keeps working', async () => {
    await expectError(lo.convert(Buffer.from('PK\x03\x04 this is no zip at all'), 'docx'), 'conversion-failed');
    expect(pageCount(pdfFile(await lo.convert(readFileSync(docs.odt.path), 'odt')))).toBe(docs.odt.pages);
  });

  it('times out on a hung soffice, kills it, and converts the next document with a new one', async () => {
    await lo.start();
    const before = lo.restarts;
    const pid = lo.pid!;
    process.kill(pid, 'SIGSTOP');
    const err = await expectError(lo.convert(readFileSync(docs.docx.path), 'docx'), 'timeout');
    expect(err.message).toContain(`${TEST_TIMEOUT_MS} ms`);
    const pdf = await lo.convert(readFileSync(docs.xlsx.path), 'xlsx');
    expect(pageCount(pdfFile(pdf))).toBe(docs.xlsx.pages);
    expect(lo.restarts).toBe(before + 1);
    expect(lo.pid).not.toBe(pid);
    expect(isRunning(pid)).toBe(false);
  });

  it('survives soffice killed in the middle of a document: that one fails, the next converts', async () => {
    await lo.start();
    const before = lo.restarts;
    const pid = lo.pid!;
    // Stopped first so that the document is surely in soffice's hands when the kill lands.
    process.kill(pid, 'SIGSTOP');
    const pending = lo.convert(readFileSync(docs.pptx.path), 'pptx');
    const queued = lo.convert(readFileSync(docs.rtf.path), 'rtf');
    await new Promise((r) => setTimeout(r, 500));
    process.kill(pid, 'SIGKILL');
    await expectError(pending, 'conversion-failed');
    const pdf = await queued;
    expect(pageCount(pdfFile(pdf))).toBe(docs.rtf.pages);
    expect(lo.restarts).toBe(before + 1);
  });

  it('aborts a conversion when the caller aborts the job', async () => {
    await lo.start();
    const pid = lo.pid!;
    process.kill(pid, 'SIGSTOP');
    const controller = new AbortController();
    const pending = lo.convert(readFileSync(docs.odp.path), 'odp', controller.signal);
    setTimeout(() => controller.abort(new Error('job deadline')), 300);
    await expectError(pending, 'timeout');
    await expectError(lo.convert(readFileSync(docs.odp.path), 'odp', AbortSignal.abort()), 'timeout');
    expect(pageCount(pdfFile(await lo.convert(readFileSync(docs.odp.path), 'odp')))).toBe(docs.odp.pages);
  });

  it('serialises concurrent calls and leaves no input or output files behind', async () => {
    const names: OfficeDocName[] = ['docx', 'xlsx', 'pptx', 'rtf'];
    const pdfs = await Promise.all(names.map((n) => lo.convert(readFileSync(docs[n].path), n)));
    pdfs.forEach((pdf, i) => expect(pageCount(pdfFile(pdf))).toBe(docs[names[i]!].pages));
    const work = lo.runDir!;
    expect(execFileSync('ls', ['-A', path.join(work, 'in'), path.join(work, 'out')], { encoding: 'utf8' }).trim().split('\n').filter((l) => l && !l.endsWith(':'))).toEqual([]);
  });

  it('runs soffice under the memory limit and, as root, in its own network namespace', async () => {
    await lo.start();
    const pid = lo.pid!;
    expect(readFileSync(`/proc/${pid}/limits`, 'utf8')).toMatch(/^Max address space\s+2147483648\s+2147483648\s+bytes/m);
    if (process.getuid?.() === 0) expect(readlinkSync(`/proc/${pid}/ns/net`)).not.toBe(readlinkSync('/proc/self/ns/net'));
  });

  it('enforces the memory limit: a soffice that cannot get its memory fails to start, with an error, not a hang', async () => {
    const starved = new LibreOfficeConverter({ workDir: path.join(dir, 'work-mem'), memoryLimitBytes: 64 * 1024 ** 2 });
    try {
      const err = await expectError(starved.start(), 'conversion-failed');
      expect(err.message).toMatch(/could not be started/);
      await expectError(starved.convert(readFileSync(docs.odt.path), 'odt'), 'conversion-failed');
      // One attempt per call, no restart loop in between.
      expect(starved.restarts).toBe(2);
    } finally {
      await starved.stop();
    }
  });

  describe('a document with an image linked from a web server', () => {
    let server: http.Server;
    let requests = 0;
    let doc: Buffer;
    beforeAll(async () => {
      server = http.createServer((_req, res) => {
        requests++;
        res.end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      doc = Buffer.from(flatTextWithLinkedImage(`http://127.0.0.1:${(server.address() as AddressInfo).port}/beacon.png`));
    });
    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('converts without a single request reaching the server', async () => {
      const pdf = await lo.convert(doc, 'fodt');
      expect(pageTexts(pdfFile(pdf)).join('')).toContain(JAPANESE_SENTENCE);
      expect(requests).toBe(0);
    });

    it('still makes no request without the network namespace (the dead proxy in the profile)', async () => {
      const open = new LibreOfficeConverter({ workDir: path.join(dir, 'work-net'), isolateNetwork: false });
      try {
        await open.start();
        expect(readlinkSync(`/proc/${open.pid!}/ns/net`)).toBe(readlinkSync('/proc/self/ns/net'));
        expect(pageTexts(pdfFile(await open.convert(doc, 'fodt'))).join('')).toContain(JAPANESE_SENTENCE);
        expect(requests).toBe(0);
      } finally {
        await open.stop();
      }
    });
  });

  it('stop() kills the group and removes the profile and the run directory; convert after stop is refused', async () => {
    const other = new LibreOfficeConverter({ workDir: path.join(dir, 'work2') });
    await other.start();
    const pid = other.pid!;
    const run = other.runDir!;
    expect(existsSync(path.join(run, 'profile'))).toBe(true);
    // soffice has written its profile (as the account, when root): all of it goes.
    expect(await other.convert(readFileSync(docs.odt.path), 'odt')).toBeInstanceOf(Buffer);
    await other.stop();
    expect(isRunning(pid)).toBe(false);
    expect(existsSync(run)).toBe(false);
    expect(other.runDir).toBeUndefined();
    expect(() => readFileSync(path.join(dir, 'work2', 'profile'))).toThrow(/ENOENT/);
    await expectError(other.convert(readFileSync(docs.odt.path), 'odt'), 'conversion-failed');
  });

  describe.skipIf(!IS_ROOT)('as root', () => {
    const nobody = IS_ROOT ? { uid: Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' })) } : undefined;
    let rootOnly: string;
    let open: string;
    beforeAll(async () => {
      const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: SECRET_RGB[0], g: SECRET_RGB[1], b: SECRET_RGB[2] } } }).png().toBuffer();
      // Like the spool or /root: a 0700 root directory (mkdtemp makes it so).
      rootOnly = mkdtempSync(path.join(os.tmpdir(), 'sekisho-lo-secret-'));
      writeFileSync(path.join(rootOnly, 'secret.png'), png, { mode: 0o600 });
      // The control: the same image where anyone may read it.
      open = mkdtempSync(path.join(os.tmpdir(), 'sekisho-lo-public-'));
      chmodSync(open, 0o755);
      writeFileSync(path.join(open, 'public.png'), png, { mode: 0o644 });
    });
    afterAll(() => {
      for (const d of [rootOnly, open]) if (d) rmSync(d, { recursive: true, force: true });
    });

    it('runs soffice and its bridge as nobody: uid and gid in all four slots, no supplementary groups, no new privileges', async () => {
      await lo.start();
      const soffice = credentials(lo.pid!);
      expect(soffice.uid).toEqual(Array(4).fill(nobody!.uid));
      expect(soffice.gid).toEqual(Array(4).fill(nobody!.gid));
      expect(soffice.groups).toEqual([]);
      expect(soffice.noNewPrivs).toBe('1');
      // The bridge leads the process group.
      const bridge = Number(readFileSync(`/proc/${lo.pid!}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[2]);
      expect(credentials(bridge).uid).toEqual(Array(4).fill(nobody!.uid));
      expect(credentials(bridge).groups).toEqual([]);
    });

    it('keeps its files in a private run directory nobody can enter but not list, its own subdirectories 0700', () => {
      const run = lo.runDir!;
      expect(path.dirname(run)).toBe(os.tmpdir());
      const top = statSync(run);
      expect([top.uid, top.mode & 0o777]).toEqual([0, 0o711]);
      for (const d of ['profile', 'in', 'out', 'tmp', 'home']) {
        const st = statSync(path.join(run, d));
        expect([d, st.uid, st.gid, st.mode & 0o777]).toEqual([d, nobody!.uid, nobody!.gid, 0o700]);
      }
    });

    it('draws an image linked from a world-readable file (the control: the check below can fail)', async () => {
      const pdf = await lo.convert(Buffer.from(flatTextWithLinkedImage(pathToFileURL(path.join(open, 'public.png')).href)), 'fodt');
      expect(await pixelsOfColour(pdf, SECRET_RGB)).toBeGreaterThan(1000);
    });

    it('does not draw an image linked from a root-only file: the document converts without it', async () => {
      const pdf = await lo.convert(Buffer.from(flatTextWithLinkedImage(pathToFileURL(path.join(rootOnly, 'secret.png')).href)), 'fodt');
      expect(pageTexts(pdfFile(pdf)).join('')).toContain(JAPANESE_SENTENCE);
      expect(await pixelsOfColour(pdf, SECRET_RGB)).toBe(0);
    });

    it('the bridge refuses to start soffice as root', () => {
      const r = spawnSync('/usr/bin/python3', [fileURLToPath(new URL('../../src/sanitize/uno-convert.py', import.meta.url)), 'file:///nonexistent', 'x', '0'], {
        encoding: 'utf8',
        input: '',
        timeout: 30_000,
      });
      expect(r.status).toBe(2);
      expect(JSON.parse(r.stdout) as unknown).toEqual({ fatal: expect.stringMatching(/refusing to run LibreOffice as root/) as unknown });
    });
  });
});
