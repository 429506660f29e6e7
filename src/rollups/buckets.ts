// UTC bucket arithmetic for hour, day and month buckets (pure).
import type { Granularity } from "./levels.js";

const HOUR = 3_600_000;
const DAY = 86_400_000;

export function alignDown(t: Date, g: Granularity): Date {
  const ms = t.getTime();
  if (g === "hour") return new Date(Math.floor(ms / HOUR) * HOUR);
  if (g === "day") return new Date(Math.floor(ms / DAY) * DAY);
  return new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), 1));
}

export function addBuckets(t: Date, g: Granularity, n: number): Date {
  if (g === "hour") return new Date(t.getTime() + n * HOUR);
  if (g === "day") return new Date(t.getTime() + n * DAY);
  return new Date(
    Date.UTC(
      t.getUTCFullYear(),
      t.getUTCMonth() + n,
      t.getUTCDate(),
      t.getUTCHours(),
      t.getUTCMinutes(),
      t.getUTCSeconds(),
      t.getUTCMilliseconds(),
    ),
  );
}

/** Number of whole buckets in [from, to) for aligned bounds. */
export function bucketCount(from: Date, to: Date, g: Granularity): number {
  if (g === "month") {
    return (to.getUTCFullYear() - from.getUTCFullYear()) * 12 + (to.getUTCMonth() - from.getUTCMonth());
  }
  return Math.round((to.getTime() - from.getTime()) / (g === "hour" ? HOUR : DAY));
}

/** The billing period (UTC calendar month) containing t. */
export function periodOf(t: Date): { start: Date; end: Date } {
  const start = alignDown(t, "month");
  return { start, end: addBuckets(start, "month", 1) };
}

/** Parses "YYYY-MM" into its period, or undefined. */
export function parsePeriod(text: string): { start: Date; end: Date } | undefined {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(text);
  if (!m) return undefined;
  const start = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1));
  return { start, end: addBuckets(start, "month", 1) };
}
