// Projecting a meter's quantity to the end of the billing period (pure). `sum` and `count` meters run on at the
// rate of the trailing 7 days — or, once there are two weeks of history, at the average of each hour of the week
// over the full weeks seen (up to 4), so weekday peaks and quiet weekends are projected where they fall. `max` and
// `last` meters are projected at their current value: what is reached stays reached, and nothing says it grows.
//
// A projection needs only a few figures of the history (HistoryFigures), never the hours themselves: the database
// reduces four weeks of usage of every customer to them (forecast/history.ts: whole days of the daily rollup and the
// hours where the weights change, historyPlan.ts), and historyFigures below reduces a map of hours the same way.
import type { Aggregation } from "../catalog/schemas.js";
import { Dec, ZERO } from "../pricing/money.js";

export type ForecastMethod = "run_rate_7d" | "hour_of_week" | "current_value";

const HOUR = 3_600_000;
export const WEEK_HOURS = 168;
/** History is read this far back (4 weeks of hour-of-week profile). */
export const HISTORY_HOURS = 4 * WEEK_HOURS;
/** Profiles average over the last 2, 3 or 4 full weeks, as many as the history has. */
export const PROFILE_WEEKS = [2, 3, 4] as const;

/**
 * What a projection reads of a meter's hourly history (the hours before `now`'s hour, at most HISTORY_HOURS back;
 * the figure of an hour is its sum of values for `sum`, its number of events for `count`).
 */
export interface HistoryFigures {
  /** The first hour with a figure (epoch ms); null: none. */
  first: number | null;
  /** The figures of the last 168 hours, added up. */
  lastWeek: Dec;
  /**
   * Per number of weeks w (2, 3, 4): Σ figure(h) × weight(hour of week of h) over the last w weeks, where the weight
   * of an hour of the week is how much of the rest of the period falls on it (restWeights): the hour-of-week
   * profile of w weeks, times w, already spread over the rest of the period.
   */
  weighted: Record<(typeof PROFILE_WEEKS)[number], Dec>;
}

const hourOfWeek = (t: number) => Math.floor(t / HOUR) % WEEK_HOURS;
const hourOf = (t: Date) => Math.floor(t.getTime() / HOUR) * HOUR;

/**
 * For each hour of the week (0..167), how many hours of [now, periodEnd) fall on it: the rest of the current hour
 * counts for its part still to come (the events of its first part are in the quantity to date), the last hour for
 * its part before the period ends.
 */
export function restWeights(now: Date, periodEnd: Date): Dec[] {
  const weights = Array.from({ length: WEEK_HOURS }, () => ZERO);
  const nowHour = hourOf(now);
  const end = periodEnd.getTime();
  if (end <= now.getTime()) return weights;
  const add = (h: number, share: Dec) => {
    weights[hourOfWeek(h)] = (weights[hourOfWeek(h)] as Dec).plus(share);
  };
  add(nowHour, new Dec(Math.min(nowHour + HOUR, end) - now.getTime()).div(HOUR));
  for (let h = nowHour + HOUR; h < end; h += HOUR) add(h, h + HOUR <= end ? new Dec(1) : new Dec(end - h).div(HOUR));
  return weights;
}

/** The figures of a map of hourly figures (keyed by hour start, epoch ms), as the database computes them. */
export function historyFigures(hourly: ReadonlyMap<number, Dec>, now: Date, periodEnd: Date): HistoryFigures {
  const nowHour = hourOf(now);
  const weights = restWeights(now, periodEnd);
  let first: number | null = null;
  let lastWeek = ZERO;
  const weighted = { 2: ZERO, 3: ZERO, 4: ZERO };
  for (const [h, v] of hourly) {
    if (h >= nowHour || h < nowHour - HISTORY_HOURS * HOUR) continue;
    first = first === null ? h : Math.min(first, h);
    if (h >= nowHour - WEEK_HOURS * HOUR) lastWeek = lastWeek.plus(v);
    const w = v.times(weights[hourOfWeek(h)] as Dec);
    for (const weeks of PROFILE_WEEKS) {
      if (h >= nowHour - weeks * WEEK_HOURS * HOUR) weighted[weeks] = weighted[weeks].plus(w);
    }
  }
  return { first, lastWeek, weighted };
}

export interface Projection {
  method: ForecastMethod;
  /** What the rest of the period adds to the quantity to date (0 for every aggregation but sums and counts). */
  rest: Dec;
}

/** The part of the period still to come, projected from the meter's history. */
export function projectRest(aggregation: Aggregation, h: HistoryFigures, now: Date, periodEnd: Date): Projection {
  // Only sums and counts grow by adding: a max, min, last, average or distinct count is forecast at its current
  // value (for a distinct count, a floor: users still to come may be new).
  if (aggregation !== "sum" && aggregation !== "count") return { method: "current_value", rest: ZERO };
  if (periodEnd.getTime() <= now.getTime()) return { method: "run_rate_7d", rest: ZERO };
  const historyHours = h.first === null ? 0 : (hourOf(now) - h.first) / HOUR;
  if (historyHours >= 2 * WEEK_HOURS) {
    const weeks = Math.min(4, Math.floor(historyHours / WEEK_HOURS)) as (typeof PROFILE_WEEKS)[number];
    return { method: "hour_of_week", rest: h.weighted[weeks].div(weeks) };
  }
  // Run rate over the trailing 7 days, or over the history there is (at least one hour).
  const window = Math.max(1, Math.min(WEEK_HOURS, Math.ceil(historyHours)));
  const remainingHours = new Dec(periodEnd.getTime() - now.getTime()).div(HOUR);
  return { method: "run_rate_7d", rest: h.lastWeek.div(window).times(remainingHours) };
}

/** The quantity at the period's end: to date plus the projected rest. */
export function projectedQuantity(toDate: Dec, p: Projection): Dec {
  return p.method === "current_value" ? toDate : round(toDate.plus(p.rest));
}

/** Projections carry at most 9 decimal places, like quantities. */
const round = (d: Dec) => d.toDecimalPlaces(9);
