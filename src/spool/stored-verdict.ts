/**
 * What the MetaStore keeps of a scan: the symbols found (catalogue names typed), the checks that failed, and each
 * tenant's decision. Written by the scan stage, read by delivery (tag headers), the sanitizer and operators.
 * Stored as JSON: `parseStoredVerdict` is the only way back in, and a row written by an older version still reads
 * (missing fields get their empty value); anything that is not a verdict at all is refused.
 */
import { actionNames, type Action } from '../config/schema.ts';
import { symbolInfo, type SymbolName } from '../scan/symbols.ts';

export interface StoredSymbol {
  name: SymbolName;
  details?: string[];
}

/** A symbol whose name is not in this version's catalogue: a check's own fail symbol, or one a removed check emitted. */
export interface UnlistedSymbol {
  name: string;
  details?: string[];
}

export interface StoredDecision {
  action: Action;
  score: number;
  reasons: string[];
}

export interface StoredVerdict {
  symbols: StoredSymbol[];
  unlistedSymbols: UnlistedSymbol[];
  /** Names of the checks that failed (their `<CHECK>_FAIL` symbol is among the symbols). */
  failedChecks: string[];
  /** Milliseconds each check took. */
  durationsMs: Record<string, number>;
  /** Per tenant id. */
  decisions: Record<string, StoredDecision>;
  /** Epoch ms. */
  scannedAt: number;
}

export function isAction(value: unknown): value is Action {
  return typeof value === 'string' && (actionNames as readonly string[]).includes(value);
}

/** An action read from storage; null stays null (not scanned yet). */
export function parseAction(value: unknown): Action | null {
  if (value === null) return null;
  if (!isAction(value)) throw new TypeError(`stored action ${JSON.stringify(value)} is not one of ${actionNames.join(', ')}`);
  return value;
}

/** Splits symbols by whether the catalogue knows their name. */
export function storedSymbols(hits: readonly { name: string; details?: string[] }[]): Pick<StoredVerdict, 'symbols' | 'unlistedSymbols'> {
  const symbols: StoredSymbol[] = [];
  const unlistedSymbols: UnlistedSymbol[] = [];
  for (const h of hits) {
    const hit = h.details ? { name: h.name, details: [...h.details] } : { name: h.name };
    if (symbolInfo(h.name)) symbols.push(hit as StoredSymbol);
    else unlistedSymbols.push(hit);
  }
  return { symbols, unlistedSymbols };
}

/** Every symbol name of a verdict, listed or not, in stored order. */
export function symbolNames(v: StoredVerdict): string[] {
  return [...v.symbols, ...v.unlistedSymbols].map((s) => s.name);
}

function fail(what: string): never {
  throw new TypeError(`stored verdict: ${what}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) fail(`${what} must be a list of strings`);
  return v as string[];
}

function hits(v: unknown, what: string): { name: string; details?: string[] }[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) fail(`${what} must be a list`);
  return v.map((h: unknown) => {
    if (!isRecord(h) || typeof h.name !== 'string') fail(`${what} entries need a name`);
    return h.details === undefined ? { name: h.name } : { name: h.name, details: strings(h.details, `${h.name}.details`) };
  });
}

function decision(tenant: string, v: unknown): StoredDecision {
  if (!isRecord(v)) fail(`decision of ${tenant} must be an object`);
  const action = parseAction(v.action);
  if (action === null) fail(`decision of ${tenant} has no action`);
  const score = typeof v.score === 'number' ? v.score : 0;
  return { action, score, reasons: strings(v.reasons, `reasons of ${tenant}`) };
}

/**
 * The verdict from its stored JSON (already parsed). Older rows kept every symbol in `symbols`, whatever its
 * name: they are split again here.
 */
export function parseStoredVerdict(v: unknown): StoredVerdict {
  if (!isRecord(v)) fail('not an object');
  const all = [...hits(v.symbols, 'symbols'), ...hits(v.unlistedSymbols, 'unlistedSymbols')];
  if (v.decisions !== undefined && !isRecord(v.decisions)) fail('decisions must be an object');
  // fromEntries defines own properties: a tenant key "__proto__" stays a key.
  const decisions = Object.fromEntries(Object.entries(v.decisions ?? {}).map(([tenant, d]) => [tenant, decision(tenant, d)]));
  const durationsMs = Object.fromEntries(
    Object.entries(isRecord(v.durationsMs) ? v.durationsMs : {}).filter((e): e is [string, number] => typeof e[1] === 'number'),
  );
  return {
    ...storedSymbols(all),
    failedChecks: strings(v.failedChecks, 'failedChecks'),
    durationsMs,
    decisions,
    scannedAt: typeof v.scannedAt === 'number' ? v.scannedAt : 0,
  };
}
