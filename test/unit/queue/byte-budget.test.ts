import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../../../src/queue/byte-budget.ts';

/** Whether `p` has settled after the current microtasks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('ByteBudget', () => {
  it('grants while the budget lasts and makes the rest wait until bytes are released', async () => {
    const b = new ByteBudget(100);
    const r1 = await b.acquire(60);
    const r2 = await b.acquire(40);
    expect(b.used).toBe(100);
    const third = b.acquire(10);
    expect(await settled(third)).toBe(false);
    r1();
    const r3 = await third;
    expect(b.used).toBe(50);
    r2();
    r3();
    expect(b.used).toBe(0);
  });

  it('serves requests in order: a big one is not overtaken by small ones that would fit', async () => {
    const b = new ByteBudget(100);
    const r1 = await b.acquire(50);
    const big = b.acquire(80);
    const small = b.acquire(10);
    expect(await settled(big)).toBe(false);
    expect(await settled(small)).toBe(false);
    r1();
    expect(await settled(big)).toBe(true);
    expect(await settled(small)).toBe(true);
    expect(b.used).toBe(90);
  });

  it('runs a request larger than the whole budget alone', async () => {
    const b = new ByteBudget(100);
    const r1 = await b.acquire(30);
    const huge = b.acquire(500);
    expect(await settled(huge)).toBe(false);
    r1();
    const rh = await huge;
    expect(b.used).toBe(100);
    const after = b.acquire(1);
    expect(await settled(after)).toBe(false);
    rh();
    await after;
    expect(b.waiting).toBe(0);
  });

  it('ignores a second release of the same grant', async () => {
    const b = new ByteBudget(100);
    const r1 = await b.acquire(70);
    const r2 = await b.acquire(30);
    r1();
    r1();
    expect(b.used).toBe(30);
    r2();
    expect(b.used).toBe(0);
  });

  it('refuses a budget that is not positive', () => {
    expect(() => new ByteBudget(0)).toThrow(RangeError);
  });
});
