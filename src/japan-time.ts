/**
 * Japan time, the prefecture's: the day a console date means, the day a chart bucket starts, the hour a digest is
 * due. Japan has no daylight saving time, so a fixed offset is exact.
 */

export const JST_OFFSET_MS = 9 * 3_600_000;
const DAY_MS = 86_400_000;

/** The start (epoch ms) of the Japan-time day that contains `ms`. */
export function jstDayStart(ms: number): number {
  return Math.floor((ms + JST_OFFSET_MS) / DAY_MS) * DAY_MS - JST_OFFSET_MS;
}

/** The Japan-time day (YYYY-MM-DD) and hour of `ms`. */
export function jstDayAndHour(ms: number): { day: string; hour: number } {
  const d = new Date(ms + JST_OFFSET_MS);
  return { day: d.toISOString().slice(0, 10), hour: d.getUTCHours() };
}

/**
 * A date given in a form or a query: YYYY-MM-DD is that day in Japan (its start, or with `endOfDay` the start of the
 * next day, so a range "to" a day includes it); anything else is parsed as an ISO time. Undefined when empty or not
 * a date.
 */
export function parseJapanDate(s: string | undefined, endOfDay: boolean): number | undefined {
  const v = s?.trim();
  if (!v) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}$/.test(v) ? Date.parse(`${v}T00:00:00+09:00`) + (endOfDay ? DAY_MS : 0) : Date.parse(v);
  return Number.isFinite(ms) ? ms : undefined;
}
