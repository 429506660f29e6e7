// The pure pricing module: every model, table-driven with numbers checked by hand, rounding, segments, and
// properties that must hold for any tiers and quantities.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { priceInvoice, summarize } from "../src/pricing/invoice.js";
import { type PriceVersion, rate, type Tier } from "../src/pricing/models.js";
import { CURRENCIES, Dec, formatMoney, minorUnits } from "../src/pricing/money.js";
import { type PlanPrices, planPeriod } from "../src/pricing/segments.js";
import { checkPriceVersion, type PriceVersionInput } from "../src/pricing/versions.js";

const d = (s: string) => new Date(s);
const tiers = (...t: [string | null, string, string?][]): Tier[] =>
  t.map(([upTo, unit, flat]) => ({
    upTo: upTo === null ? null : new Dec(upTo),
    unitPrice: new Dec(unit),
    flatPrice: new Dec(flat ?? "0"),
  }));
const version = (v: Partial<PriceVersion> & Pick<PriceVersion, "model">): PriceVersion => ({
  meter: "api_calls",
  effectiveFrom: d("2026-01-01T00:00:00Z"),
  unitPrice: null,
  tiers: null,
  packageSize: null,
  packagePrice: null,
  baseFee: null,
  ...v,
});
/** Prices one whole-period segment and returns [line amounts], total — as the invoice shows them. */
function bill(v: PriceVersion, quantity: string, currency = "USD") {
  const period = { start: d("2026-11-01T00:00:00Z"), end: d("2026-12-01T00:00:00Z") };
  const segment = { plan: "p", meter: v.meter, version: v, ...period, quantity: new Dec(quantity) };
  const baseFees = v.baseFee
    ? [{ kind: "base_fee" as const, plan: "p", meter: v.meter, version: v, ...period, proration: null }]
    : [];
  const invoice = priceInvoice(currency, [segment], baseFees);
  return {
    lines: invoice.lines.map((l) => formatMoney(l.amount, currency)),
    total: formatMoney(invoice.total, currency),
  };
}

const worked = version({
  model: "graduated",
  tiers: tiers(["10000", "0", "0"], ["100000", "0.001"], [null, "0.0005"]),
  baseFee: new Dec("99"),
});

