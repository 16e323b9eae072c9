/**
 * Antivirus through the whole pipeline with a real clamd: malware is never delivered (550 in the session when
 * the verdict is ready in time, held otherwise), and a dead clamd means "wait", never "deliver unscanned".
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Harness, queuedId } from '../helpers/harness.ts';
import { startTestClamd, type TestClamd } from '../helpers/clamd.ts';
import { sendRaw, simpleMessage } from '../helpers/raw-smtp.ts';

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/mails/${name}`, import.meta.url));
let clamd: TestClamd;
let h: Harness | undefined;

beforeAll(async () => {
  clamd = await startTestClamd();
}, 180_000);
afterAll(async () => clamd?.cleanup());
afterEach(async () => {
  await h?.stop();
  h = undefined;
});

function engines() {
  return { clamd: clamd.clamd.endpoint };
}

describe('antivirus in the pipeline', () => {
  it('rejects EICAR in a zip with 550 in the session when the verdict is ready in time', async () => {
    h = await Harness.start({ engines: engines(), config: { smtp: { verdictWaitMs: 20_000 } } });
    const reply = await sendRaw(h.port, 'attacker@example.net', ['u@city-a.example.lg.jp'], fixture('av-eicar-in-zip.eml'));
    expect(reply).toMatch(/^550 5\.7\.1 Message rejected: CLAMAV_VIRUS\(.*Eicar/i);
    expect(await h.stores.meta.countByState()).toMatchObject({ rejected: 1, delivering: 0, done: 0 });
    // The same path delivers clean Japanese mail.
    expect(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], fixture('iso-2022-jp-plain.eml'))).toMatch(/^250 /);
    await h.sinks.a.waitFor(1);
  });

  it('holds malware found after the 250 (no in-session wait): quarantined, never delivered', async () => {
    h = await Harness.start({ engines: engines() });
    const mid = queuedId(await sendRaw(h.port, 'attacker@example.net', ['u@city-a.example.lg.jp'], fixture('av-eicar-in-attached-eml.eml')));
    await h.waitForState(mid, (s, m) => s[0] === 'quarantined' && m === 'done');
    const msg = await h.stores.meta.getMessage(mid);
    expect(JSON.stringify(msg!.verdict)).toContain('CLAMAV_VIRUS');
    expect(await h.stores.store.exists(mid)).toBe(true);
    expect(h.sinks.a.messages).toHaveLength(0);
  });

  it('with clamd down, delivers nothing unscanned; once clamd is back, the clean mail is delivered', async () => {
    h = await Harness.start({ engines: engines(), config: { scan: { failRetryDelayMs: 300, checkTimeoutMs: 5_000 } } });
    await clamd.clamd.stop();
    {
      const mid = queuedId(await sendRaw(h.port, 's@example.net', ['u@city-a.example.lg.jp'], simpleMessage({ subject: 'while clamd is down' })));
      const virus = queuedId(await sendRaw(h.port, 'a@example.net', ['u@city-a.example.lg.jp'], fixture('av-eicar-attachment.eml')));
      for (let i = 0; i < 50; i++) {
        const m = await h.stores.meta.getMessage(mid);
        if (JSON.stringify(m?.verdict ?? '').includes('CLAMAV_FAIL')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 1_000)); // several retry rounds
      expect(h.sinks.a.messages).toHaveLength(0);
      expect((await h.stores.meta.getMessage(mid))!.state).toBe('received');
      expect((await h.stores.meta.getMessage(mid))!.lastError).toContain('clamav failed');
      await clamd.restart();
      await h.sinks.a.waitFor(1, 60_000);
      await h.waitForState(mid, (s) => s[0] === 'delivered', 60_000);
      await h.waitForState(virus, (s) => s[0] === 'quarantined', 60_000);
      expect(h.sinks.a.messages).toHaveLength(1);
      expect(h.sinks.a.messages[0]!.raw.toString()).toContain('while clamd is down');
    }
  });
});
