// The cardinality guard: at most TALLY_MAX_DIMENSION_VALUES distinct combinations per (customer, meter, month); the
// event that would add one more is refused (422 naming the meter and a dimension) and nothing of its batch is stored
// — exact under concurrent batches, on both engines, and across two processes on one PostgreSQL database.
import pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pruneDimensionUsage } from "../src/dimensions/prune.js";
import { BACKENDS, createServerDatabase } from "./helpers/databases.js";
import { ndjson, postJson, postNdjson, storedCount } from "./helpers/events.js";
import { spawnTally, type TallyProcess } from "./helpers/process.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const MAX = 5;
const ev = (id: string, customer: string, props: Record<string, string>, timestamp?: string) => ({
  id,
  customer,
  meter: "llm",
  value: 1,
  properties: props,
  ...(timestamp ? { timestamp } : {}),
});

describe.each(BACKENDS)("dimension cardinality guard on %s", (backend) => {
  let t: TestTally;
  beforeAll(async () => {
    t = await startTestTally(backend, { env: { TALLY_MAX_DIMENSION_VALUES: String(MAX) } });
    const res = await request(t.tally.app)
      .put("/v1/meters/llm")
      .set(admin)
      .send({ name: "LLM", unit: "token", aggregation: "sum", dimensions: ["model", "request_id"] });
    expect(res.status).toBe(201);
  });
  afterAll(() => t.close());

  it("when a batch would add the (max + 1)-th combination, then 422 names that event, the meter and the dimension, and nothing is stored", async () => {
    const c = "one-batch";
    const events = [
      ev("1", c, { model: "a", request_id: "r1" }),
      ev("2", c, { model: "a", request_id: "r2" }),
      ev("3", c, { model: "a", request_id: "r1" }),
      ev("4", c, { model: "b", request_id: "r3" }),
      ev("5", c, {}),
      ev("6", c, { model: "a", request_id: "r4" }),
      ev("7", c, { model: "a", request_id: "r5" }),
      ev("8", c, { model: "a", request_id: "r6" }),
    ];
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    expect(res.body.code).toBe("too_many_dimension_values");
    // Combinations: a/r1, a/r2, b/r3, none, a/r4 (the 5th) — the 6th comes with event 6.
    expect(res.body.errors).toEqual([
      { index: 6, field: "events[6].properties.request_id", message: expect.stringContaining('meter "llm"') },
    ]);
    expect(res.body.detail).toContain('Dimension "request_id"');
    expect(await storedCount(t.tally, "customer_id = $1", [c])).toBe(0);
    // Up to the limit is fine, known combinations stay fine, one more is refused — also in an NDJSON stream.
    expect((await postJson(t.tally, events.slice(0, 6))).status).toBe(202);
    expect((await postJson(t.tally, [ev("9", c, { model: "b", request_id: "r3" }), ev("10", c, {})])).status).toBe(202);
    const streamed = await postNdjson(
      t.tally,
      ndjson([ev("11", c, { model: "a", request_id: "r1" }), ev("12", c, { model: "z" })]),
    );
    expect(streamed.status).toBe(422);
    expect(streamed.body.errors[0]).toMatchObject({ index: 1, field: "events[1].properties.request_id" });
    expect(await storedCount(t.tally, "customer_id = $1", [c])).toBe(8);
  });

  it("when combinations are counted, then per customer, meter and month", async () => {
    const now = new Date();
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    const lastMonth = new Date(monthStart - 3_600_000).toISOString();
    const thisMonth = now.toISOString();
    const five = (c: string, at: string, tag: string) =>
      Array.from({ length: MAX }, (_, i) => ev(`${tag}-${i}`, c, { model: `m${i}` }, at));
    expect((await postJson(t.tally, five("months", lastMonth, "last"))).status).toBe(202);
    expect((await postJson(t.tally, five("months", thisMonth, "this"))).status).toBe(202);
    expect((await postJson(t.tally, five("other-customer", thisMonth, "x"))).status).toBe(202);
    expect((await postJson(t.tally, [ev("more", "months", { model: "m9" }, thisMonth)])).status).toBe(422);
    // Once no event can arrive for last month any more, its record goes.
    const pruned = await pruneDimensionUsage(t.tally.ctx.db, new Date(monthStart));
    expect(pruned).toBeGreaterThanOrEqual(MAX);
    const { rows } = await t.tally.ctx.db.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM dimension_counts WHERE month < $1",
      [new Date(monthStart)],
    );
    expect(rows[0]?.n).toBe("0");
  });

  it("when many batches race to add combinations, then exactly max are accepted", async () => {
    const c = "race";
    const batches = Array.from({ length: 12 }, (_, i) => [
      ev(`race-${i}`, c, { model: "a", request_id: `r${i}` }),
      ev(`race-${i}-dup`, c, { model: "shared", request_id: "same" }),
    ]);
    const results = await Promise.all(batches.map((b) => postJson(t.tally, b)));
    const statuses = results.map((r) => r.status).sort();
    // The shared combination is one; MAX - 1 distinct ones fit beside it.
    expect(statuses.filter((s) => s === 202)).toHaveLength(MAX - 1);
    expect(statuses.filter((s) => s === 422)).toHaveLength(12 - (MAX - 1));
    const { rows } = await t.tally.ctx.db.query<{ n: string; counted: number }>(
      `SELECT (SELECT count(DISTINCT dimension_set)::text FROM usage_events WHERE customer_id = $1) AS n,
              (SELECT combinations FROM dimension_counts WHERE customer_id = $1) AS counted`,
      [c],
    );
    expect(rows[0]).toEqual({ n: String(MAX), counted: MAX });
  });
});

