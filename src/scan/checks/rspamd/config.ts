/**
 * `rspamd`: an optional Rspamd the messages are also sent to (its `/checkv2`). Without `url` the check is not
 * registered; with it, Rspamd's answer is symbols like any other check's, and an Rspamd that does not answer is
 * RSPAMD_FAIL (mail waits, never passes).
 *
 * Example:
 *   rspamd:
 *     url: http://127.0.0.1:11333
 *     timeoutMs: 10000
 */
import { z } from 'zod';

/** Scheme, host and port only: the check appends `/checkv2` itself. */
const baseUrl = z
  .string()
  .regex(/^https?:\/\/(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(?::\d{1,5})?\/?$/, 'must be http(s)://host:port, like http://127.0.0.1:11333')
  .transform((u) => u.replace(/\/$/, ''));

export const rspamdConfigSchema = z.strictObject({
  /** Rspamd's normal worker (or its controller, with `password`), e.g. http://127.0.0.1:11333. Absent: no Rspamd. */
  url: baseUrl.optional(),
  /**
   * Milliseconds one message may take (connect, upload, Rspamd's own DNS and rules, answer) before it is
   * RSPAMD_FAIL. Rspamd's own task_timeout is 8 s by default; scan.checkTimeoutMs bounds this too.
   */
  timeoutMs: z.number().int().positive().default(10_000),
  /** Sent as the `Password` header: needed when `url` is Rspamd's controller, which asks for one. */
  password: z.string().min(1).optional(),
});

export type RspamdConfig = z.infer<typeof rspamdConfigSchema>;
