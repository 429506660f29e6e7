// UTC bucket arithmetic for hour, day and month buckets (pure).
import type { Granularity } from "./levels.js";

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** Date.UTC, but the years 0–99 are those years (Date.UTC reads them as 1900–1999). */
function utc(year: number, month: number, day = 1, h = 0, m = 0, s = 0, ms = 0): Date {
  const d = new Date(0);
  d.setUTCFullYear(year, month, day);
  d.setUTCHours(h, m, s, ms);
  return d;
}

export function alignDown(t: Date, g: Granularity): Date {
  const ms = t.getTime();
  if (g === "hour") return new Date(Math.floor(ms / HOUR) * HOUR);
  if (g === "day") return new Date(Math.floor(ms / DAY) * DAY);
  return utc(t.getUTCFullYear(), t.getUTCMonth());
}

export function addBuckets(t: Date, g: Granularity, n: number): Date {
  if (g === "hour") return new Date(t.getTime() + n * HOUR);
  if (g === "day") return new Date(t.getTime() + n * DAY);
  return utc(
    t.getUTCFullYear(),
    t.getUTCMonth() + n,
    t.getUTCDate(),
    t.getUTCHours(),
    t.getUTCMinutes(),
    t.getUTCSeconds(),
    t.getUTCMilliseconds(),
  );
}

/** Number of whole buckets in [from, to) for aligned bounds. */
export function bucketCount(from: Date, to: Date, g: Granularity): number {
  if (g === "month") {
    return (to.getUTCFullYear() - from.getUTCFullYear()) * 12 + (to.getUTCMonth() - from.getUTCMonth());
  }
  return Math.round((to.getTime() - from.getTime()) / (g === "hour" ? HOUR : DAY));
}