describe("dimension cardinality guard across two processes on the real PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof createServerDatabase>>;
  let a: TallyProcess;
  let b: TallyProcess;
  const KEY = "two-process-admin-key-0123";
  const auth = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };
  beforeAll(async () => {
    db = await createServerDatabase();
    const env = {
      DATABASE_URL: db.url,
      TALLY_ADMIN_KEY: KEY,
      LOG_LEVEL: "warn",
      TALLY_JOBS: "off",
      TALLY_MAX_DIMENSION_VALUES: "20",
    };
    a = await spawnTally(env);
    b = await spawnTally(env);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await db?.drop();
  });

  it("when both processes receive batches of new combinations at once, then exactly the limit is stored", async () => {
    const put = await fetch(`${a.url}/v1/meters/llm`, {
      method: "PUT",
      headers: auth,
      body: JSON.stringify({ name: "LLM", unit: "token", aggregation: "sum", dimensions: ["model", "request_id"] }),
    });
    expect(put.status).toBe(201);
    // 30 batches of 3 new combinations each (90 in all), half to each process: 20 fit.
    const batches = Array.from({ length: 30 }, (_, i) =>
      [0, 1, 2].map((j) => ev(`p-${i}-${j}`, "two", { model: "a", request_id: `r${i}-${j}` })),
    );
    const results = await Promise.all(
      batches.map((batch, i) =>
        fetch(`${i % 2 ? a.url : b.url}/v1/events`, {
          method: "POST",
          headers: auth,
          body: JSON.stringify({ events: batch }),
        }).then((r) => r.status),
      ),
    );
    expect(results.every((s) => s === 202 || s === 422)).toBe(true);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query(
      `SELECT count(DISTINCT dimension_set)::int AS sets, count(*)::int AS events,
              (SELECT combinations FROM dimension_counts WHERE customer_id = 'two') AS counted
       FROM usage_events WHERE customer_id = 'two'`,
    );
    await client.end();
    const accepted = results.filter((s) => s === 202).length;
    expect(rows[0]).toEqual({ sets: accepted * 3, events: accepted * 3, counted: accepted * 3 });
    // Batches of 3: the limit of 20 is reached at 18, and no batch of 3 fits after that.
    expect(accepted).toBe(6);
  });
});
