// Where money goes wrong quietly, on both engines, each test on a Tally of its own: a price version that starts
// exactly at a period's end (next month's price) takes no part in this period; a grant that takes effect at 10:30
// covers the whole 10:00 hour (active, balance, a credit_only customer not blocked); a late event inside a free
// tier of a finalized period is carried once, as a 0.00 adjustment with its quantity.
import { describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import { ownTally } from "./helpers/own.js";
import { admin } from "./helpers/tally.js";

interface Line {
  kind: string;
  meter: string | null;
  quantity: string;
  amount: string;
  tier?: number;
  unit_price?: string;
  adjusts?: string;
}

const adjustmentsOf = (inv: { lines: Line[] }) => inv.lines.filter((l) => l.kind === "adjustment");

describe.each(BACKENDS)("money edges on %s", (backend) => {
  it("when a price gets a new version starting exactly at the period's end, then this period's invoice and summary know only the old one", async () => {
    const w = await ownTally(backend, "2026-11-20T12:00:00Z");
    await w.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
    await w.setup("/v1/meters/gb", { name: "Storage", unit: "GB", aggregation: "max" });
    await w.setup("/v1/plans/next", { name: "Next month's price", currency: "USD" });
    const version = async (body: object) => w.ok(w.post("/v1/plans/next/prices", body), 201);
    await version({
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "graduated",
      tiers: [
        { up_to: "100", unit_price: "0" },
        { up_to: null, unit_price: "0.1" },
      ],
    });
    await version({ meter: "gb", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "2" });
    // December's prices, announced in November: they start at the instant November ends.
    await version({
      meter: "calls",
      effective_from: "2026-12-01T00:00:00Z",
      model: "graduated",
      tiers: [
        { up_to: "1000", unit_price: "0.05" },
        { up_to: null, unit_price: "0.01" },
      ],
      base_fee: "30",
    });
    await version({ meter: "gb", effective_from: "2026-12-01T00:00:00Z", model: "per_unit", unit_price: "3" });
    await w.setup("/v1/customers/nm", {});
    await w.setup("/v1/customers/nm/subscription", { plan: "next", start: "2026-11-01T00:00:00Z" });
    await w.ingest([
      { customer: "nm", meter: "calls", value: 150, timestamp: "2026-11-05T10:00:00Z" },
      { customer: "nm", meter: "gb", value: 4, timestamp: "2026-11-06T10:00:00Z" },
    ]);

    const november = () => w.get("/v1/customers/nm/invoice", { period: "2026-11" });
    const expectNovember = (inv: { lines: Line[]; total: string }) => {
      // 100 free + 50 × 0.10, and 4 GB × 2: no line of December's version, not even an empty one.
      expect(inv.lines.map((l) => [l.meter, l.tier ?? null, l.quantity, l.unit_price, l.amount])).toEqual([
        ["calls", 1, "100", "0", "0.00"],
        ["calls", 2, "50", "0.1", "5.00"],
        ["gb", null, "4", "2", "8.00"],
      ]);
      expect(inv.total).toBe("13.00");
    };
    expectNovember(await november());
    const summary = await w.get("/v1/customers/nm/summary", { period: "2026-11" });
    expect(summary.total).toBe("13.00");
    // The tier the next unit falls in is the old version's second tier, not December's first.
    expect(summary.meters.find((m: { meter: string }) => m.meter === "calls")).toMatchObject({
      quantity: "150",
      amount: "5.00",
      tier: { index: 2, up_to: null, unit_price: "0.1", units_to_next_tier: null },
    });

    // Into December: usage at its first instant is December's, priced by the new version; November is unchanged.
    w.clock.set("2026-12-01T00:30:00Z");
    await w.ingest([{ customer: "nm", meter: "calls", value: 10, timestamp: "2026-12-01T00:00:00Z" }]);
    expectNovember(await november());
    const december = await w.get("/v1/customers/nm/summary", { period: "2026-12" });
    expect(december.meters.find((m: { meter: string }) => m.meter === "calls")).toMatchObject({
      quantity: "10",
      amount: "30.50", // base fee 30 + 10 × 0.05
      tier: { index: 1, up_to: "1000", unit_price: "0.05", units_to_next_tier: "990" },
    });
    w.clock.set("2026-12-01T01:00:00Z");
    expect((await w.runJob("finalize-invoices")).finalized).toBe(1);
    const [final] = (await w.get("/v1/invoices", { customer: "nm", period: "2026-11" })).data;
    expect(final.status).toBe("final");
    expectNovember(final);
  });

  it("when a grant takes effect at 10:30, then from 10:00 it is active with its balance and a credit_only customer is not blocked", async () => {
    const w = await ownTally(backend, "2026-11-20T09:50:00Z");
    await w.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
    await w.setup("/v1/plans/calls", { name: "Calls", currency: "USD" });
    await w.ok(
      w.post("/v1/plans/calls/prices", {
        meter: "calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "per_unit",
        unit_price: "0.01",
      }),
      201,
    );
    await w.setup("/v1/customers/half", {});
    await w.setup("/v1/customers/half/subscription", { plan: "calls", start: "2026-11-01T00:00:00Z" });
    await w.setup("/v1/customers/half", { credit_mode: "credit_only" });
    const entitlement = () => w.api().get("/v1/entitlements/half/calls").set(admin);
    const grant = (
      await w.ok(w.post("/v1/customers/half/credit-grants", { amount: "5", effective_at: "2026-11-20T10:30:00Z" }), 201)
    ).body;
    const credits = () => w.get("/v1/customers/half/credits");

    // 09:50: the grant covers nothing yet; the customer has no credits and is blocked.
    expect(await credits()).toMatchObject({ balance: "0.00", grants: [{ id: grant.id, status: "pending" }] });
    let e = await entitlement();
    expect(e.status).toBe(429);
    expect(e.body).toMatchObject({ code: "credits_exhausted" });

    // 10:00: the hour the grant starts in has begun; the hourly evaluation (the job's, as scheduled) unblocks.
    w.clock.set("2026-11-20T10:00:00Z");
    expect(await credits()).toMatchObject({
      balance: "5.00",
      grants: [{ id: grant.id, status: "active", remaining: "5.00" }],
    });
    await w.runJob("evaluate-limits");
    e = await entitlement();
    expect(e.status, JSON.stringify(e.body)).toBe(200);
    expect(e.body).toMatchObject({ allowed: true, credits: "5.00" });

    // 10:15: usage of 10:05 is paid by the grant, and the customer still may use the meter.
    w.clock.set("2026-11-20T10:15:00Z");
    await w.ingest([{ customer: "half", meter: "calls", value: 120, timestamp: "2026-11-20T10:05:00Z" }]);
    await w.runJob("evaluate-limits");
    expect(await credits()).toMatchObject({
      balance: "3.80",
      grants: [{ id: grant.id, status: "active", remaining: "3.80" }],
    });
    e = await entitlement();
    expect(e.status, JSON.stringify(e.body)).toBe(200);
    expect(e.body).toMatchObject({ allowed: true, credits: "3.80" });
    const invoice = await w.get("/v1/customers/half/invoice", { period: "2026-11" });
    expect(invoice).toMatchObject({ subtotal: "1.20", credits: "1.20", total: "0.00" });
  });

  it("when a grant is bought at 10:30, then it pays the usage of 10:00 to 10:30 and unblocks a credit_only customer at once", async () => {
    const w = await ownTally(backend, "2026-11-20T10:10:00Z");
    await w.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
    await w.setup("/v1/plans/calls", { name: "Calls", currency: "USD" });
    await w.ok(
      w.post("/v1/plans/calls/prices", {
        meter: "calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "per_unit",
        unit_price: "0.01",
      }),
      201,
    );
    await w.setup("/v1/customers/bought", {});
    await w.setup("/v1/customers/bought/subscription", { plan: "calls", start: "2026-11-01T00:00:00Z" });
    await w.setup("/v1/customers/bought", { credit_mode: "credit_only" });
    // Usage in the hour before the purchase: 09:40 is not covered, 10:05 is.
    await w.ingest([
      { customer: "bought", meter: "calls", value: 100, timestamp: "2026-11-20T09:40:00Z" },
      { customer: "bought", meter: "calls", value: 70, timestamp: "2026-11-20T10:05:00Z" },
    ]);
    w.clock.set("2026-11-20T10:30:00Z");
    const grant = (await w.ok(w.post("/v1/customers/bought/credit-grants", { amount: "2" }), 201)).body;
    expect(grant.effective_at).toBe("2026-11-20T10:30:00Z");
    expect(await w.get("/v1/customers/bought/credits")).toMatchObject({
      balance: "1.30",
      grants: [{ id: grant.id, status: "active", remaining: "1.30" }],
    });
    const e = await w.api().get("/v1/entitlements/bought/calls").set(admin);
    expect(e.status, JSON.stringify(e.body)).toBe(200);
    expect(e.body).toMatchObject({ allowed: true, credits: "1.30" });
    expect(await w.get("/v1/customers/bought/invoice", { period: "2026-11" })).toMatchObject({
      subtotal: "1.70",
      credits: "0.70",
      total: "1.00",
    });
  });

  it("when a late event falls inside a free tier of a finalized period, then its quantity is carried once with a 0.00 amount", async () => {
    const w = await ownTally(backend, "2026-10-10T12:00:00Z");
    await w.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
    await w.setup("/v1/plans/free", { name: "Free tier", currency: "USD" });
    await w.ok(
      w.post("/v1/plans/free/prices", {
        meter: "calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "graduated",
        tiers: [
          { up_to: "1000", unit_price: "0" },
          { up_to: null, unit_price: "0.01" },
        ],
      }),
      201,
    );
    await w.setup("/v1/customers/free", {});
    await w.setup("/v1/customers/free/subscription", { plan: "free", start: "2026-10-01T00:00:00Z" });
    await w.ingest([{ customer: "free", meter: "calls", value: 100, timestamp: "2026-10-05T10:00:00Z" }]);
    w.clock.set("2026-11-01T01:00:00Z");
    expect((await w.runJob("finalize-invoices")).finalized).toBe(1);
    const [october] = (await w.get("/v1/invoices", { customer: "free", period: "2026-10" })).data;
    expect(october).toMatchObject({ status: "final", total: "0.00" });
    const frozen = (await w.ok(w.api().get(`/v1/invoices/${october.id}`).set(admin))).text;

    w.clock.set("2026-11-01T02:00:00Z");
    await w.ingest([{ customer: "free", meter: "calls", value: 50, timestamp: "2026-10-20T08:00:00Z" }]);
    expect((await w.runJob("finalize-invoices")).adjustments).toBe(1);
    for (let i = 0; i < 3; i++) expect((await w.runJob("finalize-invoices")).adjustments).toBe(0);
    const draft = async () => (await w.get("/v1/invoices", { customer: "free", period: "2026-11" })).data[0];
    const november = await draft();
    expect(november).toMatchObject({ status: "draft", adjustments: "0.00", total: "0.00" });
    expect(adjustmentsOf(november)).toEqual([
      expect.objectContaining({ meter: "calls", quantity: "50", amount: "0.00", adjusts: october.id }),
    ]);

    // November freezes with it; nothing of it reaches December again.
    w.clock.set("2026-12-01T01:00:00Z");
    expect(await w.runJob("finalize-invoices")).toMatchObject({ finalized: 1, adjustments: 0 });
    const finalNovember = await draft();
    expect(finalNovember.status).toBe("final");
    expect(adjustmentsOf(finalNovember)).toHaveLength(1);
    const [december] = (await w.get("/v1/invoices", { customer: "free", period: "2026-12" })).data;
    expect(adjustmentsOf(december)).toEqual([]);
    expect((await w.ok(w.api().get(`/v1/invoices/${october.id}`).set(admin))).text).toBe(frozen);
  });
});
