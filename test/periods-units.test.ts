// Billing-cycle periods (pure, no database): table-driven cases for every rule — month-end clamping from the anchor,
// negative k, day/week/year, interval counts, DST (743/745-hour months, 23/25-hour days, gaps and repeated hours),
// refusals — and properties against an hour-by-hour reference over random cycles, zones and instants in 2000–2100.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AppError } from "../src/errors.js";
import {
  type BillingCycle,
  calendarMonths,
  defaultCycle,
  type Interval,
  nextPeriod,
  type Period,
  periodAt,
  periodContaining,
  periodHours,
  periodStart,
  periodStartingInMonth,
  previousPeriod,
  validateCycle,
} from "../src/periods/cycle.js";

const HOUR = 3_600_000;
const at = (iso: string) => new Date(iso);
const cycle = (interval: Interval, intervalCount: number, anchor: string, timeZone = "UTC"): BillingCycle => ({
  interval,
  intervalCount,
  anchor: at(anchor),
  timeZone,
});
const span = (p: Period | null) => p && [p.start.toISOString(), p.end.toISOString()];
/** An instant as ISO text, for readable diffs. */
const z = (t: string | number) => new Date(t).toISOString();

function refusal(fn: () => unknown): { status: number; code: string; field: string | undefined } {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    return { status: err.status, code: err.code, field: err.options.errors?.[0]?.field };
  }
  throw new Error("expected a refusal");
}

describe("periods: the worked examples", () => {
  const anchored = cycle("month", 1, "2026-11-17T09:00:00Z");

  it("when a customer is anchored on 2026-11-17T09:00Z, then 08:00 that day is still in the previous period", () => {
    const p = periodContaining(anchored, at("2026-11-17T08:00:00Z"));
    expect(span(p)).toEqual([z("2026-10-17T09:00Z"), z("2026-11-17T09:00Z")]);
    expect(p.index).toBe(-1);
  });

  it("when a customer is anchored on 2026-11-17T09:00Z, then 10:00 that day is in the period starting at the anchor", () => {
    const p = periodContaining(anchored, at("2026-11-17T10:00:00Z"));
    expect(span(p)).toEqual([z("2026-11-17T09:00Z"), z("2026-12-17T09:00Z")]);
    expect(p.index).toBe(0);
  });

  it("when calendar months are read in Europe/Berlin, then March 2026 is 743 hours from 2026-02-28T23:00Z", () => {
    const berlin = calendarMonths("Europe/Berlin");
    expect(berlin.anchor.toISOString()).toBe(z("1999-12-31T23:00Z"));
    const march = periodStartingInMonth(berlin, "2026-03");
    expect(span(march)).toEqual([z("2026-02-28T23:00Z"), z("2026-03-31T22:00Z")]);
    expect(periodHours(march as Period)).toBe(743);
    expect(span(periodContaining(berlin, at("2026-03-15T12:00Z")))).toEqual(span(march));
  });
});

