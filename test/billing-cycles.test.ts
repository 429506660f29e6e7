// Billing cycles as a new user meets them (issue #24's worked example), on both engines: a customer anchored on the
// 17th at 09:00 sees the invoice, the limit reset, the credits, the forecast and the dashboard of its own period, each
// equal to the cent to the others; a Berlin customer's March has 743 hours; off-hour cycles are refused.
import { describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import { ownTally } from "./helpers/own.js";
import { admin } from "./helpers/tally.js";

const PERIOD = { start: "2026-11-17T09:00:00Z", end: "2026-12-17T09:00:00Z" };
const BEFORE = { start: "2026-10-17T09:00:00Z", end: "2026-11-17T09:00:00Z" };

/** The worked example's plan, meter and anchored customer, its two batches of events and a hard limit of 2,000. */
async function workedExample(backend: (typeof BACKENDS)[number]) {
  const tally = await ownTally(backend, "2026-11-20T12:00:00Z");
  await tally.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
  await tally.setup("/v1/plans/graduated", { name: "Graduated", currency: "USD" });
  await tally.ok(
    tally.post("/v1/plans/graduated/prices", {
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "graduated",
      base_fee: "30",
      tiers: [
        { up_to: "1000", unit_price: "0" },
        { up_to: null, unit_price: "0.01" },
      ],
    }),
    201,
  );
  await tally.setup("/v1/customers/anchored", { name: "Anchored Inc" });
  const subscription = await tally.setup("/v1/customers/anchored/subscription", {
    plan: "graduated",
    start: "2026-10-01T00:00:00Z",
    billing: { interval: "month", anchor: PERIOD.start },
  });
  await tally.ingest([
    { customer: "anchored", meter: "calls", value: 1500, timestamp: "2026-11-17T08:00:00Z" },
    { customer: "anchored", meter: "calls", value: 2500, timestamp: "2026-11-17T10:00:00Z" },
  ]);
  await tally.setup("/v1/customers/anchored/limits/calls", { hard: "2000", unit: "quantity" });
  return { ...tally, subscription };
}

describe.each(BACKENDS)("billing cycles on %s", (backend) => {
  it("when a customer is anchored on the 17th at 09:00, then its invoices are 35.00 and 45.00 and every answer shows its own period", async () => {
    const t = await workedExample(backend);
    expect(t.subscription).toMatchObject({
      billing: { interval: "month", interval_count: 1, anchor: PERIOD.start, time_zone: "UTC" },
      current_period: PERIOD,
    });
    const before = await t.get("/v1/customers/anchored/invoice", { period: "2026-10" });
    expect(before).toMatchObject({ period: BEFORE, total: "35.00" });
    const invoice = await t.get("/v1/customers/anchored/invoice");
    expect(invoice).toMatchObject({ period: PERIOD, total: "45.00" });
    expect((await t.get("/v1/customers/anchored/invoice", { period: "2026-11-17T08:59:59Z" })).total).toBe("35.00");

    const summary = await t.get("/v1/customers/anchored/summary");
    expect(summary).toMatchObject({ period: PERIOD, meters: [{ meter: "calls", quantity: "2500", amount: "45.00" }] });
    const forecast = await t.get("/v1/customers/anchored/forecast");
    expect(forecast.period).toMatchObject(PERIOD);
    expect(forecast.total_to_date).toBe("45.00");
    const view = await t.get("/v1/dashboard/customers/anchored");
    expect(view.period).toMatchObject(PERIOD);

    await t.runJob("evaluate-limits");
    const blocked = await t.api().get("/v1/entitlements/anchored/calls").set(admin);
    expect(blocked.status).toBe(429);
    expect(blocked.body).toMatchObject({ allowed: false, resets_at: "2026-12-17T09:00:00Z" });
    expect(Number(blocked.headers["retry-after"])).toBe(
      (Date.parse(PERIOD.end) - Date.parse("2026-11-20T12:00:00Z")) / 1000,
    );
  });

  it("when credits are granted in the anchored period, then invoice, summary and dashboard agree on what is left to pay", async () => {
    const t = await workedExample(backend);
    await t.ok(t.post("/v1/customers/anchored/credit-grants", { amount: "10.00", effective_at: PERIOD.start }), 201);
    const invoice = await t.get("/v1/customers/anchored/invoice");
    const summary = await t.get("/v1/customers/anchored/summary");
    const overview = await t.get("/v1/dashboard/customers");
    const row = overview.customers.find((c: { id: string }) => c.id === "anchored");
    expect(invoice).toMatchObject({ period: PERIOD, subtotal: "45.00", credits: "10.00", total: "35.00" });
    expect(summary).toMatchObject({ period: PERIOD, subtotal: "45.00", credits: "10.00", total: "35.00" });
    expect(row).toMatchObject({ period: { start: PERIOD.start, end: PERIOD.end }, spend: "35.00" });
  });

  it("when a customer bills on Berlin calendar months, then March 2026 is 743 hours from 2026-02-28T23:00Z", async () => {
    const t = await ownTally(backend, "2026-03-15T12:00:00Z");
    await t.setup("/v1/plans/berlin", { name: "Berlin", currency: "EUR" });
    await t.setup("/v1/customers/berlin", {});
    const sub = await t.setup("/v1/customers/berlin/subscription", {
      plan: "berlin",
      start: "2026-01-01T00:00:00+01:00",
      billing: { time_zone: "Europe/Berlin" },
    });
    expect(sub.billing).toMatchObject({ anchor: "2025-12-31T23:00:00Z", time_zone: "Europe/Berlin" });
    expect(sub.current_period).toEqual({ start: "2026-02-28T23:00:00Z", end: "2026-03-31T22:00:00Z" });
    const { period } = await t.get("/v1/customers/berlin/summary", { period: "2026-03" });
    expect((Date.parse(period.end) - Date.parse(period.start)) / 3_600_000).toBe(743);
  });

  it.each([
    ["a zone whose offset is not whole hours", { time_zone: "Asia/Kolkata" }, "period_not_hour_aligned"],
    ["an anchor at 09:30", { anchor: "2026-11-17T09:30:00Z" }, "period_not_hour_aligned"],
    ["an unknown zone", { time_zone: "Mars/Olympus_Mons" }, "unknown_time_zone"],
  ])("when a cycle has %s, then it is refused with 422 and nothing changes", async (_name, billing, code) => {
    const t = await ownTally(backend, "2026-11-20T12:00:00Z");
    await t.setup("/v1/plans/p", { name: "P", currency: "USD" });
    await t.setup("/v1/customers/c", {});
    const res = await t.api().put("/v1/customers/c/subscription").set(admin).send({ plan: "p", billing });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe(code);
    expect((await t.get("/v1/customers/c/summary")).period).toEqual({
      start: "2026-11-01T00:00:00Z",
      end: "2026-12-01T00:00:00Z",
    });
  });

  it("when a start, an anchor or a period instant lies past 9998, then 400 names the field (no period can be computed there)", async () => {
    const t = await ownTally(backend, "2026-11-20T12:00:00Z");
    await t.setup("/v1/plans/p", { name: "P", currency: "USD" });
    await t.setup("/v1/customers/c", {});
    const far = "9999-12-31T23:59:59.999Z";
    for (const body of [
      { plan: "p", start: far },
      { plan: "p", billing: { anchor: far } },
    ]) {
      const res = await t.api().put("/v1/customers/c/subscription").set(admin).send(body);
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.errors[0].field).toMatch(/^(start|billing\.anchor)$/);
    }
    const read = await t.api().get("/v1/customers/c/summary").query({ period: far }).set(admin);
    expect(read.status).toBe(400);
  });
});
