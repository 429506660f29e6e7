// Reads during a refresh, on the real PostgreSQL: between the moment a refresh has claimed the hours marked by
// ingest and the moment it has rebuilt their rollups, a read must still build those hours from raw events — the
// rollup of such an hour is stale. The refresh is held in that window by a row lock the test takes on the
// watermarks table (the refresh locks those rows, after its claim, before it rebuilds anything); plain reads take
// no lock there.
import pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { until } from "./helpers/eventually.js";
import { admin, startTestTally, type TestTally } from "./helpers/tally.js";

const NOW = "2026-11-03T12:30:00Z";
const HOUR = "2026-11-02T10:00:00Z";

describe("reads during a refresh on postgres", () => {
  let t: TestTally;
  beforeAll(async () => {
    t = await startTestTally("postgres", { clock: new ManualClock(NOW) });
    await defineMeters(t.tally, { calls: "sum" });
  });
  afterAll(() => t.close());

  const ingest = async (events: object[]) => {
    const res = await postJson(t.tally, events);
    expect(res.status, JSON.stringify(res.body)).toBe(202);
  };
  const total = async (customer: string, granularity: "hour" | "day" | "month", from: string, to: string) => {
    const res = await request(t.tally.app)
      .get("/v1/usage")
      .query({ customer, meter: "calls", granularity, from, to })
      .set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return (res.body.data as { start: string; value: string }[]).map((p) => [p.start, p.value]);
  };
  const refresh = () => request(t.tally.app).post("/v1/jobs/refresh-rollups/run").set(admin);

  it("when a refresh has claimed a late event's hour but not rebuilt it yet, then reads still count the event", async () => {
    const c = "claimed";
    await ingest([{ id: "1", customer: c, meter: "calls", value: 1, timestamp: "2026-11-02T10:15:00Z" }]);
    expect((await refresh()).status).toBe(200);
    await ingest([{ id: "2", customer: c, meter: "calls", value: 5, timestamp: "2026-11-02T10:45:00Z" }]);
    const expected = {
      hour: [[HOUR, "6"]],
      day: [["2026-11-02T00:00:00Z", "6"]],
      month: [["2026-11-01T00:00:00Z", "6"]],
    };
    const read = async () => ({
      hour: await total(c, "hour", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"),
      day: await total(c, "day", "2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z"),
      month: await total(c, "month", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
    });
    expect(await read()).toEqual(expected);

    const holder = new pg.Client({ connectionString: t.database.url });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT * FROM rollup_watermarks FOR UPDATE");
      const running = refresh().then((r) => r);
      // The refresh has claimed the hour and waits for the watermark rows.
      await until(
        async () =>
          (
            await holder.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE NOT l.granted AND a.datname = current_database()`,
            )
          ).rows[0]?.n ?? 0,
        (waiting) => waiting > 0,
        { timeout: 20_000, message: "the refresh waiting on the watermark rows" },
      );
      expect(await read()).toEqual(expected);
      await holder.query("ROLLBACK");
      expect((await running).status).toBe(200);
    } finally {
      await holder.end();
    }
    expect(await read()).toEqual(expected);
  });
});
