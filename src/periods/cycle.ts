// Billing cycles (pure): the periods of a subscription's cycle. Boundary k is the anchor advanced by k × count
// intervals in the cycle's local time, computed from the anchor directly — never by stepping from the previous
// boundary (STYLE.md 18) — and "the period containing t" estimates k by arithmetic, then corrects it by a step.
import { badRequest, unprocessable } from "../errors.js";
import { addMonths, type CivilDate, civilFromDays, DAY, HOUR, monthNumber, wallOf } from "./calendar.js";
import { instantToWall, offHourInstant, offsetAt, resolveZone, wallToInstant, type Zone } from "./zones.js";

export type Interval = "day" | "week" | "month" | "year";

export interface BillingCycle {
  interval: Interval;
  intervalCount: number;
  /** Boundary 0; every other boundary keeps its local day of month (clamped) and time of day. */
  anchor: Date;
  /** IANA name; "UTC" takes a path without Intl. */
  timeZone: string;
}

/** [start, end); index k counts periods from the anchor (0 starts at it, negative ones lie before it). */
export interface Period {
  start: Date;
  end: Date;
  index: number;
}

/** Stripe's ceiling: a period is at most three years. */
const MAX_COUNT: Record<Interval, number> = { day: 1095, week: 156, month: 36, year: 3 };
/** Wall times from year 1 to 9999: the range Intl formats without eras. */
const MIN_WALL = wallOf(1, 1, 1);
const MAX_WALL = wallOf(10000, 1, 1);

/** A cycle taken apart: its zone, the anchor's local date and time of day, and the step in months or in days. */
interface Parts {
  zone: Zone;
  /** The zone as the caller spelled it, for messages. */
  name: string;
  anchor: number;
  anchorWall: number;
  date: CivilDate;
  timeOfDay: number;
  months: number;
  days: number;
}

const invalid = (field: string, detail: string) =>
  unprocessable("invalid_billing_cycle", detail, [{ field: `billing.${field}`, message: detail }]);
const notAligned = (field: string, detail: string) =>
  unprocessable("period_not_hour_aligned", detail, [{ field: `billing.${field}`, message: detail }]);

/** "Asia/Kolkata is UTC+5:30 at …": why a zone's boundaries cannot all be whole UTC hours. */
function offHour(zone: Zone, name: string, t: number) {
  const minutes = Math.round(offsetAt(zone, t) / 60_000);
  const abs = Math.abs(minutes);
  const offset = `UTC${minutes < 0 ? "-" : "+"}${Math.floor(abs / 60)}:${String(abs % 60).padStart(2, "0")}`;
  return notAligned(
    "time_zone",
    `${name} is ${offset} at ${new Date(t).toISOString()}: period boundaries in it are not whole UTC hours (rollups are hourly)`,
  );
}

/** The cycle's step in months (month, year) or in days (day, week), once its interval and count are checked. */
function stepOf(c: BillingCycle): { months: number; days: number } {
  if (!Object.hasOwn(MAX_COUNT, c.interval)) throw invalid("interval", "interval must be day, week, month or year");
  const max = MAX_COUNT[c.interval];
  if (!Number.isInteger(c.intervalCount) || c.intervalCount < 1 || c.intervalCount > max) {
    throw invalid("interval_count", `interval_count must be a whole number from 1 to ${max} for ${c.interval}s`);
  }
  if (!(c.anchor instanceof Date) || !Number.isFinite(c.anchor.getTime())) {
    throw invalid("anchor", "anchor must be an instant");
  }
  const n = c.intervalCount;
  return c.interval === "month" || c.interval === "year"
    ? { months: c.interval === "year" ? 12 * n : n, days: 0 }
    : { months: 0, days: c.interval === "week" ? 7 * n : n };
}

/** Checks what is cheap to check (on every call) and takes the cycle apart. */
function partsOf(c: BillingCycle): Parts {
  const { months, days } = stepOf(c);
  const anchor = c.anchor.getTime();
  if (anchor % HOUR !== 0) {
    throw notAligned("anchor", `the anchor ${c.anchor.toISOString()} is not a whole UTC hour (rollups are hourly)`);
  }
  const zone = resolveZone(c.timeZone);
  const anchorWall = instantToWall(zone, anchor);
  const day = Math.floor(anchorWall / DAY);
  return {
    zone,
    name: c.timeZone,
    anchor,
    anchorWall,
    date: civilFromDays(day),
    timeOfDay: anchorWall - day * DAY,
    months,
    days,
  };
}

/** Boundary k in UTC milliseconds; throws `period_not_hour_aligned` rather than return an off-hour boundary. */
function boundary(p: Parts, k: number): number {
  // The anchor is boundary 0 even where its wall time occurs twice and "compatible" would pick the other instant.
  if (k === 0) return p.anchor;
  const wall = p.months > 0 ? addMonths(p.date, p.timeOfDay, k * p.months) : p.anchorWall + k * p.days * DAY;
  if (!(wall >= MIN_WALL && wall < MAX_WALL)) throw new RangeError(`period ${k} lies outside the years 1–9999`);
  const t = wallToInstant(p.zone, wall);
  if (t % HOUR !== 0) throw offHour(p.zone, p.name, t);
  return t;
}

