// Base fees and fixed charges in Stripe, on both engines: with TALLY_STRIPE_FEES=invoice_items the prorated base-fee
// and fixed-charge lines of a final invoice reach the fake Stripe once each as invoice items, to the cent of the
// invoice, and the reconciliation lists them; by default (usage_only) none is sent, since Stripe's own subscription
// prices carry them. A backdated seat change after finalization is an adjustment: sent (once) only with fees as
// invoice items, while a late event's adjustment is sent in both modes.
import request from "supertest";
import { describe, expect, it, onTestFinished } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { ingest, putMeter, startStripeRig, sync } from "./helpers/stripe.js";
import { admin } from "./helpers/tally.js";

/** Starter (30, seats 12) upgraded to Pro (90, seats 12) on Nov 11; 5 seats, 8 from Nov 21; November final. */
async function upgradedAndFinal(backend: (typeof BACKENDS)[number], env: Record<string, string>) {
  const clock = new ManualClock("2026-12-05T00:00:00Z");
  const rig = await startStripeRig(backend, clock, { env });
  onTestFinished(() => rig.close());
  const call = async (method: "put" | "post", path: string, body: object, status = method === "put" ? 200 : 201) => {
    const res = await request(rig.t.tally.app)[method](path).set(admin).send(body);
    expect(res.status, JSON.stringify(res.body)).toBeLessThanOrEqual(status);
    return res.body;
  };
  await putMeter(rig.t, "calls", { aggregation: "sum" });
  for (const [plan, fee] of [
    ["starter", "30"],
    ["pro", "90"],
  ]) {
    await call("put", `/v1/plans/${plan}`, { name: plan, currency: "USD" }, 201);
    const price = { meter: "calls", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.01" };
    await call("post", `/v1/plans/${plan}/prices`, { ...price, base_fee: fee });
    const seats = { key: "seats", name: "Seats", unit_price: "12", effective_from: "2026-01-01T00:00:00Z" };
    await call("post", `/v1/plans/${plan}/fixed-charges`, seats);
  }
  await call("put", "/v1/customers/acme", { stripe_customer_id: "cus_acme" }, 201);
  const start = { plan: "starter", start: "2026-11-01T00:00:00Z", quantities: { seats: "5" } };
  await call("put", "/v1/customers/acme/subscription", start);
  await call("put", "/v1/customers/acme/subscription", { plan: "pro", start: "2026-11-11T00:00:00Z" });
  const seats = { quantity: "8", effective_at: "2026-11-21T00:00:00Z" };
  await call("put", "/v1/customers/acme/subscription/quantities/seats", seats);
  await call("post", "/v1/jobs/finalize-invoices/run", {}, 200);
  const invoices = await request(rig.t.tally.app).get("/v1/invoices").query({ customer: "acme" }).set(admin);
  const final = invoices.body.data.find((i: { status: string }) => i.status === "final");
  return { rig, final, call };
}

/** After November is final: 10 seats from Nov 26 (+4.00) and 100 late calls on Nov 20 (+1.00), carried to December. */
async function correctedLater(u: Awaited<ReturnType<typeof upgradedAndFinal>>) {
  await u.call("put", "/v1/customers/acme/subscription/quantities/seats", {
    quantity: "10",
    effective_at: "2026-11-26T00:00:00Z",
  });
  await ingest(u.rig.t, [
    { id: "late-1", customer: "acme", meter: "calls", value: 100, timestamp: "2026-11-20T00:00:00Z" },
  ]);
  const run = await request(u.rig.t.tally.app).post("/v1/jobs/finalize-invoices/run").set(admin);
  expect(run.body.summary ?? run.body).toMatchObject({ adjustments: 2 });
  const adjustmentItems = () =>
    u.rig.fake.invoiceItems.filter((i) => i.metadata.tally_adjustment).map((i) => [i.amount, i.description]);
  return { adjustmentItems };
}

describe.each(BACKENDS)("fees in Stripe on %s", (backend) => {
  it("when fees go as invoice items, then each prorated fee line of the final invoice reaches Stripe once, to the cent", async () => {
    const u = await upgradedAndFinal(backend, { TALLY_STRIPE_FEES: "invoice_items" });
    const { rig, final } = u;
    expect(final.total).toBe("142.00");
    const fees = final.lines.filter((l: { kind: string }) => l.kind === "base_fee" || l.kind === "fixed");
    const summary = await sync(rig.t);
    expect(summary.fees).toMatchObject({ settled_invoices: 1, sent: 5, failed: 0, pending: 0 });
    const items = rig.fake.invoiceItems.filter((i) => i.metadata.tally_line);
    expect(items.map((i) => i.amount).sort((a, b) => a - b)).toEqual(
      fees.map((l: { amount: string }) => Math.round(Number(l.amount) * 100)).sort((a: number, b: number) => a - b),
    );
    expect(items.map((i) => i.amount).sort((a, b) => a - b)).toEqual([1000, 2000, 2000, 3200, 6000]);
    expect(new Set(items.map((i) => i.idempotencyKey)).size).toBe(5);
    expect(items.every((i) => i.customer === "cus_acme" && i.currency === "usd")).toBe(true);
    // A second run sends nothing again.
    expect((await sync(rig.t)).fees).toMatchObject({ settled_invoices: 0, sent: 0 });
    expect(rig.fake.invoiceItems.filter((i) => i.metadata.tally_line)).toHaveLength(5);
    const recon = await request(rig.t.tally.app)
      .get("/v1/stripe/reconciliation")
      .query({ period: "2026-11", customer: "acme" })
      .set(admin);
    expect(recon.body.fees).toHaveLength(5);
    expect(recon.body.fees.every((f: { status: string }) => f.status === "sent")).toBe(true);
    expect(recon.body.fees.map((f: { amount: string }) => f.amount).sort()).toEqual([
      "10.00",
      "20.00",
      "20.00",
      "32.00",
      "60.00",
    ]);
    // A seat change backdated into the final November: its correction goes too, once, and is listed with the fees.
    const { adjustmentItems } = await correctedLater(u);
    await sync(rig.t);
    await sync(rig.t);
    expect(adjustmentItems().sort()).toEqual([
      [100, "Correction of invoice 2026-000001 (2026-11): calls +100"],
      [400, "Correction of invoice 2026-000001 (2026-11): seats (fixed charge)"],
    ]);
    const after = await request(rig.t.tally.app)
      .get("/v1/stripe/reconciliation")
      .query({ period: "2026-11", customer: "acme" })
      .set(admin);
    expect(after.body.fees).toHaveLength(6);
    expect(after.body.fees.find((f: { adjustment?: string }) => f.adjustment)).toMatchObject({
      kind: "fixed",
      amount: "4.00",
      status: "sent",
    });
  });

  it("when fees are left to Stripe's subscription (the default), then no fee item is sent", async () => {
    const u = await upgradedAndFinal(backend, {});
    const { rig } = u;
    const summary = await sync(rig.t);
    expect(summary.fees).toBeUndefined();
    expect(rig.fake.invoiceItems.filter((i) => i.metadata.tally_line)).toHaveLength(0);
    // A backdated seat change is Stripe's subscription's to prorate: only the late usage's correction goes.
    const { adjustmentItems } = await correctedLater(u);
    await sync(rig.t);
    expect(adjustmentItems()).toEqual([[100, "Correction of invoice 2026-000001 (2026-11): calls +100"]]);
    const recon = await request(rig.t.tally.app)
      .get("/v1/stripe/reconciliation")
      .query({ period: "2026-11", customer: "acme" })
      .set(admin);
    expect(recon.body.fees).toEqual([]);
    expect(recon.body.data).toMatchObject([{ meter: "calls", invoice_items: { items: { sent: 1, pending: 0 } } }]);
  });
});
