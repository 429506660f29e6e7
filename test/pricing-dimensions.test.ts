// Per-dimension prices in the pure pricing module: each combination of the group_by dimensions is priced on its own
// by the first override whose match fits, else by the version's own spec; the worked example of the issue; the
// rules of group_by and overrides; and properties against a by-hand reference.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type GroupQuantity, priceInvoice, summarize } from "../src/pricing/invoice.js";
import { type PriceSpec, type PriceVersion, rate, type Tier } from "../src/pricing/models.js";
import { Dec, formatMoney, roundMoney, sum } from "../src/pricing/money.js";
import { checkPriceVersion, type PriceVersionInput } from "../src/pricing/versions.js";

const period = { start: new Date("2026-11-01T00:00:00Z"), end: new Date("2026-12-01T00:00:00Z") };
const tiers = (...t: [string | null, string, string?][]): Tier[] =>
  t.map(([upTo, unit, flat]) => ({
    upTo: upTo === null ? null : new Dec(upTo),
    unitPrice: new Dec(unit),
    flatPrice: new Dec(flat ?? "0"),
  }));
const spec = (s: Partial<PriceSpec> & Pick<PriceSpec, "model">): PriceSpec => ({
  unitPrice: null,
  tiers: null,
  packageSize: null,
  packagePrice: null,
  ...s,
});
const version = (v: Partial<PriceVersion> & Pick<PriceVersion, "model">): PriceVersion => ({
  meter: "llm_tokens",
  effectiveFrom: new Date("2026-01-01T00:00:00Z"),
  baseFee: null,
  ...spec(v),
  ...v,
});
const groups = (...g: [string | null, string][]): GroupQuantity[] =>
  g.map(([model, q]) => ({ dimensions: { model }, quantity: new Dec(q) }));
const bill = (v: PriceVersion, gs: GroupQuantity[], currency = "USD") =>
  priceInvoice(
    currency,
    [{ plan: "p", meter: v.meter, version: v, ...period, quantity: sum(gs.map((g) => g.quantity)), groups: gs }],
    [],
  );

