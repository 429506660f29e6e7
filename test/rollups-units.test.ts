// Pure parts of rollups: UTC bucket arithmetic, periods, and literal inlining for COPY statements.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BillingCalendar } from "../src/billing/calendar.js";
import { addBuckets, alignDown, bucketCount } from "../src/rollups/buckets.js";
import { planDistinct } from "../src/rollups/distinctSql.js";
import { inlineParams } from "../src/rollups/export.js";
import { buildSeriesSql, planCover, planSeries, type SeriesPart } from "../src/rollups/series.js";

const d = (s: string) => new Date(s);

describe("buckets", () => {
  it.each([
    ["hour", "2026-11-03T12:59:59.999Z", "2026-11-03T12:00:00.000Z"],
    ["day", "2026-11-03T23:59:59.999Z", "2026-11-03T00:00:00.000Z"],
    ["month", "2026-12-31T23:59:59.999Z", "2026-12-01T00:00:00.000Z"],
    ["month", "2024-02-29T12:00:00Z", "2024-02-01T00:00:00.000Z"],
    ["hour", "1969-12-31T23:30:00Z", "1969-12-31T23:00:00.000Z"],
  ] as const)("when %s-aligning %s, then %s", (g, t, expected) => {
    expect(alignDown(d(t), g).toISOString()).toBe(expected);
  });

  it("when months are added, then calendar months of different lengths are respected", () => {
    expect(addBuckets(d("2026-01-01T00:00:00Z"), "month", 1).toISOString()).toBe("2026-02-01T00:00:00.000Z");
    expect(addBuckets(d("2026-12-01T00:00:00Z"), "month", 1).toISOString()).toBe("2027-01-01T00:00:00.000Z");
    expect(bucketCount(d("2016-11-01T00:00:00Z"), d("2026-11-01T00:00:00Z"), "month")).toBe(120);
    expect(bucketCount(d("2026-10-01T00:00:00Z"), d("2026-11-01T00:00:00Z"), "hour")).toBe(744);
  });

  it("property: an aligned instant is at or before the original, less than one bucket before, and idempotent", () => {
    fc.assert(
      fc.property(
        fc.date({ min: d("1990-01-01T00:00:00Z"), max: d("2100-01-01T00:00:00Z"), noInvalidDate: true }),
        fc.constantFrom("hour" as const, "day" as const, "month" as const),
        (t, g) => {
          const a = alignDown(t, g);
          expect(a.getTime()).toBeLessThanOrEqual(t.getTime());
          expect(addBuckets(a, g, 1).getTime()).toBeGreaterThan(t.getTime());
          expect(alignDown(a, g).getTime()).toBe(a.getTime());
        },
      ),
    );
  });

  it("when a period is parsed, then it is the UTC calendar month; malformed periods are refused", () => {
    const months = new BillingCalendar([]); // no subscription: UTC calendar months
    expect(months.periodStartingIn("2026-02")).toEqual({
      start: d("2026-02-01T00:00:00Z"),
      end: d("2026-03-01T00:00:00Z"),
    });
    for (const bad of ["2026-13", "2026-2", "26-02", "2026-02-01", ""])
      expect(() => months.periodStartingIn(bad)).toThrow();
    expect(months.periodContaining(d("2026-11-30T23:59:59Z"))).toEqual({
      start: d("2026-11-01T00:00:00Z"),
      end: d("2026-12-01T00:00:00Z"),
    });
  });

  it.each([
    ["alignDown", () => alignDown(d("0050-03-05T07:00:00Z"), "month"), "0050-03-01T00:00:00.000Z"],
    ["addBuckets", () => addBuckets(d("0099-12-01T00:00:00Z"), "month", 1), "0100-01-01T00:00:00.000Z"],
    ["addBuckets back", () => addBuckets(d("0001-01-15T10:30:00Z"), "month", -1), "0000-12-15T10:30:00.000Z"],
    ["a billing period", () => new BillingCalendar([]).periodStartingIn("0050-06")?.end, "0050-07-01T00:00:00.000Z"],
  ])("when %s meets a year from 0 to 99, then it stays that year (Date.UTC would make it 19xx)", (_, f, iso) => {
    expect(f()?.toISOString()).toBe(iso);
  });
});

