/**
 * rspamd — an optional second opinion from Rspamd (`antispam.rspamd`, registered only when `url` is set).
 *
 * What: the raw message goes to Rspamd's `/checkv2` with the envelope in Rspamd's request headers (IP, Helo,
 * From, one Rcpt per recipient, Queue-Id; Password for a controller). Its answer becomes symbols:
 * - one catalogue symbol for Rspamd's action (RSPAMD_REJECT … RSPAMD_NO_ACTION), details `score=… required=…`:
 *   this one carries the weight, and policy decides what it is worth;
 * - every Rspamd symbol as `RSPAMD_<NAME>` (upper case, anything but [A-Z0-9_] turned into `_`), details its
 *   Rspamd score and options. They are not in the catalogue; `symbolInfo()` puts them in the group `rspamd` with
 *   score 0, so they show on the console and can be weighted in policy.scores without counting Rspamd twice by
 *   default. A name that would read as a catalogue symbol (Rspamd's REJECT) or as a check failure (R_SPF_FAIL ends
 *   in `_FAIL`) gets `_HIT` appended: RSPAMD_R_SPF_FAIL_HIT must not make policy think Rspamd was down.
 * Why: sites that already run Rspamd keep its rules, fuzzy hashes and reputation next to ours.
 *
 * Failure: a refused connection, an HTTP error, an answer that is not Rspamd's JSON, an action we do not know
 * or no answer within `timeoutMs` throws, and the runner emits RSPAMD_FAIL: mail waits, it never passes unscanned.
 */
import { z } from 'zod';
import { CheckFailedError, type Check, type CheckContext, type SymbolHit } from '../../check.ts';
import { isFailSymbol, symbolInfo, type SymbolInfo } from '../../symbols.ts';
import type { RspamdConfig } from './config.ts';

export { rspamdConfigSchema, type RspamdConfig } from './config.ts';

export interface RspamdCheckOptions {
  /** antispam.rspamd, with its url (the check is not created without one). */
  config: RspamdConfig & { url: string };
}

/** Prefix of the symbols that relay Rspamd's own symbols. */
export const RSPAMD_SYMBOL_PREFIX = 'RSPAMD_';
/** Appended to a relayed name that would otherwise read as a catalogue symbol or a check failure. */
const CLASH_SUFFIX = '_HIT';

/** Characters kept of an Rspamd symbol name; Rspamd's own names are under 40. */
const MAX_SYMBOL_NAME_CHARS = 64;
/** Rspamd symbols relayed per message (the first ones, by name); a message with the full rule set hits 20–60. */
const MAX_SYMBOLS = 200;
/** Options kept per Rspamd symbol (addresses, URLs, MIME types…), and characters kept of each. */
const MAX_OPTIONS = 10;
const MAX_OPTION_CHARS = 200;
/** Largest answer read: Rspamd's JSON for MAX_SYMBOLS symbols with their options is well under 200 KiB. */
const MAX_RESPONSE_BYTES = 1_048_576;

/** Rspamd's actions (its `action` field) and the catalogue symbol of each. */
const ACTION_SYMBOLS = new Map<string, string>([
  ['reject', 'RSPAMD_REJECT'],
  ['soft reject', 'RSPAMD_SOFT_REJECT'],
  ['rewrite subject', 'RSPAMD_REWRITE_SUBJECT'],
  ['add header', 'RSPAMD_ADD_HEADER'],
  ['greylist', 'RSPAMD_GREYLIST'],
  ['no action', 'RSPAMD_NO_ACTION'],
]);

const RELAYED_SYMBOL = /^RSPAMD_[A-Z0-9_]+$/;
const RELAYED_INFO: SymbolInfo = { group: 'rspamd', score: 0, description: 'a symbol of Rspamd (details: its Rspamd score and options)' };

const answerSchema = z.object({
  action: z.string(),
  score: z.number(),
  required_score: z.number(),
  symbols: z.record(z.string(), z.object({ score: z.number().optional(), options: z.array(z.string()).optional() })).default({}),
});

/** The Sekisho name of an Rspamd symbol: RSPAMD_<NAME>, `_HIT` appended when it would clash. */
export function rspamdSymbolName(rspamdName: string): string {
  const name = `${RSPAMD_SYMBOL_PREFIX}${rspamdName.toUpperCase().replace(/[^A-Z0-9_]/g, '_').slice(0, MAX_SYMBOL_NAME_CHARS)}`;
  return symbolInfo(name) || isFailSymbol(name) ? `${name}${CLASH_SUFFIX}` : name;
}

