/**
 * ClamdClient's persistent sessions (IDSESSION) against a real clamd: reuse, and every way a session can break —
 * closed by clamd (restart, ReadTimeout) while idle or just as a command goes out, a misnumbered reply, bytes on an
 * idle session, a hang, an abort — ends in either the right verdict or SEKISHO_ERR_CLAMAV_UNAVAILABLE, never in a
 * verdict for the wrong request. A proxy in front of clamd counts connections and breaks commands on demand.
 */
import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClamdClient } from '../../src/scan/clamd-client.ts';
import { PROJECT_SIGNATURE_DIR, clamdConf, linkDatabases, type ManagedClamdOptions } from '../../src/services/clamd.ts';
import { ensureBinary } from '../../src/services/debian.ts';
import { EICAR } from '../helpers/check-context.ts';
import { startClamdProxy, type ClamdProxy } from '../helpers/clamd-proxy.ts';
import { startTestClamd, type TestClamd } from '../helpers/clamd.ts';

const CLEAN = Buffer.from('nothing to see here\r\n');
const INFECTED = { found: [expect.stringMatching(/^Sekisho\.Test\.EICAR/)] };
const unavailable = (message: RegExp = /./) => expect.objectContaining({ code: 'SEKISHO_ERR_CLAMAV_UNAVAILABLE', message: expect.stringMatching(message) });

