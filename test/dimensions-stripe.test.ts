// Stripe as amounts on both engines: a meter with stripe_value "amount" sends per hour the change of its priced usage
// amount in minor units (whatever the grouping, overrides and tiers), late events send the difference, and the
// reconciliation compares amounts; quantity meters beside it keep sending quantities.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { hourAt, ingest, putCustomer, reconciliation, type StripeRig, startStripeRig, sync } from "./helpers/stripe.js";
import { admin } from "./helpers/tally.js";

const NOW = "2026-11-10T12:30:00Z";

describe.each(BACKENDS)("Stripe amounts on %s", (backend) => {
  let rig: StripeRig;
  let clock: ManualClock;
  const t = () => rig.t;
  const api = () => request(t().tally.app);

  beforeAll(async () => {
    clock = new ManualClock(NOW);
    rig = await startStripeRig(backend, clock);
    const put = async (path: string, body: object) => {
      const res = await api().put(path).set(admin).send(body);
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    };
    await put("/v1/meters/llm_tokens", {
      name: "LLM tokens",
      unit: "token",
      aggregation: "sum",
      dimensions: ["model", "token_type"],
      stripe_event_name: "llm_cents",
      stripe_value: "amount",
    });
    await put("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum", stripe_event_name: "api_calls" });
    await put("/v1/plans/llm", { name: "LLM", currency: "USD" });
    const price = await api()
      .post("/v1/plans/llm/prices")
      .set(admin)
      .send({
        meter: "llm_tokens",
        effective_from: "2026-01-01T00:00:00Z",
        model: "per_unit",
        unit_price: "0.001",
        group_by: ["model"],
        overrides: [
          {
            match: { model: "gpt-4o" },
            model: "graduated",
            tiers: [
              { up_to: "100", unit_price: "0.01" },
              { up_to: null, unit_price: "0.005" },
            ],
          },
        ],
      });
    expect(price.status, JSON.stringify(price.body)).toBe(201);
    await putCustomer(t(), "acme", "cus_acme");
    await put("/v1/customers/acme/subscription", { plan: "llm", start: "2026-11-01T00:00:00Z" });
  });
  afterAll(() => rig.close());

  it("when usage of an amount meter is priced by group and tier, then each complete hour sends the change of the amount in cents", async () => {
    await ingest(t(), [
      {
        id: "1",
        customer: "acme",
        meter: "llm_tokens",
        value: 120,
        timestamp: hourAt(clock, 3),
        properties: { model: "gpt-4o", token_type: "input" },
      },
      {
        id: "2",
        customer: "acme",
        meter: "llm_tokens",
        value: 1000,
        timestamp: hourAt(clock, 3),
        properties: { model: "mini" },
      },
      {
        id: "3",
        customer: "acme",
        meter: "llm_tokens",
        value: 50,
        timestamp: hourAt(clock, 2),
        properties: { model: "gpt-4o", token_type: "output" },
      },
      { id: "4", customer: "acme", meter: "llm_tokens", value: 7, timestamp: hourAt(clock, 2) },
      {
        id: "5",
        customer: "acme",
        meter: "llm_tokens",
        value: 9,
        timestamp: hourAt(clock, 0),
        properties: { model: "mini" },
      },
      { id: "c1", customer: "acme", meter: "calls", value: 40, timestamp: hourAt(clock, 2) },
    ]);
    expect(await sync(t())).toMatchObject({ sent: 3, failed: 0 });
    // Hour −3: gpt-4o 100 × 0.01 + 20 × 0.005 + mini 1.00 = 2.10; hour −2: gpt-4o to 1.35, no model 0.01 → 2.36.
    expect(rig.fake.eventsOf("cus_acme", "llm_cents").map((e) => e.value)).toEqual([210n, 26n]);
    expect(rig.fake.sum("cus_acme", "api_calls")).toBe(40n);
    const invoice = await api().get("/v1/customers/acme/invoice").query({ period: "2026-11" }).set(admin);
    expect(invoice.body.total).toBe("2.37");
    const [calls, llm] = await reconciliation(t(), "2026-11");
    expect(calls).toMatchObject({ meter: "calls", quantity: "40", sent: "40", status: "in_sync" });
    expect(llm).toMatchObject({ meter: "llm_tokens", unit: "amount", currency: "USD", quantity: "2.37", sent: "2.36" });
    expect(llm?.status).toBe("pending"); // the current hour's 9 mini tokens (0.009) are not sent yet
  });

  it("when a late event moves a group into a cheaper tier, then the hour it lands in sends the difference and the total matches the invoice", async () => {
    await ingest(t(), [
      {
        id: "6",
        customer: "acme",
        meter: "llm_tokens",
        value: 30,
        timestamp: hourAt(clock, 3, 40),
        properties: { model: "gpt-4o" },
      },
    ]);
    expect(await sync(t())).toMatchObject({ sent: 1 });
    // Hour −3 now 1.00 + 50 × 0.005 + 1.00 = 2.25 (+15 cents); hour −2 still adds 26.
    expect(rig.fake.eventsOf("cus_acme", "llm_cents").map((e) => e.value)).toEqual([210n, 26n, 15n]);
    clock.advance(3_600_000);
    expect(await sync(t())).toMatchObject({ sent: 1 });
    const invoice = await api().get("/v1/customers/acme/invoice").query({ period: "2026-11" }).set(admin);
    expect(invoice.body.total).toBe("2.52");
    expect(rig.fake.sum("cus_acme", "llm_cents")).toBe(252n);
    const llm = (await reconciliation(t(), "2026-11")).find((r) => r.meter === "llm_tokens");
    expect(llm).toMatchObject({
      quantity: "2.52",
      sent: "2.52",
      difference: "0.00",
      status: "in_sync",
      expected_units: "252",
    });
  });
  it("when a subscription starts and a grouped version takes effect in the middle of hours, then the partial hours are priced as the invoice prices them", async () => {
    const post = (body: object) => api().post("/v1/plans/llm2/prices").set(admin).send(body);
    expect((await api().put("/v1/plans/llm2").set(admin).send({ name: "LLM 2", currency: "USD" })).status).toBe(201);
    const base = { meter: "llm_tokens", model: "per_unit" };
    expect((await post({ ...base, effective_from: "2026-01-01T00:00:00Z", unit_price: "0.01" })).status).toBe(201);
    const grouped = {
      ...base,
      effective_from: hourAt(clock, 4, 30),
      unit_price: "0.02",
      group_by: ["model"],
      overrides: [{ match: { model: "x" }, model: "per_unit", unit_price: "0.05" }],
    };
    expect((await post(grouped)).status).toBe(201);
    await putCustomer(t(), "seg", "cus_seg");
    const sub = await api()
      .put("/v1/customers/seg/subscription")
      .set(admin)
      .send({ plan: "llm2", start: hourAt(clock, 8, 30) });
    expect(sub.status).toBe(200);
    await ingest(t(), [
      { id: "s1", customer: "seg", meter: "llm_tokens", value: 100, timestamp: hourAt(clock, 8, 10) },
      { id: "s2", customer: "seg", meter: "llm_tokens", value: 100, timestamp: hourAt(clock, 8, 40) },
      {
        id: "s3",
        customer: "seg",
        meter: "llm_tokens",
        value: 100,
        timestamp: hourAt(clock, 4, 10),
        properties: { model: "x" },
      },
      {
        id: "s4",
        customer: "seg",
        meter: "llm_tokens",
        value: 100,
        timestamp: hourAt(clock, 4, 50),
        properties: { model: "x" },
      },
      {
        id: "s5",
        customer: "seg",
        meter: "llm_tokens",
        value: 50,
        timestamp: hourAt(clock, 2, 0),
        properties: { model: "y" },
      },
    ]);
    await sync(t());
    // Before the subscription nothing is priced; then 1.00 (hour −8); 1.00 at 0.01 + 5.00 for model x (hour −4);
    // 1.00 for model y (hour −2).
    expect(rig.fake.eventsOf("cus_seg", "llm_cents").map((e) => e.value)).toEqual([100n, 600n, 100n]);
    const invoice = await api().get("/v1/customers/seg/invoice").query({ period: "2026-11" }).set(admin);
    expect(invoice.body.total).toBe("8.00");
    const row = (await reconciliation(t(), "2026-11")).find((r) => r.customer === "seg");
    expect(row).toMatchObject({ quantity: "8.00", sent: "8.00", status: "in_sync" });
  });
});
