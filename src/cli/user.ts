/**
 * `sekisho user …`: console accounts from the shell (the first admin account is made here).
 *   sekisho user add USERNAME --role ROLE [--tenant ID] [--name NAME] [--email E] [--locale ja|en] [--password-stdin]
 *   sekisho user list [--json]
 *   sekisho user passwd USERNAME [--password-stdin]       (logs the account out everywhere)
 *   sekisho user disable USERNAME | enable USERNAME
 *   sekisho user totp USERNAME [--disable]                 (enrols: prints the otpauth:// URI and the secret)
 *   sekisho user token USERNAME --name N [--expires-days D] | --list | --revoke ID
 * Every option takes --config FILE. A password is read from a TTY twice without echo, else one line from stdin.
 * Rule: every change is audited (actor `cli:<os user>`) BEFORE it is made; if the audit row cannot be written the
 * change is not made. Secrets (password hashes, TOTP secrets) are never printed except a secret at its enrolment.
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import type { LoadedConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { SekishoError } from '../errors.ts';
import { openAdminStores, type AdminStores } from '../admin/admin-stores.ts';
import { isLocked, type Account } from '../admin/auth/account-store.ts';
import { hashPassword, validateNewPassword } from '../admin/auth/passwords.ts';
import { isRole, roleNeedsTenant, roles, type Role } from '../admin/auth/roles.ts';
import { newTotpSecret, totpUri } from '../admin/auth/totp.ts';
import type { AuditEntry } from '../admin/audit/audit-log.ts';

export interface AdminCommandDeps {
  loadConfig(file: string | undefined): LoadedConfig;
  out?(line: string): void;
  err?(line: string): void;
  /** The new password: default reads a TTY twice without echo, or one line of stdin. */
  readPassword?(opts: { fromStdin: boolean }): Promise<string>;
  /** The OS user the audit rows name (`cli:<user>`). Default: os.userInfo(). */
  osUser?(): string;
  /** Default: Date.now. */
  now?(): number;
  /** Where `sekisho audit export` writes without --out. Default: process.stdout. */
  stdout?: NodeJS.WritableStream;
}

const USAGE = `usage: sekisho user add USERNAME --role ROLE [--tenant ID] [--name NAME] [--email E] [--locale ja|en] [--password-stdin] [--config FILE]
       sekisho user list [--json] [--config FILE]
       sekisho user passwd USERNAME [--password-stdin] [--config FILE]
       sekisho user disable USERNAME | enable USERNAME [--config FILE]
       sekisho user totp USERNAME [--disable] [--config FILE]
       sekisho user token USERNAME (--name NAME [--expires-days D] | --list | --revoke ID) [--config FILE]`;

/** Longest password line read from stdin or a TTY, characters: MAX_PASSWORD_CHARS plus room to report it as too long. */
const MAX_PASSWORD_LINE_CHARS = 4_096;
const DAY_MS = 86_400_000;

/** A mistake in the command line: usage is printed, exit status 2. */
export class UsageError extends Error {}

export function cliActor(deps: Pick<AdminCommandDeps, 'osUser'>): string {
  if (deps.osUser) return `cli:${deps.osUser()}`;
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return `cli:uid-${process.getuid?.() ?? 'unknown'}`;
  }
}

/** Runs a command body with usage and SekishoError handling shared by `sekisho user` and `sekisho audit`. */
export async function runAdminCommand(name: string, usage: string, deps: AdminCommandDeps, body: () => Promise<number>): Promise<number> {
  const err = deps.err ?? ((line: string) => void process.stderr.write(`${line}\n`));
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError || (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS'))) {
      err(`sekisho ${name}: ${e.message}\n${usage}`);
      return 2;
    }
    if (e instanceof SekishoError) {
      err(`sekisho ${name}: ${e.message} (${e.code})`);
      return 1;
    }
    throw e;
  }
}

export async function runUserCommand(argv: string[], deps: AdminCommandDeps): Promise<number> {
  const [sub, ...rest] = argv;
  const commands: Record<string, (args: string[], ctx: Context) => Promise<number>> = { add, list, passwd, disable, enable, totp, token };
  const command = sub === undefined ? undefined : commands[sub];
  if (!command) {
    (deps.err ?? ((l: string) => void process.stderr.write(`${l}\n`)))(USAGE);
    return sub === 'help' || sub === '--help' ? 0 : 2;
  }
  return runAdminCommand('user', USAGE, deps, () => command(rest, new Context(deps)));
}