describe("periods: boundary k comes from the anchor, month ends clamped", () => {
  it.each([
    [
      "leap year, forward",
      "2024-01-31T00:00Z",
      1,
      [1, 2, 3, 12, 13],
      ["2024-02-29", "2024-03-31", "2024-04-30", "2025-01-31", "2025-02-28"],
    ],
    [
      "common year, forward",
      "2023-01-31T00:00Z",
      1,
      [1, 2, 3, 4],
      ["2023-02-28", "2023-03-31", "2023-04-30", "2023-05-31"],
    ],
    [
      "leap year, backward",
      "2024-03-31T00:00Z",
      1,
      [-1, -2, -3, -4, -13],
      ["2024-02-29", "2024-01-31", "2023-12-31", "2023-11-30", "2023-02-28"],
    ],
    ["common year, backward", "2023-03-31T00:00Z", 1, [-1, -2], ["2023-02-28", "2023-01-31"]],
    ["the 30th", "2026-01-30T00:00Z", 1, [1, 2, -1], ["2026-02-28", "2026-03-30", "2025-12-30"]],
    [
      "every 3 months",
      "2026-01-31T00:00Z",
      3,
      [1, 2, 4, -1, -4],
      ["2026-04-30", "2026-07-31", "2027-01-31", "2025-10-31", "2025-01-31"],
    ],
  ])(
    "when monthly from %s (anchor %s, count %i), then boundary k keeps the anchor's day, clamped",
    (_, anchor, count, ks, days) => {
      const c = cycle("month", count, anchor);
      expect(ks.map((k) => periodStart(c, k).toISOString())).toEqual(days.map((d) => z(`${d}T00:00Z`)));
      expect(periodStart(c, 0).toISOString()).toBe(z(anchor));
    },
  );

  it.each([
    [
      "year",
      1,
      "2024-02-29T12:00Z",
      [1, 3, 4, -1, -4],
      ["2025-02-28", "2027-02-28", "2028-02-29", "2023-02-28", "2020-02-29"],
    ],
    ["year", 2, "2026-07-01T12:00Z", [1, -1], ["2028-07-01", "2024-07-01"]],
    ["week", 1, "2026-01-05T12:00Z", [1, -1, 52], ["2026-01-12", "2025-12-29", "2027-01-04"]],
    ["week", 2, "2026-01-05T12:00Z", [1, 2, -1], ["2026-01-19", "2026-02-02", "2025-12-22"]],
    ["day", 1, "2026-02-27T12:00Z", [1, 2, -58], ["2026-02-28", "2026-03-01", "2025-12-31"]],
    ["day", 1, "2028-02-28T12:00Z", [1, 2], ["2028-02-29", "2028-03-01"]],
    ["day", 3, "2026-02-27T12:00Z", [1, -1], ["2026-03-02", "2026-02-24"]],
  ] as const)(
    "when the interval is %s × %i from %s, then the boundaries follow the calendar",
    (interval, count, anchor, ks, days) => {
      const c = cycle(interval, count, anchor);
      expect(ks.map((k) => periodStart(c, k).toISOString())).toEqual(days.map((d) => z(`${d}T12:00Z`)));
    },
  );

  it("when t lies years before the anchor, then its period has a negative index and the anchor's day and hour", () => {
    const p = periodContaining(cycle("month", 1, "2026-11-17T09:00Z"), at("2025-01-01T00:00Z"));
    expect(p).toEqual({ start: at("2024-12-17T09:00Z"), end: at("2025-01-17T09:00Z"), index: -23 });
  });

  it("when t is exactly a boundary, then it starts that period; a millisecond before, it ends the previous one", () => {
    const c = cycle("week", 2, "2026-01-05T00:00Z");
    expect(periodContaining(c, at("2026-02-02T00:00Z")).index).toBe(2);
    expect(periodContaining(c, new Date(at("2026-02-02T00:00Z").getTime() - 1)).index).toBe(1);
  });

  it("when a period is asked for by index, then next and previous walk the same boundaries", () => {
    const c = cycle("month", 1, "2024-01-31T00:00Z");
    const feb = periodAt(c, 1);
    expect(span(feb)).toEqual([z("2024-02-29T00:00Z"), z("2024-03-31T00:00Z")]);
    expect(nextPeriod(c, feb)).toEqual(periodAt(c, 2));
    expect(previousPeriod(c, feb)).toEqual(periodAt(c, 0));
    expect(periodHours(feb)).toBe(31 * 24);
  });
});

