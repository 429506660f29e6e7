// Credits meet the rest of this round, on both engines, each test on a Tally and clock of its own: a final invoice
// freezes its credit lines; a late event in a finalized period that draws more credits is carried to the next draft
// as adjustments that net to what the customer owes (usage up, credits up); and grouped prices (group_by, overrides,
// per-group tiers) burn credits hour by hour to the cent of their invoice lines. A simulation of a finalized period
// starts from the final invoice.
import { describe, expect, it } from "vitest";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { ownTally } from "./helpers/own.js";
import { admin } from "./helpers/tally.js";

/** A test's own Tally at `now`: plan calls (0.01 a call, base fee 20) and plan llm (tokens priced per model). */
async function world(backend: TestBackend, now: string) {
  const w = await ownTally(backend, now);
  const { ok, setup, post } = w;
  await setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
  await setup("/v1/meters/tokens", {
    name: "Tokens",
    unit: "token",
    aggregation: "sum",
    dimensions: ["model", "kind"],
  });
  await setup("/v1/plans/calls", { name: "Calls", currency: "USD" });
  await ok(
    post("/v1/plans/calls/prices", {
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "0.01",
      base_fee: "20",
    }),
    201,
  );
  await setup("/v1/plans/llm", { name: "LLM", currency: "USD" });
  await ok(
    post("/v1/plans/llm/prices", {
      meter: "tokens",
      effective_from: "2026-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "0.001",
      group_by: ["model"],
      overrides: [
        {
          match: { model: "big" },
          model: "graduated",
          tiers: [
            { up_to: "100", unit_price: "0.01" },
            { up_to: null, unit_price: "0.005" },
          ],
        },
      ],
    }),
    201,
  );
  const subscribe = async (id: string, plan: string) => {
    await ok(w.api().put(`/v1/customers/${id}`).set(admin).send({}), 201);
    await setup(`/v1/customers/${id}/subscription`, { plan, start: "2026-10-01T00:00:00Z" });
  };
  const finalize = async () => (await ok(post("/v1/jobs/finalize-invoices/run"))).body.summary;
  return { ...w, subscribe, finalize };
}