/** What each subcommand gets: output, the config and stores (opened on first use), the audit helper. */
class Context {
  readonly out: (line: string) => void;
  readonly deps: AdminCommandDeps;
  #config: Config | undefined;
  #stores: AdminStores | undefined;

  constructor(deps: AdminCommandDeps) {
    this.deps = deps;
    this.out = deps.out ?? ((line: string) => void process.stdout.write(`${line}\n`));
  }

  now(): number {
    return (this.deps.now ?? Date.now)();
  }

  open(configFile: string | undefined): { config: Config; stores: AdminStores } {
    this.#config ??= this.deps.loadConfig(configFile).config;
    this.#stores ??= openAdminStores(this.#config, { now: this.deps.now });
    return { config: this.#config, stores: this.#stores };
  }

  async close(): Promise<void> {
    await this.#stores?.close();
  }

  async account(username: string): Promise<Account> {
    const a = await this.#stores!.accounts.byUsername(username);
    if (!a) throw new SekishoError('SEKISHO_ERR_AUTH_NOT_FOUND', `no account named "${username}" (sekisho user list)`);
    return a;
  }

  /**
   * Appends the audit row for a change, then makes it. The row goes first: a change that cannot be audited is not
   * made. If the change then fails, a second row records the failure.
   */
  async audited<T>(e: Pick<AuditEntry, 'action' | 'target' | 'tenantId'> & Partial<Pick<AuditEntry, 'details' | 'reason'>>, change: () => Promise<T>): Promise<T> {
    const entry: AuditEntry = { at: this.now(), actor: cliActor(this.deps), role: null, ip: null, reason: null, outcome: 'ok', details: {}, ...e };
    const audit = this.#stores!.audit;
    await audit.append(entry);
    try {
      return await change();
    } catch (err) {
      await audit.append({ ...entry, at: this.now(), outcome: 'failed', reason: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  }

  async newPassword(username: string, fromStdin: boolean): Promise<string> {
    const password = await (this.deps.readPassword ?? readPassword)({ fromStdin });
    validateNewPassword(password, username);
    return hashPassword(password);
  }
}

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(`give exactly one ${what}`);
  return positionals[0]!;
}

const configOption = { config: { type: 'string', short: 'c' } } as const;

async function withContext(ctx: Context, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } finally {
    await ctx.close();
  }
}

async function add(argv: string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...configOption,
      role: { type: 'string' },
      tenant: { type: 'string' },
      name: { type: 'string' },
      email: { type: 'string' },
      locale: { type: 'string' },
      'password-stdin': { type: 'boolean' },
    },
  });
  const username = one(positionals, 'USERNAME');
  if (!isRole(values.role)) throw new UsageError(`--role is one of ${roles.join(', ')}`);
  const role: Role = values.role;
  if (values.locale !== undefined && values.locale !== 'ja' && values.locale !== 'en') throw new UsageError('--locale is ja or en');
  const { config, stores } = ctx.open(values.config);
  return withContext(ctx, async () => {
    const tenantId = values.tenant ?? null;
    if (roleNeedsTenant(role)) {
      if (tenantId === null) throw new UsageError(`role ${role} needs --tenant ID (one of ${config.tenants.map((t) => t.id).join(', ')})`);
      if (!config.tenants.some((t) => t.id === tenantId)) throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', `tenant: no tenant "${tenantId}" in the configuration`);
    } else if (tenantId !== null) {
      throw new UsageError(`role ${role} is prefecture-wide: no --tenant`);
    }
    if (await stores.accounts.byUsername(username)) throw new SekishoError('SEKISHO_ERR_AUTH_DUPLICATE', `an account named "${username}" already exists`);
    const passwordHash = await ctx.newPassword(username, values['password-stdin'] ?? false);
    const fields = { username, displayName: values.name, role, tenantId, email: values.email ?? null, locale: values.locale as 'ja' | 'en' | undefined };
    const a = await ctx.audited(
      { action: 'account.create', target: username, tenantId, details: { role, displayName: fields.displayName ?? username, email: fields.email } },
      () => stores.accounts.create({ ...fields, passwordHash }),
    );
    ctx.out(`created account ${a.username} (${a.role}${a.tenantId ? `, tenant ${a.tenantId}` : ''})`);
    return 0;
  });
}

