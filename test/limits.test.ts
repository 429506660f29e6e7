// Limits, alerts, webhooks, entitlements and the middleware, on both engines: thresholds crossed by real ingest
// are enforced within 5 s without a job call; raising or removing a limit and a new period unblock; alerts are
// recorded once (also across two evaluators); webhooks are signed, retried and survive a restart.
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
import { ADMIN_KEY, admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:00:00Z";

/** A webhook receiver that can be told to fail, recording every request. */
async function receiver() {
  const received: { headers: http.IncomingHttpHeaders; body: string; status: number; customer: string }[] = [];
  const failures = new Map<string, number>();
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => {
      body += d;
    });
    req.on("end", () => {
      const customer = (JSON.parse(body) as { data: { customer: string } }).data.customer;
      const left = failures.get(customer) ?? 0;
      const status = left > 0 ? 503 : 200;
      if (left > 0) failures.set(customer, left - 1);
      received.push({ headers: req.headers, body, status, customer });
      res.writeHead(status).end();
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    received,
    /** The next `n` deliveries about `customer` fail with 503. */
    failNext(customer: string, n: number) {
      failures.set(customer, n);
    },
    of: (customer: string) => received.filter((h) => h.customer === customer),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe.each(BACKENDS)("limits on %s", (backend) => {
  let t: TestTally;
  let clock: ManualClock;
  let hooks: Awaited<ReturnType<typeof receiver>>;
  let secret: string;
  let seq = 0;
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const ingest = async (customer: string, meter: string, value: string | number, at = clock.now().toISOString()) => {
    const res = await postJson(t.tally, [{ id: `e${++seq}`, customer, meter, value, timestamp: at }]);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  const entitlement = (customer: string, meter: string) =>
    api().get(`/v1/entitlements/${customer}/${meter}`).set(admin);
  const alerts = async (customer: string) =>
    (await api().get("/v1/alerts").query({ customer }).set(admin)).body.data as { level: string; threshold: string }[];
  const runJob = async (name: string) => {
    const res = await api().post(`/v1/jobs/${name}/run`).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.summary;
  };

  /** A customer of the test's own, with a limit of soft 80 and hard 100 calls. */
  const limitedCustomer = async (c: string) => {
    expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
    expect((await put(`/v1/customers/${c}/limits/calls`, { soft: "80", hard: "100", unit: "quantity" })).status).toBe(
      200,
    );
  };
  /** …that went past its soft, then its hard limit: two alerts, and blocked. */
  const blockedCustomer = async (c: string) => {
    await limitedCustomer(c);
    await ingest(c, "calls", 85);
    await until(
      () => alerts(c),
      (a) => a.length === 1,
    );
    await ingest(c, "calls", 15);
    await until(
      () => entitlement(c, "calls"),
      (r) => r.status === 429,
    );
    await until(
      () => alerts(c),
      (a) => a.length === 2,
    );
  };

  beforeAll(async () => {
    clock = new ManualClock(NOW);
    t = await startTestTally(backend, {
      clock,
      env: { TALLY_WEBHOOK_RETRY_BASE_MS: "60000", TALLY_WEBHOOK_ALLOW_PRIVATE: "true" },
    });
    await defineMeters(t.tally, { calls: "sum", storage: "max", seats: "last" });
    hooks = await receiver();
    const res = await api().post("/v1/webhook-endpoints").set(admin).send({ url: hooks.url });
    expect(res.status).toBe(201);
    expect(res.body.secret).toMatch(/^whsec_/);
    secret = res.body.secret;
  });
  afterAll(async () => {
    await t.close();
    await hooks.close();
  });

  it("when limits are set badly, then 4xx problem+json says what and where", async () => {
    expect((await put("/v1/customers/badly", {})).status).toBe(201);
    expect((await put("/v1/customers/ghost/limits/calls", { hard: "1", unit: "quantity" })).status).toBe(404);
    expect((await put("/v1/customers/badly/limits/nope", { hard: "1", unit: "quantity" })).status).toBe(422);
    const empty = await put("/v1/customers/badly/limits/calls", { unit: "quantity" });
    expect(empty.status).toBe(422);
    expect(empty.body.code).toBe("limit_empty");
    expect((await put("/v1/customers/badly/limits/calls", { soft: "10", hard: "5", unit: "quantity" })).body.code).toBe(
      "soft_above_hard",
    );
    expect((await put("/v1/customers/badly/limits/calls", { hard: "-1", unit: "quantity" })).status).toBe(400);
    expect((await put("/v1/customers/badly/limits/calls", { hard: "1", unit: "coins" })).status).toBe(400);
    expect((await api().delete("/v1/customers/badly/limits/storage").set(admin)).status).toBe(404);
    expect((await put("/v1/plans/nope/limits/calls", { hard: "1", unit: "quantity" })).status).toBe(404);
  });

  it("when ingest crosses a soft then a hard threshold, then alerts are recorded and 429 follows within 5 s, with no job call", async () => {
    const c = "soft-hard";
    expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
    const set = await put(`/v1/customers/${c}/limits/calls`, { soft: "80", hard: "100", unit: "quantity" });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ meter: "calls", soft: "80", hard: "100", unit: "quantity" });
    const before = await entitlement(c, "calls");
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ allowed: true, quantity: "0", hard: "100", remaining: "100", state: "ok" });
    expect(before.headers["ratelimit-policy"]).toBe(`"calls";q=100;w=${30 * 86400}`);
    expect(before.headers.ratelimit).toMatch(/^"calls";r=100;t=\d+$/);

    await ingest(c, "calls", 85);
    const soft = await until(
      () => alerts(c),
      (a) => a.length === 1,
    );
    expect(soft.value[0]).toMatchObject({ level: "soft", threshold: "80", value: "85", period: "2026-11" });
    expect((await entitlement(c, "calls")).body).toMatchObject({ allowed: true, state: "soft", remaining: "15" });

    await ingest(c, "calls", 15);
    const blocked = await until(
      () => entitlement(c, "calls"),
      (r) => r.status === 429,
    );
    expect(blocked.ms).toBeLessThan(5_000);
    const r = blocked.value;
    expect(r.headers["content-type"]).toContain("application/problem+json");
    expect(Number(r.headers["retry-after"])).toBe((Date.parse("2026-12-01T00:00:00Z") - Date.parse(NOW)) / 1000);
    expect(r.body).toMatchObject({
      status: 429,
      code: "limit_reached",
      allowed: false,
      quantity: "100",
      hard: "100",
      remaining: "0",
      resets_at: "2026-12-01T00:00:00Z",
    });
    expect(r.body.as_of).toBe(NOW);
    expect((await alerts(c)).map((a) => a.level).sort()).toEqual(["hard", "soft"]);
    const summary = await api().get(`/v1/customers/${c}/summary`).set(admin);
    expect(summary.body.meters[0]).toMatchObject({
      meter: "calls",
      quantity: "100",
      limit: { soft: "80", hard: "100", unit: "quantity", state: "blocked" },
    });
  });

  it("when a crossing comes in many small batches, or right behind another batch, then it is still enforced within 5 s", async () => {
    for (let i = 0; i < 4; i++) {
      const c = `burst-${i}`;
      await put(`/v1/customers/${c}`, {});
      await put(`/v1/customers/${c}/limits/calls`, { hard: "100", unit: "quantity" });
      // each batch is far from the threshold on its own, and follows the previous one before its evaluation ends
      if (i % 2 === 0) for (let b = 0; b < 20; b++) await ingest(c, "calls", 5);
      else {
        await ingest(c, "calls", 95);
        await ingest(c, "calls", 5);
      }
      const blocked = await until(
        () => entitlement(c, "calls"),
        (r) => r.status === 429,
      );
      expect(blocked.value.body.quantity).toBe("100");
    }
  });

  it("when evaluations run again (job twice, and a second evaluator at once), then no alert is recorded twice", async () => {
    const c = "again";
    await blockedCustomer(c);
    await runJob("evaluate-limits");
    await runJob("evaluate-limits");
    await Promise.all([t.tally.ctx.limits.evaluateCustomer(c), t.tally.ctx.limits.evaluateCustomer(c)]);
    expect((await alerts(c)).map((a) => a.level).sort()).toEqual(["hard", "soft"]);
  });

  it("when nothing happened since the last scheduled run, then the next one skips those customers (all are checked every 10 min)", async () => {
    const c = "quiet";
    await limitedCustomer(c);
    await ingest(c, "calls", 1);
    await t.tally.ctx.limits.idle();
    clock.advance(61_000);
    try {
      const first = await runJob("evaluate-limits");
      clock.advance(61_000);
      const second = await runJob("evaluate-limits");
      expect(second.pass).toBe("incremental");
      expect(second.customers).toBe(0);
      expect(second.skipped).toBeGreaterThanOrEqual(1);
      await ingest(c, "calls", 1);
      await t.tally.ctx.limits.idle();
      clock.advance(1_000);
      const third = await runJob("evaluate-limits");
      expect(third.customers).toBe(1);
      expect(second.customers + second.skipped).toBe(first.customers + first.skipped);
    } finally {
      clock.set(NOW);
    }
  });

  it("when alerts fire, then each webhook is signed, carries an event id, and is delivered once", async () => {
    const c = "signed";
    await blockedCustomer(c);
    await t.tally.ctx.limits.idle();
    await runJob("deliver-webhooks");
    const bodies = (
      await until(
        async () => hooks.of(c).filter((h) => h.status === 200),
        (delivered) => delivered.length >= 2,
      )
    ).value;
    expect(bodies).toHaveLength(2);
    for (const h of bodies) {
      expect(
        verifyTallySignature(secret, h.headers["tally-signature"] as string, h.body, 300, Date.parse(NOW) / 1000),
      ).toBe(true);
      expect(
        verifyTallySignature(
          "whsec_wrong",
          h.headers["tally-signature"] as string,
          h.body,
          300,
          Date.parse(NOW) / 1000,
        ),
      ).toBe(false);
      expect(
        verifyTallySignature(secret, h.headers["tally-signature"] as string, `${h.body} `, 300, Date.parse(NOW) / 1000),
      ).toBe(false);
      const event = JSON.parse(h.body);
      expect(h.headers["tally-event-id"]).toBe(event.id);
      expect(event.data).toMatchObject({
        customer: c,
        meter: "calls",
        unit: "quantity",
        period: { start: "2026-11-01T00:00:00.000Z" },
      });
    }
    expect(new Set(bodies.map((h) => JSON.parse(h.body).type))).toEqual(
      new Set(["limit.soft_reached", "limit.hard_reached"]),
    );
  });

  it("when the hard limit is raised, then the customer is unblocked at once; removed, the same", async () => {
    const c = "raise";
    expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
    await put(`/v1/customers/${c}/limits/calls`, { hard: "10", unit: "quantity" });
    await ingest(c, "calls", 10);
    await until(
      () => entitlement(c, "calls"),
      (r) => r.status === 429,
    );
    expect((await put(`/v1/customers/${c}/limits/calls`, { hard: "50", unit: "quantity" })).status).toBe(200);
    const raised = await entitlement(c, "calls");
    expect(raised.status).toBe(200);
    expect(raised.body).toMatchObject({ allowed: true, hard: "50", remaining: "40" });
    await ingest(c, "calls", 40);
    await until(
      () => entitlement(c, "calls"),
      (r) => r.status === 429,
    );
    expect((await api().delete(`/v1/customers/${c}/limits/calls`).set(admin)).status).toBe(204);
    const removed = await entitlement(c, "calls");
    expect(removed.status).toBe(200);
    expect(removed.body).toMatchObject({ allowed: true, quantity: "50", state: "ok" });
    expect(removed.body.hard).toBeUndefined();
  });

  it("when a last meter falls back under a reached hard limit, then the block holds until the limit is raised", async () => {
    const c = "seats-drop";
    expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
    const later = (s: number) => new Date(Date.parse(NOW) + s * 1000).toISOString();
    await put(`/v1/customers/${c}/limits/seats`, { hard: "5", unit: "quantity" });
    await ingest(c, "seats", 7, later(1));
    await until(
      () => entitlement(c, "seats"),
      (r) => r.status === 429,
    );
    await ingest(c, "seats", 2, later(2));
    await t.tally.ctx.limits.evaluateCustomer(c);
    expect((await entitlement(c, "seats")).body).toMatchObject({ quantity: "2", state: "blocked" });
    // lowering the limit keeps it blocked; raising it above the value it was reached at unblocks
    await put(`/v1/customers/${c}/limits/seats`, { hard: "4", unit: "quantity" });
    expect((await entitlement(c, "seats")).status).toBe(429);
    await put(`/v1/customers/${c}/limits/seats`, { hard: "6", unit: "quantity" });
    expect((await entitlement(c, "seats")).body).toMatchObject({ allowed: true, quantity: "2", remaining: "4" });
  });

  it("when a money limit is reached, then the amount comes from the same pricing as the summary", async () => {
    await put("/v1/plans/metered", { name: "Metered", currency: "USD" });
    const price = await api().post("/v1/plans/metered/prices").set(admin).send({
      meter: "calls",
      effective_from: "2026-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "0.25",
      base_fee: "5",
    });
    expect(price.status).toBe(201);
    expect((await put("/v1/customers/money", {})).status).toBe(201);
    await put("/v1/customers/money/subscription", { plan: "metered", start: "2026-11-01T00:00:00Z" });
    await put("/v1/customers/money/limits/calls", { soft: "10", hard: "20.50", unit: "amount" });
    await ingest("money", "calls", 20); // 5 + 20 × 0.25 = 10.00 → soft
    await until(
      () => alerts("money"),
      (a) => a.length === 1,
    );
    await ingest("money", "calls", 62); // 5 + 82 × 0.25 = 25.50 → blocked
    const blocked = await until(
      () => entitlement("money", "calls"),
      (r) => r.status === 429,
    );
    expect(blocked.value.body).toMatchObject({
      quantity: "82",
      amount: "25.50",
      currency: "USD",
      hard: "20.5",
      unit: "amount",
    });
    const summary = await api().get("/v1/customers/money/summary").set(admin);
    expect(summary.body.meters[0]).toMatchObject({ amount: "25.50", limit: { unit: "amount", state: "blocked" } });
  });

  it("when a plan has a default limit, then its customers get it, and a customer's own limit overrides it", async () => {
    await put("/v1/plans/capped", { name: "Capped", currency: "USD" });
    for (const c of ["plan-a", "plan-b"]) expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
    await put("/v1/customers/plan-a/subscription", { plan: "capped", start: "2026-11-01T00:00:00Z" });
    await put("/v1/customers/plan-b/subscription", { plan: "capped", start: "2026-11-01T00:00:00Z" });
    await put("/v1/customers/plan-b/limits/calls", { hard: "1000", unit: "quantity" });
    expect((await put("/v1/plans/capped/limits/calls", { hard: "3", unit: "quantity" })).status).toBe(200);
    await t.tally.ctx.limits.idle();
    await ingest("plan-a", "calls", 3);
    await ingest("plan-b", "calls", 3);
    await until(
      () => entitlement("plan-a", "calls"),
      (r) => r.status === 429,
    );
    const b = await entitlement("plan-b", "calls");
    expect(b.status).toBe(200);
    expect(b.body.hard).toBe("1000");
  });

  it("when a receiver is down, then deliveries are retried with backoff and arrive once; every attempt is logged", async () => {
    const c = "period";
    expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
    hooks.failNext(c, 3);
    await put(`/v1/customers/${c}/limits/calls`, { soft: "1", unit: "quantity" });
    await ingest(c, "calls", 1);
    await until(
      () => alerts(c),
      (a) => a.length === 1,
    );
    await t.tally.ctx.limits.idle();
    try {
      for (let i = 0; i < 10 && !hooks.of(c).some((h) => h.status === 200); i++) {
        await runJob("deliver-webhooks");
        clock.advance(5 * 60_000); // past any backoff of the first attempts
      }
    } finally {
      clock.set(NOW);
    }
    const mine = hooks.of(c);
    expect(mine.map((h) => h.status)).toEqual([503, 503, 503, 200]);
    expect(new Set(mine.map((h) => h.headers["tally-event-id"])).size).toBe(1);
    const { rows } = await t.tally.ctx.db.query<{ attempts: number; status: string; n: string }>(
      `SELECT d.attempts, d.status, (SELECT count(*) FROM webhook_attempts a WHERE a.delivery_id = d.id)::text AS n
       FROM webhook_deliveries d WHERE d.event_id = $1`,
      [mine[0]?.headers["tally-event-id"]],
    );
    expect(rows).toEqual([{ attempts: 4, status: "delivered", n: "4" }]);
    await runJob("deliver-webhooks");
    expect(hooks.of(c)).toHaveLength(4);
  });

  it("when finished webhook deliveries are 30 days old, then the hourly prune deletes them and their attempts", async () => {
    const count = async () =>
      (
        await t.tally.ctx.db.query<{ d: string; a: string }>(
          `SELECT (SELECT count(*) FROM webhook_deliveries WHERE status <> 'pending')::text AS d,
                  (SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries w ON w.id = a.delivery_id
                   WHERE w.status <> 'pending')::text AS a`,
          [],
        )
      ).rows[0];
    const c = "pruned";
    expect((await put(`/v1/customers/${c}`, {})).status).toBe(201);
    await put(`/v1/customers/${c}/limits/calls`, { soft: "1", unit: "quantity" });
    await ingest(c, "calls", 1);
    await until(
      () => alerts(c),
      (a) => a.length === 1,
    );
    await t.tally.ctx.limits.idle();
    await runJob("deliver-webhooks");
    await until(
      async () => hooks.of(c).filter((h) => h.status === 200).length,
      (n) => n === 1,
    );
    expect(Number((await count())?.d)).toBeGreaterThan(0);
    clock.advance(31 * 86_400_000);
    try {
      const summary = await runJob("prune-expired");
      expect(summary.webhook_deliveries_deleted).toBeGreaterThan(0);
      expect(await count()).toEqual({ d: "0", a: "0" });
    } finally {
      clock.set(NOW);
    }
  });

  it("when the next period starts, then a blocked customer is allowed again", async () => {
    const c = "next-period";
    await blockedCustomer(c);
    expect((await entitlement(c, "calls")).status).toBe(429);
    clock.set("2026-12-01T00:00:01Z");
    try {
      const next = await entitlement(c, "calls");
      expect(next.status).toBe(200);
      expect(next.body.allowed).toBe(true);
      await t.tally.ctx.limits.idle();
      expect((await entitlement(c, "calls")).body).toMatchObject({
        allowed: true,
        quantity: "0",
        hard: "100",
      });
    } finally {
      clock.set(NOW);
      await t.tally.ctx.limits.evaluateCustomer(c);
    }
  });

  it("when entitlements are asked without a limit, by a bound key, or for an unknown meter, then 200, 404, 404", async () => {
    await ingest("free", "calls", 4);
    const free = await entitlement("free", "calls");
    expect(free.status).toBe(200);
    expect(free.body).toMatchObject({ allowed: true, quantity: "4", state: "ok", resets_at: "2026-12-01T00:00:00Z" });
    expect(free.headers["ratelimit-policy"]).toBeUndefined();
    const key = await api()
      .post("/v1/api-keys")
      .set(admin)
      .send({ scopes: ["read"], customer: "free" });
    expect((await api().get("/v1/entitlements/free/calls").set(bearer(key.body.key))).status).toBe(200);
    await ingest("not-free", "calls", 1);
    expect((await api().get("/v1/entitlements/not-free/calls").set(bearer(key.body.key))).status).toBe(404);
    expect((await entitlement("free", "nope")).status).toBe(404);
  });

  describe("middleware", () => {
    let base: string;
    let app: http.Server;
    let appUrl: string;
    let mw: ReturnType<typeof usageLimit>;

    beforeAll(async () => {
      base = await t.tally.listen(0, "127.0.0.1");
      mw = usageLimit({ url: base, apiKey: ADMIN_KEY, customer: (req) => req.header("x-customer"), meter: "calls" });
      const svc = express();
      svc.get("/work", mw, (_req, res) => {
        res.json({ done: true });
      });
      app = svc.listen(0, "127.0.0.1");
      await once(app, "listening");
      appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((r) => app.close(() => r())));

    it("when a real service uses it, then requests pass until the hard limit, then 429 with Retry-After and problem+json", async () => {
      expect((await put("/v1/customers/mw", {})).status).toBe(201);
      expect((await put("/v1/customers/mw/limits/calls", { hard: "5", unit: "quantity" })).status).toBe(200);
      const call = () => fetch(`${appUrl}/work`, { headers: { "x-customer": "mw" } });
      expect((await call()).status).toBe(200);
      const lookups = mw.client.lookups;
      const burstStarted = Date.now();
      const burst = await Promise.all(Array.from({ length: 50 }, () => call()));
      expect(burst.every((r) => r.status === 200)).toBe(true);
      // Cached for a second, and concurrent misses coalesce: one lookup per second the burst lasted, at most.
      const seconds = Math.ceil((Date.now() - burstStarted) / 1000);
      expect(mw.client.lookups - lookups).toBeLessThanOrEqual(seconds);
      await ingest("mw", "calls", 5);
      const blocked = await until(call, (r) => r.status === 429, { timeout: 5_000 });
      expect(blocked.ms).toBeLessThan(5_000);
      expect(blocked.value.headers.get("content-type")).toContain("application/problem+json");
      expect(Number(blocked.value.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(await blocked.value.json()).toMatchObject({ status: 429, allowed: false, code: "limit_reached" });
      expect((await fetch(`${appUrl}/work`)).status).toBe(200); // no customer: not metered
    });

    it("when the fast path answers from memory, then it answers exactly as the route does", async () => {
      const headersOf = (h: Headers | Record<string, string | string[] | undefined>) => {
        const get = (k: string) => (h instanceof Headers ? h.get(k) : (h[k] as string | undefined)) ?? null;
        return Object.fromEntries(
          [
            "content-type",
            "retry-after",
            "ratelimit",
            "ratelimit-policy",
            "x-content-type-options",
            "content-security-policy",
            "strict-transport-security",
            "x-frame-options",
          ].map((k) => [k, get(k)]),
        );
      };
      await blockedCustomer("fast-blocked");
      await limitedCustomer("fast-limited");
      await ingest("fast-limited", "calls", 3);
      await ingest("fast-free", "calls", 4);
      await t.tally.ctx.limits.idle();
      const fastCount = async () =>
        Number(/tally_entitlement_fast_path_total (\d+)/.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? 0);
      const before = await fastCount();
      for (const path of [
        "/v1/entitlements/fast-limited/calls",
        "/v1/entitlements/fast-blocked/calls",
        "/v1/entitlements/fast-free/calls",
      ]) {
        await fetch(`${base}${path}`, { headers: admin }); // warms the key and the decision
        const fast = await fetch(`${base}${path}`, { headers: admin });
        const slow = await api().get(path).set(admin);
        expect(fast.status, path).toBe(slow.status);
        expect(await fast.json(), path).toEqual(slow.body);
        expect(headersOf(fast.headers), path).toEqual(headersOf(slow.headers));
      }
      expect(await fastCount()).toBeGreaterThanOrEqual(before + 3);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(
        /tally_http_request_duration_seconds_count\{method="GET",route="\/v1\/entitlements\/\{customer\}\/\{meter\}",status="429"\} [1-9]/,
      );
    });

    it("when Tally cannot be reached, then it fails open by default and closed when asked", async () => {
      const warnings: string[] = [];
      const down = "http://127.0.0.1:9"; // discard port: connection refused
      const open = usageLimit({
        url: down,
        apiKey: "x",
        customer: () => "c",
        meter: "calls",
        logger: { warn: (_o, m) => warnings.push(m) },
      });
      const closed = usageLimit({
        url: down,
        apiKey: "x",
        customer: () => "c",
        meter: "calls",
        failOpen: false,
        logger: { warn: () => {} },
      });
      const svc = express();
      svc.get("/open", open, (_q, r) => {
        r.send("ok");
      });
      svc.get("/closed", closed, (_q, r) => {
        r.send("ok");
      });
      expect((await request(svc).get("/open")).status).toBe(200);
      const refused = await request(svc).get("/closed");
      expect(refused.status).toBe(503);
      expect(refused.headers["content-type"]).toContain("application/problem+json");
      expect(warnings[0]).toContain("fail open");
    });
  });
});
