// Proration (pure): base fees and fixed charges billed by the whole hours of the customer's own period each plan
// and quantity covers (issue #25's worked example, November 2026 = 720 h), proration "none", trials, and the
// properties: the hours of a charge's lines add up to the hours covered, and plans of equal fee covering the whole
// period sum to that fee within one minor unit per line.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { priceInvoice } from "../src/pricing/invoice.js";
import type { PriceVersion } from "../src/pricing/models.js";
import { Dec, formatMoney } from "../src/pricing/money.js";
import { billedPart, prorationOf, quantitySegments, wholeHours } from "../src/pricing/proration.js";
import { type PlanPrices, planPeriod, type SubscriptionSpan } from "../src/pricing/segments.js";

const d = (s: string) => new Date(s);
const NOV = { start: d("2026-11-01T00:00:00Z"), end: d("2026-12-01T00:00:00Z") };
const HOUR = 3_600_000;

const version = (baseFee: string, meter = "calls"): PriceVersion => ({
  meter,
  effectiveFrom: d("2026-01-01T00:00:00Z"),
  model: "per_unit",
  unitPrice: new Dec("0.01"),
  tiers: null,
  packageSize: null,
  packagePrice: null,
  baseFee: new Dec(baseFee),
});
const plan = (key: string, fee: string, seat?: string): PlanPrices => ({
  key,
  name: key,
  currency: "USD",
  versions: [version(fee)],
  fixedCharges: seat
    ? [{ key: "seats", name: "Seats", unitPrice: new Dec(seat), effectiveFrom: d("2026-01-01T00:00:00Z") }]
    : [],
});
const PLANS = new Map([
  ["starter", plan("starter", "30", "12")],
  ["pro", plan("pro", "90", "12")],
]);

/** The fee lines of the period: "kind plan amount (hours)". */
function feeLines(subs: SubscriptionSpan[], plans = PLANS, period = NOV) {
  const { segments, fees } = planPeriod(period, subs, plans);
  const priced = segments.map((s) => ({ ...s, quantity: new Dec(0) }));
  return priceInvoice("USD", priced, fees)
    .lines.filter((l) => l.kind !== "usage")
    .map((l) => `${l.kind} ${l.plan} ${l.quantity} ${formatMoney(l.amount, "USD")} ${l.proration?.hours ?? "all"}`);
}

describe("proration: the worked example (November = 720 h)", () => {
  const change = d("2026-11-11T00:00:00Z");
  it("when Starter is upgraded to Pro at Nov 11, then Starter 10.00 (240 h) and Pro 60.00 (480 h)", () => {
    const subs = [
      { plan: "starter", start: NOV.start, end: change },
      { plan: "pro", start: change, end: null },
    ];
    expect(feeLines(subs)).toEqual(["base_fee starter 1 10.00 240", "base_fee pro 1 60.00 480"]);
  });

  it("when the upgrade says proration none, then Starter's 30.00 in full and Pro nothing until December", () => {
    const subs = [
      { plan: "starter", start: NOV.start, end: change, endProration: "none" as const },
      { plan: "pro", start: change, end: null, proration: "none" as const },
    ];
    expect(feeLines(subs)).toEqual(["base_fee starter 1 30.00 all"]);
    const dec = { start: NOV.end, end: d("2027-01-01T00:00:00Z") };
    expect(feeLines(subs, PLANS, dec)).toEqual(["base_fee pro 1 90.00 all"]);
  });

  it("when 5 seats become 8 at Nov 21, then 5 × 12 × 480/720 = 40.00 and 8 × 12 × 240/720 = 32.00", () => {
    const quantities = [
      { charge: "seats", at: NOV.start, quantity: new Dec(5) },
      { charge: "seats", at: d("2026-11-21T00:00:00Z"), quantity: new Dec(8) },
    ];
    const lines = feeLines([{ plan: "starter", start: NOV.start, end: null, quantities }]);
    expect(lines).toEqual(["base_fee starter 1 30.00 all", "fixed starter 5 40.00 480", "fixed starter 8 32.00 240"]);
  });

  it("when a trial ends on Nov 4, then the base fee is 30 × 648/720 = 27.00 and usage before it is priced 0", () => {
    const subs = [{ plan: "starter", start: NOV.start, end: null, trialEnd: d("2026-11-04T00:00:00Z") }];
    expect(feeLines(subs)).toEqual(["base_fee starter 1 27.00 648"]);
    const { segments, fees } = planPeriod(NOV, subs, PLANS);
    const priced = segments.map((s) => ({ ...s, quantity: new Dec(1000) }));
    const usage = priceInvoice("USD", priced, fees).lines.filter((l) => l.kind === "usage");
    expect(usage.map((l) => [l.quantity.toFixed(), formatMoney(l.amount, "USD"), l.trial ?? false])).toEqual([
      ["1000", "0.00", true],
      ["1000", "10.00", false],
    ]);
  });

  it("when a downgrade is scheduled for the period end, then November stays on Pro and December is Starter's", () => {
    const subs = [
      { plan: "pro", start: NOV.start, end: NOV.end },
      { plan: "starter", start: NOV.end, end: null },
    ];
    expect(feeLines(subs)).toEqual(["base_fee pro 1 90.00 all"]);
    expect(feeLines(subs, PLANS, { start: NOV.end, end: d("2027-01-01T00:00:00Z") })).toEqual([
      "base_fee starter 1 30.00 all",
    ]);
  });
});

