// Projecting a meter's quantity to the end of the billing period (pure). `sum` and `count` meters run on at the
// rate of the trailing 7 days — or, once there are two weeks of history, at the average of each hour of the week
// over the full weeks seen (up to 4), so weekday peaks and quiet weekends are projected where they fall. `max` and
// `last` meters are projected at their current value: what is reached stays reached, and nothing says it grows.
import type { Aggregation } from "../catalog/schemas.js";
import { Dec, ZERO } from "../pricing/money.js";

export type ForecastMethod = "run_rate_7d" | "hour_of_week" | "current_value";

const HOUR = 3_600_000;
const WEEK_HOURS = 168;
/** History is read this far back (4 weeks of hour-of-week profile). */
export const HISTORY_HOURS = 4 * WEEK_HOURS;

export interface ProjectionInput {
  aggregation: Aggregation;
  /** The period's quantity up to `now`. */
  toDate: Dec;
  now: Date;
  periodEnd: Date;
  /**
   * The meter's per-hour figure (sum of values for `sum`, number of events for `count`) of the hours before `now`'s
   * hour, keyed by hour start (epoch ms), at most HISTORY_HOURS back; an hour absent had none.
   */
  hourly: ReadonlyMap<number, Dec>;
}

export interface Projection {
  method: ForecastMethod;
  quantity: Dec;
}

const hourOfWeek = (t: number) => Math.floor(t / HOUR) % WEEK_HOURS;

export function projectQuantity(i: ProjectionInput): Projection {
  if (i.aggregation === "max" || i.aggregation === "last") return { method: "current_value", quantity: i.toDate };
  const nowHour = Math.floor(i.now.getTime() / HOUR) * HOUR;
  const end = i.periodEnd.getTime();
  if (end <= i.now.getTime()) return { method: "run_rate_7d", quantity: i.toDate };
  const known = [...i.hourly.keys()].filter((h) => h < nowHour && h >= nowHour - HISTORY_HOURS * HOUR);
  const first = known.length > 0 ? Math.min(...known) : nowHour;
  const historyHours = (nowHour - first) / HOUR;
  // The rest of the current hour counts for the part still to come; the events of its first part are in toDate.
  const restOfHour = (nowHour + HOUR - i.now.getTime()) / HOUR;
  const at = (h: number) => i.hourly.get(h) ?? ZERO;

  if (historyHours >= 2 * WEEK_HOURS) {
    const weeks = Math.min(4, Math.floor(historyHours / WEEK_HOURS));
    const profile = new Map<number, Dec>();
    for (let h = nowHour - weeks * WEEK_HOURS * HOUR; h < nowHour; h += HOUR) {
      profile.set(hourOfWeek(h), (profile.get(hourOfWeek(h)) ?? ZERO).plus(at(h)));
    }
    let expected = (profile.get(hourOfWeek(nowHour)) ?? ZERO).div(weeks).times(restOfHour);
    for (let h = nowHour + HOUR; h < end; h += HOUR) {
      const share = Math.min(1, (end - h) / HOUR);
      expected = expected.plus((profile.get(hourOfWeek(h)) ?? ZERO).div(weeks).times(share));
    }
    return { method: "hour_of_week", quantity: round(i.toDate.plus(expected)) };
  }
  // Run rate over the trailing 7 days, or over the history there is (at least one hour).
  const window = Math.max(1, Math.min(WEEK_HOURS, Math.ceil(historyHours)));
  let total = ZERO;
  for (let h = nowHour - window * HOUR; h < nowHour; h += HOUR) total = total.plus(at(h));
  const remainingHours = new Dec(end - i.now.getTime()).div(HOUR);
  return { method: "run_rate_7d", quantity: round(i.toDate.plus(total.div(window).times(remainingHours))) };
}

/** Projections carry at most 9 decimal places, like quantities. */
const round = (d: Dec) => d.toDecimalPlaces(9);