describe("periods: time zones and DST", () => {
  it.each([
    ["Europe/Berlin", "2026-01", "2025-12-31T23:00Z", "2026-01-31T23:00Z", 744],
    ["Europe/Berlin", "2026-03", "2026-02-28T23:00Z", "2026-03-31T22:00Z", 743],
    ["Europe/Berlin", "2026-10", "2026-09-30T22:00Z", "2026-10-31T23:00Z", 745],
    ["America/New_York", "2026-03", "2026-03-01T05:00Z", "2026-04-01T04:00Z", 743],
    ["America/New_York", "2026-11", "2026-11-01T04:00Z", "2026-12-01T05:00Z", 721],
    ["Australia/Sydney", "2026-04", "2026-03-31T13:00Z", "2026-04-30T14:00Z", 721],
  ])("when calendar months are read in %s, then %s is [%s, %s), %i hours", (zone, month, start, end, hours) => {
    const p = periodStartingInMonth(calendarMonths(zone), month) as Period;
    expect(span(p)).toEqual([z(start), z(end)]);
    expect(periodHours(p)).toBe(hours);
  });

  it.each([
    ["Europe/Berlin", "2025-12-31T23:00Z", "2026-03-29T12:00Z", "2026-03-28T23:00Z", "2026-03-29T22:00Z", 23],
    ["Europe/Berlin", "2025-12-31T23:00Z", "2026-10-25T12:00Z", "2026-10-24T22:00Z", "2026-10-25T23:00Z", 25],
    ["America/New_York", "2026-01-01T05:00Z", "2026-03-08T12:00Z", "2026-03-08T05:00Z", "2026-03-09T04:00Z", 23],
    ["America/New_York", "2026-01-01T05:00Z", "2026-11-01T12:00Z", "2026-11-01T04:00Z", "2026-11-02T05:00Z", 25],
    // Havana springs forward at midnight: the missing 00:00 becomes 01:00.
    ["America/Havana", "2026-01-01T05:00Z", "2026-03-08T12:00Z", "2026-03-08T05:00Z", "2026-03-09T04:00Z", 23],
  ])(
    "when a daily cycle at local midnight in %s (anchor %s) meets DST, then the day containing %s is [%s, %s), %i hours",
    (zone, anchor, t, start, end, hours) => {
      const p = periodContaining(cycle("day", 1, anchor, zone), at(t));
      expect(span(p)).toEqual([z(start), z(end)]);
      expect(periodHours(p)).toBe(hours);
    },
  );

  it("when the anchor's wall time (02:00) is skipped on a boundary day, then the boundary moves forward by the gap", () => {
    const c = cycle("day", 1, "2026-03-20T01:00Z", "Europe/Berlin"); // 02:00 CET
    expect(span(periodContaining(c, at("2026-03-29T00:30Z")))).toEqual([
      z("2026-03-28T01:00Z"),
      z("2026-03-29T01:00Z"),
    ]);
    expect(span(periodContaining(c, at("2026-03-29T12:00Z")))).toEqual([
      z("2026-03-29T01:00Z"),
      z("2026-03-30T00:00Z"),
    ]);
  });

  it("when the anchor's wall time (02:00) occurs twice on a boundary day, then the boundary is the earlier one", () => {
    const c = cycle("day", 1, "2026-10-20T00:00Z", "Europe/Berlin"); // 02:00 CEST
    const p = periodContaining(c, at("2026-10-25T12:00Z"));
    expect(span(p)).toEqual([z("2026-10-25T00:00Z"), z("2026-10-26T01:00Z")]);
    expect(periodHours(p)).toBe(25);
  });

  it("when the anchor itself is the second 02:00 of a fall-back night, then boundary 0 is still the anchor", () => {
    const c = cycle("day", 1, "2026-10-25T01:00Z", "Europe/Berlin"); // 02:00 CET, after 02:00 CEST
    expect([-1, 0, 1].map((k) => periodStart(c, k).toISOString())).toEqual([
      z("2026-10-24T00:00Z"),
      z("2026-10-25T01:00Z"),
      z("2026-10-26T01:00Z"),
    ]);
  });

  it("when a local day does not exist (Samoa skipped 2011-12-30), then its daily period is empty and holds no instant", () => {
    const c = cycle("day", 1, "2011-12-25T10:00Z", "Pacific/Apia"); // 00:00 local at UTC-10
    expect(span(periodAt(c, 5))).toEqual([z("2011-12-30T10:00Z"), z("2011-12-30T10:00Z")]);
    expect(periodContaining(c, at("2011-12-30T10:00Z"))).toMatchObject({ index: 6, end: at("2011-12-31T10:00Z") });
    expect(periodHours(periodStartingInMonth(calendarMonths("Pacific/Apia"), "2011-12") as Period)).toBe(30 * 24);
  });

  it("when weeks cross a DST change, then they are 7 local days (167 hours) and keep the local time", () => {
    const c = cycle("week", 1, "2026-03-22T23:00Z", "Europe/Berlin"); // Monday 00:00 CET
    const p = periodAt(c, 0);
    expect(span(p)).toEqual([z("2026-03-22T23:00Z"), z("2026-03-29T22:00Z")]);
    expect(periodHours(p)).toBe(167);
  });

  it("when the zone is UTC under another name, then the periods are the same as UTC's", () => {
    for (const name of ["Etc/UTC", "Etc/GMT", "utc"]) {
      const c = cycle("month", 1, "2026-01-31T00:00Z", name);
      validateCycle(c);
      expect(periodAt(c, 1)).toEqual(periodAt(cycle("month", 1, "2026-01-31T00:00Z"), 1));
    }
  });
});

