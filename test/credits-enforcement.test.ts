// credit_only customers on both engines: blocked (429 credits_exhausted) by the entitlement route, the fast path and
// the middleware within 5 s of the event that used the last cent, with no job call; unblocked within 5 s by a new
// grant; credits_low and credits.exhausted recorded and delivered (signed) once per crossing.
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { usageLimit, verifyTallySignature } from "../src/middleware/index.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { ADMIN_KEY, admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:30:00Z";

async function receiver() {
  const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200).end();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    received,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe.each(BACKENDS)("credit_only enforcement on %s", (backend) => {
  let t: TestTally;
  let clock: ManualClock;
  let hooks: Awaited<ReturnType<typeof receiver>>;
  let secret: string;
  let base: string;
  let seq = 0;
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const grant = async (customer: string, amount: string) => {
    const res = await api().post(`/v1/customers/${customer}/credit-grants`).set(admin).send({ amount });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return res.body;
  };
  const ingest = async (customer: string, calls: number) => {
    const res = await postJson(t.tally, [{ id: `e${++seq}`, customer, meter: "calls", value: calls }]);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  /** Through the listening server: the fast path answers from memory when it can. */
  const entitlement = async (customer: string, meter = "calls") => {
    const res = await fetch(`${base}/v1/entitlements/${customer}/${meter}`, { headers: admin });
    return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
  };
  const customer = async (id: string, body: object) => {
    expect((await put(`/v1/customers/${id}`, {})).status).toBe(201);
    expect(
      (await put(`/v1/customers/${id}/subscription`, { plan: "calls", start: "2026-11-01T00:00:00Z" })).status,
    ).toBe(200);
    const res = await put(`/v1/customers/${id}`, body);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body;
  };
  const creditAlerts = async (c: string) =>
    ((await api().get("/v1/alerts").query({ customer: c }).set(admin)).body.data as { level: string; meter: null }[])
      .filter((a) => a.level.startsWith("credits_"))
      .map((a) => a.level);
  const hooksOf = (c: string) =>
    hooks.received.map((h) => ({ ...h, event: JSON.parse(h.body) })).filter((h) => h.event.data.customer === c);

  beforeAll(async () => {
    clock = new ManualClock(NOW);
    // The webhook receiver listens on 127.0.0.1: private addresses allowed.
    t = await startTestTally(backend, { clock, env: { TALLY_WEBHOOK_ALLOW_PRIVATE: "true" } });
    base = await t.tally.listen(0, "127.0.0.1");
    await defineMeters(t.tally, { calls: "sum", free: "sum" });
    expect((await put("/v1/plans/calls", { name: "Calls", currency: "USD" })).status).toBe(201);
    const price = await api().post("/v1/plans/calls/prices").set(admin).send({
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "0.01",
    });
    expect(price.status).toBe(201);
    hooks = await receiver();
    const endpoint = await api().post("/v1/webhook-endpoints").set(admin).send({ url: hooks.url });
    secret = endpoint.body.secret;
  });
  afterAll(async () => {
    await t.close();
    await hooks.close();
  });

  it("when a credit_only customer spends its last cent, then 429 credits_exhausted within 5 s, and a new grant unblocks within 5 s", async () => {
    const c = "prepaid";
    const set = await customer(c, { credit_mode: "credit_only", credit_alert_below: "2.00" });
    expect(set).toMatchObject({ credit_mode: "credit_only", credit_alert_below: "2.00" });
    // No credits at all: blocked at once.
    let e = await entitlement(c);
    expect(e.status).toBe(429);
    expect(e.body).toMatchObject({ code: "credits_exhausted", allowed: false, credits: "0.00" });
    // An unpriced meter costs nothing and is never blocked.
    expect((await entitlement(c, "free")).status).toBe(200);

    await grant(c, "5.00");
    e = await entitlement(c);
    expect(e.status).toBe(200);
    expect(e.body).toMatchObject({ allowed: true, credits: "5.00", state: "ok" });

    await ingest(c, 350); // 3.50 spent, 1.50 left: below 2.00
    await until(
      () => creditAlerts(c),
      (a) => a.includes("credits_low"),
    );
    expect((await entitlement(c)).body).toMatchObject({ allowed: true, credits: "1.50" });

    await ingest(c, 150); // the last cent
    const blocked = await until(
      () => entitlement(c),
      (r) => r.status === 429,
    );
    expect(blocked.ms).toBeLessThan(5_000);
    expect(blocked.value.headers.get("content-type")).toContain("application/problem+json");
    expect(blocked.value.headers.get("retry-after")).toBe("60");
    expect(blocked.value.body).toMatchObject({
      status: 429,
      code: "credits_exhausted",
      allowed: false,
      credits: "0.00",
      quantity: "500",
      customer: c,
      meter: "calls",
    });
    // The regular route answers the same.
    const route = await api().get(`/v1/entitlements/${c}/calls`).set(admin);
    expect(route.status).toBe(429);
    expect(route.body.code).toBe("credits_exhausted");

    await grant(c, "1.00");
    const unblocked = await until(
      () => entitlement(c),
      (r) => r.status === 200,
    );
    expect(unblocked.ms).toBeLessThan(5_000);
    expect(unblocked.value.body.credits).toBe("1.00");
    expect(await creditAlerts(c)).toEqual(["credits_exhausted", "credits_low"]);
  });

  it("when credit alerts fire, then credits.low and credits.exhausted are delivered once each, signed", async () => {
    const delivered = await until(
      async () => hooksOf("prepaid"),
      (h) => h.length >= 2,
    );
    expect(delivered.value.map((h) => h.event.type).sort()).toEqual(["credits.exhausted", "credits.low"]);
    for (const h of delivered.value) {
      expect(
        verifyTallySignature(secret, h.headers["tally-signature"] as string, h.body, 300, Date.parse(NOW) / 1000),
      ).toBe(true);
      expect(h.headers["tally-event-id"]).toBe(h.event.id);
    }
    const low = delivered.value.find((h) => h.event.type === "credits.low");
    expect(low?.event.data).toMatchObject({ customer: "prepaid", balance: "1.50", threshold: "2.00", currency: "USD" });
  });

  it("when the balance goes back above the threshold and falls again, then a second credits_low is recorded (one per crossing)", async () => {
    const c = "crossings";
    await customer(c, { credit_alert_below: "2" });
    await grant(c, "3.00");
    await ingest(c, 150);
    await until(
      () => creditAlerts(c),
      (a) => a.length === 1,
    );
    await t.tally.ctx.limits.evaluateCustomer(c);
    await t.tally.ctx.limits.evaluateCustomer(c);
    expect(await creditAlerts(c)).toEqual(["credits_low"]);
    await grant(c, "10.00"); // 11.50: above again
    await ingest(c, 1000); // 1.50: below again
    await until(
      () => creditAlerts(c),
      (a) => a.length === 2,
    );
    // credit_then_invoice is never blocked, even with nothing left.
    await ingest(c, 1000);
    await t.tally.ctx.limits.idle();
    expect((await entitlement(c)).status).toBe(200);
  });

  it("when a service uses the middleware, then it answers 429 credits_exhausted with Retry-After from Tally", async () => {
    const c = "mw-credits";
    await customer(c, { credit_mode: "credit_only" });
    await grant(c, "0.05");
    const mw = usageLimit({
      url: base,
      apiKey: ADMIN_KEY,
      customer: (req) => req.header("x-customer"),
      meter: "calls",
    });
    const svc = express();
    svc.get("/work", mw, (_req, res) => {
      res.json({ done: true });
    });
    const app = svc.listen(0, "127.0.0.1");
    await once(app, "listening");
    try {
      const url = `http://127.0.0.1:${(app.address() as AddressInfo).port}/work`;
      const call = () => fetch(url, { headers: { "x-customer": c } });
      expect((await call()).status).toBe(200);
      await ingest(c, 5);
      const blocked = await until(call, (r) => r.status === 429);
      expect(blocked.ms).toBeLessThan(5_000);
      expect(Number(blocked.value.headers.get("retry-after"))).toBeLessThanOrEqual(60);
      expect(await blocked.value.json()).toMatchObject({ code: "credits_exhausted", allowed: false });
    } finally {
      await new Promise<void>((r) => app.close(() => r()));
    }
  });
});
