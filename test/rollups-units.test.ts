// Pure parts of rollups: UTC bucket arithmetic, periods, and literal inlining for COPY statements.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addBuckets, alignDown, bucketCount, parsePeriod, periodOf } from "../src/rollups/buckets.js";
import { inlineParams } from "../src/rollups/export.js";
import { buildSeriesSql } from "../src/rollups/series.js";

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
    expect(parsePeriod("2026-02")).toEqual({ start: d("2026-02-01T00:00:00Z"), end: d("2026-03-01T00:00:00Z") });
    for (const bad of ["2026-13", "2026-2", "26-02", "2026-02-01", ""]) expect(parsePeriod(bad)).toBeUndefined();
    expect(periodOf(d("2026-11-30T23:59:59Z"))).toEqual({
      start: d("2026-11-01T00:00:00Z"),
      end: d("2026-12-01T00:00:00Z"),
    });
  });
});

describe("series SQL", () => {
  it("when customer and meter are given, then they are bound as $3 and $4 on every part", () => {
    const q = buildSeriesSql({ granularity: "month", customer: "c", meter: "m" });
    expect(q.params(d("2026-01-01"), d("2026-02-01"), "c", "m")).toEqual([d("2026-01-01"), d("2026-02-01"), "c", "m"]);
    expect(q.text.match(/customer_id = \$3/g)?.length).toBe(4);
    expect(q.text.match(/meter = \$4/g)?.length).toBe(4);
  });
  it("when only a meter is given, then it is $3; with neither, raw events are read by time only", () => {
    expect(buildSeriesSql({ granularity: "hour", meter: "m" }).text).toContain("e.meter = $3");
    expect(buildSeriesSql({ granularity: "hour" }).text).not.toMatch(/\$3/);
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