describe("periods: the period starting in a month", () => {
  it("when the cycle is the default, then it is UTC calendar months from the start of the subscription's month", () => {
    const c = defaultCycle(at("2026-11-17T12:34:56Z"));
    expect(c).toEqual(cycle("month", 1, "2026-11-01T00:00Z"));
    expect(span(periodStartingInMonth(c, "2027-02"))).toEqual([z("2027-02-01T00:00Z"), z("2027-03-01T00:00Z")]);
    expect(span(periodStartingInMonth(c, "2026-03"))).toEqual([z("2026-03-01T00:00Z"), z("2026-04-01T00:00Z")]);
  });

  it.each([
    [
      "anchored on the 17th",
      cycle("month", 1, "2026-11-17T09:00Z"),
      "2027-02",
      ["2027-02-17T09:00Z", "2027-03-17T09:00Z"],
    ],
    [
      "anchored on the 31st, in February",
      cycle("month", 1, "2026-01-31T00:00Z"),
      "2026-02",
      ["2026-02-28T00:00Z", "2026-03-31T00:00Z"],
    ],
    [
      "every 2 weeks, the first of three",
      cycle("week", 2, "2026-01-05T00:00Z"),
      "2026-03",
      ["2026-03-02T00:00Z", "2026-03-16T00:00Z"],
    ],
    [
      "daily, the first day",
      cycle("day", 1, "2026-01-05T06:00Z"),
      "2026-03",
      ["2026-03-01T06:00Z", "2026-03-02T06:00Z"],
    ],
    ["yearly, its month", cycle("year", 1, "2024-02-29T00:00Z"), "2027-02", ["2027-02-28T00:00Z", "2028-02-29T00:00Z"]],
    ["yearly, another month", cycle("year", 1, "2024-02-29T00:00Z"), "2027-03", null],
    ["every 3 months, a month between", cycle("month", 3, "2026-01-31T00:00Z"), "2026-03", null],
    ["in Berlin, October", calendarMonths("Europe/Berlin"), "2026-10", ["2026-09-30T22:00Z", "2026-10-31T23:00Z"]],
  ])("when %s, then %s gives %j", (_, c, month, expected) => {
    expect(span(periodStartingInMonth(c, month))).toEqual(expected?.map(z) ?? null);
  });

  it("when the month is not YYYY-MM, then 400 invalid_period", () => {
    expect(refusal(() => periodStartingInMonth(calendarMonths(), "2026-13"))).toMatchObject({
      status: 400,
      code: "invalid_period",
    });
  });
});

