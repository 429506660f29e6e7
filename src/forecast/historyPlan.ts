// Which totals of the last four weeks a forecast's history figures are made of (pure). The figures are sums over the
// hours of the history of figure(h) × a coefficient of h — for lastWeek 1 in the last 168 hours, for weighted[w] the
// weight of h's hour of the week (restWeights) in the last w weeks — and those coefficients change only at a few
// instants: the week boundaries (168·j hours before now's hour) and, in each week, the hours where the rest of the
// period starts and stops covering the hours of the week (a full week more or less, fractional shares at now's hour
// and at the period's last hour). So a whole day is mostly of one coefficient: it is read as one row of the daily
// rollup with that coefficient, and only its hours of another coefficient are read by the hour, with the difference.
// The window's first day is read by the hour (the first hour with a figure must be exact), and so is today (not in
// the daily rollup yet). Reads of equal coefficients and granularity are one read of several ranges.
import { Dec, ZERO } from "../pricing/money.js";
import { HISTORY_HOURS, restWeights, WEEK_HOURS } from "./project.js";

const HOUR = 3_600_000;
const DAY = 86_400_000;
const ONE = new Dec(1);
/** Differences of weights exact to the last digit (a weight has up to Dec's 100 significant digits). */
const Exact = Dec.clone({ precision: 1_000 });

/** An hour's (or a day's) coefficients in lastWeek and weighted[2], [3], [4], in that order. */
type Coefs = readonly [Dec, Dec, Dec, Dec];

/** Ranges read at one granularity, whose figures all count with the same coefficients. */
interface HistoryRead {
  granularity: "hour" | "day";
  /** Disjoint, ascending, aligned to the granularity. */
  ranges: { from: Date; to: Date }[];
  coefs: Coefs;
}

const key = (c: Coefs) => c.map((d) => d.toFixed()).join(",");

/** The reads that give the history figures of customers whose period ends at `periodEnd`, as seen at `now`. */
export function planHistory(now: Date, periodEnd: Date): HistoryRead[] {
  const nowHour = Math.floor(now.getTime() / HOUR) * HOUR;
  const start = nowHour - HISTORY_HOURS * HOUR;
  const weights = restWeights(now, periodEnd);
  const coefsOf = (h: number): Coefs => {
    const week = Math.floor((nowHour - h - HOUR) / HOUR / WEEK_HOURS) + 1;
    const w = weights[Math.floor(h / HOUR) % WEEK_HOURS] as Dec;
    return [week === 1 ? ONE : ZERO, week <= 2 ? w : ZERO, week <= 3 ? w : ZERO, w];
  };
  const reads = new Map<string, HistoryRead>();
  const add = (granularity: HistoryRead["granularity"], from: number, to: number, coefs: Coefs) => {
    const k = `${granularity}:${key(coefs)}`;
    const read = reads.get(k) ?? { granularity, ranges: [], coefs };
    reads.set(k, read);
    const last = read.ranges.at(-1);
    if (last && last.to.getTime() === from) last.to = new Date(to);
    else read.ranges.push({ from: new Date(from), to: new Date(to) });
  };
  const byHour = (from: number, to: number) => {
    for (let h = from; h < to; h += HOUR) add("hour", h, h + HOUR, coefsOf(h));
  };
  const firstFullDay = Math.floor(start / DAY) * DAY + DAY;
  const today = Math.floor(nowHour / DAY) * DAY;
  byHour(start, Math.min(firstFullDay, nowHour));
  for (let day = firstFullDay; day < today; day += DAY) {
    const hours = Array.from({ length: 24 }, (_, i) => coefsOf(day + i * HOUR));
    const base = mostFrequent(hours);
    add("day", day, day + DAY, base);
    hours.forEach((c, i) => {
      const diff = c.map((d, n) => new Exact(d).minus(base[n] as Dec)) as unknown as Coefs;
      if (!diff.every((d) => d.isZero())) add("hour", day + i * HOUR, day + (i + 1) * HOUR, diff);
    });
  }
  byHour(Math.max(today, firstFullDay), nowHour);
  return [...reads.values()];
}

function mostFrequent(cs: Coefs[]): Coefs {
  const counts = new Map<string, { c: Coefs; n: number }>();
  for (const c of cs) {
    const k = key(c);
    const e = counts.get(k) ?? { c, n: 0 };
    e.n += 1;
    counts.set(k, e);
  }
  return [...counts.values()].reduce((a, b) => (b.n > a.n ? b : a)).c;
}
