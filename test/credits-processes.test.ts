// Credits across restarts and processes, on both engines: balances, invoices and a credits_exhausted block survive a
// restart (nothing is kept in memory that the database does not hold), and two Tally instances ingesting for one
// credit_only customer at once block it once: one credits.exhausted, no state going back to "ok" in between.
// (An embedded database belongs to one process: there the two ingesters are two request streams into one instance.)
import { mkdtemp, rm } from "node:fs/promises";
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

const NOW = "2026-11-20T12:30:00Z";

async function setUp(t: TestTally) {
  const api = request(t.tally.app);
  await defineMeters(t.tally, { calls: "sum" });
  expect((await api.put("/v1/plans/calls").set(admin).send({ name: "Calls", currency: "USD" })).status).toBe(201);
  const price = await request(t.tally.app)
    .post("/v1/plans/calls/prices")
    .set(admin)
    .send({ meter: "calls", effective_from: "2026-01-01T00:00:00Z", model: "per_unit", unit_price: "0.01" });
  expect(price.status).toBe(201);
}

async function prepaid(t: TestTally, id: string, amount: string, mode = "credit_only") {
  const put = (path: string, body: object) => request(t.tally.app).put(path).set(admin).send(body);
  expect((await put(`/v1/customers/${id}`, {})).status).toBe(201);
  expect((await put(`/v1/customers/${id}/subscription`, { plan: "calls", start: "2026-11-01T00:00:00Z" })).status).toBe(
    200,
  );
  expect((await put(`/v1/customers/${id}`, { credit_mode: mode })).status).toBe(200);
  const g = await request(t.tally.app).post(`/v1/customers/${id}/credit-grants`).set(admin).send({ amount });
  expect(g.status, JSON.stringify(g.body)).toBe(201);
}

describe.each(BACKENDS)("credits across restarts and processes on %s", (backend) => {
  let database: TestDatabase;
  const clock = new ManualClock(NOW);

  beforeAll(async () => {
    if (backend === "embedded") {
      const d = await mkdtemp(join(tmpdir(), "tally-credits-"));
      database = {
        backend,
        open: () => openDatabase({ dataDir: d }),
        drop: () => rm(d, { recursive: true, force: true }),
      };
    } else {
      database = await createTestDatabase(backend);
    }
  });
  afterAll(() => database.drop());

  it("when Tally restarts, then balances, invoices and a credits_exhausted block are the same", async () => {
    let t = await startTestTally(backend, { clock, database });
    const read = async (path: string) => {
      const res = await request(t.tally.app).get(path).set(admin);
      return { status: res.status, body: res.body };
    };
    let before: unknown[];
    try {
      await setUp(t);
      await prepaid(t, "kept", "2.00");
      await prepaid(t, "spent", "1.00");
      expect((await postJson(t.tally, [{ id: "k1", customer: "kept", meter: "calls", value: 75 }])).status).toBe(202);
      expect((await postJson(t.tally, [{ id: "s1", customer: "spent", meter: "calls", value: 100 }])).status).toBe(202);
      await t.tally.ctx.limits.idle();
      await t.tally.ctx.limits.evaluateCustomer("spent");
      before = await Promise.all([
        read("/v1/customers/kept/credits"),
        read("/v1/customers/kept/invoice"),
        read("/v1/entitlements/spent/calls"),
      ]);
      expect((before[0] as { body: { balance: string } }).body.balance).toBe("1.25");
      expect((before[2] as { status: number }).status).toBe(429);
    } finally {
      await t.tally.shutdown();
    }
    t = await startTestTally(backend, { clock, database });
    try {
      const after = await Promise.all([
        read("/v1/customers/kept/credits"),
        read("/v1/customers/kept/invoice"),
        read("/v1/entitlements/spent/calls"),
      ]);
      expect(after).toEqual(before);
    } finally {
      await t.tally.shutdown();
    }
  });

  it("when two Tally instances ingest for one credit_only customer at once, then it is blocked once", async () => {
    const a = await startTestTally(backend, { clock, database });
    const b = backend === "postgres" ? await startTestTally(backend, { clock, database }) : a;
    try {
      await prepaid(a, "shared", "10.00");
      // 20 batches of 60 calls (0.60) through each instance at once: 24.00 of usage for 10.00 of credits.
      const batches = (t: TestTally, name: string) =>
        Array.from({ length: 20 }, (_, i) =>
          postJson(t.tally, [{ id: `${name}${i}`, customer: "shared", meter: "calls", value: 60 }]).then((r) =>
            expect(r.status).toBe(202),
          ),
        );
      // Every state each deciding instance goes through, as it sees it.
      const seen = [[], []] as string[][];
      const watch = setInterval(() => {
        for (const [i, t] of [a, b].entries()) {
          const s = t.tally.ctx.limits.state("shared", "calls");
          if (s?.credits && seen[i]?.at(-1) !== s.credits) seen[i]?.push(s.credits);
        }
      }, 5);
      await Promise.all([...batches(a, "a"), ...batches(b, "b")]);
      await until(
        () => [a, b].map((t) => t.tally.ctx.limits.state("shared", "calls")?.credits),
        (states) => states.every((s) => s === "exhausted"),
        { message: "blocked on both instances" },
      );
      clearInterval(watch);
      await a.tally.ctx.limits.idle();
      await b.tally.ctx.limits.idle();
      // Once exhausted, never "ok" again without a new grant.
      for (const states of seen) expect(states.slice(states.indexOf("exhausted"))).toEqual(["exhausted"]);
      const { rows } = await a.tally.ctx.db.query<{ level: string }>(
        "SELECT level FROM credit_alerts WHERE customer_id = 'shared'",
        [],
      );
      expect(rows.map((r) => r.level)).toEqual(["credits_exhausted"]);
      const credits = await request(a.tally.app).get("/v1/customers/shared/credits").set(admin);
      expect(credits.body.balance).toBe("0.00");
      const invoice = await request(b.tally.app).get("/v1/customers/shared/invoice").set(admin);
      expect(invoice.body).toMatchObject({ subtotal: "24.00", credits: "10.00", total: "14.00" });
    } finally {
      await a.tally.shutdown();
      if (b !== a) await b.tally.shutdown();
    }
  });
});
