import { createHash } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SekishoError } from '../../../../src/errors.ts';
import { createHashBlocklistCheck, parseHashBlocklist, type HashBlocklistCheck } from '../../../../src/scan/checks/hash-blocklist.ts';
import { parseMessage } from '../../../../src/scan/mime-parts.ts';
import { captureLog, checkContext, fixture } from '../../../helpers/check-context.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const OTHER = 'a'.repeat(64);

describe('parseHashBlocklist', () => {
  it('reads hashes, optional names, comments, CRLF and a BOM; hashes are case-insensitive', () => {
    const text = `\uFEFF# SOC blocklist\r\n${'AB'.repeat(32)}  請求書.exe  # JPCERT 2024-05\r\n\r\n   ${'cd'.repeat(32)}\r\n`;
    expect(parseHashBlocklist(text)).toEqual(
      new Map([
        ['ab'.repeat(32), '請求書.exe'],
        ['cd'.repeat(32), ''],
      ]),
    );
  });

  it('names the first malformed line', () => {
    expect(() => parseHashBlocklist(`${OTHER}\n# ok\n${'ab'.repeat(31)} too short\n`)).toThrow(/^line 3: expected a 64-digit hex SHA-256/);
  });
});

describe('hash-blocklist check', () => {
  let dir: string;
  let file: string;
  let check: HashBlocklistCheck | undefined;
  const eml = fixture('av-clean-japanese-zip.eml');
  let zipHash: string;

  /** Replaces the file the way deploy tools do: write a temporary file, rename it over the old one. */
  const publish = (text: string) => {
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-hashbl-'));
    file = path.join(dir, 'blocklist.txt');
    const zip = (await parseMessage(eml)).parts.find((p) => p.filename === 'shiryo.zip');
    zipHash = sha256(zip!.content);
  });
  afterEach(() => {
    check?.close();
    check = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to start on a missing or malformed file (there is no last good list yet)', () => {
    const { log } = captureLog();
    expect(() => createHashBlocklistCheck({ file, log })).toThrow(SekishoError);
    writeFileSync(file, 'not a hash\n');
    expect(() => createHashBlocklistCheck({ file, log })).toThrow(expect.objectContaining({ code: 'SEKISHO_ERR_HASH_BLOCKLIST_INVALID' }));
  });

  it('emits HASH_BLOCKLISTED for a decoded attachment whose SHA-256 is listed, with the part and the listed name', async () => {
    writeFileSync(file, `${OTHER}\n${zipHash.toUpperCase()} Emotet dropper  # SOC ticket 42\n`);
    check = createHashBlocklistCheck({ file, log: captureLog().log });
    expect(await check.run(checkContext(eml))).toEqual([{ name: 'HASH_BLOCKLISTED', details: [`part 2 (shiryo.zip): sha256 ${zipHash} Emotet dropper`] }]);
    expect(await check.run(checkContext(fixture('av-ppap-encrypted-zip.eml')))).toEqual([]);
  });

  it('picks up a new list when the file is replaced, without a restart', async () => {
    writeFileSync(file, `${OTHER}\n`);
    check = createHashBlocklistCheck({ file, log: captureLog().log });
    expect(await check.run(checkContext(eml))).toEqual([]);
    publish(`${OTHER}\n${zipHash}\n`);
    await vi.waitFor(async () => expect((await check!.run(checkContext(eml))).map((h) => h.name)).toEqual(['HASH_BLOCKLISTED']), { timeout: 10_000, interval: 50 });
    expect(check.size).toBe(2);
  });

  it('a broken file keeps the last good list in force and logs the error once', async () => {
    writeFileSync(file, `${zipHash}\n`);
    const cap = captureLog();
    check = createHashBlocklistCheck({ file, log: cap.log });
    publish(`${zipHash}\nthis line is broken\n`);
    expect(check.reload()).toBe(false);
    expect(check.reload()).toBe(false);
    expect((await check.run(checkContext(eml))).map((h) => h.name)).toEqual(['HASH_BLOCKLISTED']);
    const errors = cap.records.filter((r) => r.level >= 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.msg).toMatch(/malformed: keeping the last good list/);
    // fixed: the new list (without the hash) is in force
    publish(`${OTHER}\n`);
    expect(check.reload()).toBe(true);
    expect(await check.run(checkContext(eml))).toEqual([]);
  });

  it('a deleted file keeps the last good list in force', async () => {
    writeFileSync(file, `${zipHash}\n`);
    check = createHashBlocklistCheck({ file, log: captureLog().log });
    rmSync(file);
    expect(check.reload()).toBe(false);
    expect((await check.run(checkContext(eml))).map((h) => h.name)).toEqual(['HASH_BLOCKLISTED']);
  });
});
