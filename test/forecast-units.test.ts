// Projections to the end of the period (pure): the method each meter gets, exact run rates, hour-of-week profiles,
// steady synthetic usage forecast within 1% of the true period total, and the history reduced to a few figures (as
// the database reduces it) projecting exactly as a hour-by-hour reference that reads every hour.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Aggregation } from "../src/catalog/schemas.js";
import { planHistory } from "../src/forecast/historyPlan.js";
import { HISTORY_HOURS, historyFigures, projectedQuantity, projectRest, restWeights } from "../src/forecast/project.js";
import { Dec } from "../src/pricing/money.js";

interface ProjectionInput {
  aggregation: Aggregation;
  toDate: Dec;
  now: Date;
  periodEnd: Date;
  hourly: ReadonlyMap<number, Dec>;
}

/** The projection as Tally makes it: the history reduced to its figures, then projected. */
function projectQuantity(i: ProjectionInput) {
  const p = projectRest(i.aggregation, historyFigures(i.hourly, i.now, i.periodEnd), i.now, i.periodEnd);
  return { method: p.method, quantity: projectedQuantity(i.toDate, p) };
}

/** The reference: every remaining hour projected one by one from the hours of the history. */
function referenceQuantity(i: ProjectionInput) {
  if (i.aggregation === "max" || i.aggregation === "last") return { method: "current_value", quantity: i.toDate };
  const nowHour = Math.floor(i.now.getTime() / HOUR) * HOUR;
  const end = i.periodEnd.getTime();
  if (end <= i.now.getTime()) return { method: "run_rate_7d", quantity: i.toDate };
  const known = [...i.hourly.keys()].filter((h) => h < nowHour && h >= nowHour - HISTORY_HOURS * HOUR);
  const historyHours = (nowHour - (known.length > 0 ? Math.min(...known) : nowHour)) / HOUR;
  const at = (h: number) => i.hourly.get(h) ?? new Dec(0);
  const how = (t: number) => Math.floor(t / HOUR) % 168;
  if (historyHours >= 336) {
    const weeks = Math.min(4, Math.floor(historyHours / 168));
    const profile = new Map<number, Dec>();
    for (let h = nowHour - weeks * 168 * HOUR; h < nowHour; h += HOUR) {
      profile.set(how(h), (profile.get(how(h)) ?? new Dec(0)).plus(at(h)));
    }
    const of = (h: number) => (profile.get(how(h)) ?? new Dec(0)).div(weeks);
    let expected = of(nowHour).times(new Dec(nowHour + HOUR - i.now.getTime()).div(HOUR));
    for (let h = nowHour + HOUR; h < end; h += HOUR)
      expected = expected.plus(of(h).times(Math.min(1, (end - h) / HOUR)));
    return { method: "hour_of_week", quantity: i.toDate.plus(expected).toDecimalPlaces(9) };
  }
  const window = Math.max(1, Math.min(168, Math.ceil(historyHours)));
  let total = new Dec(0);
  for (let h = nowHour - window * HOUR; h < nowHour; h += HOUR) total = total.plus(at(h));
  const rest = total.div(window).times(new Dec(end - i.now.getTime()).div(HOUR));
  return { method: "run_rate_7d", quantity: i.toDate.plus(rest).toDecimalPlaces(9) };
}

const HOUR = 3_600_000;
const periodStart = Date.UTC(2026, 10, 1);
const periodEnd = Date.UTC(2026, 11, 1);

/** Hourly figures of `fn(hourStart)` for the hours in [from, to). */
function hours(from: number, to: number, fn: (h: number) => number): Map<number, Dec> {
  const out = new Map<number, Dec>();
  for (let h = from; h < to; h += HOUR) if (fn(h) !== 0) out.set(h, new Dec(fn(h)));
  return out;
}

/** What a usage pattern really adds up to in the period, hour by hour (the reference). */
function trueTotal(fn: (h: number) => number): Dec {
  let total = new Dec(0);
  for (let h = periodStart; h < periodEnd; h += HOUR) total = total.plus(fn(h));
  return total;
}

/** Usage up to `now`: whole hours, and the elapsed part of the current one (usage spread evenly in each hour). */
function toDate(now: number, fn: (h: number) => number): Dec {
  let total = new Dec(0);
  for (let h = periodStart; h < now; h += HOUR) total = total.plus(new Dec(fn(h)).times(Math.min(1, (now - h) / HOUR)));
  return total;
}