describe("price models", () => {
  it("when PRODUCT.md's worked example is priced, then 250,000 calls cost 264.00", () => {
    expect(bill(worked, "250000")).toEqual({ lines: ["99.00", "0.00", "90.00", "75.00"], total: "264.00" });
  });

  it.each([
    // graduated: tiers are inclusive of up_to
    ["graduated, exactly on a tier boundary", worked, "10000", ["99.00", "0.00"], "99.00"],
    ["graduated, one unit past a boundary", worked, "10001", ["99.00", "0.00", "0.00"], "99.00"],
    ["graduated, on the second boundary", worked, "100000", ["99.00", "0.00", "90.00"], "189.00"],
    [
      "graduated, flat prices only where units fall",
      version({ model: "graduated", tiers: tiers(["10", "1", "5"], ["20", "0.5", "7"], [null, "0.1", "100"]) }),
      "15",
      ["15.00", "9.50"],
      "24.50",
    ],
    ["graduated, zero usage: no tier holds units, no line", worked, "0", ["99.00"], "99.00"],
    ["per_unit", version({ model: "per_unit", unitPrice: new Dec("0.25") }), "7", ["1.75"], "1.75"],
    ["per_unit, zero usage", version({ model: "per_unit", unitPrice: new Dec("0.25") }), "0", ["0.00"], "0.00"],
    [
      "per_unit, 12-decimal unit price",
      version({ model: "per_unit", unitPrice: new Dec("0.123456789012") }),
      "3",
      ["0.37"],
      "0.37",
    ],
    [
      "per_unit, quantity 10^15 at a 12-decimal price",
      version({ model: "per_unit", unitPrice: new Dec("0.000000000001") }),
      "1000000000000000",
      ["1000.00"],
      "1000.00",
    ],
    [
      "per_unit, quantity 10^15 at a cent",
      version({ model: "per_unit", unitPrice: new Dec("0.01") }),
      "1000000000000000",
      ["10000000000000.00"],
      "10000000000000.00",
    ],
    ["rounding half-up", version({ model: "per_unit", unitPrice: new Dec("0.005") }), "1", ["0.01"], "0.01"],
    [
      "rounding just below half",
      version({ model: "per_unit", unitPrice: new Dec("0.004999999999") }),
      "1",
      ["0.00"],
      "0.00",
    ],
    ["fractional quantity", version({ model: "per_unit", unitPrice: new Dec("2") }), "0.000000001", ["0.00"], "0.00"],
    [
      "a negative period (corrections) bills nothing",
      version({ model: "per_unit", unitPrice: new Dec("1") }),
      "-5",
      ["0.00"],
      "0.00",
    ],
    [
      "volume: the tier holding the total prices every unit, plus its flat fee",
      version({ model: "volume", tiers: tiers(["100", "1", "10"], [null, "0.5", "20"]) }),
      "100",
      ["110.00"],
      "110.00",
    ],
    [
      "volume: one unit more moves every unit to the next tier",
      version({ model: "volume", tiers: tiers(["100", "1", "10"], [null, "0.5", "20"]) }),
      "101",
      ["70.50"],
      "70.50",
    ],
    [
      "volume: zero usage, no flat fee",
      version({ model: "volume", tiers: tiers(["100", "1", "10"], [null, "0.5", "20"]) }),
      "0",
      ["0.00"],
      "0.00",
    ],
    [
      "package: one unit is a whole package",
      version({ model: "package", packageSize: new Dec("1000"), packagePrice: new Dec("5") }),
      "1",
      ["5.00"],
      "5.00",
    ],
    [
      "package: exactly full packages",
      version({ model: "package", packageSize: new Dec("1000"), packagePrice: new Dec("5") }),
      "2000",
      ["10.00"],
      "10.00",
    ],
    [
      "package: the ceiling of a fractional count",
      version({ model: "package", packageSize: new Dec("1000"), packagePrice: new Dec("5") }),
      "2000.000000001",
      ["15.00"],
      "15.00",
    ],
    [
      "package: zero usage",
      version({ model: "package", packageSize: new Dec("1000"), packagePrice: new Dec("5") }),
      "0",
      ["0.00"],
      "0.00",
    ],
  ] as const)("when %s, then the lines and total are exact", (_name, v, quantity, lines, total) => {
    expect(bill(v, quantity)).toEqual({ lines, total });
  });

  it.each([
    ["JPY rounds to whole yen, half-up", "0.5", "3", "2"],
    ["JPY below half rounds down", "0.4", "3", "1"],
    ["KWD has three decimals", "0.0005", "1", "0.001"],
  ])("when %s, then the amount is in the currency's minor unit", (_n, price, quantity, amount) => {
    const currency = _n.slice(0, 3);
    expect(bill(version({ model: "per_unit", unitPrice: new Dec(price) }), quantity, currency).total).toBe(amount);
  });

  it("when each line is rounded, then the total is the sum of the rounded lines (not the rounded sum)", () => {
    const v = version({ model: "graduated", tiers: tiers(["1", "0.005"], [null, "0.005"]) });
    // two lines of 0.005 → 0.01 each → 0.02 (the unrounded sum 0.01 would round to 0.01)
    expect(bill(v, "2")).toEqual({ lines: ["0.01", "0.01"], total: "0.02" });
  });
});

