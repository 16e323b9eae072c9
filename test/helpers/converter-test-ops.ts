/**
 * Ops for the converter pool's tests (test/unit/sanitize/converter-pool.test.ts), each one a way a converter can
 * behave on hostile input: answer, loop for ever, crash, refuse with a reason, eat memory, take its time.
 * `log` options append "start <pid>" / "end <pid>" lines to a file, so a test can replay what ran at once.
 */
import { appendFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConverterOps } from '../../src/sanitize/converter-pool.ts';
import { ConversionError } from '../../src/sanitize/types.ts';

interface SleepOptions {
  ms: number;
  log?: string;
}

/** Bytes the memory hogs add per step, and the pause between steps (so the watchdog's 100 ms poll sees them). */
const HOG_STEP_BYTES = 8 * 1024 * 1024;
const HOG_STEP_PAUSE_MS = 5;

export const ops: ConverterOps = {
  async echo(input, options) {
    return { files: [{ name: 'echo.bin', contentType: 'application/octet-stream', data: input }], meta: { options, pid: process.pid } };
  },
  /** The network interfaces the child sees (none in a namespace of its own, not even loopback). */
  async interfaces() {
    return Object.keys(networkInterfaces());
  },
  async hang() {
    for (;;); // a parser stuck in a loop never yields to the event loop
  },
  async crash() {
    process.abort();
  },
  async 'throw-encrypted'() {
    throw new ConversionError('encrypted', 'the test document is password-protected');
  },
  async throw() {
    throw new Error('malformed test input at offset 42');
  },
  /** Off-heap memory (Buffers, as a WASM heap grows), each page written so that it counts in RSS. */
  async hog() {
    const kept: Buffer[] = [];
    for (;;) {
      kept.push(Buffer.alloc(HOG_STEP_BYTES, 1));
      await sleep(HOG_STEP_PAUSE_MS);
    }
  },
  async sleep(_input, options) {
    const { ms, log } = options as SleepOptions;
    if (log) appendFileSync(log, `start ${process.pid}\n`);
    await sleep(ms);
    if (log) appendFileSync(log, `end ${process.pid}\n`);
    return { meta: { pid: process.pid } };
  },
};
