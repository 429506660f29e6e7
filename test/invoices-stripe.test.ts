// Final invoices and Stripe, on both engines, through the real SDK against the Stripe-like server on one clock:
// once October is final, its late usage is no longer sent as meter events; the adjustments carried from it reach
// Stripe as invoice items, once each (an answer lost after Stripe created the item is resent with the same
// Idempotency-Key and replayed), and the reconciliation of October shows them.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import {
  ingest,
  putCustomer,
  putMeter,
  type ReconRow,
  reconciliation,
  type StripeRig,
  startStripeRig,
  sync,
} from "./helpers/stripe.js";
import { admin } from "./helpers/tally.js";

const OCTOBER = { from: new Date("2026-10-01T00:00:00Z"), to: new Date("2026-11-01T00:00:00Z") };
const NOVEMBER = { from: new Date("2026-11-01T00:00:00Z"), to: new Date("2026-12-01T00:00:00Z") };

type Row = ReconRow & {
  invoice_items?: {
    invoice: { id: string; number: string; quantity: string };
    carried_quantity: string;
    carried_amount: string;
    items: { sent: number; pending: number; failed: number };
  };
};

describe.each(BACKENDS)("final invoices and Stripe on %s", (backend) => {
  let rig: StripeRig;
  let clock: ManualClock;
  const api = () => request(rig.t.tally.app);
  const finalize = async () => {
    const res = await api().post("/v1/jobs/finalize-invoices/run").set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.summary;
  };
  const row = async (customer: string, meter: string) =>
    ((await reconciliation(rig.t, "2026-10")) as Row[]).find((r) => r.customer === customer && r.meter === meter);

  beforeAll(async () => {
    clock = new ManualClock("2026-10-20T12:00:00Z");
    rig = await startStripeRig(backend, clock);
    await putMeter(rig.t, "calls", { aggregation: "sum", stripe_event_name: "api_calls" });
    await putMeter(rig.t, "seats", { aggregation: "last", stripe_event_name: "seats" });
    expect((await api().put("/v1/plans/std").set(admin).send({ name: "Std", currency: "USD" })).status).toBe(201);
    for (const [meter, unit_price] of [
      ["calls", "0.01"],
      ["seats", "5"],
    ]) {
      const res = await api()
        .post("/v1/plans/std/prices")
        .set(admin)
        .send({ meter, effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price });
      expect(res.status).toBe(201);
    }
    for (const [c, stripeId] of [
      ["s1", "cus_s1"],
      ["s2", "cus_s2"],
      ["nomap", null],
    ] as const) {
      await putCustomer(rig.t, c, stripeId);
      const sub = await api()
        .put(`/v1/customers/${c}/subscription`)
        .set(admin)
        .send({ plan: "std", start: "2026-10-01T00:00:00Z" });
      expect(sub.status).toBe(200);
    }
    await ingest(rig.t, [
      { id: "o1", customer: "s1", meter: "calls", value: 100, timestamp: "2026-10-05T10:00:00Z" },
      { id: "o2", customer: "s2", meter: "seats", value: 10, timestamp: "2026-10-06T10:00:00Z" },
      { id: "o3", customer: "nomap", meter: "calls", value: 100, timestamp: "2026-10-05T10:00:00Z" },
    ]);
    expect(await sync(rig.t)).toMatchObject({ sent: 2, failed: 0 });
  });
  afterAll(() => rig?.close());

  it("when October is final, then its late usage is no longer sent as meter events, while November's is", async () => {
    clock.set("2026-11-01T01:00:00Z");
    expect(await finalize()).toMatchObject({ finalized: 3, failed: 0 });
    expect((await row("s1", "calls"))?.status).toBe("in_sync");
    clock.set("2026-11-01T02:00:00Z");
    await ingest(rig.t, [
      { id: "late1", customer: "s1", meter: "calls", value: 300, timestamp: "2026-10-20T08:00:00Z" },
      { id: "late2", customer: "s2", meter: "seats", value: 4, timestamp: "2026-10-30T00:00:00Z" },
      { id: "late3", customer: "nomap", meter: "calls", value: 50, timestamp: "2026-10-20T08:00:00Z" },
      { id: "nov1", customer: "s1", meter: "calls", value: 7, timestamp: "2026-11-01T00:30:00Z" },
    ]);
    const summary = await sync(rig.t);
    expect(summary).toMatchObject({ sent: 1, failed: 0 });
    expect(summary.invoice_items).toMatchObject({ sent: 0, failed: 0 });
    expect(rig.fake.sum("cus_s1", "api_calls", OCTOBER)).toBe(100n);
    expect(rig.fake.last("cus_s2", "seats", OCTOBER)).toBe(10n);
    expect(rig.fake.sum("cus_s1", "api_calls", NOVEMBER)).toBe(7n);
    // Not yet carried: the reconciliation says Stripe is 300 calls short.
    expect(await row("s1", "calls")).toMatchObject({
      quantity: "400",
      sent: "100",
      difference: "300",
      status: "pending",
    });
  });

  it("when the adjustments are carried, then each reaches Stripe once as an invoice item, even when an answer is lost", async () => {
    expect(await finalize()).toMatchObject({ adjustments: 3 });
    // The first answer is lost twice: Stripe created the item, the SDK's one retry of a closed connection (same
    // Idempotency-Key) is replayed but lost too; the run leaves the adjustment for the next one.
    rig.fake.injectInvoiceItems("drop", 2);
    const first = (await sync(rig.t)).invoice_items;
    expect(first).toMatchObject({ sent: 0, retry_later: 1, unmapped: 1 });
    expect(rig.fake.invoiceItems).toHaveLength(1);
    const second = (await sync(rig.t)).invoice_items;
    expect(second).toMatchObject({ sent: 2, retry_later: 0, failed: 0, unmapped: 1 });
    expect((await sync(rig.t)).invoice_items).toMatchObject({ sent: 0, unmapped: 1 });
    const october = await api().get("/v1/invoices").query({ customer: "s1", period: "2026-10" }).set(admin);
    const octoberId = october.body.data[0].id as string;
    expect(rig.fake.invoiceItems.map((i) => [i.customer, i.amount, i.currency])).toEqual([
      ["cus_s1", 300, "usd"],
      ["cus_s2", -3000, "usd"],
    ]);
    const [item] = rig.fake.invoiceItems;
    expect(item?.metadata.tally_adjusts).toBe(octoberId);
    expect(item?.description).toBe(`Correction of invoice ${october.body.data[0].number} (2026-10): calls +300`);
    expect(item?.period).toEqual({ start: OCTOBER.from.getTime() / 1000, end: OCTOBER.to.getTime() / 1000 });
    expect(item?.idempotencyKey).toMatch(/^tally:.+:adjustment:\d+$/);
    // Two lost answers, the next run's replay of the first item, the second item.
    expect(rig.fake.requests.filter((r) => r.path === "/v1/invoiceitems").map((r) => r.status)).toEqual([
      0, 0, 200, 200,
    ]);
  });

  it("when October is reconciled, then meter events and invoice items together match Tally's quantity", async () => {
    expect(await row("s1", "calls")).toMatchObject({
      quantity: "400",
      sent: "100",
      difference: "0",
      status: "in_sync",
      invoice_items: { carried_quantity: "300", carried_amount: "3.00", items: { sent: 1, pending: 0, failed: 0 } },
    });
    expect(await row("s2", "seats")).toMatchObject({
      quantity: "4",
      sent: "10",
      difference: "0",
      status: "in_sync",
      invoice_items: { invoice: { quantity: "10" }, carried_quantity: "-6", carried_amount: "-30.00" },
    });
    expect(await row("nomap", "calls")).toMatchObject({ status: "unmapped" });
  });
});
