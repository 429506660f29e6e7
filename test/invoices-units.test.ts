// The pure invoice rules — ISO 8601 grace durations, numbering, which periods have invoices and when they freeze,
// the differences a correction carries, the served document — table-driven, and checked against simple reference
// implementations with fast-check.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseIsoDuration } from "../src/duration.js";
import { composeInvoice } from "../src/invoices/document.js";
import {
  correctionHorizon,
  type Difference,
  differences,
  draftHorizon,
  type Figure,
  figuresOf,
  invoiceNumber,
  isFinalizable,
  legacyFigures,
  loadFigures,
  numberingYear,
  periodsBetween,
  storeFigures,
} from "../src/invoices/rules.js";
import type { AdjustmentLine } from "../src/invoices/store.js";
import { Dec } from "../src/pricing/money.js";

const d = (s: string) => new Date(s);
const H = 3_600_000;

describe("ISO 8601 durations", () => {
  it.each([
    ["PT1H", H],
    ["pt1h", H],
    ["PT30M", 30 * 60_000],
    ["PT90S", 90_000],
    ["PT0.5S", 500],
    ["PT1,5S", 1500],
    ["P1D", 24 * H],
    ["P1DT12H", 36 * H],
    ["P2W", 14 * 24 * H],
    ["PT0S", 0],
    ["PT1H30M15S", H + 30 * 60_000 + 15_000],
  ])("when %s is read, then it is %d ms", (text, ms) => {
    expect(parseIsoDuration(text)).toBe(ms);
  });

  it.each(["", "P", "PT", "P1DT", "1H", "PT1", "P1M", "P1Y", "-PT1H", "PT1H ago", "PT1.5H", "P1W1"])(
    "when %j is read, then it is refused",
    (text) => {
      expect(parseIsoDuration(text)).toBeUndefined();
    },
  );

  it("when any duration of weeks, days, hours, minutes and seconds is written out, then it reads back to its length", () => {
    const part = fc.option(fc.integer({ min: 0, max: 500 }), { nil: undefined });
    fc.assert(
      fc.property(part, part, part, part, part, (w, dd, h, m, s) => {
        fc.pre([w, dd, h, m, s].some((x) => x !== undefined));
        const time = [h === undefined ? "" : `${h}H`, m === undefined ? "" : `${m}M`, s === undefined ? "" : `${s}S`];
        const text = `P${w === undefined ? "" : `${w}W`}${dd === undefined ? "" : `${dd}D`}${
          time.join("") ? `T${time.join("")}` : ""
        }`;
        const ms = ((((w ?? 0) * 7 + (dd ?? 0)) * 24 + (h ?? 0)) * 60 + (m ?? 0)) * 60_000 + (s ?? 0) * 1000;
        expect(parseIsoDuration(text)).toBe(ms);
      }),
    );
  });
});

describe("numbers", () => {
  it.each([
    [2026, 1, "2026-000001"],
    [2026, 123, "2026-000123"],
    [2027, 999_999, "2027-999999"],
    [2027, 1_234_567, "2027-1234567"],
  ])("when %d's sequence %d is written, then it reads %s", (year, n, text) => {
    expect(invoiceNumber(year, n)).toBe(text);
  });

  it.each([0, -1, 1.5, Number.NaN])("when the sequence is %d, then no number is made", (n) => {
    expect(() => invoiceNumber(2026, n)).toThrow();
  });

  it("when numbers of a year follow each other, then they sort in that order as text", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 999_998 }), (n) => {
        expect(invoiceNumber(2026, n) < invoiceNumber(2026, n + 1)).toBe(true);
        expect(Number(invoiceNumber(2026, n).slice(5))).toBe(n);
      }),
    );
  });

  it("when an invoice is finalized on New Year's Eve or just after, then the year is the UTC year", () => {
    expect(numberingYear(d("2026-12-31T23:59:59Z"))).toBe(2026);
    expect(numberingYear(d("2027-01-01T00:00:00Z"))).toBe(2027);
  });
});