function status(a: Account, now: number): string {
  if (a.disabled) return 'disabled';
  return isLocked(a, now) ? 'locked' : 'active';
}

async function list(argv: string[], ctx: Context): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { ...configOption, json: { type: 'boolean' } } });
  const { stores } = ctx.open(values.config);
  return withContext(ctx, async () => {
    const now = ctx.now();
    const accounts = await stores.accounts.list();
    const rows = accounts.map((a) => ({
      username: a.username,
      displayName: a.displayName,
      role: a.role,
      tenantId: a.tenantId,
      email: a.email,
      status: status(a, now),
      totp: a.totpSecret !== null,
      lastLoginAt: a.lastLoginAt === null ? null : new Date(a.lastLoginAt).toISOString(),
    }));
    if (values.json) {
      for (const r of rows) ctx.out(JSON.stringify(r));
      return 0;
    }
    const table = [['USERNAME', 'ROLE', 'TENANT', 'STATUS', 'TOTP', 'LAST LOGIN', 'NAME'], ...rows.map((r) => [r.username, r.role, r.tenantId ?? '-', r.status, r.totp ? 'yes' : 'no', r.lastLoginAt ?? '-', r.displayName])];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
    for (const row of table) ctx.out(row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
    return 0;
  });
}

async function passwd(argv: string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...configOption, 'password-stdin': { type: 'boolean' } } });
  const username = one(positionals, 'USERNAME');
  const { stores } = ctx.open(values.config);
  return withContext(ctx, async () => {
    const a = await ctx.account(username);
    const passwordHash = await ctx.newPassword(a.username, values['password-stdin'] ?? false);
    const ended = await ctx.audited({ action: 'account.password', target: a.username, tenantId: a.tenantId }, async () => {
      await stores.accounts.update(a.id, { passwordHash });
      return stores.accounts.deleteSessionsOf(a.id);
    });
    ctx.out(`password of ${a.username} changed; ${ended} session(s) logged out`);
    return 0;
  });
}

async function setDisabled(argv: string[], ctx: Context, disabled: boolean): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: configOption });
  const username = one(positionals, 'USERNAME');
  const { stores } = ctx.open(values.config);
  return withContext(ctx, async () => {
    const a = await ctx.account(username);
    await ctx.audited({ action: disabled ? 'account.disable' : 'account.enable', target: a.username, tenantId: a.tenantId }, () =>
      stores.accounts.update(a.id, { disabled }),
    );
    ctx.out(`${a.username} ${disabled ? 'disabled (its sessions are logged out, its API tokens refused)' : 'enabled'}`);
    return 0;
  });
}

function disable(argv: string[], ctx: Context): Promise<number> {
  return setDisabled(argv, ctx, true);
}

function enable(argv: string[], ctx: Context): Promise<number> {
  return setDisabled(argv, ctx, false);
}

async function totp(argv: string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { ...configOption, disable: { type: 'boolean' } } });
  const username = one(positionals, 'USERNAME');
  const { config, stores } = ctx.open(values.config);
  return withContext(ctx, async () => {
    const a = await ctx.account(username);
    if (values.disable) {
      await ctx.audited({ action: 'account.totp', target: a.username, tenantId: a.tenantId, details: { enabled: false } }, () =>
        stores.accounts.update(a.id, { totpSecret: null }),
      );
      ctx.out(`TOTP of ${a.username} removed: the password alone logs in`);
      return 0;
    }
    const secret = newTotpSecret();
    await ctx.audited({ action: 'account.totp', target: a.username, tenantId: a.tenantId, details: { enabled: true } }, () =>
      stores.accounts.update(a.id, { totpSecret: secret }),
    );
    ctx.out(`TOTP enrolled for ${a.username}: add it to an authenticator app (SHA1, 6 digits, 30 s)`);
    ctx.out(`uri: ${totpUri(secret, `${a.username}@${config.hostname}`)}`);
    ctx.out(`secret: ${secret}`);
    return 0;
  });
}

