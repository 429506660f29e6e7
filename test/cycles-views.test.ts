// Forecasts, the dashboard and simulations follow each customer's billing cycle, on both engines: a customer anchored
// on the 17th at 09:00 UTC (the worked example of issue #24) is forecast, shown and simulated over
// [17th 09:00, next 17th 09:00), and invoice = summary = simulation of today's price = forecast to date = dashboard,
// to the cent; a Berlin calendar-month customer's March is [2026-02-28T23:00Z, 2026-03-31T22:00Z); the overview's
// forecasts equal each customer's own even when their periods end at different instants; a yearly customer has no
// period starting in most months and is reported, not simulated.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { eventually } from "./helpers/eventually.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:00:00Z";
const HOUR = 3_600_000;
const ANCHORED = { start: "2026-11-17T09:00:00Z", end: "2026-12-17T09:00:00Z" };
const ANCHORED_BEFORE = { start: "2026-10-17T09:00:00Z", end: "2026-11-17T09:00:00Z" };
/** The worked example's price: the first 1,000 calls free, then 0.01; a base fee of 30. */
const PRICE = {
  meter: "cv_calls",
  model: "graduated",
  tiers: [
    { up_to: "1000", unit_price: "0" },
    { up_to: null, unit_price: "0.01" },
  ],
  base_fee: "30",
};

interface Row {
  id: string;
  spend: string;
  previous_spend: string;
  forecast: string;
  forecast_method: string;
  period: { start: string; end: string; time_zone: string };
  previous_period: { start: string; end: string };
}