describe("periods", () => {
  it.each([
    ["2026-11-01T00:59:59.999Z", 3_600_000, false],
    ["2026-11-01T01:00:00Z", 3_600_000, true],
    ["2026-11-01T00:00:00Z", 0, true],
    ["2026-10-31T23:59:59Z", 0, false],
    ["2026-11-01T23:59:59Z", 86_400_000, false],
  ])("when it is %s and the grace is %d ms, then October's invoices may be frozen: %s", (now, grace, want) => {
    expect(isFinalizable(d("2026-11-01T00:00:00Z"), d(now), grace)).toBe(want);
  });

  it.each([
    ["2026-10-16T05:00:00Z", "2026-11-20T12:00:00Z", ["2026-10", "2026-11"]],
    ["2026-11-20T12:00:00Z", "2026-11-20T12:00:00Z", ["2026-11"]],
    ["2026-12-31T23:00:00Z", "2027-02-01T00:00:00Z", ["2026-12", "2027-01", "2027-02"]],
  ])("when periods from %s to %s are listed, then they are %j", (from, to, want) => {
    const periods = periodsBetween(d(from), d(to));
    expect(periods.map((p) => p.start.toISOString().slice(0, 7))).toEqual(want);
    for (const [i, p] of periods.entries()) {
      expect(p.end.getTime()).toBe((periods[i + 1]?.start ?? p.end).getTime());
    }
  });

  it.each([
    ["2026-11-20T12:00:00Z", null, "2026-10-01"],
    ["2026-11-03T00:00:00Z", null, "2026-09-01"],
    ["2026-11-20T12:00:00Z", "2026-06-01T00:00:00Z", "2026-07-01"],
    ["2026-11-20T12:00:00Z", "2026-10-01T00:00:00Z", "2026-10-01"],
  ])("when it is %s and the latest final invoice is of %s, then drafts start in %s", (now, latest, want) => {
    expect(
      draftHorizon(d(now), 35, latest ? d(latest) : null)
        .toISOString()
        .slice(0, 10),
    ).toBe(want);
  });

  it("when late events are accepted for 35 days, then invoices of periods that ended before that are closed", () => {
    expect(correctionHorizon(d("2026-12-06T00:00:00Z"), 35).toISOString()).toBe("2026-11-01T00:00:00.000Z");
  });
});

const fig = (meter: string | null, quantity: string, amount: string, billed = true): Figure => ({
  kind: meter === null ? "other" : "usage",
  meter,
  charge: null,
  quantity: new Dec(quantity),
  amount: new Dec(amount),
  billed,
});
const plain = (ds: Difference[]) =>
  ds.map((x) => [x.meter, x.quantity.toFixed(), x.amount.toFixed(), x.asOfQuantity.toFixed(), x.asOfAmount.toFixed()]);