describe("proration: rules", () => {
  it("when a change falls inside an hour, then the hour it falls in starts the new plan's part", () => {
    expect(wholeHours(d("2026-11-01T00:00:00Z"), d("2026-11-01T10:40:00Z"))).toBe(10);
    expect(wholeHours(d("2026-11-01T10:40:00Z"), d("2026-11-02T00:00:00Z"))).toBe(14);
  });

  it.each([
    ["a first subscription inside the period, prorated", { proration: "prorate" }, "2026-11-11", "2026-12-01"],
    ["a first subscription inside the period, none: the full fee", { proration: "none" }, "2026-11-01", "2026-12-01"],
    ["a change inside the period, none: nothing until the next", { proration: "none", follows: true }, null, null],
    ["a cancellation, none: the full fee", { end: "2026-11-21", endProration: "none" }, "2026-11-11", "2026-12-01"],
    ["a cancellation, prorated", { end: "2026-11-21" }, "2026-11-11", "2026-11-21"],
    ["a trial past the end: nothing", { end: "2026-11-21", trialEnd: "2026-11-25" }, null, null],
  ] as const)("when %s, then billedPart is right", (_name, o, from, to) => {
    const span = {
      start: d("2026-11-11T00:00:00Z"),
      end: "end" in o ? d(`${o.end}T00:00:00Z`) : null,
      proration: "proration" in o ? o.proration : undefined,
      endProration: "endProration" in o ? o.endProration : undefined,
      trialEnd: "trialEnd" in o ? d(`${o.trialEnd}T00:00:00Z`) : null,
      follows: "follows" in o,
    };
    const part = billedPart(NOV, span);
    expect(part && [part.start.toISOString().slice(0, 10), part.end.toISOString().slice(0, 10)]).toEqual(
      from && [from, to],
    );
  });

  it("when a period is shortened by a change of cycle, then its own hours are the whole (no proration)", () => {
    const short = { start: NOV.start, end: d("2026-11-17T09:00:00Z") };
    expect(prorationOf(short, short)).toBeNull();
    expect(prorationOf({ start: d("2026-11-09T00:00:00Z"), end: short.end }, short)).toMatchObject({
      hours: 201,
      periodHours: 393,
    });
  });

  it("when quantities repeat or are 0, then no line splits or shows for them", () => {
    const q = (at: string, n: number) => ({ charge: "seats", at: d(at), quantity: new Dec(n) });
    const segs = quantitySegments(NOV, [
      q("2026-10-01T00:00:00Z", 2),
      q("2026-11-05T00:00:00Z", 2),
      q("2026-11-10T00:00:00Z", 0),
      q("2026-11-20T00:00:00Z", 3),
    ]);
    expect(
      segs.map((s) => [s.start.toISOString().slice(5, 10), s.end.toISOString().slice(5, 10), +s.quantity]),
    ).toEqual([
      ["11-01", "11-10", 2],
      ["11-20", "12-01", 3],
    ]);
  });
});

/** Random instants inside November, on any minute. */
const instants = fc
  .uniqueArray(fc.integer({ min: 1, max: 720 * 60 - 1 }), { maxLength: 6 })
  .map((mins) => mins.sort((a, b) => a - b).map((m) => new Date(NOV.start.getTime() + m * 60_000)));

/** Subscriptions covering [from, to) one after the other, changing plan at each cut. */
function chain(cuts: Date[], from: Date, to: Date, plans: string[]): SubscriptionSpan[] {
  const bounds = [from, ...cuts.filter((c) => c > from && c < to), to];
  return bounds.slice(0, -1).map((start, i) => ({
    plan: plans[i % plans.length] as string,
    start,
    end: i + 2 === bounds.length && to.getTime() === NOV.end.getTime() ? null : (bounds[i + 1] as Date),
  }));
}

describe("proration: properties", () => {
  it("when plans change any number of times inside one period, then the hours of a charge's lines add up to the hours covered", () => {
    fc.assert(
      fc.property(instants, instants, fc.integer({ min: 0, max: 719 }), (cuts, seatCuts, startHour) => {
        const from = new Date(NOV.start.getTime() + startHour * HOUR);
        const quantities = seatCuts.map((at, i) => ({ charge: "seats", at, quantity: new Dec(1 + (i % 3)) }));
        quantities.unshift({ charge: "seats", at: NOV.start, quantity: new Dec(4) });
        const subs = chain(cuts, from, NOV.end, ["starter", "pro"]).map((s) => ({ ...s, quantities }));
        const { fees } = planPeriod(NOV, subs, PLANS);
        const hoursOf = (kind: string) =>
          fees
            .filter((f) => f.kind === kind)
            .reduce((a, f) => a + (f.proration ? f.proration.hours : wholeHours(NOV.start, NOV.end)), 0);
        const covered = wholeHours(from, NOV.end);
        expect(hoursOf("base_fee")).toBe(covered);
        expect(hoursOf("fixed")).toBe(covered);
      }),
      { numRuns: 300 },
    );
  });

  it("when plans of the same fee cover the whole period between them, then their lines sum to that fee within a cent per line", () => {
    const fee = fc.integer({ min: 1, max: 10_000_000 }).map((c) => new Dec(c).dividedBy(100));
    fc.assert(
      fc.property(instants, fee, (cuts, amount) => {
        const plans = new Map([
          ["a", { ...plan("a", amount.toFixed()), fixedCharges: [] }],
          ["b", { ...plan("b", amount.toFixed()), fixedCharges: [] }],
        ]);
        const { fees } = planPeriod(NOV, chain(cuts, NOV.start, NOV.end, ["a", "b"]), plans);
        const lines = priceInvoice("USD", [], fees).lines;
        const total = lines.reduce((a, l) => a.plus(l.amount), new Dec(0));
        expect(total.minus(amount).abs().lte(new Dec("0.01").times(lines.length))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});
