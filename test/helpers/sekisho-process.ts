/**
 * `node bin/sekisho.js …` as a child process of a test: its output kept (and printed when the test fails), and
 * every process started stopped after the test as an operator would (SIGTERM, so that its managed redis-server and
 * clamd go with it; SIGKILL only if it does not stop).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { onTestFailed } from 'vitest';

export const SEKISHO_BIN = fileURLToPath(new URL('../../bin/sekisho.js', import.meta.url));
/** A process that does not stop on SIGTERM within this is killed. */
const STOP_TIMEOUT_MS = 15_000;

export interface SekishoProcess {
  proc: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
}

const running: ChildProcess[] = [];

export function runSekisho(args: string[], env: NodeJS.ProcessEnv = process.env): SekishoProcess {
  const proc = spawn(process.execPath, [SEKISHO_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.push(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  // A failure says what the process said (the assertion alone rarely tells why a start or a send went wrong).
  onTestFailed(() => console.error(`output of sekisho ${args.join(' ')}:\n${out.slice(-20_000)}`));
  return { proc, exited, output: () => out };
}

/** `sekisho …` run to its end (a CLI command): exit code and output; `stdin` is written and closed. */
export function sekishoCommand(args: string[], stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [SEKISHO_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(stdin);
  });
}

/** Stops every process runSekisho started that still runs (for afterEach). */
export async function stopSekishoProcesses(): Promise<void> {
  await Promise.all(
    running.splice(0).map(async (p) => {
      if (p.exitCode !== null || p.signalCode !== null) return;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const timer = setTimeout(() => p.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }),
  );
}