describe("differences", () => {
  const frozen = [fig(null, "0", "0", false), fig("calls", "100", "1.00"), fig("seats", "10", "50.00")];
  it.each([
    ["nothing changed", frozen, [], []],
    ["a late event", [fig("calls", "400", "4.00"), frozen[2]], [], [["calls", "300", "3", "400", "4"]]],
    ["a last value went down", [frozen[1], fig("seats", "4", "20.00")], [], [["seats", "-6", "-30", "4", "20"]]],
    ["a price correction", [fig("calls", "100", "0.50"), frozen[2]], [], [["calls", "0", "-0.5", "100", "0.5"]]],
    ["credits now pay part of it", [fig(null, "0", "-5.00"), frozen[1], frozen[2]], [], [[null, "0", "-5", "0", "-5"]]],
    ["already carried", [fig("calls", "400", "4.00"), frozen[2]], [fig("calls", "300", "3.00")], []],
    [
      "carried in part",
      [fig("calls", "450", "4.50"), frozen[2]],
      [fig("calls", "300", "3.00")],
      [["calls", "50", "0.5", "450", "4.5"]],
    ],
    [
      "a late event inside a free tier",
      [fig("calls", "150", "1.00"), frozen[2]],
      [],
      [["calls", "50", "0", "150", "1"]],
    ],
    ["usage of a meter outside the plan", [...frozen, fig("other", "7", "0", false)], [], []],
    ["a meter no longer on the invoice", [frozen[1]], [], [["seats", "-10", "-50", "0", "0"]]],
  ] as [string, Figure[], Figure[], unknown[]][])("when %s, then the difference is %j", (_, now, carried, want) => {
    expect(plain(differences(now, frozen, carried))).toEqual(want);
  });

  const figures = fc.array(
    fc.record({
      kind: fc.constant<"usage">("usage"),
      charge: fc.constant(null),
      meter: fc.constantFrom(null, "a", "b", "c"),
      quantity: fc.integer({ min: -1000, max: 100_000 }).map((q) => new Dec(q)),
      amount: fc.integer({ min: -100_000, max: 1_000_000 }).map((c) => new Dec(c).div(100)),
      billed: fc.boolean(),
    }),
    { maxLength: 5 },
  );
  const unique = (fs: Figure[]) =>
    [...new Map(fs.map((f) => [f.meter, f])).values()].map(
      (f): Figure => ({
        ...f,
        kind: f.meter === null ? "other" : "usage",
      }),
    );

  it("when every difference is carried, then computing again carries nothing, and billed + carried = now for every amount", () => {
    fc.assert(
      fc.property(figures.map(unique), figures.map(unique), figures.map(unique), (now, was, before) => {
        const first = differences(now, was, before);
        const carried = [...before, ...first];
        expect(differences(now, was, carried)).toEqual([]);
        // Reference: per meter, the amounts billed so far (frozen + carried) equal what the invoice is now.
        for (const meter of new Set([...now, ...was, ...before].map((f) => f.meter))) {
          const total = (fs: { meter: string | null; amount: Dec }[]) =>
            fs.filter((f) => f.meter === meter).reduce((a, f) => a.plus(f.amount), new Dec(0));
          expect(total(was).plus(total(carried)).toFixed()).toBe(total(now).toFixed());
        }
      }),
    );
  });

  it("when figures are stored and loaded, then they are the same", () => {
    fc.assert(
      fc.property(figures.map(unique), (fs) => {
        const loaded = loadFigures(JSON.parse(JSON.stringify(storeFigures(fs))));
        expect(loaded.legacy).toBe(false);
        expect(plainFigures(loaded.figures)).toEqual(plainFigures(fs));
      }),
    );
  });

  it("when figures are taken from an invoice, then usage, base fees and each fixed charge are apart, the rest is the rest of the total", () => {
    const line = (kind: "usage" | "base_fee" | "fixed", meter: string | null, amount: string, charge?: string) => ({
      kind,
      meter,
      charge,
      amount: new Dec(amount),
    });
    const fs = figuresOf(
      [{ meter: "calls", quantity: new Dec(100) }],
      [
        line("usage", "calls", "1.00"),
        line("base_fee", "calls", "10.00"),
        line("base_fee", "calls", "60.00"),
        line("fixed", null, "40.00", "seats"),
        line("fixed", null, "32.00", "seats"),
      ],
      new Dec("123.00"),
    );
    expect(fs.map((f) => [f.kind, f.meter ?? f.charge, f.quantity.toFixed(), f.amount.toFixed(), f.billed])).toEqual([
      ["other", null, "0", "-20", true],
      ["base_fee", "calls", "0", "70", true],
      ["usage", "calls", "100", "1", true],
      ["fixed", "seats", "0", "72", true],
    ]);
    // An invoice frozen before figures had kinds: compared as it was (base fees in the meter, fixed in the rest).
    expect(plainFigures(legacyFigures(fs))).toEqual([
      [null, "0", "52", true],
      ["calls", "100", "71", true],
    ]);
    const stored = [{ meter: "calls", quantity: "100", amount: "71", billed: true }];
    expect(loadFigures(stored)).toMatchObject({ legacy: true, figures: [{ kind: "usage", meter: "calls" }] });
  });
});

