// The burn-down of prepaid credits (pure): the worked example and each rule as a table, and properties
// for any grants, priorities, expiries, voids, meters, currencies and hourly charges (late events included: the
// ledger is a function of its inputs, replayed whole) against a deliberately simple cent-by-cent reference.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type BurnDown,
  burnDown,
  burnOrder,
  type ChargeIncrement,
  type CreditGrant,
  coveringBalance,
  coversHour,
  Replay,
} from "../src/credits/burndown.js";

const H = 3_600_000;
const NOV = Date.parse("2026-11-01T00:00:00Z");
const DEC = Date.parse("2026-12-01T00:00:00Z");
const at = (iso: string) => new Date(iso);

const grant = (g: Partial<CreditGrant> & Pick<CreditGrant, "id" | "amount">): CreditGrant => ({
  currency: "USD",
  priority: 50,
  effectiveAt: new Date(NOV),
  expiresAt: null,
  voidedAt: null,
  meters: null,
  ...g,
});
const inc = (hour: number, amount: bigint, meter = "calls", period = NOV, currency = "USD"): ChargeIncrement => ({
  period,
  hour,
  meter,
  currency,
  amount,
});
const draws = (r: BurnDown) =>
  r.entries.filter((e) => e.kind === "draw").map((e) => [(e.hour - NOV) / H, e.grant, e.amount] as const);
const remaining = (r: BurnDown) => Object.fromEntries([...r.grants].map(([id, b]) => [id, b.remaining]));

