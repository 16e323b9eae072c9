/** A domain name in the config (a tenant's, a shortener's, a look-alike to ignore): letters, digits and "-" labels, lower-cased. */
import { z } from 'zod';

export const DOMAIN_NAME = /^(?=.{1,253}$)(?:[a-zA-Z0-9-]{1,63}\.)*[a-zA-Z0-9-]{1,63}$/;

/** The key's schema; `example` names a typical value in the error message. */
export function domainName(example = 'city-a.example.lg.jp') {
  return z
    .string()
    .regex(DOMAIN_NAME, `must be a domain name like ${example}`)
    .transform((d) => d.toLowerCase());
}