describe('ClamdClient sessions', () => {
  let t: TestClamd;
  let proxy: ClamdProxy;
  let client: ClamdClient;

  beforeAll(async () => {
    t = await startTestClamd();
  });
  afterAll(async () => {
    await t?.cleanup();
  });
  beforeEach(async () => {
    proxy = await startClamdProxy(t.clamd.socket);
    client = new ClamdClient(proxy.endpoint, 30_000);
  });
  afterEach(async () => {
    client.close();
    await proxy.close();
  });

  it('scans reuse one session: 20 scans, clean and infected alternately, over one connection', async () => {
    for (let i = 0; i < 10; i++) {
      expect(await client.scan(CLEAN)).toEqual({ found: [] });
      expect(await client.scan(EICAR)).toEqual(INFECTED);
    }
    expect(proxy.connections).toBe(1);
  });

  it('parallel scans beyond the pool get a connection each; the pool keeps its sessions for the next ones', async () => {
    client = new ClamdClient(proxy.endpoint, 30_000, { sessions: 2 });
    const results = await Promise.all([CLEAN, EICAR, CLEAN, EICAR].map((d) => client.scan(d)));
    expect(results).toEqual([{ found: [] }, INFECTED, { found: [] }, INFECTED]);
    expect(proxy.connections).toBe(4);
    await vi.waitFor(() => expect(proxy.open).toBe(2));
    expect(await Promise.all([client.scan(EICAR), client.scan(CLEAN)])).toEqual([INFECTED, { found: [] }]);
    expect(proxy.connections).toBe(4);
  });

  it.each(['close', 'read-timed-out'] as const)(
    'a reused session that clamd ended just as the scan went out (%s): the scan is sent once more, on a fresh connection',
    async (mode) => {
      expect(await client.scan(CLEAN)).toEqual({ found: [] });
      proxy.sabotage(mode);
      expect(await client.scan(EICAR)).toEqual(INFECTED);
      expect(proxy.connections).toBe(2);
    },
  );

  it('a fresh connection that closes before replying is not retried: SEKISHO_ERR_CLAMAV_UNAVAILABLE', async () => {
    proxy.sabotage('close');
    await expect(client.scan(EICAR)).rejects.toEqual(unavailable());
    expect(proxy.connections).toBe(1);
  });

  it('the retry is made once: when the fresh connection dies too, the scan fails', async () => {
    expect(await client.scan(CLEAN)).toEqual({ found: [] });
    proxy.sabotage('close', 2);
    await expect(client.scan(EICAR)).rejects.toEqual(unavailable());
    expect(proxy.connections).toBe(2);
  });

  it('a verdict numbered for another request is no verdict: the scan fails and the session is dropped', async () => {
    expect(await client.scan(CLEAN)).toEqual({ found: [] });
    proxy.sabotage('wrong-number');
    await expect(client.scan(EICAR)).rejects.toEqual(unavailable(/unexpected reply to request 2 of the session: "99: stream: OK"/));
    await vi.waitFor(() => expect(proxy.open).toBe(0));
    expect(await client.scan(EICAR)).toEqual(INFECTED);
    expect(proxy.connections).toBe(2);
  });

  it('bytes on an idle session drop it; the next scan opens a new one', async () => {
    expect(await client.scan(CLEAN)).toEqual({ found: [] });
    proxy.poke('1: stream: OK\0');
    await vi.waitFor(() => expect(proxy.open).toBe(0));
    expect(await client.scan(EICAR)).toEqual(INFECTED);
    expect(proxy.connections).toBe(2);
  });

  it('aborting a scan mid-way destroys its connection (no retry); the next scan opens a new one', async () => {
    expect(await client.scan(CLEAN)).toEqual({ found: [] });
    proxy.sabotage('hold');
    const ac = new AbortController();
    const pending = client.scan(EICAR, ac.signal);
    await vi.waitFor(() => expect(proxy.held).toBe(1));
    ac.abort(new Error('deadline'));
    await expect(pending).rejects.toEqual(unavailable(/aborted/));
    await vi.waitFor(() => expect(proxy.open).toBe(0));
    expect(proxy.connections).toBe(1);
    expect(await client.scan(EICAR)).toEqual(INFECTED);
    expect(proxy.connections).toBe(2);
  });

  it('a hung clamd: the scan fails at timeoutMs and its connection is destroyed', async () => {
    client = new ClamdClient(proxy.endpoint, 300);
    expect(await client.scan(CLEAN)).toEqual({ found: [] });
    proxy.sabotage('hold');
    await expect(client.scan(EICAR)).rejects.toEqual(unavailable(/no reply within 300 ms/));
    await vi.waitFor(() => expect(proxy.open).toBe(0));
    expect(proxy.connections).toBe(1);
  });

  it('close() ends the idle sessions; later scans still work, on a connection each', async () => {
    await Promise.all([client.scan(CLEAN), client.scan(CLEAN)]);
    expect(proxy.open).toBe(2);
    client.close();
    await vi.waitFor(() => expect(proxy.open).toBe(0));
    expect(await client.scan(EICAR)).toEqual(INFECTED);
    await vi.waitFor(() => expect(proxy.open).toBe(0));
    expect(proxy.connections).toBe(3);
  });

  it('idle sessions do not keep the process alive', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sekisho-unref-'));
    try {
      const script = path.join(dir, 'scan-once.mts');
      const clientModule = new URL('../../src/scan/clamd-client.ts', import.meta.url).href;
      writeFileSync(
        script,
        `import { ClamdClient } from ${JSON.stringify(clientModule)};\n` +
          `const client = new ClamdClient(${JSON.stringify(proxy.endpoint)}, 30_000);\n` +
          `const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'PipeWrap').length;\n` +
          `const before = sockets();\n` +
          `const result = await client.scan(Buffer.from('clean'));\n` +
          `console.log(JSON.stringify({ result, holding: sockets() - before }));\n`,
      );
      // The scan's session stays open (idle) but holds the event loop no more: the script exits without close().
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script]);
      expect(JSON.parse(stdout)).toEqual({ result: { found: [] }, holding: 0 });
      expect(proxy.connections).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ClamdClient sessions across clamd restarts and limits', () => {
  it('clamd restarted between scans: the next scan reconnects (no false failure, no false clean); clamd stopped: unavailable', async () => {
    const t = await startTestClamd();
    const proxy = await startClamdProxy(t.clamd.socket);
    const client = new ClamdClient(proxy.endpoint, 30_000);
    try {
      expect(await client.scan(CLEAN)).toEqual({ found: [] });
      await t.clamd.stop();
      await t.restart();
      expect(await client.scan(EICAR)).toEqual(INFECTED);
      expect(await client.scan(CLEAN)).toEqual({ found: [] });
      expect(proxy.connections).toBe(2);

      await t.clamd.stop();
      await expect(client.scan(EICAR)).rejects.toEqual(unavailable());
      await expect(client.scan(CLEAN)).rejects.toEqual(unavailable());
      await t.restart();
      expect(await client.scan(EICAR)).toEqual(INFECTED);
    } finally {
      client.close();
      await proxy.close();
      await t.cleanup();
    }
  });

  it('"INSTREAM size limit exceeded" fails the scan with clamd\'s text; the next scan works on a new session', async () => {
    const t = await startTestClamd({ maxStreamBytes: 64 * 1024 });
    const client = new ClamdClient(t.clamd.endpoint, 30_000);
    try {
      expect(await client.scan(CLEAN)).toEqual({ found: [] });
      await expect(client.scan(Buffer.alloc(3 * 1024 * 1024, 'x'))).rejects.toEqual(unavailable(/INSTREAM size limit exceeded/));
      expect(await client.scan(EICAR)).toEqual(INFECTED);
    } finally {
      client.close();
      await t.cleanup();
    }
  });

  it('clamd ends an idle session after its ReadTimeout ("COMMAND READ TIMED OUT"): the next scan reconnects', async () => {
    const clamd = await startClamdWithReadTimeout(1);
    const proxy = await startClamdProxy(clamd.socket);
    const client = new ClamdClient(proxy.endpoint, 30_000);
    try {
      expect(await client.scan(CLEAN)).toEqual({ found: [] });
      await vi.waitFor(() => expect(proxy.open).toBe(0), { timeout: 30_000, interval: 100 });
      expect(await client.scan(EICAR)).toEqual(INFECTED);
      expect(proxy.connections).toBe(2);
    } finally {
      client.close();
      await proxy.close();
      await clamd.stop();
    }
  });
});

