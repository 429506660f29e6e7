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
