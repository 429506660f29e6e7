// Limits across restarts and processes: a webhook left pending is delivered by the next process (the outbox is
// in the database), and evaluators running at once in two Tally instances record each alert and webhook once.
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { openDatabase } from "../src/db/open.js";
import { BACKENDS, createTestDatabase, type TestDatabase } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-20T12:00:00Z";
// The webhook receivers here listen on 127.0.0.1: private addresses allowed.
const LOCAL_HOOKS = { TALLY_WEBHOOK_ALLOW_PRIVATE: "true" };

// Embedded: a data directory on disk, opened by two Tallies in turn — slow on a busy 2-core machine.
describe.each(BACKENDS)("limits durability on %s", { timeout: 150_000 }, (backend) => {
  let database: TestDatabase;
  let up = true;
  let received: string[] = [];
  let server: http.Server;
  let url: string;
  const clock = new ManualClock(NOW);

  beforeAll(async () => {
    if (backend === "embedded") {
      // A data directory (not memory) so the database outlives the process that wrote it.
      const d = await mkdtemp(join(tmpdir(), "tally-limits-"));
      database = {
        backend,
        open: () => openDatabase({ dataDir: d }),
        drop: () => rm(d, { recursive: true, force: true }),
      };
    } else {
      database = await createTestDatabase(backend);
    }
    server = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        if (up) received.push(req.headers["tally-event-id"] as string);
        res.writeHead(up ? 200 : 503).end();
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterAll(async () => {
    await database.drop();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it("when Tally stops with a webhook still pending, then the next process delivers it exactly once", async () => {
    let t: TestTally = await startTestTally(backend, { clock, database, env: LOCAL_HOOKS });
    await defineMeters(t.tally, { calls: "sum" });
    expect((await request(t.tally.app).post("/v1/webhook-endpoints").set(admin).send({ url })).status).toBe(201);
    await request(t.tally.app).put("/v1/customers/c1").set(admin).send({});
    await request(t.tally.app).put("/v1/customers/c1/limits/calls").set(admin).send({ hard: "1", unit: "quantity" });
    up = false;
    expect((await postJson(t.tally, [{ id: "1", customer: "c1", meter: "calls", timestamp: NOW }])).status).toBe(202);
    await t.tally.ctx.limits.idle();
    await request(t.tally.app).post("/v1/jobs/deliver-webhooks/run").set(admin);
    await t.tally.shutdown();

    up = true;
    received = [];
    t = await startTestTally(backend, { clock, database, env: LOCAL_HOOKS });
    try {
      clock.advance(10 * 60_000);
      const run = await request(t.tally.app).post("/v1/jobs/deliver-webhooks/run").set(admin);
      expect(run.body.summary).toMatchObject({ delivered: 1 });
      await request(t.tally.app).post("/v1/jobs/deliver-webhooks/run").set(admin);
      expect(received).toHaveLength(1);
      // and the block itself survived the restart
      const e = await request(t.tally.app).get("/v1/entitlements/c1/calls").set(admin);
      expect(e.status).toBe(429);
    } finally {
      clock.set(NOW);
      await t.tally.shutdown();
    }
  });

  // An embedded database belongs to one process: there, the second evaluator runs concurrently in the same one.
  it("when two Tally processes evaluate the same customers at once, then each alert and webhook exists once", async () => {
    const a = await startTestTally(backend, { clock, database, env: LOCAL_HOOKS });
    const b = backend === "postgres" ? await startTestTally(backend, { clock, database, env: LOCAL_HOOKS }) : a;
    try {
      // The meter and one endpoint, whether or not the test before made them.
      await defineMeters(a.tally, { calls: "sum" });
      const endpoints = await a.tally.ctx.db.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM webhook_endpoints",
        [],
      );
      if (endpoints.rows[0]?.n === 0) {
        expect((await request(a.tally.app).post("/v1/webhook-endpoints").set(admin).send({ url })).status).toBe(201);
      }
      for (let i = 0; i < 20; i++) {
        await request(a.tally.app).put(`/v1/customers/p${i}`).set(admin).send({});
        await request(a.tally.app)
          .put(`/v1/customers/p${i}/limits/calls`)
          .set(admin)
          .send({ soft: "5", hard: "10", unit: "quantity" });
      }
      const events = Array.from({ length: 20 }, (_, i) => ({
        id: `x${i}`,
        customer: `p${i}`,
        meter: "calls",
        value: 10,
        timestamp: NOW,
      }));
      expect((await postJson(a.tally, events)).status).toBe(202);
      await Promise.all([
        request(a.tally.app).post("/v1/jobs/evaluate-limits/run").set(admin),
        request(b.tally.app).post("/v1/jobs/evaluate-limits/run").set(admin),
        ...Array.from({ length: 20 }, (_, i) => b.tally.ctx.limits.evaluateCustomer(`p${i}`)),
        ...Array.from({ length: 20 }, (_, i) => a.tally.ctx.limits.evaluateCustomer(`p${i}`)),
      ]);
      await a.tally.ctx.limits.idle();
      const { rows } = await a.tally.ctx.db.query<{ alerts: string; deliveries: string }>(
        `SELECT (SELECT count(*) FROM alerts WHERE customer_id LIKE 'p%')::text AS alerts,
                  (SELECT count(*) FROM webhook_deliveries d JOIN alerts x ON d.body LIKE '%"customer":"' || x.customer_id || '"%'
                   WHERE x.customer_id LIKE 'p%' AND x.level = 'hard' AND d.body LIKE '%hard_reached%')::text AS deliveries`,
        [],
      );
      expect(rows[0]).toEqual({ alerts: "40", deliveries: "20" });
      // the other process enforces the blocks within its poll interval
      await until(
        async () => (await request(b.tally.app).get("/v1/entitlements/p3/calls").set(admin)).status,
        (status) => status === 429,
        { timeout: 10_000 },
      );
    } finally {
      await a.tally.shutdown();
      if (b !== a) await b.tally.shutdown();
    }
  });
});
