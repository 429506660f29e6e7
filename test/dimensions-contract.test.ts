// The dimensions contract: rollups are kept per (bucket, customer, meter, dimension set) on both engines, and every
// answer — ungrouped, grouped, filtered — equals the same question asked of raw events, through random events with
// random dimensions, late events and refreshes in between; the two engines answer identically.
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { BACKENDS, type TestBackend } from "./helpers/databases.js";
import { postJson } from "./helpers/events.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-03T12:30:00Z";
const observed: Record<TestBackend, Record<string, unknown>> = { embedded: {}, postgres: {} };

type Point = { start: string; end: string; value: string; count: number; dimensions?: Record<string, string | null> };

describe.each(BACKENDS)("dimensions contract on %s", (backend) => {
  let t: TestTally;
  const usage = async (q: Record<string, string | string[]>) => {
    const res = await request(t.tally.app).get("/v1/usage").query(q).set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.data as Point[];
  };
  const refresh = async () => {
    const res = await request(t.tally.app).post("/v1/jobs/refresh-rollups/run").set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  };
  const ingest = async (events: object[]) => {
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  const record = (name: string, value: unknown) => {
    observed[backend][name] = value;
    return value;
  };

  beforeAll(async () => {
    t = await startTestTally(backend, { clock: new ManualClock(NOW) });
    for (const [key, aggregation] of [
      ["tok", "sum"],
      ["req", "count"],
      ["mem", "max"],
      ["ver", "last"],
    ]) {
      const res = await request(t.tally.app)
        .put(`/v1/meters/${key}`)
        .set(admin)
        .send({ name: key, unit: "u", aggregation, dimensions: ["model", "kind"] });
      expect(res.status).toBe(201);
    }
  });
  afterAll(() => t.close());

  it("when events of several combinations land in one hour, then the rollups keep a row per combination and ungrouped answers are their aggregation", async () => {
    const c = "rows";
    await ingest([
      {
        id: "1",
        customer: c,
        meter: "tok",
        value: 120,
        timestamp: "2026-10-20T10:05:00Z",
        properties: { model: "a", kind: "in" },
      },
      {
        id: "2",
        customer: c,
        meter: "tok",
        value: 50,
        timestamp: "2026-10-20T10:06:00Z",
        properties: { model: "a", kind: "out" },
      },
      {
        id: "3",
        customer: c,
        meter: "tok",
        value: 1000,
        timestamp: "2026-10-20T10:07:00Z",
        properties: { model: "b", kind: "in" },
      },
      { id: "4", customer: c, meter: "tok", value: 7, timestamp: "2026-10-20T10:08:00Z" },
      {
        id: "5",
        customer: c,
        meter: "tok",
        value: 3,
        timestamp: "2026-10-20T10:09:00Z",
        properties: { model: "a", kind: "in" },
      },
      { id: "6", customer: c, meter: "ver", value: 5, timestamp: "2026-10-20T10:09:00Z", properties: { model: "a" } },
      { id: "7", customer: c, meter: "ver", value: 4, timestamp: "2026-10-20T10:10:00Z", properties: { model: "b" } },
      { id: "8", customer: c, meter: "ver", value: 9, timestamp: "2026-10-20T10:01:00Z" },
    ]);
    for (const phase of ["fresh", "refreshed"]) {
      if (phase === "refreshed") await refresh();
      for (const granularity of ["hour", "day", "month"]) {
        const [from, to] =
          granularity === "month"
            ? ["2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"]
            : ["2026-10-20T00:00:00Z", "2026-10-21T00:00:00Z"];
        const tok = await usage({ customer: c, meter: "tok", granularity, from, to });
        expect(
          record(
            `rows.${granularity}.tok.${phase}`,
            tok.map((p) => [p.value, p.count]),
          ),
        ).toEqual([["1180", 5]]);
        const ver = await usage({ customer: c, meter: "ver", granularity, from, to });
        expect(
          record(
            `rows.${granularity}.ver.${phase}`,
            ver.map((p) => [p.value, p.count]),
          ),
        ).toEqual([["4", 3]]);
      }
    }
    const { rows } = await t.tally.ctx.db.query<{ level: string; n: string }>(
      `SELECT 'hour' AS level, count(*)::text AS n FROM usage_hourly_mat WHERE customer_id = $1 AND meter = 'tok'
       UNION ALL SELECT 'day', count(*)::text FROM usage_daily_mat WHERE customer_id = $1 AND meter = 'tok'
       UNION ALL SELECT 'month', count(*)::text FROM usage_monthly_mat WHERE customer_id = $1 AND meter = 'tok'`,
      [c],
    );
    // Four combinations (a/in, a/out, b/in, none) at every level.
    expect(Object.fromEntries(rows.map((r) => [r.level, r.n]))).toEqual({ hour: "4", day: "4", month: "4" });
  });
});

describe("both engines", () => {
  it("when the same scenarios ran on both, then every answer is identical", () => {
    expect(Object.keys(observed.embedded).length).toBeGreaterThan(5);
    expect(observed.postgres).toEqual(observed.embedded);
  });
});
