// Stripe follows the customer's billing cycle, on both engines: a max meter's running value restarts at the
// customer's own period start (anchored on the 17th at 09:00; Berlin calendar months), an amount meter sends per
// period what the invoice of that period charges, and the reconciliation compares each customer's own period.
import fc from "fast-check";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BillingCalendar } from "../src/billing/calendar.js";
import { ManualClock } from "../src/clock.js";
import { calendarMonths } from "../src/periods/cycle.js";
import { CustomerPeriods, periodLabel } from "../src/stripe/periods.js";
import { BACKENDS } from "./helpers/databases.js";
import { ingest, putCustomer, putMeter, type StripeRig, startStripeRig, sync } from "./helpers/stripe.js";
import { admin } from "./helpers/tally.js";

const range = (from: string, to: string) => ({ from: new Date(from), to: new Date(to) });
/** The anchored customers' periods: [Oct 17 09:00, Nov 17 09:00) and [Nov 17 09:00, Dec 17 09:00). */
const ANCHORED_OCT = range("2026-10-17T09:00:00Z", "2026-11-17T09:00:00Z");
const ANCHORED_NOV = range("2026-11-17T09:00:00Z", "2026-12-17T09:00:00Z");
/** Berlin calendar months in UTC. */
const BERLIN_OCT = range("2026-09-30T22:00:00Z", "2026-10-31T23:00:00Z");
const BERLIN_NOV = range("2026-10-31T23:00:00Z", "2026-11-30T23:00:00Z");
const BERLIN_DEC = range("2026-11-30T23:00:00Z", "2026-12-31T23:00:00Z");

