// The per-key request rate limit through HTTP, on both engines, with a small limit from the environment
// (TALLY_RATE_LIMIT_RPS=0.5: a token every 2 s; burst 3): 429 problem+json with Retry-After on ingest, on reads and
// on the entitlement fast path; other keys unaffected; public routes never limited; recovery after Retry-After;
// the middleware does not mistake it for a blocked customer.
import http from "node:http";
import express from "express";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { upsertCustomer } from "../src/catalog/customers.js";
import { upsertMeter } from "../src/catalog/meters.js";
import { putLimit } from "../src/limits/store.js";
import { usageLimit } from "../src/middleware/index.js";
import { BACKENDS } from "./helpers/databases.js";
import { until } from "./helpers/eventually.js";
import { type HttpClient, httpClient, type RawResponse } from "./helpers/http.js";
import { ADMIN_KEY, startTestTally, type TestTally } from "./helpers/tally.js";

const BURST = 3;
const DAY = 86_400_000;
const day = (ms: number) => new Date(Math.floor(ms / DAY) * DAY).toISOString();

describe.each(BACKENDS)("per-key rate limit on %s", (backend) => {
  let t: TestTally;
  let client: HttpClient;
  let base: string;
  let n = 0;

  beforeAll(async () => {
    t = await startTestTally(backend, { env: { TALLY_RATE_LIMIT_RPS: "0.5", TALLY_RATE_LIMIT_BURST: String(BURST) } });
    // Set up behind the API's back: every request of the admin key would take one of its three tokens.
    const { db } = t.tally.ctx;
    await upsertMeter(db, "calls", { name: "Calls", unit: "call", aggregation: "sum" });
    t.tally.ctx.meters.invalidate();
    await upsertCustomer(db, "acme", {});
    await putLimit(db, "customer", "acme", "calls", { hard: "1000000", unit: "quantity" });
    await t.tally.ctx.limits.evaluateCustomer("acme", "limit-change");
    base = await t.tally.listen(0, "127.0.0.1");
    client = httpClient(base, 2);
  });
  afterAll(async () => {
    client?.close();
    await t?.close();
  });

  const newKey = async (scopes: ("read" | "ingest")[]) => `Bearer ${(await t.tally.ctx.keys.create(scopes, null)).key}`;
  const ingest = (auth: string) =>
    client.send({
      method: "POST",
      path: "/v1/events",
      headers: { Authorization: auth, "Content-Type": "application/json" },
      body: JSON.stringify({ events: [{ id: `e-${++n}`, customer: "acme", meter: "calls" }] }),
    });
  const usage = (auth: string) =>
    client.send({
      method: "GET",
      path: `/v1/usage?customer=acme&meter=calls&granularity=day&from=${day(Date.now() - DAY)}&to=${day(Date.now() + DAY)}`,
      headers: { Authorization: auth },
    });
  const fastPathServed = async () =>
    Number(
      /tally_entitlement_fast_path_total (\d+)/.exec(
        (await client.send({ method: "GET", path: "/metrics" })).text,
      )?.[1],
    );

  function isRateLimited(res: RawResponse, where: string): number {
    expect(res.status, `${where}: ${res.text}`).toBe(429);
    expect(res.headers["content-type"], where).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(res.text), where).toMatchObject({
      type: "urn:tally:problem:rate_limited",
      title: "Too Many Requests",
      status: 429,
      code: "rate_limited",
      detail: expect.stringContaining("0.5 requests per second"),
    });
    const retryAfter = Number(res.headers["retry-after"]);
    expect(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 2, where).toBe(true);
    expect(res.headers["ratelimit-policy"], where).toBe(`"per-key";q=${BURST};w=6`);
    expect(res.headers.ratelimit, where).toBe(`"per-key";r=0;t=${retryAfter}`);
    expect(res.headers["x-content-type-options"], where).toBe("nosniff");
    return retryAfter;
  }

  it("when an ingest key sends more than its burst, then 429 with Retry-After, other keys pass, and after Retry-After it passes again", async () => {
    const key = await newKey(["ingest"]);
    const other = await newKey(["ingest"]);
    for (let i = 0; i < BURST; i++) expect((await ingest(key)).status).toBe(202);
    const refusedId = `e-${n + 1}`;
    const retryAfter = isRateLimited(await ingest(key), "ingest");
    expect((await ingest(other)).status).toBe(202);
    const admin = await request(t.tally.app)
      .get(`/v1/events/acme/${refusedId}`)
      .set({ Authorization: `Bearer ${ADMIN_KEY}` });
    expect(admin.status).toBe(404); // the refused batch was not read, let alone stored
    // Refused requests take no token, so polling does not delay the refill: it passes again once Retry-After is over.
    await until(
      async () => (await ingest(key)).status,
      (status) => status === 202,
      { timeout: retryAfter * 1000 + 5_000, interval: 100 },
    );
  });

  it("when a read key reads more than its burst, then 429 on usage; on the entitlement fast path too, as the route answers it", async () => {
    const reader = await newKey(["read"]);
    for (let i = 0; i < BURST; i++) expect((await usage(reader)).status).toBe(200);
    isRateLimited(await usage(reader), "usage");

    const checker = await newKey(["read"]);
    const entitlement = () =>
      client.send({ method: "GET", path: "/v1/entitlements/acme/calls", headers: { Authorization: checker } });
    expect((await entitlement()).status).toBe(200); // through Express: the key is now verified and cached
    const before = await fastPathServed();
    expect((await entitlement()).status).toBe(200);
    expect((await entitlement()).status).toBe(200);
    expect(await fastPathServed()).toBe(before + 2);
    isRateLimited(await entitlement(), "entitlement");
    expect(await fastPathServed()).toBe(before + 2); // over the rate, the fast path stepped aside
  });

  it("when a limited key starts streaming a large body, then the 429 comes before the body and the connection is closed", async () => {
    const key = await newKey(["ingest"]);
    for (let i = 0; i < BURST; i++) expect((await ingest(key)).status).toBe(202);
    const { hostname, port } = new URL(base);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({
        host: hostname,
        port: Number(port),
        method: "POST",
        path: "/v1/events",
        headers: { Authorization: key, "Content-Type": "application/x-ndjson", "Content-Length": 100 * 1024 * 1024 },
      });
      req.on("response", (r) => {
        resolve(r);
        r.resume();
        req.destroy();
      });
      req.on("error", reject);
      // One line of a body announced as 100 MiB, and then nothing: the answer must not wait for the rest.
      req.write(`${JSON.stringify({ id: "big", customer: "acme", meter: "calls" })}\n`);
    });
    expect(res.statusCode).toBe(429);
    expect(res.headers.connection).toBe("close");
    expect(Number(res.headers["retry-after"])).toBeGreaterThanOrEqual(1);
  });

  it("when the OpenAPI document is read, then every route that takes a key documents the 429", async () => {
    const doc = JSON.parse((await client.send({ method: "GET", path: "/openapi.json" })).text);
    const routes = t.tally.app.locals.routes as { method: string; path: string; scopes: string[] | "public" }[];
    for (const r of routes) {
      const responses = doc.paths[r.path][r.method].responses;
      if (r.scopes === "public") expect(responses["429"], r.path).toBeUndefined();
      else expect(responses["429"], `${r.method} ${r.path}`).toBeDefined();
    }
  });

  it("when a key is over its rate, then public routes still answer it, and a key refused for its scope still counts", async () => {
    const key = await newKey(["ingest"]);
    for (let i = 0; i < BURST; i++) {
      const res = await client.send({ method: "GET", path: "/v1/meters", headers: { Authorization: key } });
      expect(res.status).toBe(403);
    }
    isRateLimited(await ingest(key), "after three 403s");
    for (const path of ["/healthz", "/readyz", "/metrics", "/openapi.json", "/healthz", "/healthz", "/healthz"]) {
      expect((await client.send({ method: "GET", path, headers: { Authorization: key } })).status, path).toBe(200);
    }
  });

  it("when the middleware's own key is over its rate, then it fails open (or closed, if asked), never blocking the customer", async () => {
    const key = await newKey(["read"]);
    const apiKey = key.slice("Bearer ".length);
    const warnings: string[] = [];
    const open = usageLimit({
      url: base,
      apiKey,
      customer: () => "acme",
      meter: "calls",
      cacheMs: 1,
      logger: { warn: (_o, m) => warnings.push(m) },
    });
    const closed = usageLimit({
      url: base,
      apiKey,
      customer: () => "acme",
      meter: "calls",
      cacheMs: 1,
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
    for (let i = 0; i < BURST; i++) {
      const res = await client.send({
        method: "GET",
        path: "/v1/entitlements/acme/calls",
        headers: { Authorization: key },
      });
      expect(res.status).toBe(200);
    }
    expect((await request(svc).get("/open")).status).toBe(200);
    expect(warnings[0]).toContain("fail open");
    const refused = await request(svc).get("/closed");
    expect(refused.status).toBe(503);
    expect(refused.body.code).toBe("entitlement_unavailable");
  });
});
