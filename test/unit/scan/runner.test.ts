/**
 * runChecks: every check gets its own deadline and AbortSignal; a throw, a rejection, a missed deadline or an
 * outer abort becomes the check's failSymbol (fail closed), never a silent pass. Timing is driven by fake timers
 * and signals, never by the wall clock.
 */
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CheckFailedError, type Check, type CheckContext, type SymbolHit } from '../../../src/scan/check.ts';
import { runChecks, type RunInput } from '../../../src/scan/runner.ts';
import { captureLog, fixture } from '../../helpers/check-context.ts';

const RAW = fixture('iso-2022-jp-plain.eml');

function input(log = pino({ level: 'silent' })): RunInput {
  return {
    messageId: 'runner-test',
    envelope: { mailFrom: 'a@example.com', recipients: [{ address: 'b@city.example.lg.jp', tenantId: 'city' }], clientIp: '192.0.2.1', helo: 'x', tls: null },
    raw: RAW,
    log,
  };
}

function check(name: string, run: (ctx: CheckContext) => Promise<SymbolHit[]>): Check {
  return { name, failSymbol: `${name.toUpperCase()}_FAIL`, run };
}

/** A check that never settles on its own; it records its signal and rejects when that signal aborts. */
function hanging(name: string, seen: AbortSignal[], honoursSignal = true): Check {
  return check(name, (ctx) => {
    seen.push(ctx.signal);
    return new Promise<SymbolHit[]>((_, reject) => {
      if (honoursSignal) ctx.signal.addEventListener('abort', () => reject(new Error('aborted inside the check')));
    });
  });
}

afterEach(() => {
  vi.useRealTimers();
});