/** A clamd with `ReadTimeout` set (the managed clamd leaves it at clamd's default, 120 s). */
async function startClamdWithReadTimeout(seconds: number): Promise<{ socket: string; stop(): Promise<void> }> {
  const root = mkdtempSync(path.join(os.tmpdir(), 'sekisho-clamd-rt-'));
  const options: ManagedClamdOptions = {
    dir: path.join(root, 'clamd'),
    databaseDir: path.join(root, 'official'),
    maxStreamBytes: 1024 * 1024,
    scanTimeoutMs: 60_000,
    startTimeoutMs: 60_000,
    maxThreads: 2,
  };
  // No User line: this clamd runs as the test does, so its run directory can be anywhere.
  const run = path.join(root, 'run');
  for (const sub of ['tmp', 'sock']) mkdirSync(path.join(run, sub), { recursive: true });
  mkdirSync(options.dir, { recursive: true });
  linkDatabases(path.join(run, 'db'), PROJECT_SIGNATURE_DIR, options.databaseDir);
  const conf = path.join(options.dir, 'clamd.conf');
  writeFileSync(conf, `${clamdConf(options, run)}ReadTimeout ${seconds}\n`);
  const child = spawn(ensureBinary('clamd', 'clamav-daemon'), ['--config-file', conf], { stdio: 'ignore' });
  const socket = path.join(run, 'sock', 'clamd.sock');
  const exited = once(child, 'exit');
  await vi.waitFor(() => new ClamdClient({ socket }, 5_000).ping(), { timeout: 60_000, interval: 100 });
  return {
    socket,
    async stop() {
      child.kill('SIGTERM');
      await exited;
      rmSync(root, { recursive: true, force: true });
    },
  };
}