describe("periods: refusals", () => {
  it.each([
    [
      "Asia/Kolkata with a whole-hour anchor",
      cycle("month", 1, "2026-01-01T00:00Z", "Asia/Kolkata"),
      "billing.time_zone",
    ],
    ["Asia/Kolkata calendar months (18:30Z)", calendarMonths("Asia/Kolkata"), "billing.time_zone"],
    ["Asia/Kathmandu", cycle("week", 1, "2026-01-01T00:00Z", "Asia/Kathmandu"), "billing.time_zone"],
    ["an anchor at 09:30Z", cycle("month", 1, "2026-01-01T09:30Z"), "billing.anchor"],
    [
      "Australia/Lord_Howe, monthly",
      cycle("month", 1, "2026-01-01T13:00Z", "Australia/Lord_Howe"),
      "billing.time_zone",
    ],
    ["Australia/Lord_Howe, daily", cycle("day", 1, "2026-01-01T13:00Z", "Australia/Lord_Howe"), "billing.time_zone"],
    ["Caracas anchored in 2000 (-4:30 from 2007 to 2016)", calendarMonths("America/Caracas"), "billing.time_zone"],
  ])("when %s, then 422 period_not_hour_aligned", (_, c, field) => {
    expect(refusal(() => validateCycle(c))).toEqual({ status: 422, code: "period_not_hour_aligned", field });
  });

  it("when a cycle that validation refuses is computed anyway, then no off-hour boundary comes out", () => {
    const lordHowe = cycle("month", 1, "2026-01-01T13:00Z", "Australia/Lord_Howe"); // 00:00 local at +11
    expect(periodStart(lordHowe, 1).toISOString()).toBe(z("2026-02-01T13:00Z"));
    expect(refusal(() => periodStart(lordHowe, 6))).toMatchObject({ code: "period_not_hour_aligned" }); // +10:30
    expect(
      refusal(() => periodContaining(cycle("month", 1, "2026-01-01T09:30Z"), at("2026-05-01T00:00Z"))),
    ).toMatchObject({
      code: "period_not_hour_aligned",
    });
  });

  it("when Caracas is anchored after its half-hour years, then it is accepted", () => {
    expect(() => validateCycle(cycle("month", 1, "2026-01-01T04:00Z", "America/Caracas"))).not.toThrow();
  });

  it.each(["Mars/Olympus_Mons", "", "Europe/Berlin "])(
    "when the time zone is %j, then 422 unknown_time_zone",
    (zone) => {
      const expected = { status: 422, code: "unknown_time_zone", field: "billing.time_zone" };
      expect(refusal(() => validateCycle(cycle("month", 1, "2026-01-01T00:00Z", zone)))).toEqual(expected);
      expect(
        refusal(() => periodContaining(cycle("month", 1, "2026-01-01T00:00Z", zone), at("2026-05-01T00:00Z"))),
      ).toEqual(expected);
      expect(refusal(() => calendarMonths(zone))).toEqual(expected);
    },
  );

  it.each([
    ["month", 0],
    ["month", -1],
    ["month", 1.5],
    ["month", 37],
    ["year", 4],
    ["week", 157],
    ["day", 1096],
    ["quarter", 1],
  ])("when the interval is %s × %s, then 422 invalid_billing_cycle", (interval, count) => {
    const c = cycle(interval as Interval, count, "2026-01-01T00:00Z");
    expect(refusal(() => validateCycle(c))).toMatchObject({ status: 422, code: "invalid_billing_cycle" });
    expect(refusal(() => periodContaining(c, at("2026-05-01T00:00Z")))).toMatchObject({
      code: "invalid_billing_cycle",
    });
  });

  it.each([
    ["month", 36],
    ["year", 3],
    ["week", 156],
    ["day", 1095],
  ] as const)("when the interval is %s × %i (three years), then it is accepted", (interval, count) => {
    expect(() => validateCycle(cycle(interval, count, "2026-01-01T00:00Z"))).not.toThrow();
  });
});

