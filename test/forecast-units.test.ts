// Projections to the end of the period (pure): the method each meter gets, exact run rates, hour-of-week profiles,
// and steady synthetic usage forecast within 1% of the true period total.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HISTORY_HOURS, projectQuantity } from "../src/forecast/project.js";
import { Dec } from "../src/pricing/money.js";

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
});