describe("series plan", () => {
  const state = (dirty: string[] = []) => ({
    watermarks: { hour: d("2026-01-20T05:00:00Z"), day: d("2026-01-20T00:00:00Z"), month: d("2026-01-01T00:00:00Z") },
    dirty: dirty.map(d),
  });
  const show = (parts: SeriesPart[]) =>
    parts.map(
      (p) =>
        `${p.source} ${p.from.toISOString().slice(0, 13)}..${p.to.toISOString().slice(0, 13)}` +
        (p.within ? ` within ${p.within.buckets.length} ${p.within.level}` : "") +
        (p.exclude.length ? ` minus ${p.exclude.length}` : ""),
    );

  it("when nothing is dirty, then each level serves up to its watermark and raw events only the current hour", () => {
    expect(show(planSeries("month", d("2025-02-01T00:00:00Z"), d("2026-02-01T00:00:00Z"), state()))).toEqual([
      "month 2025-02-01T00..2026-01-01T00",
      "day 2026-01-01T00..2026-01-20T00",
      "hour 2026-01-20T00..2026-01-20T05",
      "event 2026-01-20T05..2026-02-01T00",
    ]);
    expect(show(planSeries("hour", d("2026-01-13T00:00:00Z"), d("2026-01-20T06:00:00Z"), state()))).toEqual([
      "hour 2026-01-13T00..2026-01-20T05",
      "event 2026-01-20T05..2026-01-20T06",
    ]);
  });

  it("when a past hour is dirty, then its month and day come from below and only that hour from raw events", () => {
    const plan = show(
      planSeries("month", d("2025-12-01T00:00:00Z"), d("2026-02-01T00:00:00Z"), state(["2025-12-24T10:00:00Z"])),
    );
    expect(plan).toEqual([
      "month 2025-12-01T00..2026-01-01T00 minus 1",
      "day 2026-01-01T00..2026-01-20T00 minus 1",
      "day 2025-12-01T00..2026-01-01T00 within 1 month minus 1",
      "hour 2026-01-20T00..2026-01-20T05 minus 1",
      "hour 2025-12-24T00..2025-12-25T00 within 1 day minus 1",
      "event 2026-01-20T05..2026-02-01T00",
      "event 2025-12-24T10..2025-12-24T11 within 1 hour",
    ]);
  });

  it("when nothing is materialized yet, then everything comes from raw events", () => {
    const empty = { watermarks: { hour: null, day: null, month: null }, dirty: [] };
    expect(show(planSeries("day", d("2026-01-01T00:00:00Z"), d("2026-01-05T00:00:00Z"), empty))).toEqual([
      "event 2026-01-01T00..2026-01-05T00",
    ]);
  });

  it("when a total covers arbitrary instants, then whole months, days and hours come from rollups and partial hours from raw", () => {
    const plan = show(planCover(d("2025-11-30T22:30:00Z"), d("2026-01-20T06:15:00Z"), state()));
    expect(plan).toEqual([
      "event 2025-11-30T22..2025-11-30T23",
      "hour 2025-11-30T23..2025-12-01T00",
      "month 2025-12-01T00..2026-01-01T00",
      "day 2026-01-01T00..2026-01-20T00",
      "hour 2026-01-20T00..2026-01-20T05",
      "event 2026-01-20T05..2026-01-20T06",
      "event 2026-01-20T06..2026-01-20T06",
    ]);
    expect(show(planCover(d("2026-01-20T06:10:00Z"), d("2026-01-20T06:20:00Z"), state()))).toEqual([
      "event 2026-01-20T06..2026-01-20T06",
    ]);
  });

  it("when customer and meter are given, then they are bound first and used on every part", () => {
    const parts = planSeries(
      "month",
      d("2025-12-01T00:00:00Z"),
      d("2026-02-01T00:00:00Z"),
      state(["2025-12-24T10:00:00Z"]),
    );
    const q = buildSeriesSql({ granularity: "month", customer: "c", meter: "m" }, parts);
    expect(q.params.slice(0, 2)).toEqual(["c", "m"]);
    expect(q.text.match(/customer_id = \$1/g)?.length).toBe(parts.length);
    expect(q.text.match(/meter = \$2/g)?.length).toBe(parts.length);
    expect(buildSeriesSql({ granularity: "hour" }, parts).text).not.toMatch(/customer_id = /);
  });
});