function periodOf(p: Parts, k: number): Period {
  return { start: new Date(boundary(p, k)), end: new Date(boundary(p, k + 1)), index: k };
}

function containing(p: Parts, t: number): Period {
  const wall = instantToWall(p.zone, t);
  // Exact up to the DST shift and the time of day within the boundary's month or day: off by at most one.
  let k =
    p.months > 0
      ? Math.floor((monthNumber(civilFromDays(Math.floor(wall / DAY))) - monthNumber(p.date)) / p.months)
      : Math.floor((wall - p.anchorWall) / (p.days * DAY));
  let start = boundary(p, k);
  while (t < start) {
    k -= 1;
    start = boundary(p, k);
  }
  let end = boundary(p, k + 1);
  while (t >= end) {
    k += 1;
    start = end;
    end = boundary(p, k + 1);
  }
  return { start: new Date(start), end: new Date(end), index: k };
}

/**
 * Checks a cycle before it is stored: 422 `invalid_billing_cycle` (interval, interval_count 1..3 years' worth),
 * `unknown_time_zone`, or `period_not_hour_aligned` when the anchor is not a whole UTC hour or the zone's offset is
 * not whole hours anywhere from one period before the anchor to the end of 2100 (Asia/Kolkata, Asia/Kathmandu,
 * Australia/Lord_Howe's half-hour DST). A whole-hour anchor and whole-hour offsets make every boundary a whole UTC
 * hour; beyond that window (or between weekly samples) the per-boundary check still refuses any off-hour boundary.
 */
export function validateCycle(c: BillingCycle): void {
  const { months, days } = stepOf(c);
  const zone = resolveZone(c.timeZone);
  // The zone first: with Asia/Kolkata even the anchor of its calendar months (18:30Z) is off the hour.
  const anchor = c.anchor.getTime();
  const back = months > 0 ? (months * 31 + 1) * DAY : (days + 1) * DAY;
  const to = Math.max(anchor, Date.UTC(2101, 0, 1));
  const off = offsetAt(zone, anchor) % HOUR !== 0 ? anchor : offHourInstant(zone, anchor - back, to);
  if (off !== null) throw offHour(zone, c.timeZone, off);
  partsOf(c);
}

/** Calendar months in a zone: anchored at 2000-01-01T00:00 local. */
export function calendarMonths(timeZone = "UTC"): BillingCycle {
  const anchor = new Date(wallToInstant(resolveZone(timeZone), wallOf(2000, 1, 1)));
  return { interval: "month", intervalCount: 1, anchor, timeZone };
}

/** The default cycle: UTC calendar months, anchored at the start of the month the subscription starts in. */
export function defaultCycle(subscriptionStart: Date): BillingCycle {
  const anchor = new Date(Date.UTC(subscriptionStart.getUTCFullYear(), subscriptionStart.getUTCMonth(), 1));
  return { interval: "month", intervalCount: 1, anchor, timeZone: "UTC" };
}

/** Boundary k: the start of period k and the end of period k − 1. */
export function periodStart(c: BillingCycle, k: number): Date {
  if (!Number.isSafeInteger(k)) throw new RangeError(`period index ${k} is not an integer`);
  return new Date(boundary(partsOf(c), k));
}

export function periodAt(c: BillingCycle, k: number): Period {
  if (!Number.isSafeInteger(k)) throw new RangeError(`period index ${k} is not an integer`);
  return periodOf(partsOf(c), k);
}

/** The period with start ≤ t < end. */
export function periodContaining(c: BillingCycle, t: Date): Period {
  const ms = t.getTime();
  if (!Number.isFinite(ms)) throw new RangeError("not an instant");
  return containing(partsOf(c), ms);
}

export function nextPeriod(c: BillingCycle, p: Period): Period {
  return periodAt(c, p.index + 1);
}

export function previousPeriod(c: BillingCycle, p: Period): Period {
  return periodAt(c, p.index - 1);
}

/**
 * The first period whose start falls in a calendar month ("YYYY-MM") read in the cycle's zone, or null when none
 * does (a yearly cycle, most months). For UTC cycles the month is the UTC calendar month.
 */
export function periodStartingInMonth(c: BillingCycle, month: string): Period | null {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month);
  if (!m)
    throw badRequest("invalid_period", "period must be a month as YYYY-MM", [
      { field: "period", message: "must be a month as YYYY-MM" },
    ]);
  const p = partsOf(c);
  const year = Number(m[1]);
  const monthOfYear = Number(m[2]);
  const from = wallToInstant(p.zone, wallOf(year, monthOfYear, 1));
  const to = wallToInstant(p.zone, monthOfYear === 12 ? wallOf(year + 1, 1, 1) : wallOf(year, monthOfYear + 1, 1));
  const around = containing(p, from);
  const first = around.start.getTime() === from ? around : periodOf(p, around.index + 1);
  return first.start.getTime() < to ? first : null;
}

/** The length of a period in hours (743 or 745 for a month across a DST change, 23 or 25 for such a day). */
export function periodHours(p: Period): number {
  return (p.end.getTime() - p.start.getTime()) / HOUR;
}