/** Rspamd reads header values as bytes: send UTF-8 (an SMTPUTF8 address) as such, not as fetch's Latin-1 error. */
function headerValue(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

function requestHeaders(ctx: CheckContext, password: string | undefined): Headers {
  const { envelope } = ctx;
  const headers = new Headers({ 'Content-Type': 'message/rfc822', 'Queue-Id': headerValue(ctx.messageId) });
  if (envelope.clientIp) headers.set('IP', envelope.clientIp);
  if (envelope.helo) headers.set('Helo', headerValue(envelope.helo));
  // The null reverse-path of a bounce is `<>`, which Rspamd reads as an empty sender.
  headers.set('From', envelope.mailFrom ? headerValue(envelope.mailFrom) : '<>');
  // fetch joins repeated headers with ", "; Rspamd splits Rcpt on commas again.
  for (const r of envelope.recipients) headers.append('Rcpt', headerValue(r.address));
  if (password) headers.set('Password', headerValue(password));
  return headers;
}

/** The body as text, reading at most MAX_RESPONSE_BYTES (a misconfigured url could point at anything). */
async function boundedText(res: Response): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > MAX_RESPONSE_BYTES) throw new CheckFailedError(`rspamd answered more than ${MAX_RESPONSE_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function symbolsOf(answer: z.infer<typeof answerSchema>): SymbolHit[] {
  const action = ACTION_SYMBOLS.get(answer.action);
  if (!action) throw new CheckFailedError(`rspamd answered an action Sekisho does not know: ${JSON.stringify(answer.action.slice(0, 40))}`);
  const hits: SymbolHit[] = [{ name: action, details: [`score=${round(answer.score)} required=${round(answer.required_score)}`] }];
  const names = Object.keys(answer.symbols).filter(Boolean).sort().slice(0, MAX_SYMBOLS);
  for (const rspamdName of names) {
    const sym = answer.symbols[rspamdName];
    const options = (sym?.options ?? []).slice(0, MAX_OPTIONS).map((o) => (o.length > MAX_OPTION_CHARS ? `${o.slice(0, MAX_OPTION_CHARS)}…` : o));
    hits.push({ name: rspamdSymbolName(rspamdName), details: [`score=${round(sym?.score ?? 0)}`, ...options] });
  }
  return hits;
}

export function createRspamdCheck(opts: RspamdCheckOptions): Check {
  const { url, timeoutMs, password } = opts.config;
  const endpoint = `${url}/checkv2`;
  return {
    name: 'rspamd',
    failSymbol: 'RSPAMD_FAIL',
    symbolInfo(name: string): SymbolInfo | undefined {
      return RELAYED_SYMBOL.test(name) && !symbolInfo(name) ? RELAYED_INFO : undefined;
    },
    async run(ctx: CheckContext): Promise<SymbolHit[]> {
      const signal = AbortSignal.any([ctx.signal, AbortSignal.timeout(timeoutMs)]);
      let text: string;
      try {
        // A view of the spooled bytes, not a copy (a Buffer is typed ArrayBufferLike, which fetch's types refuse).
        const body = new Uint8Array(ctx.raw.buffer as ArrayBuffer, ctx.raw.byteOffset, ctx.raw.byteLength);
        const res = await fetch(endpoint, { method: 'POST', headers: requestHeaders(ctx, password), body, signal });
        text = await boundedText(res);
        if (!res.ok) throw new CheckFailedError(`rspamd answered HTTP ${res.status}: ${text.slice(0, 200)}`);
      } catch (err) {
        if (err instanceof CheckFailedError) throw err;
        if (signal.aborted && !ctx.signal.aborted) throw new CheckFailedError(`rspamd did not answer within ${timeoutMs} ms`, { cause: err });
        const reason = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
        throw new CheckFailedError(`rspamd at ${url} could not be reached: ${reason}`, { cause: err });
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new CheckFailedError(`rspamd answered something that is not JSON: ${JSON.stringify(text.slice(0, 80))}`, { cause: err });
      }
      const answer = answerSchema.safeParse(json);
      if (!answer.success) throw new CheckFailedError(`rspamd answered JSON without action, score and symbols: ${answer.error.issues[0]?.message ?? ''}`);
      return symbolsOf(answer.data);
    },
  };
}
