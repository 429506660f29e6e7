// A customer's billing calendar (pure): the periods its subscriptions' cycles make, across cycle changes.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BillingCalendar, CALENDAR_MONTHS, type CycleSpan, sameCycle } from "../src/billing/calendar.js";
import type { BillingCycle } from "../src/periods/cycle.js";

const at = (s: string) => new Date(s);
const iso = (p: { start: Date; end: Date } | null) => (p ? [p.start.toISOString(), p.end.toISOString()] : null);
const monthly = (anchor: string, timeZone = "UTC"): BillingCycle => ({
  interval: "month",
  intervalCount: 1,
  anchor: at(anchor),
  timeZone,
});
const anchored17 = monthly("2026-11-17T09:00:00Z");

describe("billing calendar", () => {
  it.each([
    [
      "no subscriptions: UTC calendar months",
      [],
      "2026-11-17T08:00:00Z",
      ["2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"],
    ],
    [
      "anchored on the 17th at 09:00, just before",
      [{ start: "2026-11-17T09:00:00Z", cycle: anchored17 }],
      "2026-11-17T08:00:00Z",
      ["2026-10-17T09:00:00.000Z", "2026-11-17T09:00:00.000Z"],
    ],
    [
      "anchored on the 17th at 09:00, just after",
      [{ start: "2026-11-17T09:00:00Z", cycle: anchored17 }],
      "2026-11-17T10:00:00Z",
      ["2026-11-17T09:00:00.000Z", "2026-12-17T09:00:00.000Z"],
    ],
    [
      "calendar months then anchored: the month in progress ends early",
      [
        { start: "2026-10-05T00:00:00Z", cycle: monthly("2026-10-01T00:00:00Z") },
        { start: "2026-11-17T09:00:00Z", cycle: anchored17 },
      ],
      "2026-11-10T00:00:00Z",
      ["2026-11-01T00:00:00.000Z", "2026-11-17T09:00:00.000Z"],
    ],
    [
      "calendar months then anchored: the new cycle from the change",
      [
        { start: "2026-10-05T00:00:00Z", cycle: monthly("2026-10-01T00:00:00Z") },
        { start: "2026-11-17T09:00:00Z", cycle: anchored17 },
      ],
      "2026-11-20T00:00:00Z",
      ["2026-11-17T09:00:00.000Z", "2026-12-17T09:00:00.000Z"],
    ],
    [
      "calendar months then anchored: before the change, unchanged",
      [
        { start: "2026-10-05T00:00:00Z", cycle: monthly("2026-10-01T00:00:00Z") },
        { start: "2026-11-17T09:00:00Z", cycle: anchored17 },
      ],
      "2026-10-20T00:00:00Z",
      ["2026-10-01T00:00:00.000Z", "2026-11-01T00:00:00.000Z"],
    ],
    [
      "an upgrade that keeps calendar months splits nothing",
      [
        { start: "2026-10-05T00:00:00Z", cycle: monthly("2026-10-01T00:00:00Z") },
        { start: "2026-11-11T00:00:00Z", cycle: monthly("2026-11-01T00:00:00Z") },
      ],
      "2026-11-20T00:00:00Z",
      ["2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"],
    ],
    [
      "before the first subscription, its cycle extends backwards",
      [{ start: "2026-11-17T09:00:00Z", cycle: anchored17 }],
      "2026-08-01T00:00:00Z",
      ["2026-07-17T09:00:00.000Z", "2026-08-17T09:00:00.000Z"],
    ],
    [
      "Berlin calendar months: March has 743 hours",
      [{ start: "2026-01-01T00:00:00Z", cycle: monthly("2025-12-31T23:00:00Z", "Europe/Berlin") }],
      "2026-03-15T00:00:00Z",
      ["2026-02-28T23:00:00.000Z", "2026-03-31T22:00:00.000Z"],
    ],
  ] as const)("when %s, then the period is as the cycle says", (_name, spans, t, expected) => {
    const calendar = new BillingCalendar(spans.map((s) => ({ start: at(s.start), cycle: s.cycle })));
    expect(iso(calendar.periodContaining(at(t)))).toEqual(expected);
  });

  it.each([
    ["UTC months", [], "2026-11", ["2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"]],
    [
      "anchored on the 17th",
      [{ start: "2026-11-17T09:00:00Z", cycle: anchored17 }],
      "2026-11",
      ["2026-11-17T09:00:00.000Z", "2026-12-17T09:00:00.000Z"],
    ],
    [
      "Berlin months, read in Berlin",
      [{ start: "2026-01-01T00:00:00Z", cycle: monthly("2025-12-31T23:00:00Z", "Europe/Berlin") }],
      "2026-03",
      ["2026-02-28T23:00:00.000Z", "2026-03-31T22:00:00.000Z"],
    ],
    [
      "yearly, a month with no start",
      [
        {
          start: "2026-01-01T00:00:00Z",
          cycle: { interval: "year", intervalCount: 1, anchor: at("2026-01-01T00:00:00Z"), timeZone: "UTC" },
        },
      ],
      "2026-03",
      null,
    ],
  ] as const)(
    "when period=YYYY-MM names a month (%s), then it is the first period starting in it",
    (_n, spans, month, expected) => {
      const calendar = new BillingCalendar(spans.map((s) => ({ start: at(s.start), cycle: s.cycle as BillingCycle })));
      expect(iso(calendar.periodStartingIn(month))).toEqual(expected);
    },
  );

  it("when two cycles make the same boundaries, then they are the same cycle", () => {
    expect(sameCycle(monthly("2026-10-01T00:00:00Z"), CALENDAR_MONTHS)).toBe(true);
    expect(sameCycle(anchored17, monthly("2027-03-17T09:00:00Z"))).toBe(true);
    expect(sameCycle(anchored17, CALENDAR_MONTHS)).toBe(false);
    expect(sameCycle(monthly("2026-10-01T00:00:00Z", "Europe/Berlin"), CALENDAR_MONTHS)).toBe(false);
  });

  const HOUR = 3_600_000;
  const hourIn = (from: number, to: number) =>
    fc.integer({ min: from / HOUR, max: to / HOUR }).map((h) => new Date(h * HOUR));
  const cycle = fc.record({
    interval: fc.constantFrom("day", "week", "month", "year") as fc.Arbitrary<BillingCycle["interval"]>,
    intervalCount: fc.integer({ min: 1, max: 3 }),
    anchor: hourIn(Date.UTC(2020, 0, 1), Date.UTC(2030, 0, 1)),
    timeZone: fc.constantFrom("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"),
  });
  const spans = fc.array(fc.record({ start: hourIn(Date.UTC(2024, 0, 1), Date.UTC(2027, 0, 1)), cycle }), {
    minLength: 0,
    maxLength: 4,
  });

  it("property: periods contain their instant, follow one another without gaps, and never straddle a cycle change", () => {
    fc.assert(
      fc.property(spans, hourIn(Date.UTC(2023, 0, 1), Date.UTC(2028, 0, 1)), (raw: CycleSpan[], t) => {
        const calendar = new BillingCalendar(raw);
        const p = calendar.periodContaining(t);
        expect(p.start <= t && t < p.end).toBe(true);
        expect(calendar.next(p).start.getTime()).toBe(p.end.getTime());
        expect(calendar.previous(p).end.getTime()).toBe(p.start.getTime());
        const sorted = [...raw].sort((a, b) => a.start.getTime() - b.start.getTime());
        for (let i = 1; i < sorted.length; i++) {
          const change = sorted[i] as CycleSpan;
          if (sameCycle((sorted[i - 1] as CycleSpan).cycle, change.cycle)) continue;
          if (sorted.slice(0, i).some((s) => s.start.getTime() === change.start.getTime())) continue;
          expect(p.start < change.start && change.start < p.end).toBe(false);
        }
      }),
      { numRuns: 500 },
    );
  });
});