describe("price version rules", () => {
  const input = (over: Partial<PriceVersionInput>): PriceVersionInput => ({
    meter: "api_calls",
    effective_from: d("2026-11-01T00:00:00Z"),
    model: "graduated",
    tiers: [
      { up_to: "10", unit_price: "1" },
      { up_to: null, unit_price: "0.5" },
    ],
    ...over,
  });
  const codes = (over: Partial<PriceVersionInput>) => {
    const r = checkPriceVersion(input(over));
    return r.ok ? [] : r.problems.map((p) => `${p.field}:${p.code}`);
  };

  it.each([
    [
      "tiers not strictly ascending",
      {
        tiers: [
          { up_to: "10", unit_price: "1" },
          { up_to: "10", unit_price: "1" },
          { up_to: null, unit_price: "1" },
        ],
      },
      ["tiers[1].up_to:tier_not_ascending"],
    ],
    ["last up_to not null", { tiers: [{ up_to: "10", unit_price: "1" }] }, ["tiers[0].up_to:last_tier_not_unbounded"]],
    [
      "an unbounded tier before the last",
      {
        tiers: [
          { up_to: null, unit_price: "1" },
          { up_to: null, unit_price: "1" },
        ],
      },
      ["tiers[0].up_to:unbounded_tier_not_last"],
    ],
    [
      "negative prices",
      {
        tiers: [
          { up_to: "10", unit_price: "-1" },
          { up_to: null, unit_price: "1", flat_price: "-2" },
        ],
        base_fee: "-3",
      },
      ["base_fee:negative_price", "tiers[0].unit_price:negative_price", "tiers[1].flat_price:negative_price"],
    ],
    ["tiers missing", { tiers: undefined }, ["tiers:missing_field"]],
    ["no tiers at all", { tiers: [] }, ["tiers:no_tiers"]],
    ["per_unit without unit_price", { model: "per_unit", tiers: undefined }, ["unit_price:missing_field"]],
    ["per_unit with tiers", { model: "per_unit", unit_price: "1" }, ["tiers:field_not_allowed"]],
    [
      "package without size and price",
      { model: "package", tiers: undefined },
      ["package_size:missing_field", "package_price:missing_field"],
    ],
    [
      "package of size 0",
      { model: "package", tiers: undefined, package_size: "0", package_price: "1" },
      ["package_size:package_size_not_positive"],
    ],
    [
      "13 decimals",
      { model: "per_unit", tiers: undefined, unit_price: "0.0000000000001" },
      ["unit_price:too_many_decimals"],
    ],
  ] as const)("when a version has %s, then it is refused with a stable code", (_n, over, expected) => {
    expect(codes(over as Partial<PriceVersionInput>).sort()).toEqual([...expected].sort());
  });

  it("when a version is valid, then it parses with exact decimals", () => {
    const r = checkPriceVersion(input({ base_fee: "99" }));
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.version.tiers?.map((t) => t.upTo?.toString() ?? null)).toEqual(["10", null]);
  });
});