// The reference: wall clocks read from Intl hour by hour (its own formatter, sv-SE "2026-03-29 02:00:00"), calendar
// arithmetic by Date.UTC, and a boundary is the first whole hour whose wall clock reaches the expected wall time.
const clocks = new Map<string, Intl.DateTimeFormat>();
function wallClock(zone: string, t: number): number {
  let f = clocks.get(zone);
  if (!f) {
    const digits = "2-digit" as const;
    f = new Intl.DateTimeFormat("sv-SE", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: digits,
      day: digits,
      hour: digits,
      minute: digits,
      second: digits,
    });
    clocks.set(zone, f);
  }
  const [date, time] = f.format(t).split(" ") as [string, string];
  return Date.parse(`${date}T${time}Z`);
}

/** Where a wall clock stepping hour by hour first reaches `target`: a wall time skipped by a gap moves forward by it. */
function reached(zone: string, h: number, target: number): number {
  const wall = wallClock(zone, h);
  return wall === target ? h : target - (wallClock(zone, h - HOUR) - (h - HOUR));
}

function firstInstantAt(zone: string, target: number): number {
  let h = Math.floor((target - 15 * HOUR) / HOUR) * HOUR;
  while (wallClock(zone, h) < target) h += HOUR;
  return reached(zone, h, target);
}

function expectedWall(c: BillingCycle, anchorWall: number, k: number): number {
  const a = new Date(anchorWall);
  const [y, m, d, hh] = [a.getUTCFullYear(), a.getUTCMonth(), a.getUTCDate(), a.getUTCHours()];
  const n = k * c.intervalCount;
  if (c.interval === "day" || c.interval === "week") return Date.UTC(y, m, d + n * (c.interval === "week" ? 7 : 1), hh);
  const months = n * (c.interval === "year" ? 12 : 1);
  const lastDay = new Date(Date.UTC(y, m + months + 1, 0)).getUTCDate();
  return Date.UTC(y, m + months, Math.min(d, lastDay), hh);
}

/** Boundaries kFrom..kTo, sweeping hour by hour from before boundary kFrom through the anchor to boundary kTo. */
function referenceBoundaries(c: BillingCycle, kFrom: number, kTo: number): number[] {
  const anchor = c.anchor.getTime();
  const anchorWall = wallClock(c.timeZone, anchor);
  const out: number[] = [];
  let k = kFrom;
  let target = expectedWall(c, anchorWall, k);
  for (let h = Math.floor((target - 15 * HOUR) / HOUR) * HOUR; k <= kTo; h += HOUR) {
    while (k <= kTo && (k === 0 ? h >= anchor : wallClock(c.timeZone, h) >= target)) {
      out.push(k === 0 ? anchor : reached(c.timeZone, h, target));
      k += 1;
      target = expectedWall(c, anchorWall, k);
    }
  }
  return out;
}

const ACCEPTED = [
  "UTC",
  "Europe/Berlin",
  "Europe/London",
  "America/New_York",
  "America/Los_Angeles",
  "America/Sao_Paulo",
  "America/Santiago",
  "America/Havana",
  "America/Nuuk",
  "Australia/Sydney",
  "Pacific/Auckland",
  "Pacific/Apia",
  "Pacific/Kiritimati",
  "Africa/Casablanca",
  "Asia/Beirut",
  "Asia/Tokyo",
  "Etc/GMT+12",
];
const OFF_HOUR = [
  "Asia/Kolkata",
  "Asia/Kathmandu",
  "Australia/Lord_Howe",
  "America/St_Johns",
  "Asia/Tehran",
  "Australia/Adelaide",
  "Pacific/Chatham",
  "Pacific/Marquesas",
  "Australia/Eucla",
];
const COUNTS: Record<Interval, number> = { day: 3, week: 2, month: 3, year: 1 };
const Y2000 = Date.UTC(2000, 0, 1);
const Y2100 = Date.UTC(2100, 0, 1);