const plainFigures = (fs: Figure[]) => fs.map((f) => [f.meter, f.quantity.toFixed(), f.amount.toFixed(), f.billed]);

describe("the served document", () => {
  const adjustment = (amount: string, quantity = "3", meter: string | null = "calls"): AdjustmentLine => ({
    invoice: "in_nov",
    adjusts: "in_oct",
    adjustsNumber: "2026-000007",
    adjustsPeriod: { start: d("2026-10-01T00:00:00Z"), end: d("2026-11-01T00:00:00Z") },
    kind: meter === null ? "other" : "usage",
    meter,
    charge: null,
    chargeName: null,
    quantity: new Dec(quantity),
    amount: new Dec(amount),
    currency: "USD",
  });
  const rendered = {
    customer: "c",
    period: { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" },
    currency: "USD",
    lines: [{ meter: "calls", amount: "10.00" }],
    total: "10.00",
    as_of: "2026-11-20T00:00:00Z",
  };
  const head = { id: "in_nov", number: null, status: "draft" as const, finalizedAt: null };
  const labels = new Map([["calls", { name: "API calls", unit: "calls" }]]);

  it("when adjustments are carried to an invoice, then they are lines of their own and count in its total", () => {
    const doc = composeInvoice(rendered, head, [adjustment("3.00", "300"), adjustment("-0.50", "-50")], labels);
    expect(doc).toMatchObject({ id: "in_nov", number: null, status: "draft", adjustments: "2.50", total: "12.50" });
    expect(doc.lines).toEqual([
      { meter: "calls", amount: "10.00" },
      {
        meter: "calls",
        kind: "adjustment",
        corrects: "usage",
        description: "API calls: correction of invoice 2026-000007 (2026-10), +300 calls",
        quantity: "300",
        amount: "3.00",
        adjusts: "in_oct",
        adjusts_number: "2026-000007",
        adjusts_period: { start: "2026-10-01T00:00:00Z", end: "2026-11-01T00:00:00Z" },
      },
      expect.objectContaining({ quantity: "-50", amount: "-0.50" }),
    ]);
    expect(Object.keys(doc).slice(0, 4)).toEqual(["id", "number", "status", "customer"]);
  });

  it("when a customer without a subscription gets only adjustments, then the invoice takes their currency", () => {
    const doc = composeInvoice(
      { ...rendered, currency: null, lines: [], total: "0" },
      { ...head, number: "2026-000009", status: "final", finalizedAt: d("2026-12-01T01:00:00Z") },
      [adjustment("-1.25", "0", null)],
      labels,
    );
    expect(doc).toMatchObject({ currency: "USD", total: "-1.25", finalized_at: "2026-12-01T01:00:00Z" });
    expect((doc.lines as { description: string }[])[0]?.description).toBe(
      "Credits and other changes: correction of invoice 2026-000007 (2026-10)",
    );
  });

  it("when base fees and a fixed charge are corrected, then each has its own line saying what it corrects", () => {
    const fee = { ...adjustment("40.00", "0"), kind: "base_fee" as const };
    const seats = { ...adjustment("12.00", "0", null), kind: "fixed" as const, charge: "seats", chargeName: "Seats" };
    const doc = composeInvoice(rendered, head, [fee, seats], labels);
    expect((doc.lines as object[]).slice(1)).toMatchObject([
      {
        meter: "calls",
        corrects: "base_fee",
        description: "API calls: base fee, correction of invoice 2026-000007 (2026-10)",
        amount: "40.00",
      },
      {
        meter: null,
        corrects: "fixed",
        charge: "seats",
        description: "Seats: correction of invoice 2026-000007 (2026-10)",
        amount: "12.00",
      },
    ]);
  });
});
