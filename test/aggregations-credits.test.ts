// unique_count, min and avg meters priced hour by hour, on both engines: prepaid credits burn exactly what the
// invoice charges (the worked example of issue 28: 3 active users × 1.50 = 4.50 drawn, not the 5 of its hours), a
// grant that ends mid-period pays the users first seen in the hours it covers (per group for a grouped price, from a
// subscription that starts mid-hour), avg burns the period's own sum ÷ count and min its min; and a stripe_value
// "amount" meter sends the hourly changes of the same amounts, adding up to the invoice.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { Dec } from "../src/pricing/money.js";
import { quantityOfStretch } from "../src/pricing/running.js";
import { BACKENDS } from "./helpers/databases.js";
import { adminCalls, ownTally } from "./helpers/own.js";
import { hourAt, ingest, putCustomer, reconciliation, startStripeRig, sync } from "./helpers/stripe.js";

const NOW = "2026-11-20T12:30:00Z";

/** The meters and plans of both scenarios, on any Tally. */
async function catalog(
  { ok, setup, post }: Pick<ReturnType<typeof adminCalls>, "ok" | "setup" | "post">,
  stripe = false,
) {
  const amount = (event: string) => (stripe ? { stripe_event_name: event, stripe_value: "amount" } : {});
  await setup("/v1/meters/active_users", {
    name: "Active users",
    unit: "user",
    aggregation: "unique_count",
    unique_property: "user_id",
    dimensions: ["region"],
    ...amount("mau_cents"),
  });
  await setup("/v1/meters/latency_min", { name: "Min", unit: "ms", aggregation: "min" });
  await setup("/v1/meters/latency_avg", { name: "Avg", unit: "ms", aggregation: "avg", ...amount("avg_cents") });
  const price = async (plan: string, body: object) =>
    ok(post(`/v1/plans/${plan}/prices`, { effective_from: "2026-01-01T00:00:00Z", ...body }), 201);
  await setup("/v1/plans/mau", { name: "MAU", currency: "USD" });
  await price("mau", { meter: "active_users", model: "per_unit", unit_price: "1.50" });
  await setup("/v1/plans/regions", { name: "MAU by region", currency: "USD" });
  await price("regions", {
    meter: "active_users",
    model: "per_unit",
    unit_price: "1.00",
    group_by: ["region"],
    overrides: [{ match: { region: "eu" }, model: "per_unit", unit_price: "2.00" }],
  });
  await setup("/v1/plans/latency", { name: "Latency", currency: "USD" });
  await price("latency", { meter: "latency_min", model: "per_unit", unit_price: "1" });
  await price("latency", { meter: "latency_avg", model: "per_unit", unit_price: "1" });
}

const user = (customer: string, u: string, timestamp: string, region?: string) => ({
  customer,
  meter: "active_users",
  timestamp,
  properties: { user_id: u, ...(region ? { region } : {}) },
});