describe('runChecks', () => {
  it('merges one symbol found by two checks into one hit, details joined, so that it scores once', async () => {
    const v = await runChecks(
      [
        check('clamav', async () => [{ name: 'ARCHIVE_ENCRYPTED', details: ['a.7z: Heuristics.Encrypted.7Zip'] }]),
        check('unscannable', async () => [{ name: 'ARCHIVE_ENCRYPTED', details: ['a.7z: 7z encrypted header'] }, { name: 'DOC_ENCRYPTED' }]),
      ],
      input(),
      { checkTimeoutMs: 60_000 },
    );
    expect(v.symbols).toEqual([
      { name: 'ARCHIVE_ENCRYPTED', details: ['a.7z: 7z encrypted header', 'a.7z: Heuristics.Encrypted.7Zip'] },
      { name: 'DOC_ENCRYPTED' },
    ]);
  });

  it('collects the symbols of every check, sorted by name', async () => {
    const v = await runChecks(
      [
        check('b', async () => [{ name: 'ZED_FOUND' }, { name: 'ALPHA_FOUND', details: ['x'] }]),
        check('a', async () => [{ name: 'MID_FOUND' }]),
        check('c', async () => []),
      ],
      input(),
      { checkTimeoutMs: 60_000 },
    );
    expect(v.symbols).toEqual([{ name: 'ALPHA_FOUND', details: ['x'] }, { name: 'MID_FOUND' }, { name: 'ZED_FOUND' }]);
    expect(v.failedChecks).toEqual([]);
    expect(Object.keys(v.durationsMs).sort()).toEqual(['a', 'b', 'c']);
  });

  it('a throwing check yields its failSymbol with the error text; the others still count', async () => {
    const { log, records } = captureLog();
    const v = await runChecks(
      [
        check('boom', async () => {
          throw new TypeError('cannot read properties of undefined');
        }),
        check('ok', async () => [{ name: 'OK_FOUND' }]),
      ],
      input(log),
      { checkTimeoutMs: 60_000 },
    );
    expect(v.symbols).toEqual([{ name: 'BOOM_FAIL', details: ['cannot read properties of undefined'] }, { name: 'OK_FOUND' }]);
    expect(v.failedChecks).toEqual(['boom']);
    expect(records.find((r) => r.msg === 'check failed')).toMatchObject({ check: 'boom', symbol: 'BOOM_FAIL' });
  });

  it('a check that throws synchronously (not even a promise) is a failure too', async () => {
    const sync: Check = {
      name: 'sync',
      failSymbol: 'SYNC_FAIL',
      run: () => {
        throw new Error('sync throw');
      },
    };
    const v = await runChecks([sync], input(), { checkTimeoutMs: 60_000 });
    expect(v.symbols).toEqual([{ name: 'SYNC_FAIL', details: ['sync throw'] }]);
  });

  it('a CheckFailedError (engine down) and a non-Error rejection become the failSymbol as well', async () => {
    const v = await runChecks(
      [
        check('clamav', async () => {
          throw new CheckFailedError('clamd: connect ECONNREFUSED /run/clamd.ctl');
        }),
        check('weird', () => Promise.reject('a string')),
      ],
      input(),
      { checkTimeoutMs: 60_000 },
    );
    expect(v.symbols).toEqual([
      { name: 'CLAMAV_FAIL', details: ['clamd: connect ECONNREFUSED /run/clamd.ctl'] },
      { name: 'WEIRD_FAIL', details: ['a string'] },
    ]);
    expect(v.failedChecks).toEqual(['clamav', 'weird']);
  });

  it('a hanging check yields its failSymbol after checkTimeoutMs, and its signal is aborted', async () => {
    vi.useFakeTimers();
    const seen: AbortSignal[] = [];
    const done: string[] = [];
    const p = runChecks([hanging('slow', seen), check('fast', async () => [{ name: 'FAST_FOUND' }])], input(), {
      checkTimeoutMs: 5_000,
      onCheckDone: (name, outcome) => done.push(`${name}:${outcome}`),
    });
    await vi.advanceTimersByTimeAsync(4_999);
    expect(seen[0]!.aborted).toBe(false);
    expect(done).toEqual(['fast:ok']);
    await vi.advanceTimersByTimeAsync(1);
    const v = await p;
    expect(seen[0]!.aborted).toBe(true);
    expect(v.symbols).toEqual([{ name: 'FAST_FOUND' }, { name: 'SLOW_FAIL', details: ['check slow did not finish within 5000 ms'] }]);
    expect(v.failedChecks).toEqual(['slow']);
    expect(done).toEqual(['fast:ok', 'slow:fail']);
  });

  it('a check that ignores its signal still cannot hold the verdict past its deadline', async () => {
    vi.useFakeTimers();
    const seen: AbortSignal[] = [];
    const p = runChecks([hanging('deaf', seen, false)], input(), { checkTimeoutMs: 1_000 });
    await vi.advanceTimersByTimeAsync(1_000);
    const v = await p;
    expect(v.symbols).toEqual([{ name: 'DEAF_FAIL', details: ['check deaf did not finish within 1000 ms'] }]);
    expect(seen[0]!.aborted).toBe(true);
  });

  it('each check has its own deadline and signal: one timing out does not abort the others', async () => {
    vi.useFakeTimers();
    const seen: AbortSignal[] = [];
    let otherSignal: AbortSignal | undefined;
    const p = runChecks(
      [
        hanging('slow', seen),
        check('other', (ctx) => {
          otherSignal = ctx.signal;
          return new Promise((resolve) => setTimeout(() => resolve([{ name: 'OTHER_FOUND' }]), 900));
        }),
      ],
      input(),
      { checkTimeoutMs: 1_000 },
    );
    await vi.advanceTimersByTimeAsync(1_000);
    const v = await p;
    expect(v.symbols.map((s) => s.name)).toEqual(['OTHER_FOUND', 'SLOW_FAIL']);
    expect(otherSignal!.aborted).toBe(false);
    expect(otherSignal).not.toBe(seen[0]);
  });

  it('an outer abort (shutdown) aborts every check, which all fail', async () => {
    const outer = new AbortController();
    const seen: AbortSignal[] = [];
    const p = runChecks([hanging('one', seen), hanging('two', seen)], input(), { checkTimeoutMs: 600_000, signal: outer.signal });
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    outer.abort(new Error('worker shutting down'));
    const v = await p;
    expect(seen.every((s) => s.aborted)).toBe(true);
    expect(v.symbols).toEqual([
      { name: 'ONE_FAIL', details: ['worker shutting down'] },
      { name: 'TWO_FAIL', details: ['worker shutting down'] },
    ]);
    expect(v.failedChecks).toEqual(['one', 'two']);
  });

  // Regression: an already-aborted outer signal never fires 'abort', so the checks ran to completion; and a
  // check that saw its aborted signal and returned [] counted as a clean result.
  it('an outer signal aborted before the run fails every check at once', async () => {
    const outer = new AbortController();
    outer.abort(new Error('already stopping'));
    let ran = 0;
    const v = await runChecks(
      [
        check('x', async (ctx) => {
          ran++;
          return ctx.signal.aborted ? [] : [{ name: 'X_FOUND' }];
        }),
      ],
      input(),
      { checkTimeoutMs: 600_000, signal: outer.signal },
    );
    expect(v.symbols).toEqual([{ name: 'X_FAIL', details: ['already stopping'] }]);
    expect(ran).toBeLessThanOrEqual(1);
  });

  it('a check that resolves with [] once aborted still counts as failed (its work was cut short)', async () => {
    vi.useFakeTimers();
    const quitter = check('quitter', (ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve([]))));
    const p = runChecks([quitter], input(), { checkTimeoutMs: 2_000 });
    await vi.advanceTimersByTimeAsync(2_000);
    const v = await p;
    expect(v.symbols).toEqual([{ name: 'QUITTER_FAIL', details: ['check quitter did not finish within 2000 ms'] }]);
    expect(v.failedChecks).toEqual(['quitter']);
  });

  it('does not leave listeners on the outer signal', async () => {
    const outer = new AbortController();
    const add = vi.spyOn(outer.signal, 'addEventListener');
    const remove = vi.spyOn(outer.signal, 'removeEventListener');
    await runChecks([check('a', async () => []), check('b', async () => [])], input(), { checkTimeoutMs: 60_000, signal: outer.signal });
    expect(add).toHaveBeenCalledTimes(2);
    expect(remove).toHaveBeenCalledTimes(2);
  });

  it('parses the message once and shares the result between checks', async () => {
    const results: unknown[] = [];
    const reader = (name: string) =>
      check(name, async (ctx) => {
        const a = await ctx.parsed();
        const b = await ctx.parsed();
        expect(b).toBe(a);
        results.push(a);
        return [];
      });
    const v = await runChecks([reader('a'), reader('b'), reader('c')], input(), { checkTimeoutMs: 60_000 });
    expect(v.failedChecks).toEqual([]);
    expect(results).toHaveLength(3);
    expect(new Set(results).size).toBe(1);
    expect((results[0] as { headers: { key: string }[] }).headers.map((h) => h.key)).toContain('subject');
  });

  it('does not parse at all when no check asks', async () => {
    const mime = await import('../../../src/scan/mime-parts.ts');
    const spy = vi.spyOn(mime, 'parseMessage');
    await runChecks([check('a', async () => [])], input(), { checkTimeoutMs: 60_000 });
    expect(spy).not.toHaveBeenCalled();
  });

  it('passes message id, envelope, raw bytes and a child logger to each check', async () => {
    const { log, records } = captureLog();
    let ctx: CheckContext | undefined;
    await runChecks(
      [
        check('peek', async (c) => {
          ctx = c;
          c.log.info('hello from the check');
          return [];
        }),
      ],
      input(log),
      { checkTimeoutMs: 60_000 },
    );
    expect(ctx!.messageId).toBe('runner-test');
    expect(ctx!.raw).toBe(RAW);
    expect(ctx!.envelope.recipients[0]!.tenantId).toBe('city');
    expect(records.find((r) => r.msg === 'hello from the check')).toMatchObject({ check: 'peek' });
  });
});