describe("distinct plan", () => {
  const show = (g: "hour" | "day" | "month" | "total", from: string, to: string) =>
    planDistinct(g, d(from), d(to)).map(
      (p) => `${p.source} ${p.from.toISOString().slice(0, 16)}..${p.to.toISOString().slice(0, 16)}`,
    );

  it("when a series is read, then hours come from raw events and days and months from the day rows", () => {
    expect(show("hour", "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z")).toEqual([
      "event 2026-01-05T00:00..2026-01-06T00:00",
    ]);
    expect(show("month", "2025-02-01T00:00:00Z", "2026-02-01T00:00:00Z")).toEqual([
      "days 2025-02-01T00:00..2026-02-01T00:00",
    ]);
  });

  it("when a total has mid-day bounds, then whole days and the last day's start are rows, the first day's rest raw", () => {
    expect(show("total", "2026-01-05T10:30:00Z", "2026-01-08T06:15:00Z")).toEqual([
      "event 2026-01-05T10:30..2026-01-06T00:00",
      "days 2026-01-06T00:00..2026-01-08T00:00",
      "day_start 2026-01-08T00:00..2026-01-08T06:15",
    ]);
    expect(show("total", "2026-01-05T00:00:00Z", "2026-01-05T12:00:00Z")).toEqual([
      "day_start 2026-01-05T00:00..2026-01-05T12:00",
    ]);
    expect(show("total", "2026-01-05T10:00:00Z", "2026-01-05T12:00:00Z")).toEqual([
      "event 2026-01-05T10:00..2026-01-05T12:00",
    ]);
    expect(show("total", "2026-01-05T10:00:00Z", "2026-01-06T05:00:00Z")).toEqual([
      "event 2026-01-05T10:00..2026-01-06T00:00",
      "day_start 2026-01-06T00:00..2026-01-06T05:00",
    ]);
    expect(show("total", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")).toEqual([
      "days 2026-11-01T00:00..2026-12-01T00:00",
    ]);
    expect(show("total", "2026-01-05T10:00:00Z", "2026-01-05T10:00:00Z")).toEqual([]);
  });

  it("property: the parts of a total tile its range exactly, in order", () => {
    const instant = fc.integer({ min: Date.parse("2026-01-01T00:00:00Z"), max: Date.parse("2026-03-01T00:00:00Z") });
    fc.assert(
      fc.property(instant, instant, (x, y) => {
        const [from, to] = [Math.min(x, y), Math.max(x, y)];
        const parts = planDistinct("total", new Date(from), new Date(to));
        let at = from;
        for (const p of parts) {
          expect(p.from.getTime()).toBe(at);
          expect(p.to.getTime()).toBeGreaterThan(at);
          at = p.to.getTime();
        }
        expect(at).toBe(parts.length > 0 ? to : from);
      }),
    );
  });
});

describe("inlineParams", () => {
  it("when values hold quotes and backslashes, then they are escaped literals; $10 is not read as $1", () => {
    const params = ["it's", d("2026-01-01T00:00:00Z"), "a\\b", "4", "5", "6", "7", "8", "9", "ten"];
    expect(inlineParams("SELECT $1, $2, $3, $10", params)).toBe(
      "SELECT 'it''s', '2026-01-01T00:00:00.000Z'::timestamptz,  E'a\\\\b', 'ten'",
    );
  });
});
