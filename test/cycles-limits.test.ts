// Limits follow the customer's billing cycle, on both engines, each test on a Tally of its own: a customer anchored
// on 2026-11-17T09:00Z is blocked until 2026-12-17T09:00Z (resets_at, Retry-After, the fast path too) and allowed
// again at that instant; its alerts are once per threshold and anchored period and carry that period (list and
// webhook); a Berlin calendar-month customer resets at local midnight; a change of cycle re-evaluates at once.
import { describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import { until } from "./helpers/eventually.js";
import { type AdminCalls, ownTally } from "./helpers/own.js";
import { admin } from "./helpers/tally.js";

const ANCHOR = "2026-11-17T09:00:00Z";
const seconds = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / 1000;

/** The worked example's plan: the first 1,000 calls free, then 0.01, base fee 30. */
async function workedPlan(w: AdminCalls) {
  await w.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
  await w.setup("/v1/meters/files", { name: "Files", unit: "file", aggregation: "sum" });
  await w.setup("/v1/plans/graduated", { name: "Graduated", currency: "USD" });
  await w.ok(
    w.post("/v1/plans/graduated/prices", {
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "graduated",
      tiers: [
        { up_to: "1000", unit_price: "0" },
        { up_to: null, unit_price: "0.01" },
      ],
      base_fee: "30",
    }),
    201,
  );
}

describe.each(BACKENDS)("limits per billing cycle on %s", (backend) => {
  it("when the anchored customer of the worked example reaches 2,000 calls, then it is blocked until 2026-12-17T09:00Z, and allowed again from that instant", async () => {
    const w = await ownTally(backend, "2026-11-17T08:30:00Z", { env: { TALLY_WEBHOOK_ALLOW_PRIVATE: "true" } });
    await workedPlan(w);
    await w.ok(w.post("/v1/webhook-endpoints", { url: "http://127.0.0.1:9/hooks" }), 201);
    await w.setup("/v1/customers/anchored", {});
    await w.setup("/v1/customers/anchored/subscription", {
      plan: "graduated",
      start: "2026-10-01T00:00:00Z",
      billing: { interval: "month", anchor: ANCHOR },
    });
    await w.setup("/v1/customers/anchored/limits/calls", { soft: "1000", hard: "2000", unit: "quantity" });
    const entitlement = () => w.api().get("/v1/entitlements/anchored/calls").set(admin);

    // Before the anchor: the period [2026-10-17T09:00Z, 2026-11-17T09:00Z); 1,500 calls pass its soft threshold.
    await w.ingest([{ customer: "anchored", meter: "calls", value: 1500, timestamp: "2026-11-17T08:00:00Z" }]);
    await w.t.tally.ctx.limits.evaluateCustomer("anchored");
    const before = await entitlement();
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ quantity: "1500", state: "soft", resets_at: ANCHOR });

    // After it: 2,500 calls in [2026-11-17T09:00Z, 2026-12-17T09:00Z) — not the 4,000 of the UTC month.
    w.clock.set("2026-11-20T12:00:00Z");
    await w.ingest([{ customer: "anchored", meter: "calls", value: 2500, timestamp: "2026-11-17T10:00:00Z" }]);
    await w.t.tally.ctx.limits.evaluateCustomer("anchored");
    const blocked = await entitlement();
    expect(blocked.status).toBe(429);
    expect(blocked.body).toMatchObject({
      code: "limit_reached",
      allowed: false,
      quantity: "2500",
      hard: "2000",
      state: "blocked",
      resets_at: "2026-12-17T09:00:00Z",
    });
    expect(blocked.headers["retry-after"]).toBe(String(seconds("2026-11-20T12:00:00Z", "2026-12-17T09:00:00Z")));
    expect(blocked.headers["ratelimit-policy"]).toBe(`"calls";q=2000;w=${seconds(ANCHOR, "2026-12-17T09:00:00Z")}`);

    // The fast path answers the same from memory.
    const base = await w.t.tally.listen(0, "127.0.0.1");
    const fast = await until(
      () => fetch(`${base}/v1/entitlements/anchored/calls`, { headers: admin }),
      (r) => r.status === 429,
    );
    expect(await fast.value.json()).toEqual(blocked.body);
    expect(fast.value.headers.get("retry-after")).toBe(blocked.headers["retry-after"]);

    // Alerts: soft once in each period, hard once; each carries its anchored period (newest first).
    const alerts = (await w.get("/v1/alerts", { customer: "anchored" })).data;
    const brief = (a: Record<string, string>) => [a.level, a.period, a.period_start, a.period_end];
    expect(alerts.map(brief)).toEqual([
      ["hard", "2026-11", ANCHOR, "2026-12-17T09:00:00Z"],
      ["soft", "2026-11", ANCHOR, "2026-12-17T09:00:00Z"],
      ["soft", "2026-10", "2026-10-17T09:00:00Z", ANCHOR],
    ]);
    // ?period= selects the customer's period: the month it starts in, or an instant in it.
    const selected = async (period: string) =>
      (await w.get("/v1/alerts", { customer: "anchored", period })).data.map(brief);
    expect(await selected("2026-10")).toEqual([alerts.map(brief)[2]]);
    expect(await selected("2026-11-17T08:59:59Z")).toEqual([alerts.map(brief)[2]]);
    expect(await selected("2026-11")).toEqual(alerts.map(brief).slice(0, 2));
    expect(await selected("2026-12")).toEqual([]);
    // The webhooks say the same period.
    const { rows } = await w.t.tally.ctx.db.query<{ body: string }>(
      "SELECT body FROM webhook_deliveries ORDER BY id",
      [],
    );
    expect(
      rows.map((r) => {
        const d = JSON.parse(r.body).data;
        return [d.level, d.period_start, d.period_end, d.period.end];
      }),
    ).toEqual([
      ["soft", "2026-10-17T09:00:00.000Z", "2026-11-17T09:00:00.000Z", "2026-11-17T09:00:00.000Z"],
      ["soft", "2026-11-17T09:00:00.000Z", "2026-12-17T09:00:00.000Z", "2026-12-17T09:00:00.000Z"],
      ["hard", "2026-11-17T09:00:00.000Z", "2026-12-17T09:00:00.000Z", "2026-12-17T09:00:00.000Z"],
    ]);

    // A second before the period ends it still holds, for one more second; at its end it resets.
    w.clock.set("2026-12-17T08:59:59Z");
    const last = await entitlement();
    expect([last.status, last.headers["retry-after"]]).toEqual([429, "1"]);
    w.clock.set("2026-12-17T09:00:00Z");
    const reset = await entitlement();
    expect(reset.status).toBe(200);
    expect(reset.body).toMatchObject({ allowed: true, quantity: "0", resets_at: "2027-01-17T09:00:00Z" });
    // …and the pair is evaluated in its new period (scheduled by the ask), with no alert again.
    await until(
      async () => w.t.tally.ctx.limits.state("anchored", "calls"),
      (s) => s?.periodStart.toISOString() === "2026-12-17T09:00:00.000Z",
    );
    const evaluated = await entitlement();
    expect(evaluated.body).toMatchObject({
      allowed: true,
      state: "ok",
      hard: "2000",
      resets_at: "2027-01-17T09:00:00Z",
    });
    expect((await w.get("/v1/alerts", { customer: "anchored" })).data).toHaveLength(3);
  });

  it("when a Berlin calendar-month customer is blocked in March 2026, then it resets at 2026-03-31T22:00Z (local midnight), for limited and unlimited meters alike", async () => {
    const w = await ownTally(backend, "2026-03-15T12:00:00Z");
    await workedPlan(w);
    await w.setup("/v1/customers/berlin", {});
    await w.setup("/v1/customers/berlin/subscription", {
      plan: "graduated",
      start: "2026-01-01T00:00:00Z",
      billing: { interval: "month", time_zone: "Europe/Berlin" },
    });
    await w.setup("/v1/customers/berlin/limits/calls", { hard: "10", unit: "quantity" });
    // 23:30 UTC on Feb 28 is already March 1 in Berlin: it counts; 22:30 UTC is still February there.
    await w.ingest([
      { customer: "berlin", meter: "calls", value: 6, timestamp: "2026-02-28T22:30:00Z" },
      { customer: "berlin", meter: "calls", value: 10, timestamp: "2026-02-28T23:30:00Z" },
      { customer: "berlin", meter: "files", value: 3, timestamp: "2026-03-02T10:00:00Z" },
    ]);
    await w.t.tally.ctx.limits.evaluateCustomer("berlin");
    const blocked = await w.api().get("/v1/entitlements/berlin/calls").set(admin);
    expect(blocked.status).toBe(429);
    expect(blocked.body).toMatchObject({ quantity: "10", resets_at: "2026-03-31T22:00:00Z" });
    expect(blocked.headers["retry-after"]).toBe(String(seconds("2026-03-15T12:00:00Z", "2026-03-31T22:00:00Z")));
    // 743 hours: the window of the period with the hour lost to daylight saving time.
    expect(blocked.headers["ratelimit-policy"]).toBe(`"calls";q=10;w=${743 * 3600}`);
    const unlimited = await w.get("/v1/entitlements/berlin/files");
    expect(unlimited).toMatchObject({ allowed: true, quantity: "3", resets_at: "2026-03-31T22:00:00Z" });

    const alert = { level: "hard", period: "2026-03", period_start: "2026-02-28T23:00:00Z" };
    const march = { ...alert, period_end: "2026-03-31T22:00:00Z" };
    expect((await w.get("/v1/alerts", { customer: "berlin" })).data).toMatchObject([march]);
    expect((await w.get("/v1/alerts", { customer: "berlin", period: "2026-03" })).data).toMatchObject([march]);
    expect((await w.get("/v1/alerts", { customer: "berlin", period: "2026-02" })).data).toEqual([]);
    // Without a customer, a month keeps its UTC meaning: the alerts whose period starts in that UTC month.
    expect((await w.get("/v1/alerts", { period: "2026-02" })).data).toMatchObject([march]);
    expect((await w.get("/v1/alerts", { period: "2026-03" })).data).toEqual([]);
    expect((await w.get("/v1/alerts", { period: "2026-03-31T21:59:59Z" })).data).toMatchObject([march]);

    w.clock.set("2026-03-31T22:00:00Z");
    const april = await w.api().get("/v1/entitlements/berlin/calls").set(admin);
    expect(april.status).toBe(200);
    expect(april.body).toMatchObject({ quantity: "0", resets_at: "2026-04-30T22:00:00Z" });
  });

  it("when an anchored customer's credits run low, then the credit alert belongs to the anchored period it happened in", async () => {
    const w = await ownTally(backend, "2026-11-20T12:00:00Z");
    await w.setup("/v1/meters/calls", { name: "Calls", unit: "call", aggregation: "sum" });
    await w.setup("/v1/plans/plain", { name: "Plain", currency: "USD" });
    const price = { meter: "calls", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.01" };
    await w.ok(w.post("/v1/plans/plain/prices", price), 201);
    await w.setup("/v1/customers/prepaid", {});
    await w.setup("/v1/customers/prepaid/subscription", {
      plan: "plain",
      start: "2026-10-01T00:00:00Z",
      billing: { interval: "month", anchor: ANCHOR },
    });
    await w.setup("/v1/customers/prepaid", { credit_alert_below: "5" });
    await w.ok(w.post("/v1/customers/prepaid/credit-grants", { amount: "10.00" }), 201);
    await w.ingest([{ customer: "prepaid", meter: "calls", value: 600, timestamp: "2026-11-20T12:00:00Z" }]);
    await w.t.tally.ctx.limits.evaluateCustomer("prepaid");
    const low = { level: "credits_low", meter: null, period: "2026-11", period_start: ANCHOR };
    const anchored = { ...low, period_end: "2026-12-17T09:00:00Z" };
    expect((await w.get("/v1/alerts", { customer: "prepaid" })).data).toMatchObject([anchored]);
    expect((await w.get("/v1/alerts", { customer: "prepaid", period: "2026-11" })).data).toMatchObject([anchored]);
    expect((await w.get("/v1/alerts", { customer: "prepaid", period: "2026-10" })).data).toEqual([]);
    expect((await w.get("/v1/alerts", { period: "2026-11" })).data).toMatchObject([anchored]);
    expect((await w.get("/v1/alerts", { period: "2026-11-17T08:00:00Z" })).data).toEqual([]);
    expect((await w.get("/v1/alerts", { period: "2026-12-17T08:00:00Z" })).data).toMatchObject([anchored]);
  });

  it("when an anchored customer's forecast is projected, then it runs to its period end (2026-12-17T09:00Z), not the month's", async () => {
    const w = await ownTally(backend, "2026-11-20T12:00:00Z", { env: { TALLY_WEBHOOK_ALLOW_PRIVATE: "true" } });
    await workedPlan(w);
    await w.ok(w.post("/v1/webhook-endpoints", { url: "http://127.0.0.1:9/hooks" }), 201);
    await w.setup("/v1/customers/fc", {});
    await w.setup("/v1/customers/fc/subscription", {
      plan: "graduated",
      start: "2026-10-01T00:00:00Z",
      billing: { interval: "month", anchor: ANCHOR },
    });
    // 10 calls an hour for a week: about 760 in the period so far and 6,450 more to its end (≈ 7,200), where the
    // calendar month would be 1,690 so far and 2,520 more (≈ 4,200). Only the anchored projection reaches 5,000.
    await w.setup("/v1/customers/fc/limits/calls", { soft: "5000", hard: "100000", unit: "quantity", forecast: true });
    const events = [];
    for (let h = Date.parse("2026-11-13T12:00:00Z"); h <= Date.parse("2026-11-20T12:00:00Z"); h += 3_600_000) {
      events.push({ customer: "fc", meter: "calls", value: 10, timestamp: new Date(h).toISOString() });
    }
    await w.ingest(events);
    for (let i = 0; i < 2; i++) await w.runJob("evaluate-limits");
    expect((await w.get("/v1/alerts", { customer: "fc" })).data).toMatchObject([
      { level: "forecast", threshold: "5000", period_start: ANCHOR, period_end: "2026-12-17T09:00:00Z" },
    ]);
    const { rows } = await w.t.tally.ctx.db.query<{ body: string }>(
      "SELECT body FROM webhook_deliveries WHERE body LIKE '%limit.forecast%'",
      [],
    );
    expect(rows.map((r) => JSON.parse(r.body).data)).toMatchObject([
      { period_start: "2026-11-17T09:00:00.000Z", period_end: "2026-12-17T09:00:00.000Z" },
    ]);
  });

  it("when a blocked customer's cycle changes, then the change re-evaluates it with the new period at once", async () => {
    const w = await ownTally(backend, "2026-11-20T12:00:00Z");
    await workedPlan(w);
    await w.setup("/v1/customers/switch", {});
    await w.setup("/v1/customers/switch/subscription", { plan: "graduated", start: "2026-11-01T00:00:00Z" });
    await w.setup("/v1/customers/switch/limits/calls", { hard: "100", unit: "quantity" });
    await w.ingest([{ customer: "switch", meter: "calls", value: 150, timestamp: "2026-11-20T10:00:00Z" }]);
    await w.t.tally.ctx.limits.evaluateCustomer("switch");
    const utc = await w.api().get("/v1/entitlements/switch/calls").set(admin);
    expect([utc.status, utc.body.resets_at]).toEqual([429, "2026-12-01T00:00:00Z"]);

    // A new cycle from 11:00: the calendar month ends early there, and the 150 calls stay in it.
    await w.setup("/v1/customers/switch/subscription", {
      plan: "graduated",
      start: "2026-11-20T11:00:00Z",
      billing: { interval: "month", anchor: "2026-11-20T11:00:00Z" },
    });
    await w.t.tally.ctx.limits.idle();
    const anchored = await w.api().get("/v1/entitlements/switch/calls").set(admin);
    expect(anchored.status).toBe(200);
    expect(anchored.body).toMatchObject({ quantity: "0", state: "ok", resets_at: "2026-12-20T11:00:00Z" });
  });
});
