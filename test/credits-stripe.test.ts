// Prepaid credits in Stripe, on both engines: once a period's invoice is final, the credit lines frozen on it reach
// the fake Stripe once, as negative invoice items with a deterministic Idempotency-Key; a timeout after Stripe
// created the item is retried with the same key and answered from Stripe's idempotency store (no second item);
// an item of a customer that lost its Stripe id is reported as unmapped until it has one again; the reconciliation
// lists the items.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { ingest, putMeter, type StripeRig, startStripeRig, sync } from "./helpers/stripe.js";
import { admin } from "./helpers/tally.js";

const NOW = "2026-11-20T12:30:00Z";

describe.each(BACKENDS)("credits in Stripe on %s", (backend) => {
  let rig: StripeRig;
  const clock = new ManualClock(NOW);
  const api = () => request(rig.t.tally.app);
  const grant = async (customer: string, body: object) => {
    const res = await api().post(`/v1/customers/${customer}/credit-grants`).set(admin).send(body);
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body as { id: string };
  };
  const finalize = async () => {
    const res = await api().post("/v1/jobs/finalize-invoices/run").set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  };
  const customer = async (id: string, stripe: string) => {
    expect((await api().put(`/v1/customers/${id}`).set(admin).send({ stripe_customer_id: stripe })).status).toBe(201);
    const sub = await api()
      .put(`/v1/customers/${id}/subscription`)
      .set(admin)
      .send({ plan: "calls", start: "2026-11-01T00:00:00Z" });
    expect(sub.status).toBe(200);
  };

  beforeAll(async () => {
    rig = await startStripeRig(backend, clock);
    await putMeter(rig.t, "calls", { aggregation: "sum" });
    expect((await api().put("/v1/plans/calls").set(admin).send({ name: "Calls", currency: "USD" })).status).toBe(201);
    const price = await api()
      .post("/v1/plans/calls/prices")
      .set(admin)
      .send({ meter: "calls", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.01" });
    expect(price.status).toBe(201);
  });
  afterAll(() => rig.close());

  it("when a period closes, then each grant's credits reach Stripe once as a negative invoice item", async () => {
    clock.set(NOW);
    await customer("paid", "cus_paid");
    const a = await grant("paid", { amount: "5.00", priority: 10, effective_at: "2026-11-01T00:00:00Z" });
    const b = await grant("paid", { amount: "3.00", effective_at: "2026-11-01T00:00:00Z" });
    await ingest(rig.t, [{ id: "p1", customer: "paid", meter: "calls", value: 1000, timestamp: NOW }]);
    // While the period runs (and in its first hour after the end), nothing is sent: its credits may still change.
    expect((await sync(rig.t)).credits).toMatchObject({ settled_periods: 0, sent: 0 });
    clock.set("2026-12-01T00:30:00Z");
    expect((await sync(rig.t)).credits).toMatchObject({ settled_periods: 0, sent: 0 });
    clock.set("2026-12-01T01:30:00Z");
    // The period is over, but its invoice is still a draft: its credits wait for it to be final.
    expect((await sync(rig.t)).credits).toMatchObject({ settled_periods: 0, sent: 0 });
    await finalize();
    expect((await sync(rig.t)).credits).toMatchObject({ settled_periods: 1, sent: 2, failed: 0, pending: 0 });
    const items = rig.fake.invoiceItems.filter((i) => i.customer === "cus_paid");
    expect(items.map((i) => [i.metadata.tally_grant, i.amount, i.currency])).toEqual([
      [a.id, -500, "usd"],
      [b.id, -300, "usd"],
    ]);
    expect(items[0]?.period).toEqual({
      start: Date.parse("2026-11-01T00:00:00Z") / 1000,
      end: Date.parse("2026-12-01T00:00:00Z") / 1000,
    });
    expect(new Set(items.map((i) => i.idempotencyKey)).size).toBe(2);
    // Again, and again after a late event: sent once.
    await ingest(rig.t, [{ id: "p2", customer: "paid", meter: "calls", value: 10, timestamp: "2026-11-30T23:00:00Z" }]);
    expect((await sync(rig.t)).credits).toMatchObject({ settled_periods: 0, sent: 0 });
    expect(rig.fake.invoiceItems.filter((i) => i.customer === "cus_paid")).toHaveLength(2);

    const recon = await api().get("/v1/stripe/reconciliation").query({ period: "2026-11" }).set(admin);
    expect(recon.status).toBe(200);
    expect(recon.body.credits.filter((c: { customer: string }) => c.customer === "paid")).toEqual([
      expect.objectContaining({ grant: a.id, amount: "5.00", currency: "USD", status: "sent", error: null }),
      expect.objectContaining({ grant: b.id, amount: "3.00", currency: "USD", status: "sent", error: null }),
    ]);
    expect(recon.body.credits[0].stripe_invoice_item).toBe(items[0]?.id);
  });

  it("when Stripe created the item but the answer was lost, then the retry reuses the key and no second item exists", async () => {
    clock.set("2026-12-10T12:00:00Z");
    await api().put("/v1/customers/lost").set(admin).send({ stripe_customer_id: "cus_lost" });
    await api()
      .put("/v1/customers/lost/subscription")
      .set(admin)
      .send({ plan: "calls", start: "2026-12-01T00:00:00Z" });
    await grant("lost", { amount: "2.00", effective_at: "2026-12-01T00:00:00Z" });
    await ingest(rig.t, [
      { id: "l1", customer: "lost", meter: "calls", value: 150, timestamp: "2026-12-10T11:00:00Z" },
    ]);
    clock.set("2027-01-01T02:00:00Z");
    await finalize();
    rig.fake.injectInvoiceItems("accept-then-500", 1, "cus_lost");
    expect((await sync(rig.t)).credits).toMatchObject({ settled_periods: 2, sent: 0, retry_later: 1, pending: 1 }); // and "paid" had no credits in December;
    const replay = await sync(rig.t); // same Idempotency-Key: Stripe answers with the item it kept
    expect(replay.credits).toMatchObject({ sent: 1, pending: 0 });
    expect((await sync(rig.t)).credits).toMatchObject({ sent: 0, pending: 0 });
    const items = rig.fake.invoiceItems.filter((i) => i.customer === "cus_lost");
    expect(items.map((i) => i.amount)).toEqual([-150]);
    const recon = await api().get("/v1/stripe/reconciliation").query({ period: "2026-12" }).set(admin);
    expect(recon.body.credits).toEqual([
      expect.objectContaining({ customer: "lost", status: "sent", stripe_invoice_item: items[0]?.id }),
    ]);
  });

  it("when a customer loses its Stripe id while its credit item waits, then the item is reported unmapped, then sent once the id is back", async () => {
    clock.set("2026-12-10T12:00:00Z");
    await customer("moved", "cus_moved");
    await grant("moved", { amount: "1.00", effective_at: "2026-12-01T00:00:00Z" });
    await ingest(rig.t, [
      { id: "m1", customer: "moved", meter: "calls", value: 100, timestamp: "2026-12-10T11:00:00Z" },
    ]);
    clock.set("2027-01-01T02:00:00Z");
    await finalize();
    rig.fake.injectInvoiceItems("500", 1, "cus_moved");
    expect((await sync(rig.t)).credits).toMatchObject({ sent: 0, retry_later: 1, unmapped: 0, pending: 1 });
    const unmap = await api().put("/v1/customers/moved").set(admin).send({ stripe_customer_id: null });
    expect(unmap.status).toBeLessThan(300);
    expect((await sync(rig.t)).credits).toMatchObject({ sent: 0, retry_later: 0, unmapped: 1, pending: 1 });
    const remap = await api().put("/v1/customers/moved").set(admin).send({ stripe_customer_id: "cus_moved" });
    expect(remap.status).toBeLessThan(300);
    expect((await sync(rig.t)).credits).toMatchObject({ sent: 1, unmapped: 0, pending: 0 });
    expect(rig.fake.invoiceItems.filter((i) => i.customer === "cus_moved").map((i) => i.amount)).toEqual([-100]);
  });
});