async function token(argv: string[], ctx: Context): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...configOption, name: { type: 'string' }, 'expires-days': { type: 'string' }, list: { type: 'boolean' }, revoke: { type: 'string' } },
  });
  const username = one(positionals, 'USERNAME');
  const modes = [values.name !== undefined, values.list === true, values.revoke !== undefined].filter(Boolean).length;
  if (modes !== 1) throw new UsageError('give one of --name NAME, --list, --revoke ID');
  const expiresDays = values['expires-days'] === undefined ? undefined : Number(values['expires-days']);
  if (expiresDays !== undefined && !(Number.isInteger(expiresDays) && expiresDays > 0)) throw new UsageError('--expires-days is a whole number of days > 0');
  const { stores } = ctx.open(values.config);
  return withContext(ctx, async () => {
    const a = await ctx.account(username);
    if (values.list) {
      for (const t of await stores.accounts.listTokens(a.id)) {
        const iso = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());
        ctx.out(`${t.id}  ${t.name}  created ${iso(t.createdAt)}  expires ${iso(t.expiresAt)}  last used ${iso(t.lastUsedAt)}${t.revokedAt === null ? '' : `  REVOKED ${iso(t.revokedAt)}`}`);
      }
      return 0;
    }
    if (values.revoke !== undefined) {
      const id = Number(values.revoke);
      const mine = (await stores.accounts.listTokens(a.id)).some((t) => t.id === id);
      if (!mine) throw new SekishoError('SEKISHO_ERR_AUTH_NOT_FOUND', `${a.username} has no API token ${values.revoke}`);
      await ctx.audited({ action: 'token.revoke', target: a.username, tenantId: a.tenantId, details: { tokenId: id } }, () => stores.accounts.revokeToken(id));
      ctx.out(`API token ${id} of ${a.username} revoked`);
      return 0;
    }
    const now = ctx.now();
    const expiresAt = expiresDays === undefined ? null : now + expiresDays * DAY_MS;
    const name = values.name!;
    const created = await ctx.audited({ action: 'token.create', target: a.username, tenantId: a.tenantId, details: { name, expiresAt } }, () =>
      stores.accounts.createToken({ accountId: a.id, name, now, expiresAt }),
    );
    ctx.out(`API token ${created.record.id} "${name}" for ${a.username}${expiresAt === null ? '' : ` (expires ${new Date(expiresAt).toISOString()})`}; shown once, keep it secret:`);
    ctx.out(created.token);
    return 0;
  });
}

/** The new password: twice without echo on a TTY (unless --password-stdin), else the first line of stdin. */
export async function readPassword(opts: { fromStdin: boolean }): Promise<string> {
  const stdin = process.stdin;
  if (opts.fromStdin || !stdin.isTTY) return readStdinLine();
  const first = await promptHidden('New password: ');
  const second = await promptHidden('Repeat it: ');
  if (first !== second) throw new SekishoError('SEKISHO_ERR_AUTH_INVALID', 'password: the two entries differ');
  return first;
}

function tooLong(): SekishoError {
  return new SekishoError('SEKISHO_ERR_AUTH_INVALID', `password: the line is longer than ${MAX_PASSWORD_LINE_CHARS} characters`);
}

/** The first line of stdin (without its line ending); stdin is released afterwards so the process can exit. */
function readStdinLine(): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    let buf = '';
    const finish = (line: string | Error) => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.off('error', onError);
      stdin.pause();
      if (line instanceof Error) reject(line);
      else resolve(line.replace(/\r$/, ''));
    };
    const onData = (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) finish(buf.slice(0, nl));
      else if (buf.length > MAX_PASSWORD_LINE_CHARS) finish(tooLong());
    };
    const onEnd = () => finish(buf);
    const onError = (e: Error) => finish(e);
    stdin.setEncoding('utf8');
    stdin.on('data', onData);
    stdin.once('end', onEnd);
    stdin.once('error', onError);
  });
}

/** Reads one line from the TTY without echoing it (raw mode; Backspace edits, Ctrl-C aborts). Prompts on stderr. */
function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (result: string | Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (result instanceof Error) reject(result);
      else resolve(result);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish(value);
        if (ch === '\u0003') return finish(new UsageError('interrupted'));
        if (ch === '\u007f' || ch === '\b') value = [...value].slice(0, -1).join('');
        else value += ch;
        if (value.length > MAX_PASSWORD_LINE_CHARS) return finish(tooLong());
      }
    };
    stdin.setEncoding('utf8');
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}