describe("segments", () => {
  const nov = { start: d("2026-11-01T00:00:00Z"), end: d("2026-12-01T00:00:00Z") };
  const plan = (key: string, versions: Partial<PriceVersion>[], currency = "USD"): PlanPrices => ({
    key,
    name: key,
    currency,
    versions: versions.map((v) => version({ model: "per_unit", unitPrice: new Dec("1"), ...v })),
  });
  const show = (p: ReturnType<typeof planPeriod>) => ({
    segments: p.segments.map(
      (s) => `${s.plan}/${s.meter} ${s.start.toISOString()}..${s.end.toISOString()} @${s.version.unitPrice}`,
    ),
    baseFees: p.fees.flatMap((f) =>
      f.kind === "base_fee" ? [`${f.plan}/${f.meter} ${f.version.baseFee} from ${f.start.toISOString()}`] : [],
    ),
  });

  it("when a version takes effect on an hour boundary inside the period, then the period splits there", () => {
    const plans = new Map([
      [
        "pro",
        plan("pro", [
          { baseFee: new Dec(99) },
          { effectiveFrom: d("2026-11-15T00:00:00Z"), unitPrice: new Dec(2), baseFee: new Dec(49) },
        ]),
      ],
    ]);
    expect(show(planPeriod(nov, [{ plan: "pro", start: d("2026-10-01T00:00:00Z"), end: null }], plans))).toEqual({
      segments: [
        "pro/api_calls 2026-11-01T00:00:00.000Z..2026-11-15T00:00:00.000Z @1",
        "pro/api_calls 2026-11-15T00:00:00.000Z..2026-12-01T00:00:00.000Z @2",
      ],
      // the base fee is the one in effect at the start of the period
      baseFees: ["pro/api_calls 99 from 2026-11-01T00:00:00.000Z"],
    });
  });

  it("when a version takes effect mid-hour, then the split is at that instant", () => {
    const plans = new Map([
      ["pro", plan("pro", [{}, { effectiveFrom: d("2026-11-15T10:30:00Z"), unitPrice: new Dec(2) }])],
    ]);
    expect(
      show(planPeriod(nov, [{ plan: "pro", start: d("2026-10-01T00:00:00Z"), end: null }], plans)).segments,
    ).toEqual([
      "pro/api_calls 2026-11-01T00:00:00.000Z..2026-11-15T10:30:00.000Z @1",
      "pro/api_calls 2026-11-15T10:30:00.000Z..2026-12-01T00:00:00.000Z @2",
    ]);
  });

  it("when a subscription starts mid-period, then only its part is priced, and the base fee of its start applies", () => {
    const plans = new Map([
      [
        "pro",
        plan("pro", [{ baseFee: new Dec(99) }, { effectiveFrom: d("2026-11-05T00:00:00Z"), baseFee: new Dec(49) }]),
      ],
    ]);
    expect(show(planPeriod(nov, [{ plan: "pro", start: d("2026-11-10T12:00:00Z"), end: null }], plans))).toEqual({
      segments: ["pro/api_calls 2026-11-10T12:00:00.000Z..2026-12-01T00:00:00.000Z @1"],
      baseFees: ["pro/api_calls 49 from 2026-11-10T12:00:00.000Z"],
    });
  });

  it("when the plan changes mid-period, then each plan prices its own part and each charges its base fee", () => {
    const plans = new Map([
      ["basic", plan("basic", [{ baseFee: new Dec(10) }])],
      ["pro", plan("pro", [{ unitPrice: new Dec("0.5"), baseFee: new Dec(99) }])],
    ]);
    const subs = [
      { plan: "basic", start: d("2026-09-01T00:00:00Z"), end: d("2026-11-20T00:00:00Z") },
      { plan: "pro", start: d("2026-11-20T00:00:00Z"), end: null },
    ];
    expect(show(planPeriod(nov, subs, plans))).toEqual({
      segments: [
        "basic/api_calls 2026-11-01T00:00:00.000Z..2026-11-20T00:00:00.000Z @1",
        "pro/api_calls 2026-11-20T00:00:00.000Z..2026-12-01T00:00:00.000Z @0.5",
      ],
      baseFees: ["basic/api_calls 10 from 2026-11-01T00:00:00.000Z", "pro/api_calls 99 from 2026-11-20T00:00:00.000Z"],
    });
  });

  it("when the first version takes effect inside the period, then the part before it is not priced", () => {
    const plans = new Map([["pro", plan("pro", [{ effectiveFrom: d("2026-11-10T00:00:00Z") }])]]);
    expect(show(planPeriod(nov, [{ plan: "pro", start: d("2026-10-01T00:00:00Z"), end: null }], plans))).toEqual({
      segments: ["pro/api_calls 2026-11-10T00:00:00.000Z..2026-12-01T00:00:00.000Z @1"],
      baseFees: [],
    });
  });

  it("when a subscription ended before the period or starts after it, then it contributes nothing", () => {
    const plans = new Map([["pro", plan("pro", [{ baseFee: new Dec(5) }])]]);
    const subs = [
      { plan: "pro", start: d("2026-09-01T00:00:00Z"), end: d("2026-11-01T00:00:00Z") },
      { plan: "pro", start: d("2026-12-01T00:00:00Z"), end: null },
    ];
    expect(show(planPeriod(nov, subs, plans))).toEqual({ segments: [], baseFees: [] });
  });
});

describe("summary", () => {
  it("when a graduated meter is mid-tier, then the summary names the tier of the next unit and the units left", () => {
    const period = { start: d("2026-11-01T00:00:00Z"), end: d("2026-12-01T00:00:00Z") };
    const segment = { plan: "p", meter: "api_calls", version: worked, ...period, quantity: new Dec("250000") };
    const invoice = priceInvoice(
      "USD",
      [segment],
      [{ kind: "base_fee", plan: "p", meter: "api_calls", version: worked, ...period, proration: null }],
    );
    const [s] = summarize(invoice, [segment], new Map([["api_calls", new Dec("250000")]]));
    expect(s?.amount.toFixed(2)).toBe("264.00");
    expect(s?.tier?.index).toBe(3);
    expect(s?.tier?.unitsToNextTier).toBeNull();
    const at = (q: string) => {
      const seg = { ...segment, quantity: new Dec(q) };
      return summarize(priceInvoice("USD", [seg], []), [seg], new Map())[0]?.tier;
    };
    expect(at("10000")?.index).toBe(2);
    expect(at("10000")?.unitsToNextTier?.toString()).toBe("90000");
    expect(at("0")?.index).toBe(1);
    expect(at("9999.5")?.unitsToNextTier?.toString()).toBe("0.5");
  });
});

