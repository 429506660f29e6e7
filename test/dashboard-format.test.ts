// How the dashboard words its figures (web/src/format.ts, pure): counts agree with their noun, changes carry a
// sign and amounts their currency, and a chart of this period ends with the day that has begun.
import { describe, expect, it } from "vitest";
import {
  dayLabel,
  elapsedEnd,
  methodLabel,
  money,
  percent,
  periodLabel,
  plural,
  signedMoney,
} from "../web/src/format.js";

describe("dashboard wording", () => {
  it.each([
    [0, "0 customers"],
    [1, "1 customer"],
    [2, "2 customers"],
    [1001, "1001 customers"],
  ])("when there are %i customers, then the card reads %s", (n, text) => {
    expect(plural(n, "customer")).toBe(text);
  });

  it.each([
    ["12.30", "USD", "+12.30 USD"],
    ["-4.00", "EUR", "-4.00 EUR"],
    ["0.00", "USD", "0.00 USD"],
    ["0", null, "0"],
    ["7", null, "+7"],
  ])("when a change of %s %s is shown, then it reads %s", (amount, currency, text) => {
    expect(signedMoney(amount, currency)).toBe(text);
  });

  it("when amounts, ratios and methods are shown, then they carry their unit and read as words", () => {
    expect(money("29.00", "USD")).toBe("29.00 USD");
    expect(money("29.00", null)).toBe("29.00");
    expect(percent("0.3461")).toBe("+34.6%");
    expect(percent("-0.5")).toBe("-50.0%");
    expect(percent(null)).toBe("new");
    expect(methodLabel("run_rate_7d")).toBe("run rate of the last 7 days");
    expect(methodLabel("hour_of_week")).toContain("hour-of-week");
  });

  it.each([
    ["2026-12-07T19:00:00Z", "2026-12-08T00:00:00.000Z"],
    ["2026-12-01T00:00:00Z", "2026-12-02T00:00:00.000Z"],
    ["2026-12-31T23:59:59Z", "2027-01-01T00:00:00.000Z"],
    ["2027-01-03T10:00:00Z", "2027-01-01T00:00:00.000Z"],
    ["2026-11-20T10:00:00Z", "2026-12-01T00:00:00.000Z"],
  ])("when the data is as of %s, then this period's chart draws the days up to %s", (asOf, end) => {
    const period = { start: "2026-12-01T00:00:00Z", end: "2027-01-01T00:00:00Z" };
    expect(elapsedEnd(period, asOf).toISOString()).toBe(end);
  });

  it.each([
    [{ start: "2026-11-17T09:00:00Z", end: "2026-12-17T09:00:00Z" }, "UTC", "17 Nov – 17 Dec 2026"],
    [{ start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" }, "UTC", "1 Nov – 1 Dec 2026"],
    [{ start: "2026-12-17T09:00:00Z", end: "2027-01-17T09:00:00Z" }, "UTC", "17 Dec 2026 – 17 Jan 2027"],
    // Berlin's March, read in Berlin: from its first local midnight to April's.
    [{ start: "2026-02-28T23:00:00Z", end: "2026-03-31T22:00:00Z" }, "Europe/Berlin", "1 Mar – 1 Apr 2026"],
  ])("when the period %o of a %s cycle is labelled, then it reads %s", (period, zone, text) => {
    expect(periodLabel(period, zone)).toBe(text);
  });

  it("when a forecast's end is named, then it is the day in the cycle's zone", () => {
    expect(dayLabel("2026-12-17T09:00:00Z")).toBe("17 Dec 2026");
    expect(dayLabel("2026-03-31T22:00:00Z", "Europe/Berlin")).toBe("1 Apr 2026");
  });
});