/** Random cycles whose anchor is a local wall time in 2000–2100, often a month end, in an accepted zone. */
const cycles = fc
  .record({
    zone: fc.constantFrom(...ACCEPTED),
    interval: fc.constantFrom<Interval>("day", "week", "month", "year"),
    count: fc.integer({ min: 1, max: 3 }),
    year: fc.integer({ min: 2000, max: 2099 }),
    month: fc.integer({ min: 0, max: 11 }),
    day: fc.oneof(fc.constantFrom(1, 28, 29, 30, 31), fc.integer({ min: 1, max: 31 })),
    hour: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 23 })),
  })
  .map(({ zone, interval, count, year, month, day, hour }): BillingCycle => {
    const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    const anchor = firstInstantAt(zone, Date.UTC(year, month, Math.min(day, lastDay), hour));
    return { interval, intervalCount: Math.min(count, COUNTS[interval]), anchor: new Date(anchor), timeZone: zone };
  });

const DST_ZONES = [
  "Europe/Berlin",
  "Europe/London",
  "America/New_York",
  "America/Los_Angeles",
  "America/Santiago",
  "America/Havana",
  "America/Sao_Paulo",
  "America/Nuuk",
  "Australia/Sydney",
  "Pacific/Auckland",
  "Pacific/Apia",
  "Africa/Casablanca",
  "Asia/Beirut",
];

/** The UTC hours in a year at which a zone's offset changes, found with the reference's own wall clock. */
function transitions(zone: string, year: number): number[] {
  const offset = (t: number) => wallClock(zone, t) - t;
  const out: number[] = [];
  for (let d = Date.UTC(year, 0, 1); d < Date.UTC(year + 1, 0, 1); d += 24 * HOUR) {
    if (offset(d) === offset(d + 24 * HOUR)) continue;
    let h = d + HOUR;
    while (offset(h) === offset(d)) h += HOUR;
    out.push(h);
  }
  return out;
}

/** Cycles with a boundary placed on a DST change: at, just before or after the wall time that is skipped or repeated. */
const dstCycles = fc
  .record({
    zone: fc.constantFrom(...DST_ZONES),
    year: fc.integer({ min: 2000, max: 2040 }),
    which: fc.nat(),
    interval: fc.constantFrom<Interval>("day", "week", "month"),
    back: fc.integer({ min: 1, max: 2 }),
    hourDelta: fc.integer({ min: -2, max: 1 }),
  })
  .map(({ zone, year, which, interval, back, hourDelta }) => {
    const changes = transitions(zone, year);
    if (changes.length === 0) return null;
    const change = changes[which % changes.length] as number;
    // The wall time at which the clock jumps (forward or back), then a boundary near it.
    const wall = new Date(change + (wallClock(zone, change - HOUR) - (change - HOUR)) + hourDelta * HOUR);
    const [y, m, d, h] = [wall.getUTCFullYear(), wall.getUTCMonth(), wall.getUTCDate(), wall.getUTCHours()];
    const anchorWall =
      interval === "month" ? Date.UTC(y, m - back, d, h) : Date.UTC(y, m, d - back * (interval === "week" ? 7 : 1), h);
    const anchor = new Date(firstInstantAt(zone, anchorWall));
    return { c: { interval, intervalCount: 1, anchor, timeZone: zone } satisfies BillingCycle, back };
  });