describe.each(BACKENDS)("billing cycles in forecasts, dashboard and simulations on %s", (backend) => {
  let t: TestTally;
  const clock = new ManualClock(NOW);
  const api = () => request(t.tally.app);
  const ok = async (res: request.Response, status = 200) => {
    expect(res.status, JSON.stringify(res.body)).toBe(status);
    return res.body;
  };
  const get = async (path: string, query: Record<string, string> = {}) =>
    ok(await api().get(path).query(query).set(admin));
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const subscribe = async (id: string, start: string, billing?: object) => {
    await ok(await put(`/v1/customers/${id}`, {}), 201);
    await ok(await put(`/v1/customers/${id}/subscription`, { plan: "cv_plan", start, billing }));
  };
  const rowOf = (overview: { customers: Row[] }, id: string) => overview.customers.find((c) => c.id === id) as Row;

  beforeAll(async () => {
    t = await startTestTally(backend, { clock });
    await defineMeters(t.tally, { cv_calls: "sum" });
    await ok(await put("/v1/plans/cv_plan", { name: "Cycles", currency: "USD" }), 201);
    await ok(
      await api()
        .post("/v1/plans/cv_plan/prices")
        .set(admin)
        .send({ ...PRICE, effective_from: "2026-01-01T00:00:00Z" }),
      201,
    );
    await subscribe("cv_anchored", ANCHORED_BEFORE.start, {
      interval: "month",
      anchor: ANCHORED.start,
      time_zone: "UTC",
    });
    await subscribe("cv_berlin", "2026-01-01T00:00:00Z", { interval: "month", time_zone: "Europe/Berlin" });
    await subscribe("cv_monthly", "2026-01-01T00:00:00Z");
    await subscribe("cv_yearly", "2026-06-01T00:00:00Z", { interval: "year", anchor: "2026-06-01T00:00:00Z" });
    // Three weeks of steady hourly history: forecast by hour of week, to a period end of its own (the 5th).
    await subscribe("cv_weekly", "2026-10-05T00:00:00Z", { interval: "month", anchor: "2026-10-05T00:00:00Z" });
    const events: object[] = [
      { id: "a-1", customer: "cv_anchored", meter: "cv_calls", value: 1500, timestamp: "2026-11-17T08:00:00Z" },
      { id: "a-2", customer: "cv_anchored", meter: "cv_calls", value: 2500, timestamp: "2026-11-17T10:00:00Z" },
      { id: "m-1", customer: "cv_monthly", meter: "cv_calls", value: 1200, timestamp: "2026-11-02T10:00:00Z" },
      { id: "b-1", customer: "cv_berlin", meter: "cv_calls", value: 1100, timestamp: "2026-11-03T10:00:00Z" },
      { id: "y-1", customer: "cv_yearly", meter: "cv_calls", value: 1300, timestamp: "2026-11-04T10:00:00Z" },
    ];
    for (let h = Date.parse("2026-10-29T00:00:00Z"); h < Date.parse(NOW); h += HOUR) {
      events.push({
        id: `w-${h}`,
        customer: "cv_weekly",
        meter: "cv_calls",
        value: 10,
        timestamp: new Date(h).toISOString(),
      });
    }
    await ok(await postJson(t.tally, events), 202);
    // The summary reflects every acknowledged event within seconds: wait for it rather than for a fixed time.
    await eventually(async () => expect((await get("/v1/customers/cv_anchored/summary")).total).toBe("45.00"), {
      timeout: 10_000,
    });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("when an anchored customer is forecast, then the period runs 17th 09:00 to 17th 09:00 and to date equals the summary and the invoice", async () => {
    const summary = await get("/v1/customers/cv_anchored/summary");
    expect(summary.period).toEqual(ANCHORED);
    const forecast = await get("/v1/customers/cv_anchored/forecast");
    expect(forecast.period).toEqual(ANCHORED);
    // Only the 2,500 calls after 09:00 fall in this period: 30 + 1,500 × 0.01.
    expect(forecast.total_to_date).toBe("45.00");
    expect(forecast.total_to_date).toBe(summary.total);
    expect((await get("/v1/customers/cv_anchored/invoice", { period: "2026-11" })).total).toBe("45.00");
    // The 1,500 calls at 08:00 are the previous period's: 30 + 500 × 0.01.
    expect((await get("/v1/customers/cv_anchored/invoice", { period: "2026-10" })).total).toBe("35.00");
  });

  it("when the dashboard is read, then the anchored customer's row and view show its own period and the summary's spend", async () => {
    const overview = await get("/v1/dashboard/customers");
    const row = rowOf(overview, "cv_anchored");
    expect(row.period).toEqual({ ...ANCHORED, time_zone: "UTC" });
    expect(row.previous_period).toEqual(ANCHORED_BEFORE);
    expect(row.spend).toBe("45.00");
    expect(row.previous_spend).toBe("35.00");
    const forecast = await get("/v1/customers/cv_anchored/forecast");
    expect(row.forecast).toBe(forecast.forecast_total);
    // The default cycle's customers keep UTC calendar months, and the overview's own period is theirs.
    expect(overview.period).toEqual({ start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" });
    expect(rowOf(overview, "cv_monthly").period).toEqual({ ...overview.period, time_zone: "UTC" });
    // An overview of one customer is over that customer's period.
    const alone = await get("/v1/dashboard/customers", { customer: "cv_anchored" });
    expect(alone.period).toEqual(ANCHORED);
    expect(alone.previous_period).toEqual(ANCHORED_BEFORE);
    expect(rowOf(alone, "cv_anchored")).toEqual(row);
    const view = await get("/v1/dashboard/customers/cv_anchored");
    expect(view.period).toEqual({ ...ANCHORED, time_zone: "UTC" });
  });

  it("when periods end at different instants, then every customer's overview forecast is its own forecast", async () => {
    const overview = await get("/v1/dashboard/customers");
    const ends = new Set(overview.customers.map((c: Row) => c.period.end));
    expect(ends.size).toBeGreaterThanOrEqual(4);
    for (const c of overview.customers as Row[]) {
      const f = await get(`/v1/customers/${c.id}/forecast`);
      expect(f.period, c.id).toEqual({ start: c.period.start, end: c.period.end });
      expect(c.forecast, c.id).toBe(f.forecast_total);
      expect(c.forecast_method, c.id).toBe(f.method);
      expect(c.spend, c.id).toBe((await get(`/v1/customers/${c.id}/summary`)).total);
    }
    const weekly = rowOf(overview, "cv_weekly");
    expect(weekly.period).toEqual({ start: "2026-11-05T00:00:00Z", end: "2026-12-05T00:00:00Z", time_zone: "UTC" });
    expect(weekly.forecast_method).toBe("hour_of_week");
    // 10 calls an hour from the 5th to the 5th: 720 hours, 7,200 calls → 30 + 6,200 × 0.01.
    expect(weekly.forecast).toBe("92.00");
  });

  it("when today's price is simulated for 2026-11, then each customer is priced over its own period starting that month", async () => {
    const sim = await ok(
      await api()
        .post("/v1/simulations")
        .set(admin)
        .send({ plan: "cv_plan", period: "2026-11", prices: [PRICE] }),
    );
    const of = (id: string) => sim.customers.find((c: { customer: string }) => c.customer === id);
    expect(of("cv_anchored")).toMatchObject({ period: ANCHORED, current: "45.00", simulated: "45.00" });
    expect(of("cv_anchored").current).toBe(
      (await get("/v1/customers/cv_anchored/invoice", { period: "2026-11" })).total,
    );
    expect(of("cv_monthly")).toMatchObject({
      period: { start: "2026-11-01T00:00:00Z", end: "2026-12-01T00:00:00Z" },
      current: "32.00",
      simulated: "32.00",
    });
    // November in Berlin: from local midnight of the 1st (CET, UTC+1).
    expect(of("cv_berlin")).toMatchObject({
      period: { start: "2026-10-31T23:00:00Z", end: "2026-11-30T23:00:00Z" },
      current: "31.00",
    });
    for (const c of sim.customers) {
      const invoice = await get(`/v1/customers/${c.customer}/invoice`, { period: "2026-11" });
      expect(c.current, c.customer).toBe(invoice.total);
      expect(c.period, c.customer).toEqual(invoice.period);
    }
    // A yearly cycle from June has no period starting in November: skipped, and said so.
    expect(of("cv_yearly")).toBeUndefined();
    expect(sim.no_period).toEqual(["cv_yearly"]);
    const asked = await ok(
      await api()
        .post("/v1/simulations")
        .set(admin)
        .send({
          plan: "cv_plan",
          period: "2026-11",
          prices: [PRICE],
          customers: ["cv_anchored", "cv_yearly", "nobody"],
        }),
    );
    expect(asked.customers.map((c: { customer: string }) => c.customer)).toEqual(["cv_anchored"]);
    expect(asked.no_period).toEqual(["cv_yearly"]);
    expect(asked.not_on_plan).toEqual(["nobody"]);
  });

  it("when a Berlin calendar-month customer is shown in March 2026, then its period is Berlin's March", async () => {
    clock.set("2026-03-15T12:00:00Z");
    try {
      const march = { start: "2026-02-28T23:00:00Z", end: "2026-03-31T22:00:00Z" };
      const overview = await get("/v1/dashboard/customers");
      expect(rowOf(overview, "cv_berlin").period).toEqual({ ...march, time_zone: "Europe/Berlin" });
      expect(rowOf(overview, "cv_berlin").previous_period).toEqual({
        start: "2026-01-31T23:00:00Z",
        end: "2026-02-28T23:00:00Z",
      });
      expect((await get("/v1/dashboard/customers/cv_berlin")).period).toEqual({ ...march, time_zone: "Europe/Berlin" });
      expect((await get("/v1/customers/cv_berlin/forecast")).period).toEqual(march);
      expect((await get("/v1/dashboard/customers", { customer: "cv_berlin" })).period).toEqual(march);
    } finally {
      clock.set(NOW);
    }
  });
});
