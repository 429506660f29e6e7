// Operations: health, readiness (and when it turns 503), metrics, OpenAPI, security headers.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKENDS } from "./helpers/databases.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

describe.each(BACKENDS)("operations on %s", (backend) => {
  let t: TestTally;
  beforeAll(async () => {
    t = await startTestTally(backend);
  });
  afterAll(() => t.close());

  it("when the database answers and the schema is current, then /healthz and /readyz are 200", async () => {
    expect((await request(t.tally.app).get("/healthz")).body).toEqual({ status: "ok" });
    const ready = await request(t.tally.app).get("/readyz");
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: "ready", engine: backend === "embedded" ? "timescale" : "postgres" });
  });

  it("when a migration is pending, then /readyz is 503 and names it", async () => {
    const last = t.tally.ctx.migrations.at(-1)!.name;
    const saved = await t.tally.ctx.db.query("SELECT * FROM tally_migrations WHERE name = $1", [last]);
    await t.tally.ctx.db.query("DELETE FROM tally_migrations WHERE name = $1", [last]);
    try {
      const res = await request(t.tally.app).get("/readyz");
      expect(res.status).toBe(503);
      expect(res.headers["retry-after"]).toBeDefined();
      expect(res.body.pending_migrations).toEqual([last]);
    } finally {
      const row = saved.rows[0] as { name: string; engine: string; checksum: string; applied_at: Date };
      await t.tally.ctx.db.query(
        "INSERT INTO tally_migrations (name, engine, checksum, applied_at) VALUES ($1, $2, $3, $4)",
        [row.name, row.engine, row.checksum, row.applied_at],
      );
    }
    expect((await request(t.tally.app).get("/readyz")).status).toBe(200);
  });

  it("when requests were served, then /metrics has the request duration histogram by route and status", async () => {
    await request(t.tally.app).get("/v1/meters").set(admin);
    await request(t.tally.app).get("/v1/customers/nobody").set(admin);
    const res = await request(t.tally.app).get("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toMatch(/^text\/plain/);
    expect(res.text).toMatch(/tally_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/meters"[^}]*status="200"/);
    expect(res.text).toMatch(
      /tally_http_request_duration_seconds_count\{[^}]*route="\/v1\/customers\/\{id\}"[^}]*status="404"/,
    );
  });

  it("when /openapi.json is fetched, then it is OpenAPI 3.1 with every route and the request schemas", async () => {
    const res = await request(t.tally.app).get("/openapi.json");
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe("3.1.0");
    const routes = t.tally.app.locals.routes as { method: string; path: string }[];
    for (const r of routes) expect(res.body.paths[r.path]?.[r.method], `${r.method} ${r.path}`).toBeDefined();
    const put = res.body.paths["/v1/meters/{key}"].put;
    const schema = put.requestBody.content["application/json"].schema;
    const resolved = schema.$ref ? res.body.components.schemas[schema.$ref.split("/").pop()] : schema;
    expect(resolved.properties.aggregation.enum).toEqual(["sum", "count", "max", "last", "min", "avg", "unique_count"]);
    expect(resolved.required).toEqual(expect.arrayContaining(["name", "unit", "aggregation"]));
    expect(put.security).toEqual([{ bearer: [] }]);
  });

  it("when a table was never analyzed or has grown by more than 10%, then analyze-tables analyzes it", async () => {
    // The embedded engine has no autovacuum; this job keeps its planner statistics (on a server, on demand).
    const db = t.tally.ctx.db;
    await db.query("CREATE TABLE analyze_probe (n integer)", []);
    await db.query("INSERT INTO analyze_probe SELECT generate_series(1, 500)", []);
    const planned = async () =>
      Number(
        (await db.query<{ n: number }>("SELECT reltuples AS n FROM pg_class WHERE oid = 'analyze_probe'::regclass", []))
          .rows[0]?.n,
      );
    expect(await planned()).toBe(-1); // never analyzed
    const res = await request(t.tally.app).post("/v1/jobs/analyze-tables/run").set(admin);
    expect(res.status).toBe(200);
    expect(res.body.summary.tables_analyzed).toBeGreaterThanOrEqual(1);
    expect(await planned()).toBe(500);
    // One more row (same pages): the next run leaves it alone; a table three times as large is analyzed again.
    await db.query("INSERT INTO analyze_probe VALUES (501)", []);
    await request(t.tally.app).post("/v1/jobs/analyze-tables/run").set(admin);
    expect(await planned()).toBe(500);
    await db.query("INSERT INTO analyze_probe SELECT generate_series(502, 1500)", []);
    await request(t.tally.app).post("/v1/jobs/analyze-tables/run").set(admin);
    expect(await planned()).toBe(1500);
  });

  it("when any response is sent, then helmet's security headers are on it and no x-powered-by", async () => {
    const res = await request(t.tally.app).get("/healthz");
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["content-security-policy"]).toBeDefined();
    expect(res.headers["strict-transport-security"]).toBeDefined();
    expect(res.headers["x-powered-by"]).toBeUndefined();
  });

  it("when shutdown begins, then new requests get 503 shutting_down and /readyz is 503", async () => {
    t.tally.ctx.state.draining = true;
    try {
      const res = await request(t.tally.app).get("/v1/meters").set(admin);
      expect(res.status).toBe(503);
      expect(res.body.code).toBe("shutting_down");
      expect((await request(t.tally.app).get("/readyz")).status).toBe(503);
      expect((await request(t.tally.app).get("/healthz")).status).toBe(200);
    } finally {
      t.tally.ctx.state.draining = false;
    }
  });
});

describe("database unavailable", () => {
  it("when the server database is gone, then /readyz is 503 and API calls get 503 with Retry-After, not 500", async () => {
    const t = await startTestTally("postgres");
    try {
      await t.tally.ctx.db.close();
      const ready = await request(t.tally.app).get("/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.reason).toMatch(/database unavailable/);
      const res = await request(t.tally.app)
        .put("/v1/customers/c")
        .set("Authorization", "Bearer some-uncached-key-123")
        .send({});
      expect(res.status).toBe(503);
      expect(res.headers["retry-after"]).toBe("5");
      expect(res.body.code).toBe("database_unavailable");
    } finally {
      await t.database.drop();
    }
  });
});