describe.each(BACKENDS)("Stripe on the customer's billing cycle on %s", (backend) => {
  let rig: StripeRig;
  let clock: ManualClock;
  const t = () => rig.t;
  const api = () => request(t().tally.app);
  const event = (id: string, customer: string, meter: string, value: number, timestamp: string) => ({
    id,
    customer,
    meter,
    value,
    timestamp,
  });
  const recon = async (query: Record<string, string>) => {
    const res = await api().get("/v1/stripe/reconciliation").query(query).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body as {
      period: { start: string; end: string };
      data: { customer: string; meter: string; period: { start: string; end: string }; [k: string]: unknown }[];
    };
  };
  /** The invoice's usage lines of one meter (one per tier), added up in cents. */
  const usageCents = async (customer: string, period: string, meter: string) => {
    const res = await api().get(`/v1/customers/${customer}/invoice`).query({ period }).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const lines = (res.body.lines as { meter: string | null; kind: string; amount: string }[]).filter(
      (l) => l.meter === meter && l.kind === "usage",
    );
    return {
      period: res.body.period,
      cents: lines.reduce((a, l) => a + BigInt(Math.round(Number(l.amount) * 100)), 0n),
    };
  };

  /** A customer of its own, mapped to Stripe, on the anchored cycle (17th at 09:00) or Berlin calendar months. */
  const customer = async (id: string, cycle: "anchored" | "berlin") => {
    await putCustomer(t(), id, `cus_${id}`);
    const res = await api()
      .put(`/v1/customers/${id}/subscription`)
      .set(admin)
      .send(
        cycle === "anchored"
          ? {
              plan: "api",
              start: "2026-10-17T09:00:00Z",
              billing: { interval: "month", anchor: "2026-11-17T09:00:00Z" },
            }
          : { plan: "api", start: "2026-09-30T22:00:00Z", billing: { time_zone: "Europe/Berlin" } },
      );
    expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    return `cus_${id}`;
  };
  /** Usage before the anchor (calls in the hour before it) and after it, at 11:30 on Nov 17, synced. */
  const anchoredUsage = async (id: string) => {
    clock.set(new Date("2026-11-17T11:30:00Z"));
    await ingest(t(), [
      event(`${id}-1`, id, "seats", 8, "2026-11-17T07:10:00Z"),
      event(`${id}-2`, id, "calls", 1500, "2026-11-17T08:00:00Z"),
      event(`${id}-3`, id, "seats", 3, "2026-11-17T10:10:00Z"),
      event(`${id}-4`, id, "calls", 2500, "2026-11-17T10:00:00Z"),
    ]);
    expect(await sync(t())).toMatchObject({ failed: 0, pending: 0 });
  };

  beforeAll(async () => {
    clock = new ManualClock("2026-11-17T08:30:00Z");
    rig = await startStripeRig(backend, clock);
    const put = async (path: string, body: object) => {
      const res = await api().put(path).set(admin).send(body);
      expect(res.status, JSON.stringify(res.body)).toBeLessThan(300);
    };
    await putMeter(t(), "seats", { aggregation: "max", stripe_event_name: "seats_max" });
    await put("/v1/meters/calls", {
      name: "Calls",
      unit: "call",
      aggregation: "sum",
      stripe_event_name: "calls_cents",
      stripe_value: "amount",
    });
    // The worked example's plan: the first 1,000 calls free, then 0.01; a base fee of 30 (not usage: never sent).
    await put("/v1/plans/api", { name: "API", currency: "USD" });
    const price = await api()
      .post("/v1/plans/api/prices")
      .set(admin)
      .send({
        meter: "calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "graduated",
        tiers: [
          { up_to: "1000", unit_price: "0" },
          { up_to: null, unit_price: "0.01" },
        ],
        base_fee: "30",
      });
    expect(price.status, JSON.stringify(price.body)).toBe(201);
  });
  afterAll(() => rig.close());

  it("when a max meter's value is sent before and after the anchor at 09:00, then the running value restarts with the customer's new period, not the UTC month", async () => {
    const cus = await customer("max-17", "anchored");
    clock.set(new Date("2026-11-17T08:30:00Z"));
    await ingest(t(), [
      event("m1", "max-17", "seats", 5, "2026-11-05T10:10:00Z"),
      event("m2", "max-17", "seats", 8, "2026-11-17T07:10:00Z"),
    ]);
    expect(await sync(t())).toMatchObject({ failed: 0, pending: 0 });
    // Before the anchor: the running value of [Oct 17 09:00, Nov 17 09:00), with a timestamp inside it.
    const at = (iso: string) => Date.parse(iso) / 1000;
    expect(rig.fake.eventsOf(cus, "seats_max").map((e) => [e.value, e.timestamp])).toEqual([
      [8n, at("2026-11-17T08:30:00Z")],
    ]);

    clock.set(new Date("2026-11-17T11:30:00Z"));
    await ingest(t(), [event("m3", "max-17", "seats", 3, "2026-11-17T10:10:00Z")]);
    expect(await sync(t())).toMatchObject({ failed: 0, pending: 0 });
    // The UTC month's maximum is still 8 (nothing would be sent); the new period starts over at 3.
    expect(rig.fake.eventsOf(cus, "seats_max").map((e) => [e.value, e.timestamp])).toEqual([
      [8n, at("2026-11-17T08:30:00Z")],
      [3n, at("2026-11-17T11:30:00Z")],
    ]);
    expect(rig.fake.last(cus, "seats_max", ANCHORED_OCT)).toBe(8n);
    expect(rig.fake.last(cus, "seats_max", ANCHORED_NOV)).toBe(3n);
  });

  it("when an amount meter is sent for an anchored customer, then each period's cents are what that period's invoice charges for the meter", async () => {
    const cus = await customer("amount-17", "anchored");
    await anchoredUsage("amount-17");
    // [Oct 17 09:00, Nov 17 09:00): 1,500 calls → 500 × 0.01 = 5.00; [Nov 17 09:00, …): 2,500 → 15.00.
    const october = await usageCents("amount-17", "2026-10", "calls");
    expect(october).toEqual({ period: { start: "2026-10-17T09:00:00Z", end: "2026-11-17T09:00:00Z" }, cents: 500n });
    const november = await usageCents("amount-17", "2026-11", "calls");
    expect(november).toEqual({ period: { start: "2026-11-17T09:00:00Z", end: "2026-12-17T09:00:00Z" }, cents: 1500n });
    expect(rig.fake.sum(cus, "calls_cents", ANCHORED_OCT)).toBe(october.cents);
    expect(rig.fake.sum(cus, "calls_cents", ANCHORED_NOV)).toBe(november.cents);
    // Per UTC month the hour at 10:00 would have been 4,000 − 1,000 free = 30.00 − 5.00: 2,500 cents.
    expect(rig.fake.eventsOf(cus, "calls_cents").map((e) => e.value)).toEqual([500n, 1500n]);
  });

  it("when the anchored customer's reconciliation is read for 2026-11, then it compares [Nov 17 09:00, Dec 17 09:00)", async () => {
    await customer("recon-17", "anchored");
    await anchoredUsage("recon-17");
    const body = await recon({ customer: "recon-17", period: "2026-11" });
    const period = { start: "2026-11-17T09:00:00Z", end: "2026-12-17T09:00:00Z" };
    expect(body.period).toEqual(period);
    expect(body.data).toEqual([
      expect.objectContaining({
        customer: "recon-17",
        meter: "calls",
        period,
        unit: "amount",
        quantity: "15.00",
        sent: "15.00",
        status: "in_sync",
      }),
      expect.objectContaining({ meter: "seats", period, quantity: "3", sent: "3", status: "in_sync" }),
    ]);
    // An instant selects the period that contains it.
    const before = await recon({ customer: "recon-17", period: "2026-11-17T08:59:59Z" });
    expect(before.period).toEqual({ start: "2026-10-17T09:00:00Z", end: "2026-11-17T09:00:00Z" });
    expect(before.data.map((r) => [r.meter, r.quantity, r.sent, r.status])).toEqual([
      ["calls", "5.00", "5.00", "in_sync"],
      ["seats", "8", "8", "in_sync"],
    ]);
    const missing = await api().get("/v1/stripe/reconciliation").query({ customer: "nobody" }).set(admin);
    expect(missing.status).toBe(404);
  });

  it("when a Berlin customer's month turns at 23:00 UTC, then its running value restarts there and every customer is reconciled over its own period", async () => {
    const cus = await customer("berlin", "berlin");
    await customer("all-17", "anchored");
    clock.set(new Date("2026-11-17T08:30:00Z"));
    await ingest(t(), [
      event("b1", "berlin", "seats", 7, "2026-10-31T22:30:00Z"),
      event("b2", "berlin", "seats", 5, "2026-10-31T23:30:00Z"),
      event("b3", "berlin", "seats", 4, "2026-11-10T12:10:00Z"),
    ]);
    expect(await sync(t())).toMatchObject({ failed: 0, pending: 0 });
    // Berlin's October ends at 23:00 UTC on Oct 31: the event at 23:30 UTC is its November's.
    expect(rig.fake.last(cus, "seats_max", BERLIN_OCT)).toBe(7n);
    expect(rig.fake.last(cus, "seats_max", BERLIN_NOV)).toBe(5n);
    await anchoredUsage("all-17");

    clock.set(new Date("2026-12-01T00:30:00Z"));
    // Berlin's December, UTC's November still.
    await ingest(t(), [event("b4", "berlin", "seats", 6, "2026-11-30T23:10:00Z")]);
    expect(await sync(t())).toMatchObject({ failed: 0, pending: 0 });
    expect(rig.fake.last(cus, "seats_max", BERLIN_NOV)).toBe(5n);
    expect(rig.fake.last(cus, "seats_max", BERLIN_DEC)).toBe(6n);

    const berlin = await recon({ customer: "berlin", period: "2026-11" });
    expect(berlin.period).toEqual({ start: "2026-10-31T23:00:00Z", end: "2026-11-30T23:00:00Z" });
    expect(berlin.data).toEqual([
      expect.objectContaining({ meter: "seats", quantity: "5", sent: "5", status: "in_sync" }),
    ]);
    // Across customers, 2026-11 means each customer's period that starts in November (in its time zone).
    const all = await recon({ period: "2026-11" });
    expect(all.period).toEqual({ start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" });
    const mine = all.data.filter((r) => r.customer === "berlin" || r.customer === "all-17");
    expect(mine.map((r) => [r.customer, r.meter, r.period.start, r.period.end, r.quantity, r.status])).toEqual([
      ["all-17", "calls", "2026-11-17T09:00:00Z", "2026-12-17T09:00:00Z", "15.00", "in_sync"],
      ["all-17", "seats", "2026-11-17T09:00:00Z", "2026-12-17T09:00:00Z", "3", "in_sync"],
      ["berlin", "seats", "2026-10-31T23:00:00Z", "2026-11-30T23:00:00Z", "5", "in_sync"],
    ]);
  });
});

describe("customers grouped by their own periods (pure)", () => {
  const anchored = new BillingCalendar([
    {
      start: new Date("2026-01-01T00:00:00Z"),
      cycle: { interval: "month", intervalCount: 1, anchor: new Date("2026-11-17T09:00:00Z"), timeZone: "UTC" },
    },
  ]);
  const berlin = new BillingCalendar([
    { start: new Date("2026-01-01T00:00:00Z"), cycle: calendarMonths("Europe/Berlin") },
  ]);
  const weekly = new BillingCalendar([
    {
      start: new Date("2026-01-01T00:00:00Z"),
      cycle: { interval: "week", intervalCount: 1, anchor: new Date("2026-11-02T06:00:00Z"), timeZone: "UTC" },
    },
  ]);
  const periods = new CustomerPeriods(
    new Map([
      ["utc", new BillingCalendar([])],
      ["utc2", new BillingCalendar([])],
      ["anchored", anchored],
      ["berlin", berlin],
      ["weekly", weekly],
    ]),
  );

  it("when marked hours are grouped, then each (customer, hour) lies in exactly one group, the customer's own period", () => {
    const hour = fc.integer({ min: 0, max: 24 * 80 }).map((h) => Date.UTC(2026, 9, 10) + h * 3_600_000);
    fc.assert(
      fc.property(fc.uniqueArray(hour, { minLength: 1, maxLength: 30 }), (list) => {
        const hours = [...list].sort((a, b) => a - b);
        const cut = new Date((hours.at(-1) as number) + 3_600_000);
        const groups = periods.groups(periods.customers, () => new Date(hours[0] as number), cut, hours);
        for (const c of periods.customers) {
          for (const h of hours) {
            const own = periods.calendar(c).periodContaining(new Date(h));
            const holding = groups.filter(
              (g) => g.customers.has(c) && g.period.start.getTime() <= h && h < g.period.end.getTime(),
            );
            expect(holding.map((g) => [g.period.start, g.period.end])).toEqual([[own.start, own.end]]);
          }
        }
        // UTC-month customers share their groups: a distinct period is read once.
        for (const g of groups) expect(g.customers.has("utc")).toBe(g.customers.has("utc2"));
      }),
    );
  });

  it("when a period names itself on a Stripe item, then a UTC month is YYYY-MM and any other period its bounds", () => {
    expect(periodLabel(new BillingCalendar([]).periodContaining(new Date("2026-10-05T00:00:00Z")))).toBe("2026-10");
    expect(periodLabel(anchored.periodContaining(new Date("2026-11-20T00:00:00Z")))).toBe(
      "2026-11-17T09:00Z to 2026-12-17T09:00Z",
    );
    expect(periodLabel(berlin.periodContaining(new Date("2026-11-20T00:00:00Z")))).toBe(
      "2026-10-31T23:00Z to 2026-11-30T23:00Z",
    );
  });
});