describe("per-dimension prices", () => {
  const example = version({
    model: "per_unit",
    unitPrice: new Dec("0.001"),
    groupBy: ["model"],
    overrides: [
      {
        match: { model: "gpt-4o" },
        spec: spec({ model: "graduated", tiers: tiers(["100", "0.01"], [null, "0.005"]) }),
      },
    ],
  });

  it("when the issue's worked example is priced, then gpt-4o 1.00 + 0.35, mini 1.00, no model 0.01: total 2.36", () => {
    const invoice = bill(example, groups(["gpt-4o", "170"], ["mini", "1000"], [null, "7"]));
    expect(
      invoice.lines.map((l) => [l.dimensions, l.tier ?? null, l.quantity.toFixed(), formatMoney(l.amount, "USD")]),
    ).toEqual([
      [{ model: "gpt-4o" }, 1, "100", "1.00"],
      [{ model: "gpt-4o" }, 2, "70", "0.35"],
      [{ model: "mini" }, null, "1000", "1.00"],
      [{ model: null }, null, "7", "0.01"],
    ]);
    expect(formatMoney(invoice.total, "USD")).toBe("2.36");
    expect(invoice.lines[0]?.description).toBe(
      "llm_tokens [model: gpt-4o], tier 1 (above 0 up to 100): 100 units × 0.01",
    );
    expect(invoice.lines[3]?.description).toBe("llm_tokens [model: (none)]: 7 units × 0.001");
    const [summary] = summarize(
      invoice,
      [{ plan: "p", meter: "llm_tokens", version: example, ...period, quantity: new Dec(1177) }],
      new Map([["llm_tokens", new Dec(1177)]]),
      new Map([["llm_tokens", groups(["gpt-4o", "170"], ["mini", "1000"], [null, "7"])]]),
    );
    expect(summary?.tier).toBeUndefined();
    expect(summary?.groups?.map((g) => [g.dimensions, g.quantity.toFixed(), formatMoney(g.amount, "USD")])).toEqual([
      [{ model: "gpt-4o" }, "170", "1.35"],
      [{ model: "mini" }, "1000", "1.00"],
      [{ model: null }, "7", "0.01"],
    ]);
  });

  it("when a match names null, then it fits an absent property only; the first fitting override wins", () => {
    const v = version({
      model: "per_unit",
      unitPrice: new Dec("1"),
      groupBy: ["model"],
      overrides: [
        { match: { model: null }, spec: spec({ model: "per_unit", unitPrice: new Dec("5") }) },
        { match: { model: "a" }, spec: spec({ model: "per_unit", unitPrice: new Dec("2") }) },
        { match: { model: "a" }, spec: spec({ model: "per_unit", unitPrice: new Dec("3") }) },
      ],
    });
    const invoice = bill(v, groups([null, "1"], ["a", "1"], ["b", "1"]));
    expect(invoice.lines.map((l) => [l.dimensions?.model, formatMoney(l.amount, "USD")])).toEqual([
      ["a", "2.00"],
      ["b", "1.00"],
      [null, "5.00"],
    ]);
  });

  const input = (over: Partial<PriceVersionInput>): PriceVersionInput => ({
    meter: "llm_tokens",
    effective_from: period.start,
    model: "per_unit",
    unit_price: "0.001",
    ...over,
  });
  const codes = (over: Partial<PriceVersionInput>) => {
    const r = checkPriceVersion(input(over));
    return r.ok ? [] : r.problems.map((p) => `${p.field}:${p.code}`).sort();
  };

  it.each([
    [
      "overrides without group_by",
      { overrides: [{ match: { model: "a" }, model: "per_unit" as const, unit_price: "1" }] },
      ["overrides:overrides_without_group_by"],
    ],
    [
      "a match key outside group_by",
      { group_by: ["model"], overrides: [{ match: { region: "eu" }, model: "per_unit" as const, unit_price: "1" }] },
      ["overrides[0].match.region:match_not_grouped"],
    ],
    [
      "an override with a bad spec",
      { group_by: ["model"], overrides: [{ match: { model: "a" }, model: "graduated" as const, unit_price: "1" }] },
      ["overrides[0].tiers:missing_field", "overrides[0].unit_price:field_not_allowed"],
    ],
    ["a repeated group_by dimension", { group_by: ["model", "model"] }, ["group_by[1]:repeated_dimension"]],
    ["an empty group_by", { group_by: [] }, ["group_by:empty_group_by"]],
  ] as const)("when a version has %s, then it is refused with a stable code", (_n, over, expected) => {
    expect(codes(over as unknown as Partial<PriceVersionInput>)).toEqual([...expected].sort());
  });

  const amount = fc.constantFrom("0", "0.001", "0.01", "0.5", "1", "2.25", "0.0000001");
  const arbSpec: fc.Arbitrary<PriceSpec> = fc.oneof(
    amount.map((p) => spec({ model: "per_unit", unitPrice: new Dec(p) })),
    fc
      .tuple(fc.integer({ min: 1, max: 500 }), amount, amount, amount)
      .map(([bound, a, b, flat]) => spec({ model: "graduated", tiers: tiers([String(bound), a, flat], [null, b]) })),
    fc
      .tuple(fc.integer({ min: 1, max: 500 }), amount, amount)
      .map(([bound, a, b]) => spec({ model: "volume", tiers: tiers([String(bound), a], [null, b, "1"]) })),
    fc
      .tuple(fc.integer({ min: 1, max: 100 }), amount)
      .map(([size, p]) => spec({ model: "package", packageSize: new Dec(size), packagePrice: new Dec(p) })),
  );
  const models = ["a", "b", "c", null] as const;
  const quantity = fc.oneof(fc.integer({ min: 0, max: 5000 }).map(String), fc.constantFrom("0.5", "12.375"));

  it("property: the sum of the group amounts equals the amounts computed group by group by hand", () => {
    fc.assert(
      fc.property(
        arbSpec,
        fc.array(fc.record({ model: fc.constantFrom(...models), spec: arbSpec }), { maxLength: 4 }),
        fc.uniqueArray(fc.constantFrom(...models), { minLength: 1, maxLength: 4 }),
        fc.array(quantity, { minLength: 4, maxLength: 4 }),
        fc.constantFrom("USD", "JPY"),
        (own, overrides, present, qs, currency) => {
          const v = version({
            ...own,
            groupBy: ["model"],
            overrides: overrides.map((o) => ({ match: { model: o.model }, spec: o.spec })),
          });
          const gs = present.map((m, i) => ({ dimensions: { model: m }, quantity: new Dec(qs[i] as string) }));
          const invoice = bill(v, gs, currency);
          // By hand: find the first override naming the group's model, else the version; price it alone.
          const byHand = gs.map((g) => {
            const found = overrides.find((o) => o.model === g.dimensions.model);
            const chosen: PriceVersion = found ? { ...v, ...found.spec } : v;
            return sum(rate(chosen, g.quantity).map((l) => roundMoney(l.amount, currency)));
          });
          expect(invoice.total.toFixed()).toBe(sum(byHand).toFixed());
          for (const [i, g] of gs.entries()) {
            const lines = invoice.lines.filter((l) => l.dimensions?.model === g.dimensions.model);
            expect(sum(lines.map((l) => l.amount)).toFixed(), `group ${i}`).toBe(byHand[i]?.toFixed());
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("property: group_by without overrides on a single-valued dimension prices exactly as the version without group_by", () => {
    fc.assert(
      fc.property(arbSpec, quantity, fc.constantFrom("a", null), (own, q, model) => {
        const grouped = bill(version({ ...own, groupBy: ["model"] }), [
          { dimensions: { model }, quantity: new Dec(q) },
        ]);
        const plain = priceInvoice(
          "USD",
          [{ plan: "p", meter: "llm_tokens", version: version(own), ...period, quantity: new Dec(q) }],
          [],
        );
        expect(grouped.total.toFixed()).toBe(plain.total.toFixed());
        expect(grouped.lines.map((l) => [l.amount.toFixed(), l.quantity.toFixed(), l.tier])).toEqual(
          plain.lines.map((l) => [l.amount.toFixed(), l.quantity.toFixed(), l.tier]),
        );
      }),
      { numRuns: 300 },
    );
  });
});