describe("burn-down rules", () => {
  it("when the issue's worked example is replayed, then A pays 5.00 and B 1.00 in hour 1, B 2.00 in hour 2", () => {
    // calls per_unit 0.01: 600 calls in hour 1 (6.00), 400 in hour 2 (4.00); A 5.00 priority 10, B 3.00 priority 50.
    const grants = [grant({ id: "A", amount: 500n, priority: 10 }), grant({ id: "B", amount: 300n })];
    const r = burnDown(grants, [inc(NOV + H, 600n), inc(NOV + 2 * H, 400n)], NOV + 3 * H);
    expect(draws(r)).toEqual([
      [1, "A", 500n],
      [1, "B", 100n],
      [2, "B", 200n],
    ]);
    expect(remaining(r)).toEqual({ A: 0n, B: 0n });
    expect(Object.fromEntries(r.appliedByPeriod.get(NOV) ?? [])).toEqual({ A: 500n, B: 300n });
    // The invoice: subtotal 10.00, credits 8.00, total 2.00.
    const credits = [...(r.appliedByPeriod.get(NOV)?.values() ?? [])].reduce((a, b) => a + b, 0n);
    expect(1000n - credits).toBe(200n);
  });

  it("when a grant is effective from hour 3, then it pays nothing of hours 1–2", () => {
    const late = grant({ id: "C", amount: 1000n, effectiveAt: new Date(NOV + 3 * H) });
    const r = burnDown([late], [inc(NOV + H, 600n), inc(NOV + 2 * H, 400n), inc(NOV + 3 * H, 100n)], NOV + 4 * H);
    expect(draws(r)).toEqual([[3, "C", 100n]]);
  });

  it("when a grant is bought at 10:30, then it pays the hour from 10:00; expiring at 12:30, it pays 12:00–13:00", () => {
    const g = grant({
      id: "G",
      amount: 10_000n,
      effectiveAt: at("2026-11-01T10:30:00Z"),
      expiresAt: at("2026-11-01T12:30:00Z"),
    });
    expect([9, 10, 11, 12, 13].map((h) => coversHour(g, NOV + h * H))).toEqual([false, true, true, true, false]);
    const r = burnDown(
      [g],
      [9, 10, 12, 13].map((h) => inc(NOV + h * H, 100n)),
      NOV + 20 * H,
    );
    expect(draws(r)).toEqual([
      [10, "G", 100n],
      [12, "G", 100n],
    ]);
    expect(r.grants.get("G")).toMatchObject({ applied: 200n, forfeited: 9_800n, remaining: 0n, status: "expired" });
    expect(r.entries.at(-1)).toMatchObject({ kind: "forfeit", hour: NOV + 13 * H, amount: 9_800n });
  });

  it("when grants tie on priority, then the earliest expiry burns first (none last), then the earliest effective, then id", () => {
    const grants = [
      grant({ id: "never", amount: 100n }),
      grant({ id: "late-expiry", amount: 100n, expiresAt: new Date(DEC + 10 * H) }),
      grant({ id: "soon", amount: 100n, expiresAt: new Date(DEC) }),
      grant({ id: "b-later", amount: 100n, effectiveAt: new Date(NOV + H) }),
      grant({ id: "a-later", amount: 100n, effectiveAt: new Date(NOV + H) }),
      grant({ id: "first", amount: 100n, priority: 0 }),
    ];
    expect([...grants].sort(burnOrder).map((g) => g.id)).toEqual([
      "first",
      "soon",
      "late-expiry",
      "never",
      "a-later",
      "b-later",
    ]);
    const r = burnDown(grants, [inc(NOV + 2 * H, 450n)], NOV + 3 * H);
    expect(draws(r).map(([, id, a]) => [id, a])).toEqual([
      ["first", 100n],
      ["soon", 100n],
      ["late-expiry", 100n],
      ["never", 100n],
      ["a-later", 50n],
    ]);
  });

  it("when a remainder is left at the period's end, then it pays the next period; base fees are never increments", () => {
    const r = burnDown(
      [grant({ id: "G", amount: 500n })],
      [inc(NOV + H, 300n), inc(DEC + H, 300n, "calls", DEC)],
      DEC + 2 * H,
    );
    expect(Object.fromEntries(r.appliedByPeriod.get(NOV) ?? [])).toEqual({ G: 300n });
    expect(Object.fromEntries(r.appliedByPeriod.get(DEC) ?? [])).toEqual({ G: 200n });
  });

  it("when charges decrease, then credit goes back to the newest draws of that period and meter first", () => {
    const grants = [grant({ id: "A", amount: 500n, priority: 10 }), grant({ id: "B", amount: 300n })];
    const r = burnDown(grants, [inc(NOV + H, 600n), inc(NOV + 2 * H, -150n), inc(NOV + 3 * H, -400n)], NOV + 4 * H);
    const backs = r.entries.filter((e) => e.kind === "give_back").map((e) => [(e.hour - NOV) / H, e.grant, e.amount]);
    expect(backs).toEqual([
      [2, "B", 100n],
      [2, "A", 50n],
      [3, "A", 400n],
    ]);
    expect(remaining(r)).toEqual({ A: 450n, B: 300n });
    expect(Object.fromEntries(r.appliedByPeriod.get(NOV) ?? [])).toEqual({ A: 50n, B: 0n });
  });

  it("when credit comes back to a grant that has expired or was voided, then it is forfeited", () => {
    const g = grant({ id: "G", amount: 500n, voidedAt: new Date(NOV + 2 * H + 60_000) });
    const r = burnDown([g], [inc(NOV + H, 200n), inc(NOV + 5 * H, -50n)], NOV + 6 * H);
    expect(r.grants.get("G")).toMatchObject({ applied: 150n, forfeited: 350n, remaining: 0n, status: "voided" });
  });

  it("when a grant names meters or another currency, then it pays only those meters in its currency", () => {
    const grants = [
      grant({ id: "calls-only", amount: 100n, meters: ["calls"] }),
      grant({ id: "eur", amount: 100n, currency: "EUR" }),
    ];
    const r = burnDown(grants, [inc(NOV + H, 50n, "storage"), inc(NOV + H, 50n, "calls")], NOV + 2 * H);
    expect(draws(r)).toEqual([[1, "calls-only", 50n]]);
    expect(coveringBalance(r, grants, "calls", "USD")).toBe(50n);
    expect(coveringBalance(r, grants, "storage", "USD")).toBe(0n);
  });

  it("when a grant starts in a later hour, then it is pending and not in the balance yet", () => {
    const grants = [grant({ id: "later", amount: 100n, effectiveAt: new Date(NOV + 5 * H) })];
    const r = burnDown(grants, [], NOV + 4 * H + 59 * 60_000);
    expect(r.grants.get("later")?.status).toBe("pending");
    expect(coveringBalance(r, grants, "calls", "USD")).toBe(0n);
    expect(coveringBalance(burnDown(grants, [], NOV + 5 * H), grants, "calls", "USD")).toBe(100n);
  });

  it("when a grant takes effect at 10:30, then from 10:00 (not before) it is active and in the balance", () => {
    const grants = [grant({ id: "half", amount: 100n, effectiveAt: at("2026-11-01T10:30:00Z") })];
    const standing = (iso: string) => {
      const r = burnDown(grants, [], Date.parse(iso));
      return [r.grants.get("half")?.status, coveringBalance(r, grants, "calls", "USD")];
    };
    expect(standing("2026-11-01T09:59:59.999Z")).toEqual(["pending", 0n]);
    expect(standing("2026-11-01T10:00:00Z")).toEqual(["active", 100n]);
    expect(standing("2026-11-01T10:29:59Z")).toEqual(["active", 100n]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The reference: one cent at a time. A draw takes a cent from the first eligible grant in a naively sorted list;
// a give-back pops the last cent drawn for that (period, meter).

function reference(grants: CreditGrant[], increments: ChargeIncrement[], asOf: number) {
  const endOf = (g: CreditGrant) =>
    Math.min(g.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY, g.voidedAt?.getTime() ?? Number.POSITIVE_INFINITY);
  const lastHourEnd = (g: CreditGrant) => Math.ceil(endOf(g) / H) * H;
  const eligible = (g: CreditGrant, i: ChargeIncrement) =>
    g.currency === i.currency &&
    (g.meters === null || g.meters.includes(i.meter)) &&
    endOf(g) > g.effectiveAt.getTime() &&
    i.hour < endOf(g) &&
    i.hour + H > g.effectiveAt.getTime();
  const key = (g: CreditGrant) => [
    g.priority,
    g.expiresAt ? g.expiresAt.getTime() : Number.POSITIVE_INFINITY,
    g.effectiveAt.getTime(),
  ];
  const order = [...grants].sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    for (let k = 0; k < ka.length; k++) if (ka[k] !== kb[k]) return (ka[k] as number) < (kb[k] as number) ? -1 : 1;
    return a.id < b.id ? -1 : 1;
  });
  const left = new Map(grants.map((g) => [g.id, Number(g.amount)]));
  const applied = new Map(grants.map((g) => [g.id, 0]));
  const forfeited = new Map(grants.map((g) => [g.id, 0]));
  const gone = new Set<string>();
  const byPeriod = new Map<string, number>();
  const stacks = new Map<string, string[]>();
  const expire = (t: number) => {
    for (const g of grants) {
      if (!gone.has(g.id) && lastHourEnd(g) <= t) {
        gone.add(g.id);
        forfeited.set(g.id, (forfeited.get(g.id) ?? 0) + (left.get(g.id) ?? 0));
        left.set(g.id, 0);
      }
    }
  };
  const sorted = [...increments].sort(
    (a, b) =>
      a.hour - b.hour ||
      (a.amount < 0n ? 0 : 1) - (b.amount < 0n ? 0 : 1) ||
      (a.meter < b.meter ? -1 : a.meter > b.meter ? 1 : 0) ||
      a.period - b.period,
  );
  for (const i of sorted) {
    if (i.amount === 0n) continue; // no change of charges, nothing happens
    expire(i.hour);
    const sk = `${i.period}/${i.meter}`;
    const stack = stacks.get(sk) ?? [];
    stacks.set(sk, stack);
    for (let cent = 0; cent < Math.abs(Number(i.amount)); cent++) {
      if (i.amount > 0n) {
        const g = order.find((x) => eligible(x, i) && (left.get(x.id) ?? 0) > 0);
        if (!g) break;
        left.set(g.id, (left.get(g.id) ?? 0) - 1);
        applied.set(g.id, (applied.get(g.id) ?? 0) + 1);
        byPeriod.set(`${i.period}/${g.id}`, (byPeriod.get(`${i.period}/${g.id}`) ?? 0) + 1);
        stack.push(g.id);
      } else {
        const id = stack.pop();
        if (id === undefined) break;
        applied.set(id, (applied.get(id) ?? 0) - 1);
        byPeriod.set(`${i.period}/${id}`, (byPeriod.get(`${i.period}/${id}`) ?? 0) - 1);
        if (gone.has(id)) forfeited.set(id, (forfeited.get(id) ?? 0) + 1);
        else left.set(id, (left.get(id) ?? 0) + 1);
      }
    }
  }
  expire(asOf);
  return { left, applied, forfeited, byPeriod };
}

// ---------------------------------------------------------------------------------------------------------------

const METERS = ["a", "b", "c"];
const HOURS = 24 * 40; // 40 days from November 1st: two periods
const minute = fc.integer({ min: 0, max: HOURS * 60 });

const grantArb = fc.record({
  amount: fc.integer({ min: 1, max: 2_000 }),
  priority: fc.constantFrom(0, 10, 50, 50, 100),
  effective: minute,
  lasts: fc.option(fc.integer({ min: 1, max: 20 * 24 * 60 }), { nil: null }),
  voidAfter: fc.option(fc.integer({ min: -120, max: 30 * 24 * 60 }), { nil: null, freq: 4 }),
  meters: fc.option(fc.subarray(METERS, { minLength: 1 }), { nil: null }),
  currency: fc.constantFrom("USD", "USD", "USD", "EUR"),
});

/** Charges as they are: per (period, meter) a cumulative series ≥ 0 at some hours; increments are its steps. */
const chargesArb = fc.array(
  fc.record({ hour: fc.integer({ min: 0, max: HOURS - 1 }), meter: fc.constantFrom(...METERS), total: fc.nat(800) }),
  { maxLength: 60 },
);

type GrantSpec = typeof grantArb extends fc.Arbitrary<infer T> ? T : never;

function build(
  gs: GrantSpec[],
  points: { hour: number; meter: string; total: number }[],
  currencyOf: (period: number) => string,
) {
  const grants = gs.map((g, i) => {
    const effective = NOV + g.effective * 60_000;
    return grant({
      id: `g${String(i).padStart(2, "0")}`,
      amount: BigInt(g.amount),
      priority: g.priority,
      effectiveAt: new Date(effective),
      expiresAt: g.lasts === null ? null : new Date(effective + g.lasts * 60_000),
      voidedAt: g.voidAfter === null ? null : new Date(effective + g.voidAfter * 60_000),
      meters: g.meters,
      currency: g.currency,
    });
  });
  const increments: ChargeIncrement[] = [];
  const last = new Map<string, number>();
  const unique = new Map(points.map((p) => [`${p.hour}/${p.meter}`, p]));
  for (const p of [...unique.values()].sort((a, b) => a.hour - b.hour)) {
    const hour = NOV + p.hour * H;
    const period = hour >= DEC ? DEC : NOV;
    const k = `${period}/${p.meter}`;
    const delta = p.total - (last.get(k) ?? 0);
    last.set(k, p.total);
    increments.push(inc(hour, BigInt(delta), p.meter, period, currencyOf(period)));
  }
  return { grants, increments, totals: last };
}

const scenario = fc.record({
  grants: fc.array(grantArb, { maxLength: 7 }),
  charges: chargesArb,
  asOfHour: fc.integer({ min: 0, max: HOURS + 48 }),
  decemberInEur: fc.boolean(),
});

describe("burn-down properties", () => {
  it("when anything is replayed, then it equals the cent-by-cent reference and every sum holds", () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const { grants, increments, totals } = build(s.grants, s.charges, (p) =>
          p === DEC && s.decemberInEur ? "EUR" : "USD",
        );
        const asOf = NOV + s.asOfHour * H + 1_800_000;
        const r = burnDown(grants, increments, asOf);
        const ref = reference(grants, increments, asOf);
        let granted = 0n;
        let applied = 0n;
        for (const g of grants) {
          const b = r.grants.get(g.id);
          if (!b) throw new Error(`no balance for ${g.id}`);
          expect([b.applied, b.forfeited, b.remaining]).toEqual([
            BigInt(ref.applied.get(g.id) ?? 0),
            BigInt(ref.forfeited.get(g.id) ?? 0),
            BigInt(ref.left.get(g.id) ?? 0),
          ]);
          expect(b.applied >= 0n && b.applied <= g.amount).toBe(true);
          expect(b.forfeited >= 0n && b.remaining >= 0n).toBe(true);
          expect(b.remaining + b.applied + b.forfeited).toBe(g.amount);
          granted += g.amount;
          applied += b.applied;
        }
        expect(applied <= granted).toBe(true);
        // Invoices and the balance read the same ledger: the periods' credits add up to what was applied.
        let credited = 0n;
        for (const [period, byGrant] of r.appliedByPeriod) {
          for (const [id, amount] of byGrant) {
            expect(amount).toBe(BigInt(ref.byPeriod.get(`${period}/${id}`) ?? 0));
            credited += amount;
          }
          // A period's credits never exceed its usage charges, so total = subtotal − credits ≥ base fees ≥ 0.
          const charges = METERS.reduce((t, m) => t + (totals.get(`${period}/${m}`) ?? 0), 0);
          expect([...byGrant.values()].reduce((a, b) => a + b, 0n) <= BigInt(charges)).toBe(true);
        }
        expect(credited).toBe(applied);
      }),
      { numRuns: 400 },
    );
  });

  it("when a replay is cut at any hour, copied and resumed, then it ends exactly as one replay of everything", () => {
    fc.assert(
      fc.property(scenario, fc.integer({ min: 0, max: HOURS }), (s, cutHour) => {
        const { grants, increments } = build(s.grants, s.charges, () => "USD");
        const asOf = NOV + (HOURS + 48) * H;
        const whole = burnDown(grants, increments, asOf);
        const cut = NOV + cutHour * H;
        const checkpoint = new Replay(grants).apply(increments.filter((i) => i.hour < cut)).forfeitUntil(cut);
        const resumed = checkpoint.clone().apply(increments.filter((i) => i.hour >= cut));
        // The checkpoint itself is untouched by what its copy did.
        const again = checkpoint.clone().apply(increments.filter((i) => i.hour >= cut));
        for (const r of [resumed.result(asOf), again.result(asOf)]) {
          expect(r.grants).toEqual(whole.grants);
          expect(r.appliedByPeriod).toEqual(whole.appliedByPeriod);
          expect(r.entries).toEqual(whole.entries);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("when a grant is drawn, then no grant before it in the burn order could have paid", () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const { grants, increments } = build(s.grants, s.charges, () => "USD");
        const r = burnDown(grants, increments, NOV + (HOURS + 48) * H);
        const order = [...grants].sort(burnOrder);
        const left = new Map(grants.map((g) => [g.id, g.amount]));
        for (const e of r.entries) {
          if (e.kind === "draw") {
            const i = order.findIndex((g) => g.id === e.grant);
            for (const earlier of order.slice(0, i)) {
              const eligible =
                earlier.currency === "USD" &&
                (earlier.meters === null || earlier.meters.includes(e.meter as string)) &&
                coversHour(earlier, e.hour);
              if (eligible) expect(left.get(earlier.id)).toBe(0n);
            }
            left.set(e.grant, (left.get(e.grant) as bigint) - e.amount);
          } else if (e.kind === "give_back") {
            left.set(e.grant, (left.get(e.grant) as bigint) + e.amount);
          } else {
            left.set(e.grant, (left.get(e.grant) as bigint) - e.amount);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
