// Subscription changes through the API, on both engines (issue #25's worked example; November 2026 = 720 h): an
// upgrade prorated by hours (or not), a downgrade scheduled for the period end and canceled again, a cancellation,
// seats changing mid-month and a trial — each as invoice lines to the cent, the summary equal to the invoice.
import { describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import { ownTally } from "./helpers/own.js";
import { admin } from "./helpers/tally.js";

const NOV = { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" };

/** Starter (base fee 30, seats 12) and Pro (base fee 90, seats 12) on a `calls` meter at 0.01 a call. */
async function plans(backend: (typeof BACKENDS)[number], now = "2026-11-20T12:00:00Z") {
  const t = await ownTally(backend, now);
  await t.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
  for (const [plan, fee] of [
    ["starter", "30"],
    ["pro", "90"],
  ]) {
    await t.setup(`/v1/plans/${plan}`, { name: plan, currency: "USD" });
    const price = { meter: "calls", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.01" };
    await t.ok(t.post(`/v1/plans/${plan}/prices`, { ...price, base_fee: fee }), 201);
    const seats = { key: "seats", name: "Seats", unit_price: "12", effective_from: "2026-01-01T00:00:00Z" };
    await t.ok(t.post(`/v1/plans/${plan}/fixed-charges`, seats), 201);
  }
  const customer = async (id: string, subscription: object) => {
    await t.setup(`/v1/customers/${id}`, { name: id });
    return t.setup(`/v1/customers/${id}/subscription`, { plan: "starter", start: NOV.start, ...subscription });
  };
  return { ...t, customer };
}

type Line = { kind: string; plan: string; amount: string; quantity: string; proration?: { hours: number } };
const fees = (invoice: { lines: Line[] }) =>
  invoice.lines
    .filter((l) => l.kind !== "usage")
    .map((l) => `${l.kind} ${l.plan} ${l.quantity} ${l.amount} ${l.proration?.hours ?? "all"}`);

describe.each(BACKENDS)("subscription changes on %s", (backend) => {
  it("when Starter is upgraded to Pro on Nov 11, then Starter 10.00 and Pro 60.00 (proration none: Starter 30.00)", async () => {
    const t = await plans(backend);
    await t.customer("up", {});
    const pro = await t.setup("/v1/customers/up/subscription", { plan: "pro", start: "2026-11-11T00:00:00Z" });
    expect(pro).toMatchObject({ plan: "pro", proration: "prorate", previous: { plan: "starter" }, scheduled: null });
    const invoice = await t.get("/v1/customers/up/invoice");
    expect(fees(invoice)).toEqual(["base_fee starter 1 10.00 240", "base_fee pro 1 60.00 480"]);
    expect(invoice.lines[0].proration).toEqual({
      start: NOV.start,
      end: "2026-11-11T00:00:00Z",
      hours: 240,
      period_hours: 720,
    });
    expect(invoice.total).toBe("70.00");
    // Summary, forecast to date, the dashboard's row and a simulation at today's prices all say the same.
    expect((await t.get("/v1/customers/up/summary")).total).toBe("70.00");
    expect((await t.get("/v1/customers/up/forecast")).total_to_date).toBe("70.00");
    const overview = await t.get("/v1/dashboard/customers");
    expect(overview.customers.find((c: { id: string }) => c.id === "up")).toMatchObject({ spend: "70.00" });
    const same = { meter: "calls", model: "per_unit", unit_price: "0.01", base_fee: "90" };
    const sim = await t.ok(t.post("/v1/simulations", { plan: "pro", period: "2026-11", prices: [same] }));
    expect(sim.body.customers).toMatchObject([{ customer: "up", current: "70.00", simulated: "70.00" }]);

    await t.customer("flat", {});
    await t.setup("/v1/customers/flat/subscription", {
      plan: "pro",
      start: "2026-11-11T00:00:00Z",
      proration: "none",
    });
    expect(fees(await t.get("/v1/customers/flat/invoice"))).toEqual(["base_fee starter 1 30.00 all"]);
    expect(fees(await t.get("/v1/customers/flat/invoice", { period: "2026-12" }))).toEqual([
      "base_fee pro 1 90.00 all",
    ]);
  });

  it("when a downgrade is scheduled for the period end, then November stays on Pro, December is Starter's, and it can be canceled", async () => {
    const t = await plans(backend);
    await t.customer("down", { plan: "pro" });
    const answer = await t.setup("/v1/customers/down/subscription", { plan: "starter", at: "period_end" });
    expect(answer).toMatchObject({ plan: "starter", start: NOV.end, scheduled: { plan: "starter", start: NOV.end } });
    const customer = await t.get("/v1/customers/down");
    expect(customer).toMatchObject({ subscription: { plan: "pro", end: NOV.end }, scheduled: { start: NOV.end } });
    const view = await t.get("/v1/dashboard/customers/down");
    expect(view.timeline).toMatchObject([
      { plan: "pro", start: NOV.start, end: NOV.end, scheduled: false },
      { plan: "starter", start: NOV.end, end: null, scheduled: true },
    ]);
    expect(fees(await t.get("/v1/customers/down/invoice"))).toEqual(["base_fee pro 1 90.00 all"]);
    expect(fees(await t.get("/v1/customers/down/invoice", { period: "2026-12" }))).toEqual([
      "base_fee starter 1 30.00 all",
    ]);
    // The boundary itself carries the change out: at December's first instant the customer is on Starter.
    t.clock.set("2026-12-01T00:00:00Z");
    expect(await t.get("/v1/customers/down")).toMatchObject({ subscription: { plan: "starter" }, scheduled: null });
    t.clock.set("2026-11-20T12:00:00Z");
    // Scheduling again replaces the scheduled change; canceling it then gives the plan in effect back, open-ended.
    const again = await t.setup("/v1/customers/down/subscription", { plan: "starter", at: "period_end" });
    expect(again.scheduled).toEqual({ plan: "starter", start: NOV.end });
    await t.ok(t.api().delete("/v1/customers/down/subscription/scheduled").set(admin), 204);
    await t.ok(t.api().delete("/v1/customers/down/subscription/scheduled").set(admin), 404);
    expect(await t.get("/v1/customers/down")).toMatchObject({
      subscription: { plan: "pro", end: null },
      scheduled: null,
    });
    expect(fees(await t.get("/v1/customers/down/invoice", { period: "2026-12" }))).toEqual([
      "base_fee pro 1 90.00 all",
    ]);
  });

  it("when a change scheduled before a cancellation without proration is canceled, then the cancellation is as it was", async () => {
    const t = await plans(backend);
    await t.customer("kept", {});
    await t.ok(t.post("/v1/customers/kept/subscription/cancel", { at: "2026-12-16T00:00:00Z", proration: "none" }));
    await t.setup("/v1/customers/kept/subscription", { plan: "pro", at: "period_end" });
    await t.ok(t.api().delete("/v1/customers/kept/subscription/scheduled").set(admin), 204);
    expect(await t.get("/v1/customers/kept")).toMatchObject({
      subscription: { plan: "starter", end: "2026-12-16T00:00:00Z" },
    });
    // Ends on Dec 16 without proration: December's fee in full, as before the change was scheduled.
    expect(fees(await t.get("/v1/customers/kept/invoice", { period: "2026-12" }))).toEqual([
      "base_fee starter 1 30.00 all",
    ]);
  });

  it("when seats go from 5 to 8 on Nov 21, then 40.00 and 32.00, credits pay none of it, and an unknown charge is 422", async () => {
    const t = await plans(backend);
    const sub = await t.customer("team", { quantities: { seats: "5" } });
    expect(sub.quantities).toEqual({ seats: "5" });
    const changed = await t.setup("/v1/customers/team/subscription/quantities/seats", {
      quantity: "8",
      effective_at: "2026-11-21T00:00:00Z",
    });
    expect(changed.quantities).toEqual({ seats: "5" });
    await t.ok(t.post("/v1/customers/team/credit-grants", { amount: "100", effective_at: NOV.start }), 201);
    const invoice = await t.get("/v1/customers/team/invoice");
    expect(fees(invoice)).toEqual([
      "base_fee starter 1 30.00 all",
      "fixed starter 5 40.00 480",
      "fixed starter 8 32.00 240",
    ]);
    expect(invoice.lines.find((l: Line) => l.kind === "fixed")).toMatchObject({ charge: "seats", unit_price: "12" });
    expect(invoice).toMatchObject({ subtotal: "102.00", credits: "0.00", total: "102.00" });
    const summary = await t.get("/v1/customers/team/summary");
    expect(summary).toMatchObject({
      total: "102.00",
      fixed_charges: [{ charge: "seats", quantity: "8", amount: "72.00" }],
    });
    const bad = await t
      .api()
      .put("/v1/customers/team/subscription/quantities/licences")
      .set(admin)
      .send({ quantity: "1" });
    expect(bad.status).toBe(422);
    expect(bad.body).toMatchObject({ code: "unknown_charge" });
    const plan = await t.get("/v1/plans/starter");
    expect(plan.fixed_charges).toMatchObject([{ charge: "seats", versions: [{ key: "seats", unit_price: "12" }] }]);
    const again = { key: "seats", name: "Seats", unit_price: "15", effective_from: "2026-01-01T00:00:00Z" };
    await t.ok(t.post("/v1/plans/starter/fixed-charges", again), 409);
  });

  it("when a subscription is canceled on Nov 16, then its fee is 15.00 and usage after the end is not billed", async () => {
    const t = await plans(backend);
    await t.customer("gone", {});
    await t.ingest([
      { customer: "gone", meter: "calls", value: 100, timestamp: "2026-11-10T00:00:00Z" },
      { customer: "gone", meter: "calls", value: 500, timestamp: "2026-11-18T00:00:00Z" },
    ]);
    await t.setup("/v1/plans/starter/limits/calls", { hard: "50", unit: "quantity" });
    await t.runJob("evaluate-limits");
    await t.ok(t.api().get("/v1/entitlements/gone/calls").set(admin), 429);
    const cancel = await t.ok(t.post("/v1/customers/gone/subscription/cancel", { at: "2026-11-16T00:00:00Z" }));
    expect(cancel.body).toMatchObject({ plan: "starter", end: "2026-11-16T00:00:00Z" });
    const invoice = await t.get("/v1/customers/gone/invoice");
    expect(fees(invoice)).toEqual(["base_fee starter 1 15.00 360"]);
    expect(invoice.total).toBe("16.00");
    // Usage still projected for the rest of the period falls after the end: the forecast does not bill it.
    expect(await t.get("/v1/customers/gone/forecast")).toMatchObject({
      total_to_date: "16.00",
      forecast_total: "16.00",
    });
    expect((await t.get("/v1/customers/gone")).subscription).toBeNull();
    // After the end the plan's limit no longer applies: answered as for a customer without a plan.
    await t.runJob("evaluate-limits");
    const entitlement = await t.get("/v1/entitlements/gone/calls");
    expect(entitlement).toMatchObject({ allowed: true });
    expect(entitlement.hard).toBeUndefined();
    await t.ok(t.post("/v1/customers/gone/subscription/cancel", { at: "now" }), 404);

    // Without proration the plan in effect at the period start charges its full fee; usage after the end still not.
    await t.customer("flatgone", {});
    await t.ingest([{ customer: "flatgone", meter: "calls", value: 500, timestamp: "2026-11-18T00:00:00Z" }]);
    const flat = { at: "2026-11-16T00:00:00Z", proration: "none" };
    const flatCancel = await t.ok(t.post("/v1/customers/flatgone/subscription/cancel", flat));
    expect(flatCancel.body).toMatchObject({ end: "2026-11-16T00:00:00Z" });
    const flatInvoice = await t.get("/v1/customers/flatgone/invoice");
    expect(fees(flatInvoice)).toEqual(["base_fee starter 1 30.00 all"]);
    expect(flatInvoice.total).toBe("30.00");
  });

  it("when seats change under a scheduled change, then it follows unless the change set its own, and asking for the change again keeps those and its trial", async () => {
    const t = await plans(backend);
    await t.customer("sched", { quantities: { seats: "5" } });
    await t.setup("/v1/customers/sched/subscription", { plan: "pro", at: "period_end" });
    const seats = (quantity: string, effective_at: string) =>
      t.setup("/v1/customers/sched/subscription/quantities/seats", { quantity, effective_at });
    // The scheduled change inherited 5 seats: 7 from Nov 21 on reaches December too.
    await seats("7", "2026-11-21T00:00:00Z");
    expect(fees(await t.get("/v1/customers/sched/invoice", { period: "2026-12" }))).toEqual([
      "base_fee pro 1 90.00 all",
      "fixed pro 7 84.00 all",
    ]);
    // Scheduled again with 3 seats and a trial: those are its own, and 9 seats from Nov 26 stay in November.
    const own = { plan: "pro", at: "period_end", quantities: { seats: "3" }, trial_end: "2026-12-04T00:00:00Z" };
    expect(await t.setup("/v1/customers/sched/subscription", own)).toMatchObject({ quantities: { seats: "3" } });
    await seats("9", "2026-11-26T00:00:00Z");
    expect(fees(await t.get("/v1/customers/sched/invoice")).slice(1)).toEqual([
      "fixed starter 5 40.00 480",
      "fixed starter 7 14.00 120",
      "fixed starter 9 18.00 120",
    ]);
    // Asked for again at the same instant (Starter now, nothing else said): seats and trial of the change it replaces.
    const again = await t.setup("/v1/customers/sched/subscription", { plan: "starter", at: "period_end" });
    expect(again).toMatchObject({ quantities: { seats: "3" }, trial_end: "2026-12-04T00:00:00Z" });
    // December (744 h), fees from Dec 4: 30 × 672/744 = 27.10 and 3 × 12 × 672/744 = 32.52.
    expect(fees(await t.get("/v1/customers/sched/invoice", { period: "2026-12" }))).toEqual([
      "base_fee starter 1 27.10 672",
      "fixed starter 3 32.52 672",
    ]);
  });

  it("when a trial ends on Nov 4, then the base fee is 27.00, usage before it shows its quantity at 0 with trial, and a forecast prices what falls after a trial", async () => {
    const t = await plans(backend);
    await t.customer("trial", { trial_end: "2026-11-04T00:00:00Z" });
    await t.ingest([
      { customer: "trial", meter: "calls", value: 300, timestamp: "2026-11-02T00:00:00Z" },
      { customer: "trial", meter: "calls", value: 200, timestamp: "2026-11-05T00:00:00Z" },
    ]);
    const invoice = await t.get("/v1/customers/trial/invoice");
    expect(fees(invoice)).toEqual(["base_fee starter 1 27.00 648"]);
    const usage = invoice.lines.filter((l: Line) => l.kind === "usage");
    expect(usage).toMatchObject([
      { quantity: "300", amount: "0.00", trial: true },
      { quantity: "200", amount: "2.00" },
    ]);
    expect(usage[1].trial).toBeUndefined();
    expect(invoice.total).toBe("29.00");
    expect((await t.get("/v1/customers/trial/summary")).total).toBe("29.00");

    // Still in a trial until Nov 25 (it is Nov 20, 12:00): 10 calls an hour for the last week run on for 252 h,
    // 108 h of them in the trial (0) and 144 h after it (1,440 calls, 14.40), beside the fee from Nov 25 (6.00).
    await t.customer("trying", { trial_end: "2026-11-25T00:00:00Z" });
    await t.ingest([{ customer: "trying", meter: "calls", value: 1680, timestamp: "2026-11-13T12:00:00Z" }]);
    const forecast = await t.get("/v1/customers/trying/forecast");
    expect(forecast).toMatchObject({ total_to_date: "6.00", forecast_total: "20.40" });
    expect(forecast.meters).toMatchObject([{ meter: "calls", forecast_quantity: "4200", forecast_amount: "20.40" }]);
    const overview = await t.get("/v1/dashboard/customers");
    expect(overview.customers.find((c: { id: string }) => c.id === "trying")).toMatchObject({ forecast: "20.40" });
  });

  it("when an upgrade and a seat change land in a finalized November, then December's draft carries them once as adjustments", async () => {
    const t = await plans(backend, "2026-12-05T00:00:00Z");
    await t.customer("late", { quantities: { seats: "5" } });
    expect((await t.runJob("finalize-invoices")).finalized).toBe(1);
    const [final] = (await t.get("/v1/invoices", { customer: "late", status: "final" })).data;
    expect(final.total).toBe("90.00");
    await t.setup("/v1/customers/late/subscription", { plan: "pro", start: "2026-11-11T00:00:00Z" });
    await t.setup("/v1/customers/late/subscription/quantities/seats", {
      quantity: "8",
      effective_at: "2026-11-21T00:00:00Z",
    });
    // November now: Starter 10 + Pro 60 and seats 20 + 20 + 32 = 142.00, 52.00 more than was billed.
    expect((await t.get("/v1/customers/late/invoice", { period: "2026-11" })).total).toBe("90.00");
    expect((await t.runJob("finalize-invoices")).adjustments).toBe(2);
    expect((await t.runJob("finalize-invoices")).adjustments).toBe(0);
    const [draft] = (await t.get("/v1/invoices", { customer: "late", status: "draft" })).data;
    const adjustments = draft.lines.filter((l: { kind: string }) => l.kind === "adjustment");
    // Each says what it corrects: the base fees of the meter, and the seats (a line per fixed charge).
    expect(
      adjustments.map((l: { corrects: string; charge?: string; description: string; amount: string }) => [
        l.corrects,
        l.charge ?? null,
        l.description,
        l.amount,
      ]),
    ).toEqual([
      ["base_fee", null, `Calls: base fee, correction of invoice ${final.number} (2026-11)`, "40.00"],
      ["fixed", "seats", `Seats: correction of invoice ${final.number} (2026-11)`, "12.00"],
    ]);
    expect(adjustments.every((l: { adjusts: string }) => l.adjusts === final.id)).toBe(true);
    // December: Pro 90 + 8 seats × 12 = 186.00, plus the 52.00 carried.
    expect(draft.total).toBe("238.00");
  });
});
