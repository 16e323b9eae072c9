/**
 * The Supervisor with real child processes (`sleep`): a service that dies is started again after the backoff,
 * which doubles and resets; status() and the metrics say what happened; stop() and kill() end the restarts.
 */
import { spawn } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { createMetrics } from '../../../src/metrics.ts';
import { silentLogger } from '../../../src/log.ts';
import { Supervisor, type SupervisedService } from '../../../src/services/supervisor.ts';
import { captureLog } from '../../helpers/check-context.ts';

interface Sleeper extends SupervisedService {
  pid: number;
}

const started: Sleeper[] = [];
const supervisors: Supervisor[] = [];
afterEach(() => {
  for (const s of supervisors.splice(0)) s.kill();
  for (const s of started.splice(0)) s.kill();
});

function supervisor(opts: ConstructorParameters<typeof Supervisor>[0]): Supervisor {
  const s = new Supervisor(opts);
  supervisors.push(s);
  return s;
}

async function sleeper(): Promise<Sleeper> {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  await new Promise((r) => child.once('spawn', r));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const running = () => child.exitCode === null && child.signalCode === null;
  const s: Sleeper = {
    pid: child.pid!,
    exited,
    stop: async () => {
      if (running()) child.kill('SIGTERM');
      await exited;
    },
    kill: () => {
      if (running()) child.kill('SIGKILL');
    },
  };
  started.push(s);
  return s;
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

it('restarts a service that died, with a doubling backoff that resets after it stayed up; status and metrics follow', async () => {
  const metrics = createMetrics('test');
  const { log, records } = captureLog();
  let clock = 1_000_000;
  const sup = supervisor({ log, metrics, backoff: { initialMs: 10, maxMs: 40, resetAfterMs: 5_000 }, now: () => clock });
  const first = await sup.start('svc', sleeper);
  expect(sup.status()).toEqual([{ service: 'svc', up: true, restarts: 0, lastExit: null, since: 1_000_000 }]);

  for (let i = 1; i <= 4; i++) {
    const victim = started.at(-1)!;
    process.kill(victim.pid, 'SIGKILL');
    await until(() => sup.status()[0]!.up && started.at(-1) !== victim);
    expect(sup.status()[0]!.restarts).toBe(i);
    expect(sup.status()[0]!.lastExit).toBe('signal SIGKILL');
  }
  const backoff = () => records.filter((r) => r.msg === 'svc exited; restarting').map((r) => r.restartInMs);
  expect(backoff()).toEqual([10, 20, 40, 40]);
  expect(records.filter((r) => r.msg === 'svc exited; restarting').every((r) => r.level === 40 && r.signal === 'SIGKILL')).toBe(true);
  expect((await metrics.registry.getSingleMetric('sekisho_service_restarts_total')!.get()).values[0]!.value).toBe(4);
  expect((await metrics.registry.getSingleMetric('sekisho_service_up')!.get()).values[0]!.value).toBe(1);

  // Up for longer than resetAfterMs: the next death is restarted after initialMs again (not 40 ms).
  clock += 10_000;
  const victim = started.at(-1)!;
  process.kill(victim.pid, 'SIGTERM');
  await until(() => sup.status()[0]!.restarts === 5 && sup.status()[0]!.up);
  expect(sup.status()[0]!.lastExit).toBe('signal SIGTERM');
  expect(backoff().at(-1)).toBe(10);
  expect(first.pid).not.toBe(started.at(-1)!.pid);
  await sup.stop();
});

it('stop() ends the restarts and stops the running instance; a death during stop is not restarted', async () => {
  const sup = supervisor({ log: silentLogger, backoff: { initialMs: 10, maxMs: 10, resetAfterMs: 1_000 } });
  const a = await sup.start('a', sleeper);
  const b = await sup.start('b', sleeper);
  await sup.stop();
  expect(await a.exited).toEqual({ code: null, signal: 'SIGTERM' });
  expect(await b.exited).toEqual({ code: null, signal: 'SIGTERM' });
  expect(started).toHaveLength(2);
  expect(sup.status().map((s) => s.restarts)).toEqual([0, 0]);
  await expect(sup.start('c', sleeper)).rejects.toThrow(/stopping/);
});

it('a restart that fails is retried; kill() stops everything at once', async () => {
  let failures = 2;
  const sup = supervisor({ log: silentLogger, backoff: { initialMs: 5, maxMs: 5, resetAfterMs: 1_000 } });
  await sup.start('flaky', async () => {
    if (started.length > 0 && failures-- > 0) throw new Error('cannot start');
    return sleeper();
  });
  process.kill(started[0]!.pid, 'SIGKILL');
  await until(() => sup.status()[0]!.up && started.length === 2);
  expect(sup.status()[0]!.restarts).toBe(3);
  sup.kill();
  expect(await started[1]!.exited).toEqual({ code: null, signal: 'SIGKILL' });
});