describe("forecast projection", () => {
  it.each([
    ["max", "current_value"],
    ["last", "current_value"],
  ] as const)("when the meter aggregates by %s, then the forecast is the current value", (aggregation, method) => {
    const p = projectQuantity({
      aggregation,
      toDate: new Dec("42.5"),
      now: new Date(periodStart + 100 * HOUR),
      periodEnd: new Date(periodEnd),
      hourly: hours(periodStart, periodStart + 100 * HOUR, () => 7),
    });
    expect(p).toEqual({ method, quantity: new Dec("42.5") });
  });

  it("when there are under two weeks of history, then the 7-day run rate goes on to the end of the period", () => {
    const now = periodStart + 10 * 24 * HOUR; // Nov 11, 00:00
    const steady = () => 12;
    const p = projectQuantity({
      aggregation: "sum",
      toDate: toDate(now, steady),
      now: new Date(now),
      periodEnd: new Date(periodEnd),
      hourly: hours(now - HISTORY_HOURS * HOUR, now, (h) => (h >= periodStart ? 12 : 0)),
    });
    expect(p.method).toBe("run_rate_7d");
    expect(p.quantity.toFixed()).toBe(trueTotal(steady).toFixed());
  });

  it("when history began two days ago, then the run rate is taken over those two days only", () => {
    const now = periodStart + 48 * HOUR;
    const p = projectQuantity({
      aggregation: "count",
      toDate: new Dec(96),
      now: new Date(now),
      periodEnd: new Date(periodEnd),
      hourly: hours(periodStart, now, () => 2),
    });
    expect(p.method).toBe("run_rate_7d");
    expect(p.quantity.toFixed()).toBe(String(30 * 24 * 2));
  });

  it("when there are two weeks or more of history, then each remaining hour gets its hour of week's average", () => {
    const now = periodStart + 20 * 24 * HOUR + 12 * HOUR;
    // Weekdays 10 per hour, weekends 1: a run rate would be off, the hour-of-week profile is exact.
    const weekly = (h: number) => ([0, 6].includes(new Date(h).getUTCDay()) ? 1 : 10);
    const p = projectQuantity({
      aggregation: "sum",
      toDate: toDate(now, weekly),
      now: new Date(now),
      periodEnd: new Date(periodEnd),
      hourly: hours(now - HISTORY_HOURS * HOUR, now, weekly),
    });
    expect(p.method).toBe("hour_of_week");
    expect(p.quantity.toFixed()).toBe(trueTotal(weekly).toFixed());
  });

  it("when the period is over, then the forecast is what there is", () => {
    const p = projectQuantity({
      aggregation: "sum",
      toDate: new Dec(5),
      now: new Date(periodEnd + HOUR),
      periodEnd: new Date(periodEnd),
      hourly: new Map(),
    });
    expect(p.quantity.toFixed()).toBe("5");
  });

  it("property: steady usage (with noise under 1%) is forecast within 1% of the true period total", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 24, max: 29 * 24 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 1_000 }),
        (rate, elapsedHours, fullHistory, seed) => {
          const now = periodStart + elapsedHours * HOUR + 30 * 60_000; // mid-hour
          const noise = (h: number) => rate * (1 + (((h / HOUR + seed) * 7919) % 100) / 10_000 - 0.005);
          const usage = (h: number) => (fullHistory || h >= periodStart ? noise(h) : 0);
          const p = projectQuantity({
            aggregation: "sum",
            toDate: toDate(now, usage),
            now: new Date(now),
            periodEnd: new Date(periodEnd),
            hourly: hours(Math.floor(now / HOUR) * HOUR - HISTORY_HOURS * HOUR, Math.floor(now / HOUR) * HOUR, usage),
          });
          const truth = trueTotal(usage);
          expect(p.quantity.minus(truth).abs().lte(truth.times("0.01"))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
  it("when the rest of the period is weighed by hour of week, then the weights add up to the hours left", () => {
    const now = new Date(periodStart + 20 * 24 * HOUR + 12 * HOUR + 15 * 60_000);
    const weights = restWeights(now, new Date(periodEnd));
    expect(weights).toHaveLength(168);
    const total = weights.reduce((a, w) => a.plus(w), new Dec(0));
    expect(total.toFixed()).toBe(new Dec(periodEnd - now.getTime()).div(HOUR).toFixed());
    expect(restWeights(new Date(periodEnd), new Date(periodEnd)).every((w) => w.isZero())).toBe(true);
  });

  it("property: the history's figures project exactly as the hour-by-hour reference", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Aggregation>("sum", "count", "max", "last"),
        fc.integer({ min: 0, max: 31 * 24 * 60 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: HISTORY_HOURS + 24 }), fc.integer({ min: 0, max: 100_000 })), {
          maxLength: 300,
        }),
        fc.integer({ min: 0, max: 10_000 }),
        (aggregation, minute, hourly, toDate) => {
          const now = periodStart + minute * 60_000 + 17_123;
          const nowHour = Math.floor(now / HOUR) * HOUR;
          // Hours before now's hour, some beyond the four weeks read (they must not count).
          const map = new Map(hourly.map(([back, v]) => [nowHour - back * HOUR, new Dec(v).div(7)]));
          const input = {
            aggregation,
            toDate: new Dec(toDate),
            now: new Date(now),
            periodEnd: new Date(periodEnd),
            hourly: map,
          };
          const got = projectQuantity(input);
          const want = referenceQuantity(input);
          expect(got.method).toBe(want.method);
          expect(got.quantity.toFixed()).toBe(want.quantity.toFixed());
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** The figures the reads of planHistory give over a map of hours: what the database adds up, in TypeScript. */
function plannedFigures(hourly: ReadonlyMap<number, Dec>, now: Date, periodEnd: Date) {
  const sums = [0, 1, 2, 3].map(() => new Dec(0));
  for (const read of planHistory(now, periodEnd)) {
    for (const { from, to } of read.ranges) {
      let total = new Dec(0);
      for (const [h, v] of hourly) if (h >= from.getTime() && h < to.getTime()) total = total.plus(v);
      read.coefs.forEach((c, i) => {
        sums[i] = (sums[i] as Dec).plus(c.times(total));
      });
    }
  }
  const [lastWeek, w2, w3, w4] = sums.map((s) => s.toFixed());
  return { lastWeek, weighted: { 2: w2, 3: w3, 4: w4 } };
}

describe("history plan", () => {
  const DAY = 24 * HOUR;
  it("property: whole days and the hours around the weights' changes add up to the hour-by-hour figures", () => {
    fc.assert(
      fc.property(
        // Instants in steps of 9 s (400 an hour): the shares of an hour are finite decimals, both sides exact.
        fc.integer({ min: 0, max: 14 * 24 * 400 }),
        fc.oneof(
          // Ends from before now to beyond the four weeks, at any step (mid-week, mid-hour, within the hour).
          fc.integer({ min: -800, max: 60 * 24 * 400 }),
          fc.integer({ min: -5, max: 3 * 400 }),
          fc.constantFrom(0, 400, 7 * 24 * 400, 28 * 24 * 400, 35 * 24 * 400 + 200),
        ),
        fc.array(fc.tuple(fc.integer({ min: 0, max: HISTORY_HOURS + 30 }), fc.integer({ min: 1, max: 10_000 })), {
          maxLength: 120,
        }),
        (nowStep, endSteps, hourly) => {
          const now = new Date(periodStart + nowStep * 9_000);
          const end = new Date(now.getTime() + endSteps * 9_000);
          const nowHour = Math.floor(now.getTime() / HOUR) * HOUR;
          // Every hour of the window, and a few before it: read or not, each counts once.
          const map = new Map(hourly.map(([back, v]) => [nowHour - back * HOUR, new Dec(v).div(8)]));
          for (let h = nowHour - HISTORY_HOURS * HOUR; h < nowHour; h += 5 * HOUR) map.set(h, new Dec(h % 7));
          const want = historyFigures(map, now, end);
          expect(plannedFigures(map, now, end)).toEqual({
            lastWeek: want.lastWeek.toFixed(),
            weighted: { 2: want.weighted[2].toFixed(), 3: want.weighted[3].toFixed(), 4: want.weighted[4].toFixed() },
          });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("when a read is by the day, then it is a whole day of the window; the window's first day and today are by the hour", () => {
    const now = new Date(Date.UTC(2026, 10, 20, 13, 30));
    const reads = planHistory(now, new Date(Date.UTC(2026, 11, 1)));
    const days = reads.filter((r) => r.granularity === "day").flatMap((r) => r.ranges);
    const hours = reads.filter((r) => r.granularity === "hour").flatMap((r) => r.ranges);
    const start = now.getTime() - (now.getTime() % HOUR) - HISTORY_HOURS * HOUR;
    expect(days.every((d) => d.from.getTime() % DAY === 0 && d.to.getTime() % DAY === 0)).toBe(true);
    expect(Math.min(...days.map((d) => d.from.getTime()))).toBe(start - (start % DAY) + DAY);
    expect(Math.max(...days.map((d) => d.to.getTime()))).toBe(Date.UTC(2026, 10, 20));
    const hourCount = hours.reduce((n, r) => n + (r.to.getTime() - r.from.getTime()) / HOUR, 0);
    // 10.5 hours of the first day, 13 of today, and the hours where the weights change (a few each week).
    expect(hourCount).toBeLessThan(24 + 13 + 4 * 8);
  });
});
