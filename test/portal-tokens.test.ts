// Portal tokens and the dashboard's read endpoints, on both engines: a token is minted by admin only, lives
// 1 s to 24 h, reads only its customer, can never ingest or read setup, expires (401) and is revoked by its id (401
// at once, in every process). The overview's spend equals each customer's summary total; the pages carry the right
// CSP and cache headers.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { admin, bearer, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:00:00Z";

describe.each(BACKENDS)("portal tokens on %s", (backend) => {
  let t: TestTally;
  let clock: ManualClock;
  // A stand-in for the built page: the headers are what is checked here (the browser test runs the real one).
  const web = mkdtempSync(join(tmpdir(), "tally-web-stub-"));
  mkdirSync(join(web, "assets"));
  writeFileSync(join(web, "index.html"), "<!doctype html><title>Tally</title>");
  writeFileSync(join(web, "assets", "index-AbC123.js"), "console.log(1)");
  const api = () => request(t.tally.app);
  const put = (path: string, body: object) => api().put(path).set(admin).send(body);
  const mint = (customer: string, body: object = {}) =>
    api().post(`/v1/customers/${customer}/portal-tokens`).set(admin).send(body);

  beforeAll(async () => {
    clock = new ManualClock(NOW);
    t = await startTestTally(backend, {
      clock,
      env: { TALLY_EMBED_ORIGINS: "https://portal.example.com" },
      webDirectory: web,
    });
    await defineMeters(t.tally, { pt_calls: "sum" });
    expect((await put("/v1/plans/pt_plan", { name: "PT", currency: "USD" })).status).toBe(201);
    const price = { meter: "pt_calls", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.013" };
    expect((await api().post("/v1/plans/pt_plan/prices").set(admin).send(price)).status).toBe(201);
    for (const c of ["pt_a", "pt_b"]) {
      expect((await put(`/v1/customers/${c}`, { name: c.toUpperCase() })).status).toBe(201);
      expect(
        (await put(`/v1/customers/${c}/subscription`, { plan: "pt_plan", start: "2026-01-01T00:00:00Z" })).status,
      ).toBe(200);
    }
    const events = [
      { id: "pt1", customer: "pt_a", meter: "pt_calls", value: 1001, timestamp: "2026-11-20T10:00:00Z" },
      { id: "pt2", customer: "pt_b", meter: "pt_calls", value: 7, timestamp: "2026-11-20T11:00:00Z" },
      { id: "pt3", customer: "pt_b", meter: "pt_calls", value: 50, timestamp: "2026-10-20T11:00:00Z" },
    ];
    expect((await postJson(t.tally, events)).status).toBe(202);
  });
  afterAll(async () => {
    await t.close();
    rmSync(web, { recursive: true, force: true });
  });

  it("when an admin mints a token, then 201 with the token and expires_at one hour later by default", async () => {
    const res = await mint("pt_a");
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body.token).toMatch(/^tally_pt_/);
    expect(res.body.id).toMatch(/^pt_[\w-]+$/);
    expect(res.body.expires_at).toBe("2026-11-20T13:00:00Z");
    const { rows } = await t.tally.ctx.db.query("SELECT * FROM portal_tokens");
    expect(JSON.stringify(rows)).not.toContain(res.body.token);
    const long = await mint("pt_a", { ttl_seconds: 86_400 });
    expect(long.body.expires_at).toBe("2026-11-21T12:00:00Z");
  });

  it("when ttl_seconds is out of range or not whole, then 422 naming the field; unknown customer 404", async () => {
    for (const ttl of [0, -5, 86_401, 1.5]) {
      const res = await mint("pt_a", { ttl_seconds: ttl });
      expect(res.status, String(ttl)).toBe(422);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(res.body.errors[0].field).toBe("ttl_seconds");
    }
    expect((await mint("pt_a", { ttl_seconds: "60" })).status).toBe(400);
    expect((await mint("pt_nobody")).status).toBe(404);
  });

  it("when a read key or a token asks to mint, then 403", async () => {
    const read = (
      await api()
        .post("/v1/api-keys")
        .set(admin)
        .send({ scopes: ["read"] })
    ).body.key as string;
    const token = (await mint("pt_a")).body.token as string;
    for (const key of [read, token]) {
      const res = await api().post("/v1/customers/pt_a/portal-tokens").set(bearer(key)).send({});
      expect(res.status).toBe(403);
    }
  });

  it("when a token reads its customer, then 200; another customer, then 404, as for bound keys", async () => {
    const token = bearer((await mint("pt_a")).body.token);
    const summary = await api().get("/v1/customers/pt_a/summary").set(token);
    expect(summary.status).toBe(200);
    expect(summary.body.total).toBe("13.01");
    for (const path of [
      "/v1/customers/pt_b/summary",
      "/v1/customers/pt_b/forecast",
      "/v1/dashboard/customers/pt_b",
      "/v1/usage?customer=pt_b&meter=pt_calls&granularity=day&from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z",
      "/v1/invoices?customer=pt_b",
      "/v1/entitlements/pt_b/pt_calls",
    ]) {
      expect((await api().get(path).set(token)).status, path).toBe(404);
    }
    const overview = await api().get("/v1/dashboard/customers").set(token);
    expect(overview.body.customers.map((c: { id: string }) => c.id)).toEqual(["pt_a"]);
    const view = await api().get("/v1/dashboard/customers/pt_a").set(token);
    expect(view.status).toBe(200);
    expect(view.body.meters.map((m: { key: string }) => m.key)).toEqual(["pt_calls"]);
  });

  it("when a token tries to ingest or read setup, then 403", async () => {
    const token = bearer((await mint("pt_a")).body.token);
    const event = { id: "pt_forged", customer: "pt_a", meter: "pt_calls", value: 1 };
    expect((await postJson(t.tally, [event], token)).status).toBe(403);
    for (const path of [
      "/v1/meters",
      "/v1/plans",
      "/v1/plans/pt_plan",
      "/v1/customers/pt_a",
      "/v1/stripe/reconciliation",
    ]) {
      expect((await api().get(path).set(token)).status, path).toBe(403);
    }
    expect(
      (
        await api()
          .post("/v1/api-keys")
          .set(token)
          .send({ scopes: ["read"] })
      ).status,
    ).toBe(403);
  });

  it("when a token has expired, then 401 token_expired — also right after it was accepted", async () => {
    const token = bearer((await mint("pt_a", { ttl_seconds: 60 })).body.token);
    expect((await api().get("/v1/customers/pt_a/summary").set(token)).status).toBe(200);
    clock.advance(60_000);
    try {
      const res = await api().get("/v1/customers/pt_a/summary").set(token);
      expect(res.status).toBe(401);
      expect(res.body.code).toBe("token_expired");
      const fresh = bearer((await mint("pt_a", { ttl_seconds: 1 })).body.token);
      clock.advance(1_000);
      expect((await api().get("/v1/customers/pt_a/summary").set(fresh)).status).toBe(401);
      expect((await api().get("/v1/customers/pt_a/summary").set(bearer("tally_pt_unknown"))).status).toBe(401);
      // A day after expiry the prune-expired job deletes them.
      clock.advance(86_400_000 + 1_000);
      const pruned = await api().post("/v1/jobs/prune-expired/run").set(admin);
      expect(pruned.body.summary.portal_tokens_deleted).toBeGreaterThanOrEqual(2);
    } finally {
      clock.set(NOW);
    }
  });

  it("when a token is revoked by its id, then it answers 401 from the next request on — also in another process", async () => {
    const minted = await mint("pt_a");
    expect(minted.body.id).toMatch(/^pt_/);
    const token = bearer(minted.body.token);
    // Another Tally on the same database (the embedded engine belongs to one process: there, this one again).
    const other =
      backend === "postgres" && t.database.url
        ? await startTestTally(backend, { clock, database: t.database, webDirectory: web })
        : undefined;
    try {
      const apps = [t.tally.app, (other ?? t).tally.app];
      for (const app of apps)
        expect((await request(app).get("/v1/customers/pt_a/summary").set(token)).status).toBe(200);
      const others = [
        (
          await api()
            .post("/v1/api-keys")
            .set(admin)
            .send({ scopes: ["read"] })
        ).body.key as string,
        minted.body.token as string,
      ];
      for (const key of others) {
        expect((await api().delete(`/v1/portal-tokens/${minted.body.id}`).set(bearer(key))).status).toBe(403);
      }
      expect((await api().delete(`/v1/portal-tokens/${minted.body.id}`).set(admin)).status).toBe(204);
      for (const app of apps) {
        const res = await request(app).get("/v1/customers/pt_a/summary").set(token);
        expect(res.status).toBe(401);
        expect(res.body.code).toBe("unauthorized");
        expect(res.headers["www-authenticate"]).toMatch(/^Bearer/);
      }
      expect((await api().delete(`/v1/portal-tokens/${minted.body.id}`).set(admin)).status).toBe(404);
      expect((await api().delete("/v1/portal-tokens/pt_never").set(admin)).status).toBe(404);
      // Other tokens of the customer are untouched.
      expect(
        (
          await api()
            .get("/v1/customers/pt_a/summary")
            .set(bearer((await mint("pt_a")).body.token))
        ).status,
      ).toBe(200);
    } finally {
      await other?.close();
    }
  });

  it("when the overview is read, then each spend equals the customer's summary total, with last period's", async () => {
    const res = await api().get("/v1/dashboard/customers").set(admin);
    expect(res.status).toBe(200);
    const rows = res.body.customers as { id: string; spend: string; previous_spend: string; state: string }[];
    for (const id of ["pt_a", "pt_b"]) {
      const row = rows.find((r) => r.id === id)!;
      const summary = (await api().get(`/v1/customers/${id}/summary`).set(admin)).body;
      expect(row.spend).toBe(summary.total);
      expect(row.state).toBe("ok");
    }
    expect(rows.find((r) => r.id === "pt_b")!.previous_spend).toBe("0.65");
    expect(rows.findIndex((r) => r.id === "pt_a")).toBeLessThan(rows.findIndex((r) => r.id === "pt_b"));
  });

  it("when last period's invoice is final, then previous_spend is its frozen total, not a recomputation", async () => {
    const run = await api().post("/v1/jobs/finalize-invoices/run").set(admin);
    expect(run.status, JSON.stringify(run.body)).toBe(200);
    const finals = (await api().get("/v1/invoices?customer=pt_b&status=final&period=2026-10").set(admin)).body.data;
    expect(finals[0].total).toBe("0.65");
    // A late October event: the final invoice stays, the difference goes on November's as an adjustment.
    const late = { id: "pt-late", customer: "pt_b", meter: "pt_calls", value: 10, timestamp: "2026-10-25T00:00:00Z" };
    expect((await postJson(t.tally, [late])).status).toBe(202);
    const rows = (await api().get("/v1/dashboard/customers?customer=pt_b").set(admin)).body.customers;
    expect(rows[0].previous_spend).toBe("0.65");
    const summary = (await api().get("/v1/customers/pt_b/summary").set(admin)).body;
    expect(rows[0].spend).toBe(summary.total);
  });

  it("when a customer reached its hard limit, then the overview says blocked", async () => {
    expect((await put("/v1/customers/pt_b/limits/pt_calls", { hard: "5", unit: "quantity" })).status).toBe(200);
    const rows = (await api().get("/v1/dashboard/customers").set(admin)).body.customers as {
      id: string;
      state: string;
      blocked_meters: string[];
    }[];
    expect(rows.find((r) => r.id === "pt_b")).toMatchObject({ state: "blocked", blocked_meters: ["pt_calls"] });
  });

  it("when a credit_only customer's credits ran out, then the overview says credits_exhausted, spend after credits", async () => {
    expect((await put("/v1/customers/pt_c", { name: "PT C" })).status).toBe(201);
    expect(
      (await put("/v1/customers/pt_c/subscription", { plan: "pt_plan", start: "2026-01-01T00:00:00Z" })).status,
    ).toBe(200);
    expect((await put("/v1/customers/pt_c", { credit_mode: "credit_only" })).status).toBe(200);
    const grant = await api()
      .post("/v1/customers/pt_c/credit-grants")
      .set(admin)
      .send({ amount: "0.05", effective_at: "2026-11-01T00:00:00Z" });
    expect(grant.status, JSON.stringify(grant.body)).toBe(201);
    const event = { id: "ptc1", customer: "pt_c", meter: "pt_calls", value: 10, timestamp: "2026-11-20T11:30:00Z" };
    expect((await postJson(t.tally, [event])).status).toBe(202);
    const entitlement = () => api().get("/v1/entitlements/pt_c/pt_calls").set(admin);
    await until(entitlement, (r) => r.status === 429 && r.body.code === "credits_exhausted", { timeout: 10_000 });
    const { value: row } = await until(
      async () =>
        ((await api().get("/v1/dashboard/customers?customer=pt_c").set(admin)).body.customers ?? [])[0] as {
          state: string;
          spend: string;
          credits: string | null;
        },
      (r) => r?.state === "credits_exhausted",
      { timeout: 10_000 },
    );
    const summary = (await api().get("/v1/customers/pt_c/summary").set(admin)).body;
    expect(summary.total).toBe("0.08");
    expect(row).toMatchObject({ spend: summary.total, credits: "0.05" });
  });

  it("when the pages are loaded, then HTML with frame-ancestors per page, and hashed assets cached for a year", async () => {
    const dash = await api().get("/dashboard");
    const embed = await api().get("/embed/customer?token=x");
    expect(dash.status).toBe(200);
    expect(dash.headers["content-type"]).toMatch(/^text\/html/);
    expect(dash.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(dash.headers["content-security-policy"]).toContain("script-src 'self'");
    expect(dash.headers["x-frame-options"]).toBe("DENY");
    expect(dash.headers["cache-control"]).toBe("no-cache");
    expect(embed.status).toBe(200);
    expect(embed.headers["content-security-policy"]).toContain("frame-ancestors https://portal.example.com");
    expect(embed.headers["x-frame-options"]).toBeUndefined();
    expect(embed.headers["cache-control"]).toBe("no-store");
    const asset = await api().get("/dashboard/assets/index-AbC123.js");
    expect(asset.status).toBe(200);
    expect(asset.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    const missing = await api().get("/dashboard/assets/nope.js");
    expect(missing.status).toBe(404);
    expect(missing.headers["content-type"]).toMatch(/^application\/problem\+json/);
  });
});