describe("periods: properties", () => {
  it("when a random accepted cycle is asked for the period of a random instant in 2000–2100, then it contains it, its bounds are boundaries k and k + 1, whole UTC hours, and next(previous(p)) = p", () => {
    fc.assert(
      fc.property(cycles, fc.integer({ min: Y2000, max: Y2100 }), (c, t) => {
        validateCycle(c);
        const p = periodContaining(c, new Date(t));
        expect(p.start.getTime()).toBeLessThanOrEqual(t);
        expect(p.end.getTime()).toBeGreaterThan(t);
        expect(p.start).toEqual(periodStart(c, p.index));
        expect(p.end).toEqual(periodStart(c, p.index + 1));
        expect(p.start.getTime() % HOUR).toBe(0);
        expect(p.end.getTime() % HOUR).toBe(0);
        expect(nextPeriod(c, previousPeriod(c, p))).toEqual(p);
        expect(previousPeriod(c, nextPeriod(c, p))).toEqual(p);
        expect(periodContaining(c, p.start)).toEqual(p);
      }),
      { numRuns: 400 },
    );
  });

  it("when boundaries around the anchor are computed, then they equal an hour-by-hour sweep of the zone's wall clock", () => {
    const range: Record<Interval, [number, number]> = { day: [-3, 3], week: [-2, 2], month: [-1, 2], year: [-1, 1] };
    fc.assert(
      fc.property(cycles, fc.double({ min: 0, max: 1, noNaN: true }), (c, where) => {
        const [kFrom, kTo] = range[c.interval];
        const expected = referenceBoundaries(c, kFrom, kTo);
        const actual = expected.map((_, i) => periodStart(c, kFrom + i).getTime());
        expect(actual.map(z)).toEqual(expected.map(z));
        const t = Math.floor(expected[0]! + where * (expected[expected.length - 1]! - expected[0]!) - 1);
        const i = expected.findLastIndex((b) => b <= t);
        if (i >= 0 && i < expected.length - 1) {
          expect(periodContaining(c, new Date(t))).toEqual({
            start: new Date(expected[i]!),
            end: new Date(expected[i + 1]!),
            index: kFrom + i,
          });
        }
      }),
      { numRuns: 120 },
    );
  });

  it("when a boundary falls on a DST change (skipped or repeated wall time), then it equals the hour-by-hour sweep", () => {
    fc.assert(
      fc.property(dstCycles, (g) => {
        fc.pre(g !== null);
        const { c, back } = g as NonNullable<typeof g>;
        const expected = referenceBoundaries(c, -1, back + 1);
        expect(expected.map((_, i) => z(periodStart(c, i - 1).toISOString()))).toEqual(expected.map(z));
      }),
      { numRuns: 150 },
    );
  });

  it("when the period starting in a month is asked for, then it is the first period starting in that local month, or null when none does", () => {
    fc.assert(
      fc.property(cycles, fc.integer({ min: -30, max: 30 }), (c, monthsAway) => {
        const a = new Date(wallClock(c.timeZone, c.anchor.getTime()));
        const y = a.getUTCFullYear();
        const m = a.getUTCMonth() + monthsAway;
        const from = firstInstantAt(c.timeZone, Date.UTC(y, m, 1));
        const to = firstInstantAt(c.timeZone, Date.UTC(y, m + 1, 1));
        const month = new Date(Date.UTC(y, m, 1)).toISOString().slice(0, 7);
        const p = periodStartingInMonth(c, month);
        if (p) {
          expect(p.start.getTime()).toBeGreaterThanOrEqual(from);
          expect(p.start.getTime()).toBeLessThan(to);
          expect(periodStart(c, p.index - 1).getTime()).toBeLessThan(from);
        } else {
          const around = periodContaining(c, new Date(from));
          expect(around.start.getTime()).toBeLessThan(from);
          expect(around.end.getTime()).toBeGreaterThanOrEqual(to);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("when a zone's offset is not whole hours, then every cycle in it is refused with period_not_hour_aligned", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...OFF_HOUR),
        fc.constantFrom<Interval>("day", "week", "month", "year"),
        fc.integer({ min: Y2000 / HOUR, max: Y2100 / HOUR }),
        (zone, interval, hour) => {
          const c = { interval, intervalCount: 1, anchor: new Date(hour * HOUR), timeZone: zone };
          expect(refusal(() => validateCycle(c))).toMatchObject({ status: 422, code: "period_not_hour_aligned" });
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe("periods: purity", () => {
  it("when src/periods imports, then only its own files and src/errors.ts (no I/O, no other module)", () => {
    const dir = join(import.meta.dirname, "..", "src", "periods");
    const imports = readdirSync(dir).flatMap((file) =>
      [...readFileSync(join(dir, file), "utf8").matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)].map(
        (m) => m[1],
      ),
    );
    expect(imports).toContain("./zones.js");
    expect(imports.filter((spec) => !/^\.\/[a-z]+\.js$/.test(spec ?? "") && spec !== "../errors.js")).toEqual([]);
  });
});
