/**
 * A managed clamd for one test file: its own directory, an empty stand-in for freshclam's directory (so the tests
 * load only the project's signatures, quickly and the same on every machine), the project's signatures.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startManagedClamd, type ManagedClamd, type ManagedClamdOptions } from '../../src/services/clamd.ts';
import { ensureBinary } from '../../src/services/debian.ts';

export interface TestClamd {
  clamd: ManagedClamd;
  /** The stand-in for clamav.databaseDir: drop signature files here, then reload. */
  databaseDir: string;
  options: ManagedClamdOptions;
  /** Starts a new clamd on the same directory and socket (after stop()). */
  restart(): Promise<ManagedClamd>;
  cleanup(): Promise<void>;
}

export async function startTestClamd(overrides: Partial<ManagedClamdOptions> = {}): Promise<TestClamd> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-clamd-test-'));
  // Run as root, the managed clamd reads databaseDir's files as the clamav account, through their symlinks: it
  // must be able to enter the directories on the way, as it can /var/lib/clamav.
  chmodSync(root, 0o711);
  const databaseDir = path.join(root, 'official');
  mkdirSync(databaseDir);
  const options: ManagedClamdOptions = {
    dir: path.join(root, 'clamd'),
    databaseDir,
    maxStreamBytes: 52_428_800,
    scanTimeoutMs: 60_000,
    startTimeoutMs: 60_000,
    maxThreads: 4,
    ...overrides,
  };
  const t: TestClamd = {
    clamd: await startManagedClamd(options),
    databaseDir,
    options,
    async restart() {
      t.clamd = await startManagedClamd(options);
      return t.clamd;
    },
    async cleanup() {
      await t.clamd.stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
  return t;
}

/** The run directory (socket, databases, temporary files) of the managed clamd that owns `dir`. */
export function runDirOf(dir: string): string {
  return readFileSync(path.join(dir, 'rundir'), 'utf8').trim();
}

/**
 * Makes `${dir}/bin/clamd`: a script that runs the shell lines `before`, then becomes the real clamd (same pid).
 * Put `${dir}/bin` first on PATH and the managed clamd is started through it. Returns `${dir}/bin`.
 */
export function clamdWrapper(dir: string, before: string[]): string {
  const bin = path.join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(path.join(bin, 'clamd'), ['#!/bin/bash', ...before, `exec '${ensureBinary('clamd', 'clamav-daemon')}' "$@"`, ''].join('\n'), { mode: 0o755 });
  return bin;
}