describe.each(BACKENDS)("credits and Stripe amounts of unique_count, min and avg meters on %s", (backend) => {
  it("when credits pay distinct users, min and avg hour by hour, then they draw exactly what the invoice charges", async () => {
    const w = await ownTally(backend, NOW);
    const { ok, setup, post, get, ingest: send } = w;
    await catalog(w);
    const customer = async (id: string, plan: string, start: string, grant: object) => {
      await setup(`/v1/customers/${id}`, {});
      await setup(`/v1/customers/${id}/subscription`, { plan, start });
      await ok(post(`/v1/customers/${id}/credit-grants`, { effective_at: "2026-11-01T00:00:00Z", ...grant }), 201);
    };
    await customer("full", "mau", "2026-11-01T00:00:00Z", { amount: "10" });
    // A grant for Nov 1 only: it pays the users first seen that day.
    await customer("day1", "mau", "2026-11-01T00:00:00Z", { amount: "10", expires_at: "2026-11-02T00:00:00Z" });
    await customer("regions", "regions", "2026-11-01T09:30:00Z", {
      amount: "10",
      expires_at: "2026-11-02T00:00:00Z",
    });
    await customer("latency", "latency", "2026-11-01T00:00:00Z", { amount: "100" });
    const worked = (c: string) => [
      user(c, "u1", "2026-11-01T09:00:00Z"),
      user(c, "u2", "2026-11-01T10:00:00Z"),
      user(c, "u1", "2026-11-01T11:00:00Z"),
      user(c, "u2", "2026-11-02T09:00:00Z"),
      user(c, "u3", "2026-11-02T10:00:00Z"),
    ];
    const latency = (meter: string) =>
      [
        [5, "2026-11-01T09:00:00Z"],
        [3, "2026-11-01T10:00:00Z"],
        [10, "2026-11-02T09:00:00Z"],
      ].map(([value, timestamp]) => ({ customer: "latency", meter, value, timestamp }));
    await send([
      ...worked("full"),
      ...worked("day1"),
      // Before the subscription starts (not billed), then in the rest of that hour and later, by region.
      user("regions", "u1", "2026-11-01T09:10:00Z", "eu"),
      user("regions", "u1", "2026-11-01T09:40:00Z", "eu"),
      user("regions", "u2", "2026-11-01T10:00:00Z"),
      user("regions", "u1", "2026-11-02T09:00:00Z", "eu"),
      user("regions", "u1", "2026-11-02T10:00:00Z", "us"),
      user("regions", "u2", "2026-11-02T11:00:00Z", "eu"),
      ...latency("latency_min"),
      ...latency("latency_avg"),
    ]);
    for (const phase of ["fresh", "refreshed"]) {
      if (phase === "refreshed") await ok(post("/v1/jobs/refresh-rollups/run"));
      const invoice = async (c: string) => get(`/v1/customers/${c}/invoice`);
      // 3 users × 1.50, all paid by the grant (hourly distinct counts would add up to 5 users, 7.50).
      expect(await invoice("full"), phase).toMatchObject({ subtotal: "4.50", credits: "4.50", total: "0.00" });
      expect((await get("/v1/customers/full/credits")).balance).toBe("5.50");
      // Nov 1: u1 and u2 (3.00); u3 on Nov 2 is invoiced.
      expect(await invoice("day1"), phase).toMatchObject({ subtotal: "4.50", credits: "3.00", total: "1.50" });
      // eu {u1, u2} × 2.00 + us {u1} + no region {u2} = 6.00; Nov 1 (from 09:30) saw eu u1 and u2 without region.
      expect(await invoice("regions"), phase).toMatchObject({ subtotal: "6.00", credits: "3.00", total: "3.00" });
      // min 3 and avg (5 + 3 + 10) ÷ 3 = 6, not the 7 of the days' averages: 9.00 paid in full.
      const lat = await invoice("latency");
      expect(
        lat.lines
          .filter((l: { kind: string }) => l.kind === "usage")
          .map((l: { meter: string; amount: string }) => [l.meter, l.amount]),
        phase,
      ).toEqual([
        ["latency_avg", "6.00"],
        ["latency_min", "3.00"],
      ]);
      expect(lat, phase).toMatchObject({ subtotal: "9.00", credits: "9.00", total: "0.00" });
      expect((await get("/v1/customers/latency/credits")).balance).toBe("91.00");
    }
  });

  it("when a unique_count and an avg meter are sent to Stripe as amounts, then each hour sends the change and they add up to the invoice", async () => {
    const clock = new ManualClock("2026-11-10T12:30:00Z");
    const rig = await startStripeRig(backend, clock);
    try {
      const w = adminCalls(rig.t);
      await catalog(w, true);
      await putCustomer(rig.t, "acme", "cus_acme");
      await w.setup("/v1/customers/acme/subscription", { plan: "mau", start: "2026-11-01T00:00:00Z" });
      await w.ok(
        w.post("/v1/plans/mau/prices", {
          meter: "latency_avg",
          effective_from: "2026-01-01T00:00:00Z",
          model: "per_unit",
          unit_price: "1",
        }),
        201,
      );
      const at = (ago: number) => hourAt(clock, ago);
      await ingest(rig.t, [
        { id: "u1", ...user("acme", "u1", at(5)) },
        { id: "u2", ...user("acme", "u2", at(4)) },
        { id: "u3", ...user("acme", "u1", at(3)) },
        { id: "a1", customer: "acme", meter: "latency_avg", value: 5, timestamp: at(5) },
        { id: "a2", customer: "acme", meter: "latency_avg", value: 3, timestamp: at(4) },
      ]);
      await sync(rig.t);
      // Users: +1.50 twice (u1 again adds nothing). Average: 5.00, then 4.00 (−1.00).
      expect(rig.fake.eventsOf("cus_acme", "mau_cents").map((e) => e.value)).toEqual([150n, 150n]);
      expect(rig.fake.eventsOf("cus_acme", "avg_cents").map((e) => e.value)).toEqual([500n, -100n]);
      clock.advance(3_600_000);
      await ingest(rig.t, [
        { id: "u4", ...user("acme", "u2", at(1)) },
        { id: "u5", ...user("acme", "u3", at(1)) },
        { id: "a3", customer: "acme", meter: "latency_avg", value: 10, timestamp: at(1) },
      ]);
      await sync(rig.t);
      expect(rig.fake.eventsOf("cus_acme", "mau_cents").map((e) => e.value)).toEqual([150n, 150n, 150n]);
      expect(rig.fake.sum("cus_acme", "avg_cents")).toBe(600n);
      const invoice = await w.get("/v1/customers/acme/invoice", { period: "2026-11" });
      expect(invoice.lines.map((l: { meter: string; amount: string }) => [l.meter, l.amount])).toEqual([
        ["active_users", "4.50"],
        ["latency_avg", "6.00"],
      ]);
      const recon = await reconciliation(rig.t, "2026-11");
      expect(recon.map((r) => [r.meter, r.quantity, r.sent, r.status])).toEqual([
        ["active_users", "4.50", "4.50", "in_sync"],
        ["latency_avg", "6.00", "6.00", "in_sync"],
      ]);
    } finally {
      await rig.close();
    }
  });
});

describe("the average of stretches", () => {
  it("property: sum ÷ count rounds as the rollups' AVG_OF does (div of 2|sum| × 1e9 + count by 2 × count)", () => {
    const value = fc
      .tuple(fc.bigInt({ min: -(10n ** 18n), max: 10n ** 18n }), fc.integer({ min: 0, max: 9 }))
      .map(([digits, places]) => new Dec(digits.toString()).div(new Dec(10).pow(places)));
    fc.assert(
      fc.property(value, fc.integer({ min: 1, max: 1_000_000 }), (sum, n) => {
        const count = new Dec(n);
        const sql = sum
          .abs()
          .times(2_000_000_000)
          .plus(count)
          .div(count.times(2))
          .floor()
          .times(sum.isNegative() ? -1 : 1)
          .div(1_000_000_000);
        expect(quantityOfStretch("avg", { value: sum, count }).eq(sql)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});
