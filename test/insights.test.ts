// Price simulations and forecasts over HTTP, on both engines, on real events: a simulation with today's prices
// equals the invoices; replacement prices equal a hand-computed reference; steady usage is forecast within 1%; a
// forecast crossing a limit alerts once.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:30:00Z";
const HOUR = 3_600_000;

/** A deterministic pseudo-random quantity per customer (so the reference below can be computed by hand). */
const quantityOf = (i: number) => ((i * 7919) % 997) + 1;

/** The reference for the replacement price: graduated, up to 100 at 0.01, the rest at 0.005; rounded half-up. */
function graduatedReference(q: number): number {
  const cents = Math.min(q, 100) * 1 + Math.max(q - 100, 0) * 0.5;
  return Math.round(cents + 1e-9) / 100;
}

describe.each(BACKENDS)("simulations and forecasts on %s", (backend) => {
  let t: TestTally;
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const post = (path: string, body: object) => api().post(path).set(admin).send(body);
  const ok = async (res: request.Response, status = 200) => {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    return res.body;
  };
  const ingest = async (events: object[]) => {
    for (let i = 0; i < events.length; i += 5_000) await ok(await postJson(t.tally, events.slice(i, i + 5_000)), 202);
  };
  const invoiceTotal = async (customer: string, period = "2026-11") =>
    (await ok(await api().get(`/v1/customers/${customer}/invoice`).query({ period }).set(admin))).total as string;

  beforeAll(async () => {
    // Its webhook endpoint is a closed port on 127.0.0.1: private addresses allowed.
    t = await startTestTally(backend, { clock: new ManualClock(NOW), env: { TALLY_WEBHOOK_ALLOW_PRIVATE: "true" } });
    await defineMeters(t.tally, { calls: "sum", seats: "last" });
    await ok(await put("/v1/plans/sim", { name: "Simulated", currency: "USD" }), 201);
    await ok(
      await post("/v1/plans/sim/prices", {
        meter: "calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "per_unit",
        unit_price: "0.01",
      }),
      201,
    );
    await ok(
      await post("/v1/plans/sim/prices", {
        meter: "seats",
        effective_from: "2026-01-01T00:00:00Z",
        model: "per_unit",
        unit_price: "5",
        base_fee: "20",
      }),
      201,
    );
    // Six customers on the plan with usage this month; one also on another plan since mid-month.
    const events: object[] = [];
    for (let i = 0; i < 6; i++) {
      const id = `sim-${i}`;
      await ok(await put(`/v1/customers/${id}`, {}), 201);
      await ok(await put(`/v1/customers/${id}/subscription`, { plan: "sim", start: "2026-11-01T00:00:00Z" }));
      events.push({
        id: `${id}-a`,
        customer: id,
        meter: "calls",
        value: quantityOf(i),
        timestamp: "2026-11-03T10:00:00Z",
      });
      events.push({
        id: `${id}-s`,
        customer: id,
        meter: "seats",
        value: (i % 3) + 1,
        timestamp: "2026-11-04T10:00:00Z",
      });
    }
    await ok(await put("/v1/plans/other", { name: "Other", currency: "USD" }), 201);
    await ok(
      await post("/v1/plans/other/prices", {
        meter: "calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "per_unit",
        unit_price: "1",
      }),
      201,
    );
    await ok(await put("/v1/customers/sim-5/subscription", { plan: "other", start: "2026-11-15T00:00:00Z" }));
    events.push({ id: "sim-5-late", customer: "sim-5", meter: "calls", value: 3, timestamp: "2026-11-16T10:00:00Z" });
    await ingest(events);
  });
  afterAll(() => t.close());

  it("when the replacement price is today's, then every simulated total equals the current one and the invoice", async () => {
    const body = await ok(
      await post("/v1/simulations", {
        plan: "sim",
        period: "2026-11",
        prices: [{ meter: "calls", model: "per_unit", unit_price: "0.01" }],
      }),
    );
    expect(body.customers.map((c: { customer: string }) => c.customer)).toEqual(
      [0, 1, 2, 3, 4, 5].map((i) => `sim-${i}`),
    );
    for (const c of body.customers) {
      expect(c.simulated).toBe(c.current);
      expect(c.difference).toBe("0.00");
      expect(c.current).toBe(await invoiceTotal(c.customer));
    }
    expect(body.totals.difference).toBe("0.00");
  });

  it("when a graduated price replaces per-unit, then each customer's simulated total equals the hand-computed one", async () => {
    const body = await ok(
      await post("/v1/simulations", {
        plan: "sim",
        period: "2026-11",
        prices: [
          {
            meter: "calls",
            model: "graduated",
            tiers: [
              { up_to: "100", unit_price: "0.01" },
              { up_to: null, unit_price: "0.005" },
            ],
          },
        ],
      }),
    );
    let total = 0;
    for (let i = 0; i < 5; i++) {
      const c = body.customers.find((x: { customer: string }) => x.customer === `sim-${i}`);
      const seats = ((i % 3) + 1) * 5 + 20;
      const expected = graduatedReference(quantityOf(i)) + seats;
      expect(Number(c.simulated), `sim-${i}`).toBeCloseTo(expected, 9);
      expect(Number(c.difference)).toBeCloseTo(expected - Number(c.current), 9);
      total += expected;
    }
    // sim-5 moved to another plan mid-month: its other-plan segment keeps its price, only its "sim" part changes;
    // the "sim" base fee is prorated to the 336 of 720 hours before the move (20 × 336/720 = 9.33).
    const moved = body.customers.find((x: { customer: string }) => x.customer === "sim-5");
    expect(Number(moved.simulated)).toBeCloseTo(graduatedReference(quantityOf(5)) + 3 * 1 + 3 * 5 + 9.33, 9);
    expect(moved.current).toBe(await invoiceTotal("sim-5"));
    total += Number(moved.simulated);
    expect(Number(body.totals.simulated)).toBeCloseTo(total, 6);
  });

  it("when customers are named, then only they are priced and those not on the plan are listed", async () => {
    const body = await ok(
      await post("/v1/simulations", {
        plan: "sim",
        period: "2026-11",
        prices: [{ meter: "seats", model: "per_unit", unit_price: "0" }],
        customers: ["sim-1", "nobody"],
      }),
    );
    expect(body.customers.map((c: { customer: string }) => c.customer)).toEqual(["sim-1"]);
    expect(body.customers[0].simulated).toBe((quantityOf(1) * 0.01).toFixed(2)); // seats free, no base fee
    expect(body.not_on_plan).toEqual(["nobody"]);
  });

  it("when a replacement price is invalid, then 422 names each field by its path; unknown plan 404", async () => {
    const bad = await post("/v1/simulations", {
      plan: "sim",
      period: "2026-11",
      prices: [
        { meter: "calls", model: "per_unit", unit_price: "0.01" },
        { meter: "calls", model: "graduated", tiers: [{ up_to: "10", unit_price: "1" }] },
      ],
    });
    expect(bad.status).toBe(422);
    const fields = bad.body.errors.map((e: { field: string }) => e.field);
    expect(fields).toContain("prices[1].meter");
    expect(fields.some((f: string) => f.startsWith("prices[1].tiers"))).toBe(true);
    const unknown = await post("/v1/simulations", {
      plan: "sim",
      period: "2026-11",
      prices: [{ meter: "nope", model: "per_unit", unit_price: "1" }],
    });
    expect(unknown.status).toBe(422);
    expect(unknown.body.errors[0].field).toBe("prices[0].meter");
    const noPlan = await post("/v1/simulations", {
      plan: "ghost",
      period: "2026-11",
      prices: [{ meter: "calls", model: "per_unit", unit_price: "1" }],
    });
    expect(noPlan.status).toBe(404);
    const shape = await post("/v1/simulations", { plan: "sim", period: "11/2026", prices: [] });
    expect(shape.status).toBe(400);
  });

  it("when usage is steady for three weeks, then the forecast is within 1% of the true total and priced through the tiers reached later", async () => {
    await ok(await put("/v1/plans/tiered", { name: "Tiered", currency: "USD" }), 201);
    await ok(
      await post("/v1/plans/tiered/prices", {
        meter: "calls",
        effective_from: "2026-01-01T00:00:00Z",
        model: "graduated",
        tiers: [
          { up_to: "5000", unit_price: "0.001" },
          { up_to: null, unit_price: "0.002" },
        ],
      }),
      201,
    );
    await ok(await put("/v1/customers/steady", {}), 201);
    await ok(await put("/v1/customers/steady/subscription", { plan: "tiered", start: "2026-10-01T00:00:00Z" }));
    const start = Date.parse("2026-10-30T12:00:00Z");
    const events = [];
    for (let h = start; h <= Date.parse(NOW); h += HOUR) {
      events.push({
        id: `steady-${h}`,
        customer: "steady",
        meter: "calls",
        value: 10,
        timestamp: new Date(h).toISOString(),
      });
    }
    await ingest(events);
    const f = await ok(await api().get("/v1/customers/steady/forecast").set(admin));
    expect(f.method).toBe("hour_of_week");
    const calls = f.meters.find((m: { meter: string }) => m.meter === "calls");
    expect(calls.quantity_to_date).toBe("4690");
    const truth = 10 * 24 * 30;
    expect(Math.abs(Number(calls.forecast_quantity) - truth) / truth).toBeLessThan(0.01);
    expect(calls.forecast_quantity).toBe("7205");
    expect(calls.amount_to_date).toBe("4.69");
    expect(calls.forecast_amount).toBe("9.41"); // 5,000 × 0.001 + 2,205 × 0.002: the second tier is reached later
    expect(f.total_to_date).toBe("4.69");
    expect(f.forecast_total).toBe("9.41");
    expect(f.period).toEqual({ start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" });
  });

  it("when a forecast crosses a limit with forecast: true, then one forecast alert and one limit.forecast webhook, however often the job runs", async () => {
    await ok(await put("/v1/customers/fc", {}), 201);
    await ok(await put("/v1/customers/fc/subscription", { plan: "sim", start: "2026-11-01T00:00:00Z" }));
    await ok(await post("/v1/webhook-endpoints", { url: "http://127.0.0.1:9/hooks" }), 201);
    const limit = await ok(
      await put("/v1/customers/fc/limits/calls", { soft: "4000", hard: "100000", unit: "quantity", forecast: true }),
    );
    expect(limit.forecast).toBe(true);
    const events = [];
    for (let h = Date.parse("2026-11-13T12:00:00Z"); h <= Date.parse(NOW); h += HOUR) {
      events.push({ id: `fc-${h}`, customer: "fc", meter: "calls", value: 10, timestamp: new Date(h).toISOString() });
    }
    await ingest(events);
    for (let i = 0; i < 3; i++) await ok(await post("/v1/jobs/evaluate-limits/run", {}));
    const alerts = await ok(await api().get("/v1/alerts").query({ customer: "fc" }).set(admin));
    expect(alerts.data).toEqual([
      expect.objectContaining({
        customer: "fc",
        meter: "calls",
        level: "forecast",
        threshold: "4000",
        unit: "quantity",
      }),
    ]);
    const { rows } = await t.tally.ctx.db.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM webhook_deliveries WHERE body LIKE '%limit.forecast%' AND body LIKE '%\"fc\"%'",
      [],
    );
    expect(rows[0]?.n).toBe("1");
  });
  it("when the overview and each customer's forecast are read at the same instant, then they are the same forecast", async () => {
    // One customer with three weeks of weekday-heavy history (hour of week), one with two days of it (run rate).
    const events = [];
    for (let h = Date.parse("2026-10-28T00:00:00Z"); h < Date.parse(NOW); h += HOUR) {
      const weekend = [0, 6].includes(new Date(h).getUTCDay());
      const id = `ov-weekly-${h}`;
      events.push({
        id,
        customer: "ov-weekly",
        meter: "calls",
        value: weekend ? 1 : 9,
        timestamp: new Date(h).toISOString(),
      });
    }
    for (let h = Date.parse("2026-11-18T12:00:00Z"); h < Date.parse(NOW); h += 3 * HOUR) {
      events.push({
        id: `ov-new-${h}`,
        customer: "ov-new",
        meter: "calls",
        value: 7,
        timestamp: new Date(h).toISOString(),
      });
    }
    for (const c of ["ov-weekly", "ov-new"]) {
      await ok(await put(`/v1/customers/${c}`, {}), 201);
      await ok(await put(`/v1/customers/${c}/subscription`, { plan: "sim", start: "2026-10-01T00:00:00Z" }));
    }
    await ingest(events);
    const overview = await ok(await api().get("/v1/dashboard/customers").set(admin));
    expect(overview.method).toBe("customer_forecast");
    const methods = new Set<string>();
    for (const c of overview.customers) {
      const f = await ok(await api().get(`/v1/customers/${c.id}/forecast`).set(admin));
      expect({ id: c.id, forecast: c.forecast, method: c.forecast_method }).toEqual({
        id: c.id,
        forecast: f.forecast_total,
        method: f.method,
      });
      methods.add(c.forecast_method);
    }
    expect([...methods]).toEqual(expect.arrayContaining(["hour_of_week", "run_rate_7d"]));
    for (const c of ["ov-weekly", "ov-new"]) {
      const alone = await ok(await api().get("/v1/dashboard/customers").query({ customer: c }).set(admin));
      const f = await ok(await api().get(`/v1/customers/${c}/forecast`).set(admin));
      expect(alone.customers[0].forecast).toBe(f.forecast_total);
    }
  });
});