describe.each(BACKENDS)("credits on invoices and grouped prices on %s", (backend) => {
  it("when a period with credits is finalized and a late event draws more, then the final invoice keeps its credit lines and the next draft carries usage and credits", async () => {
    const { clock, ok, post, get, ingest, subscribe, finalize } = await world(backend, "2026-11-10T12:00:00Z");
    await subscribe("frozen", "calls");
    const grant = (
      await ok(
        post("/v1/customers/frozen/credit-grants", {
          amount: "10",
          description: "Pack",
          effective_at: "2026-11-01T00:00:00Z",
        }),
        201,
      )
    ).body;
    await ingest([{ customer: "frozen", meter: "calls", value: 600, timestamp: "2026-11-10T11:00:00Z" }]);

    clock.set("2026-12-01T02:00:00Z");
    expect((await finalize()).finalized).toBeGreaterThanOrEqual(1);
    const [final] = (await get("/v1/invoices?customer=frozen&status=final")).data;
    expect(final).toMatchObject({ status: "final", subtotal: "26.00", credits: "6.00", total: "20.00" });
    expect(final.lines.filter((l: { kind: string }) => l.kind === "credit")).toEqual([
      {
        meter: null,
        kind: "credit",
        description: `Prepaid credits: Pack (grant ${grant.id})`,
        amount: "-6.00",
        grant: grant.id,
      },
    ]);
    // The preview of a finalized period is the final invoice, byte for byte.
    expect(await get("/v1/customers/frozen/invoice?period=2026-11")).toEqual(final);

    // 200 more calls on 10 November, accepted late: usage +2.00, and the grant pays them (credits +2.00).
    await ingest([{ customer: "frozen", meter: "calls", value: 200, timestamp: "2026-11-10T13:00:00Z" }]);
    expect((await get("/v1/customers/frozen/credits")).balance).toBe("2.00");
    expect((await finalize()).adjustments).toBe(2);
    expect(await get(`/v1/invoices/${final.id}`)).toEqual(final);
    const [draft] = (await get("/v1/invoices?customer=frozen&status=draft&period=2026-12")).data;
    const adjustments = draft.lines.filter((l: { kind: string }) => l.kind === "adjustment");
    expect(adjustments.map((l: { meter: string | null; amount: string }) => [l.meter, l.amount])).toEqual([
      [null, "-2.00"],
      ["calls", "2.00"],
    ]);
    expect(adjustments[0].description).toBe(
      `Credits and other changes: correction of invoice ${final.number} (2026-11)`,
    );
    // December: base fee 20.00, the remaining 2.00 of credits pays no usage yet; the adjustments net to zero.
    expect(draft).toMatchObject({ adjustments: "0.00", total: "20.00" });
    // A second run carries nothing more.
    expect((await finalize()).adjustments).toBe(0);

    // A simulation of the finalized period starts from the final invoice before credits, as frozen (26.00); the
    // simulated total prices the usage as it stands now (800 calls: 8.00 + 20.00).
    const sim = await ok(
      post("/v1/simulations", {
        plan: "calls",
        period: "2026-11",
        customers: ["frozen"],
        prices: [{ meter: "calls", model: "per_unit", unit_price: "0.01", base_fee: "20" }],
      }),
    );
    expect(sim.body.customers).toEqual([
      {
        customer: "frozen",
        period: { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" },
        current: "26.00",
        simulated: "28.00",
        difference: "2.00",
        current_from: "final_invoice",
      },
    ]);
  });

  it("when a grouped price with per-group tiers is used hour by hour, then credits pay exactly its invoice lines", async () => {
    const { ok, post, get, ingest, subscribe } = await world(backend, "2026-11-20T12:30:00Z");
    await subscribe("grouped", "llm");
    await ok(
      post("/v1/customers/grouped/credit-grants", { amount: "1.00", effective_at: "2026-11-01T00:00:00Z" }),
      201,
    );
    // big: 60 + 60 + 30 = 150 tokens → tier 1 100 × 0.01 = 1.00, tier 2 50 × 0.005 = 0.25; small: 500 × 0.001 = 0.50.
    await ingest([
      {
        customer: "grouped",
        meter: "tokens",
        value: 60,
        timestamp: "2026-11-20T09:10:00Z",
        properties: { model: "big", kind: "in" },
      },
      {
        customer: "grouped",
        meter: "tokens",
        value: 500,
        timestamp: "2026-11-20T09:20:00Z",
        properties: { model: "small" },
      },
      {
        customer: "grouped",
        meter: "tokens",
        value: 60,
        timestamp: "2026-11-20T10:10:00Z",
        properties: { model: "big", kind: "out" },
      },
      {
        customer: "grouped",
        meter: "tokens",
        value: 30,
        timestamp: "2026-11-20T11:10:00Z",
        properties: { model: "big" },
      },
    ]);
    for (const phase of ["fresh", "refreshed"]) {
      if (phase === "refreshed") await ok(post("/v1/jobs/refresh-rollups/run", {}));
      const invoice = await get("/v1/customers/grouped/invoice?period=2026-11");
      const usage = invoice.lines.filter((l: { kind: string }) => l.kind === "usage");
      expect(usage.map((l: { amount: string }) => l.amount)).toEqual(["1.00", "0.25", "0.50"]);
      // Hour 9: big 0.60 + small 0.50 = 1.10 > 1.00, so the grant is spent by the end of hour 9.
      expect(invoice).toMatchObject({ subtotal: "1.75", credits: "1.00", total: "0.75" });
      const summary = await get("/v1/customers/grouped/summary?period=2026-11");
      expect(summary).toMatchObject({ subtotal: "1.75", credits: "1.00", total: "0.75" });
      expect((await get("/v1/customers/grouped/credits")).balance).toBe("0.00");
    }
  });

  it("when a grouped price's groups are used in the same hours as the grant starts, then only the hours it covers are paid", async () => {
    const { ok, post, get, ingest, subscribe } = await world(backend, "2026-11-25T12:30:00Z");
    await subscribe("late-grant", "llm");
    await ingest([
      {
        customer: "late-grant",
        meter: "tokens",
        value: 100,
        timestamp: "2026-11-25T08:10:00Z",
        properties: { model: "big" },
      },
      {
        customer: "late-grant",
        meter: "tokens",
        value: 40,
        timestamp: "2026-11-25T10:10:00Z",
        properties: { model: "big" },
      },
      {
        customer: "late-grant",
        meter: "tokens",
        value: 300,
        timestamp: "2026-11-25T10:20:00Z",
        properties: { model: "x" },
      },
    ]);
    // The grant covers from 10:00: big's 40 tokens are in tier 2 (0.20), x's 300 cost 0.30; the 1.00 of hour 8 is not.
    await ok(
      post("/v1/customers/late-grant/credit-grants", { amount: "5", effective_at: "2026-11-25T10:00:00Z" }),
      201,
    );
    const invoice = await get("/v1/customers/late-grant/invoice?period=2026-11");
    expect(invoice).toMatchObject({ subtotal: "1.50", credits: "0.50", total: "1.00" });
    expect((await get("/v1/customers/late-grant/credits")).balance).toBe("4.50");
  });
});
