/**
 * The fault suite's result: one row per fault (accepted × delivered × duplicated × lost × held × bounced) and the
 * delivered-mark window (from the deliver stage's `delivered` log lines, field markMs: the same values as the
 * sekisho_delivered_mark_seconds histogram, but exact and across process restarts). Printed to stdout and written
 * between the markers of docs/faults.md; the rest of that file is hand-written.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Tally } from './mail-stream.ts';

const docFile = fileURLToPath(new URL('../../docs/faults.md', import.meta.url));
const BEGIN = '<!-- BEGIN GENERATED: npm run test:faults -->';
const END = '<!-- END GENERATED -->';

export interface FaultRow extends Tally {
  fault: string;
  notes: string;
  mayDuplicate: boolean;
  /** DSNs that reached the outbound relay's sink while the row ran. */
  dsns?: number;
}

export interface MarkWindow {
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** The delivered-mark windows logged by every worker the run had (pino JSON lines, msg "delivered"). */
export function markWindow(logFile: string): MarkWindow | null {
  if (!existsSync(logFile)) return null;
  const ms: number[] = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    if (!line.includes('"markMs"')) continue;
    try {
      const v = (JSON.parse(line) as { markMs?: unknown }).markMs;
      if (typeof v === 'number') ms.push(v);
    } catch {
      // a torn line of a killed process
    }
  }
  if (!ms.length) return null;
  ms.sort((a, b) => a - b);
  const at = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))] ?? 0;
  return { samples: ms.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: ms[ms.length - 1] ?? 0 };
}

export class FaultTable {
  readonly rows: FaultRow[] = [];
  #window: MarkWindow | null = null;
  #extra: string[] = [];

  add(row: FaultRow): void {
    this.rows.push(row);
  }

  setMarkWindow(w: MarkWindow | null): void {
    if (w) this.#window = w;
  }

  /** A line under the table (a fault that could not run here, and why). */
  note(text: string): void {
    this.#extra.push(text);
  }

  render(): string {
    const head = '| fault | accepted | delivered | duplicated | lost | held | bounced | notes |';
    const lines = [head, '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |'];
    for (const r of this.rows) {
      lines.push(`| ${r.fault} | ${r.accepted} | ${r.delivered} | ${r.duplicated} | ${r.lost} | ${r.held} | ${r.bounced} | ${r.notes.replaceAll('|', '/')} |`);
    }
    const w = this.#window;
    const fmt = (n: number) => (n < 1 ? `${(n * 1000).toFixed(0)} µs` : `${n.toFixed(2)} ms`);
    lines.push(
      '',
      'accepted = messages answered 250 (each to two recipients, one per tenant); delivered, duplicated, lost, held and ' +
        'bounced count recipients. held = pending/deferred/failed/quarantined in the metadata store when the row settled.',
      '',
      w
        ? `Delivered-mark window (downstream reply → commit of the delivered mark), ${w.samples} deliveries: ` +
            `p50 ${fmt(w.p50Ms)}, p99 ${fmt(w.p99Ms)}, max ${fmt(w.maxMs)}.`
        : 'Delivered-mark window: no samples.',
      ...this.#extra.map((e) => `\n${e}`),
    );
    return lines.join('\n');
  }

  print(): void {
    console.log(`\n${this.render()}\n`);
  }

  /** Replaces the generated section of docs/faults.md (which must have the markers). */
  writeDoc(): void {
    if (!this.rows.length || !existsSync(docFile)) return;
    const doc = readFileSync(docFile, 'utf8');
    const start = doc.indexOf(BEGIN);
    const end = doc.indexOf(END);
    if (start < 0 || end < start) return;
    const stamp = `Last run: ${new Date().toISOString().slice(0, 16)}Z.`;
    writeFileSync(docFile, `${doc.slice(0, start + BEGIN.length)}\n${stamp}\n\n${this.render()}\n${doc.slice(end)}`);
  }
}
