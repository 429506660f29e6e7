// Time-zone offsets from the platform's Intl (ICU) data, cached so that hot paths never format a date (pure, no
// I/O). Intl only answers "what is the wall clock at this instant" (µs per call), so offsets are read once per zone
// and 32-day bucket — sampled daily, each change located to the second by bisection — and looked up afterwards.
import { unprocessable } from "../errors.js";
import { DAY, HOUR, SECOND, wallOf } from "./calendar.js";

/** The offsets of one 32-day bucket: `first` at its start, then `offsets[i]` from `at[i]` on. */
interface Changes {
  first: number;
  at: number[];
  offsets: number[];
}

export interface Zone {
  /** The canonical IANA name Intl resolved. */
  name: string;
  /** UTC (or an alias of it): offsets are 0 and no Intl is involved at all. */
  utc: boolean;
  format: Intl.DateTimeFormat | null;
  /** A number when the offset is constant over the bucket (nearly always), else its changes. */
  buckets: Map<number, number | Changes>;
  /** Weekly samples [from, to] spans (flattened) whose offset is not whole hours; computed on first need. */
  offHour: number[] | null;
}

const SAMPLES = 32;
const BUCKET = SAMPLES * DAY;
const WEEK = 7 * DAY;
/** The years validation scans for off-hour offsets: transitions before 1970 are not in every ICU build. */
const SCAN_FROM = Date.UTC(1970, 0, 1);
const SCAN_TO = Date.UTC(2101, 0, 1);

const UTC: Zone = { name: "UTC", utc: true, format: null, buckets: new Map(), offHour: [] };
const byCanonical = new Map<string, Zone>([["UTC", UTC]]);
/** Names as callers spell them ("Etc/UTC", "europe/berlin"); cleared if odd spellings ever pile up. */
const byName = new Map<string, Zone>([["UTC", UTC]]);

/** The zone of an IANA name; 422 `unknown_time_zone` when Intl does not know it. */
export function resolveZone(name: string): Zone {
  const known = byName.get(name);
  if (known) return known;
  let format: Intl.DateTimeFormat;
  try {
    if (typeof name !== "string" || name === "") throw new RangeError("empty");
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: name,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
  } catch {
    throw unprocessable("unknown_time_zone", `${JSON.stringify(name)} is not an IANA time zone`, [
      { field: "billing.time_zone", message: "unknown time zone" },
    ]);
  }
  const canonical = format.resolvedOptions().timeZone;
  let zone = byCanonical.get(canonical);
  if (!zone) {
    zone = { name: canonical, utc: false, format, buckets: new Map(), offHour: null };
    byCanonical.set(canonical, zone);
  }
  if (byName.size >= 10_000) byName.clear();
  byName.set(name, zone);
  return zone;
}

const WALL = /^(\d+)\/(\d+)\/(\d+), (\d+):(\d+):(\d+)$/;

/** The offset (wall − UTC, ms) at an instant, straight from Intl (slow: only to fill the caches). */
function intlOffset(zone: Zone, t: number): number {
  const s = Math.floor(t / SECOND) * SECOND;
  const m = WALL.exec((zone.format as Intl.DateTimeFormat).format(s));
  if (!m) throw new Error(`Intl gave an unexpected wall clock for ${zone.name} at ${new Date(s).toISOString()}`);
  const [, month, day, year, h, min, sec] = m.map(Number) as number[];
  return wallOf(year!, month!, day!, ((h! * 60 + min!) * 60 + sec!) * SECOND) - s;
}

/** The instant (to the second) in (lo, hi] where the offset first differs from `before`, `hi` being different. */
function changeBetween(zone: Zone, lo: number, before: number, hi: number): number {
  let low = lo;
  let high = hi;
  while (high - low > SECOND) {
    const mid = low + Math.floor((high - low) / (2 * SECOND)) * SECOND;
    if (intlOffset(zone, mid) === before) low = mid;
    else high = mid;
  }
  return high;
}

/** Reads one bucket's offsets: daily samples; between two that differ, bisection finds each change. */
function readBucket(zone: Zone, index: number): number | Changes {
  const from = index * BUCKET;
  const first = intlOffset(zone, from);
  const at: number[] = [];
  const offsets: number[] = [];
  let offset = first;
  for (let i = 1; i <= SAMPLES; i++) {
    const sample = from + i * DAY;
    const next = intlOffset(zone, sample);
    let lo = sample - DAY;
    while (next !== offset) {
      const change = changeBetween(zone, lo, offset, sample);
      offset = intlOffset(zone, change);
      // A change exactly at the next bucket's start is that bucket's `first`.
      if (change < from + BUCKET) {
        at.push(change);
        offsets.push(offset);
      }
      lo = change;
    }
  }
  return at.length === 0 ? first : { first, at, offsets };
}

/** The zone's offset (wall − UTC, ms) at instant t: a map lookup once the bucket has been read. */
export function offsetAt(zone: Zone, t: number): number {
  if (zone.utc) return 0;
  const index = Math.floor(t / BUCKET);
  let bucket = zone.buckets.get(index);
  if (bucket === undefined) {
    bucket = readBucket(zone, index);
    zone.buckets.set(index, bucket);
  }
  if (typeof bucket === "number") return bucket;
  let offset = bucket.first;
  for (let i = 0; i < bucket.at.length && t >= (bucket.at[i] as number); i++) offset = bucket.offsets[i] as number;
  return offset;
}

/**
 * The instant of a wall time in a zone, with Temporal's "compatible" disambiguation: a wall time skipped by a
 * spring-forward gap is moved forward by the gap; one repeated by a fall-back is its earlier instant. Assumes no two
 * offset changes within a day of each other (true of the tz database).
 */
export function wallToInstant(zone: Zone, wall: number): number {
  if (zone.utc) return wall;
  const before = offsetAt(zone, wall - DAY);
  const after = offsetAt(zone, wall + DAY);
  if (before === after) return wall - before;
  const early = wall - Math.max(before, after);
  const late = wall - Math.min(before, after);
  if (offsetAt(zone, early) === Math.max(before, after)) return early;
  if (offsetAt(zone, late) === Math.min(before, after)) return late;
  // In a gap (before < after): the earlier offset applied to the wall time lands `gap` later on the wall.
  return wall - before;
}

/** Wall milliseconds of an instant in a zone. */
export function instantToWall(zone: Zone, t: number): number {
  return t + offsetAt(zone, t);
}

/** Weekly samples 1970–2100 whose offset is not whole hours, as flattened [from, to] spans (cached per zone). */
function offHourSpans(zone: Zone): number[] {
  if (zone.offHour) return zone.offHour;
  const spans: number[] = [];
  let open = false;
  for (let t = SCAN_FROM; t < SCAN_TO; t += WEEK) {
    const off = intlOffset(zone, t) % HOUR !== 0;
    if (off && !open) spans.push(t, t);
    if (off) spans[spans.length - 1] = t;
    open = off;
  }
  zone.offHour = spans;
  return spans;
}

/** A sampled instant in [from, to] where the zone's offset is not whole hours (1970–2100 only), or null. */
export function offHourInstant(zone: Zone, from: number, to: number): number | null {
  if (zone.utc) return null;
  const spans = offHourSpans(zone);
  for (let i = 0; i < spans.length; i += 2) {
    const start = spans[i] as number;
    const end = spans[i + 1] as number;
    if (end >= from && start <= to) return Math.max(start, from);
  }
  return null;
}
