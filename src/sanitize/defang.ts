/**
 * Defanging: a URL stays readable but no mail client turns it into a link (hxxps://example[.]com/path).
 * Applied to link targets taken from HTML and to every URL written in the text itself, because clients auto-link
 * `scheme://…`, `www.…`, `mailto:…` and (Outlook) `\\server\share` in plain text.
 *
 * The one rule: defanging is idempotent. Text already defanged passes through unchanged, so the whole output can
 * be defanged once more at the end without doubling brackets.
 */

/** Schemes shown with letters replaced (the convention readers know); any other scheme gets `[:]`. */
const DEFANGED_SCHEMES: Record<string, string> = { http: 'hxxp', https: 'hxxps', ftp: 'fxp', ftps: 'fxps' };
const ALREADY_DEFANGED = new Set(Object.values(DEFANGED_SCHEMES));

/** `scheme://rest` in running text; the URL ends at white space, a quote or an angle bracket. */
const SCHEME_URL_RE = /([a-z][a-z0-9+.-]*):\/\/([^\s<>"]*)/gi;
/** A scheme inside the rest of a URL (a redirect's target in its query): only the scheme is broken there. */
const NESTED_SCHEME_RE = /([a-z][a-z0-9+.-]*):\/\//gi;
/** `www.host` without a scheme, not part of a longer name. */
const WWW_HOST_RE = /(?<![a-z0-9.@-])www\.[a-z0-9-]+(?:\.[a-z0-9-]+)*/gi;
/** Schemes without `//` that clients open (mail composer, files, scripts, Office and search handlers). */
const OPAQUE_SCHEME_RE = /(?<![a-z0-9+.-])(mailto|file|javascript|vbscript|data|news|nntp|search-ms|ms-[a-z0-9-]+):(?=\S)([^\s<>"]*)/gi;
/** A UNC path (`\\server\share`), which Outlook links and Windows opens over SMB. */
const UNC_RE = /(?<!\\)\\\\(?=[a-z0-9_$-]+[.\\a-z0-9_$-]*\\)/gi;

/** Dots bracketed, except those that already are. */
function defangHost(host: string): string {
  return host.replace(/(?<!\[)\.(?!\])/g, '[.]');
}

/** `user@host.example` with the host's dots bracketed. */
function defangAddress(address: string): string {
  const at = address.lastIndexOf('@');
  if (at < 0) return defangHost(address);
  const end = address.slice(at + 1).search(/[?#]/);
  const domainEnd = end < 0 ? address.length : at + 1 + end;
  return address.slice(0, at + 1) + defangHost(address.slice(at + 1, domainEnd)) + address.slice(domainEnd);
}

/** What `scheme://` becomes: `hxxps://`, or `other[:]//`; an already defanged scheme stays. */
function schemePrefix(scheme: string): string {
  const lower = scheme.toLowerCase();
  if (ALREADY_DEFANGED.has(lower)) return `${scheme}://`;
  const letters = DEFANGED_SCHEMES[lower];
  return letters ? `${letters}://` : `${scheme}[:]//`;
}

/** `host/path?query`: the host's dots bracketed, any scheme in the rest broken. */
function defangAfterSlashes(rest: string): string {
  const hostEnd = rest.search(/[/?#\\]/);
  if (hostEnd < 0) return defangHost(rest);
  return defangHost(rest.slice(0, hostEnd)) + rest.slice(hostEnd).replace(NESTED_SCHEME_RE, (_m: string, s: string) => schemePrefix(s));
}

function defangOpaque(scheme: string, rest: string): string {
  return scheme.toLowerCase() === 'mailto' ? defangAddress(rest) : `${scheme}[:]${rest}`;
}

/**
 * One URL (an href) → visible, not clickable: `https://a.example/x` → `hxxps://a[.]example/x`,
 * `mailto:info@city.example` → `info@city[.]example`, `www.a.example` → `www[.]a[.]example`,
 * `javascript:…` → `javascript[:]…`. White space and control characters inside are dropped first, as browsers do.
 */
export function defangUrl(url: string): string {
  const u = url.replace(/[\s\p{Cc}]/gu, '');
  const withSlashes = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/is.exec(u);
  if (withSlashes) return schemePrefix(withSlashes[1]!) + defangAfterSlashes(withSlashes[2]!);
  const opaque = /^([a-z][a-z0-9+.-]*):(.*)$/is.exec(u);
  if (opaque) return defangOpaque(opaque[1]!, opaque[2]!);
  if (u.startsWith('//')) return `//${defangAfterSlashes(u.slice(2))}`;
  return defangText(u).text;
}

/** Every URL in running text defanged; `count` is how many were. Bare e-mail addresses are left as they are. */
export function defangText(text: string): { text: string; count: number } {
  let count = 0;
  const out = text
    .replace(SCHEME_URL_RE, (m: string, scheme: string, rest: string) => {
      if (ALREADY_DEFANGED.has(scheme.toLowerCase())) return m;
      count++;
      return schemePrefix(scheme) + defangAfterSlashes(rest);
    })
    .replace(OPAQUE_SCHEME_RE, (_m: string, scheme: string, rest: string) => {
      count++;
      return defangOpaque(scheme, rest);
    })
    .replace(WWW_HOST_RE, (m: string) => {
      count++;
      return defangHost(m);
    })
    .replace(UNC_RE, () => {
      count++;
      return '[\\\\]';
    });
  return { text: out, count };
}