describe("properties", () => {
  const price = fc.integer({ min: 0, max: 10_000_000 }).map((n) => new Dec(n).dividedBy(1_000_000));
  const tierList = fc
    .array(fc.tuple(fc.integer({ min: 1, max: 1000 }), price, price), { minLength: 1, maxLength: 6 })
    .map((parts) => {
      let bound = 0;
      return parts.map(([step, unit, flat], i) => {
        bound += step;
        return { upTo: i === parts.length - 1 ? null : new Dec(bound), unitPrice: unit, flatPrice: flat };
      });
    });
  const quantity = fc.integer({ min: 0, max: 100_000 }).map((n) => new Dec(n).dividedBy(10));
  const total = (lines: { amount: Dec }[]) => lines.reduce((a, l) => a.plus(l.amount), new Dec(0));

  it("property: graduated cost never decreases as quantity grows", () => {
    fc.assert(
      fc.property(tierList, quantity, quantity, (t, a, b) => {
        const [lo, hi] = a.lte(b) ? [a, b] : [b, a];
        const v = version({ model: "graduated", tiers: t });
        expect(total(rate(v, hi)).gte(total(rate(v, lo)))).toBe(true);
      }),
    );
  });

  it("property: graduated tier quantities add up to the quantity", () => {
    fc.assert(
      fc.property(tierList, quantity, (t, q) => {
        const lines = rate(version({ model: "graduated", tiers: t }), q);
        expect(lines.reduce((a, l) => a.plus(l.quantity), new Dec(0)).eq(q)).toBe(true);
      }),
    );
  });

  it("property: per_unit equals a one-tier graduated price", () => {
    fc.assert(
      fc.property(price, quantity, (p, q) => {
        const perUnit = rate(version({ model: "per_unit", unitPrice: p }), q);
        const graduated = rate(
          version({ model: "graduated", tiers: [{ upTo: null, unitPrice: p, flatPrice: new Dec(0) }] }),
          q,
        );
        expect(total(graduated).eq(total(perUnit))).toBe(true);
      }),
    );
  });

  it("property: an invoice's total equals the sum of its lines, each already in minor units", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(tierList, quantity, fc.constantFrom("graduated" as const, "volume" as const)), {
          maxLength: 5,
        }),
        fc.constantFrom("USD", "JPY", "KWD"),
        (parts, currency) => {
          const period = { start: d("2026-11-01T00:00:00Z"), end: d("2026-12-01T00:00:00Z") };
          const segments = parts.map(([t, q, model], i) => ({
            plan: "p",
            meter: `m${i}`,
            version: version({ model, tiers: t, meter: `m${i}` }),
            ...period,
            quantity: q,
          }));
          const invoice = priceInvoice(currency, segments, []);
          expect(invoice.total.eq(total(invoice.lines))).toBe(true);
          const places = currency === "JPY" ? 0 : currency === "KWD" ? 3 : 2;
          for (const l of invoice.lines) expect(l.amount.decimalPlaces()).toBeLessThanOrEqual(places);
        },
      ),
    );
  });
});

describe("currency minor units", () => {
  // ISO 4217's minor units; Intl (CLDR) gives them, but for HUF, whose display digits are 0.
  const iso: Record<string, number> = {
    ...Object.fromEntries(
      ["AED", "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "ILS", "INR"].map((c) => [
        c,
        2,
      ]),
    ),
    ...Object.fromEntries(["MXN", "NOK", "NZD", "PLN", "RON", "SEK", "SGD", "TRY", "USD", "ZAR"].map((c) => [c, 2])),
    ...Object.fromEntries(["CLP", "ISK", "JPY", "KRW", "VND"].map((c) => [c, 0])),
    ...Object.fromEntries(["BHD", "JOD", "KWD", "OMR", "TND"].map((c) => [c, 3])),
  };

  it.each(Object.entries(iso))("when the currency is %s, then its minor unit has %i decimals", (currency, digits) => {
    expect(minorUnits(currency)).toBe(digits);
  });

  it("when every supported currency is listed, then each has a pinned minor unit", () => {
    expect([...CURRENCIES].sort()).toEqual(Object.keys(iso).sort());
  });

  it("when a currency is unknown, then asking for its minor unit throws", () => {
    expect(() => minorUnits("XXX")).toThrow(/unknown currency/);
  });
});
