// Jobs: exactly one runner at a time across processes (advisory locks), runs recorded, the scheduler keeping
// rollups materialized on its own, and POST /v1/jobs/{name}/run.
import pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../src/db/migrate.js";
import { openDatabase } from "../src/db/open.js";
import { JobRunner } from "../src/jobs/runner.js";
import { createLogger } from "../src/logger.js";
import { createMetrics } from "../src/metrics.js";
import { BACKENDS, createServerDatabase, createTestDatabase } from "./helpers/databases.js";
import { defineMeters, postJson } from "./helpers/events.js";
import { pace, until } from "./helpers/eventually.js";
import { spawnTally } from "./helpers/process.js";
import { admin, startTestTally } from "./helpers/tally.js";

const silent = createLogger("silent");

interface Run {
  runner: string;
  started_at: Date;
  finished_at: Date;
}

function overlaps(runs: Run[]): [Run, Run][] {
  const sorted = [...runs].sort((a, b) => a.started_at.getTime() - b.started_at.getTime());
  const out: [Run, Run][] = [];
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1] as Run;
    const cur = sorted[i] as Run;
    if (cur.started_at < prev.finished_at) out.push([prev, cur]);
  }
  return out;
}

describe("job locks across connections on the real PostgreSQL", () => {
  it("when two runners (separate pools, as two processes) start the same slow job at once, then the runs never overlap", async () => {
    const database = await createTestDatabase("postgres");
    const a = await openDatabase({ databaseUrl: database.url, dataDir: "x", poolSize: 3 });
    const b = await openDatabase({ databaseUrl: database.url, dataDir: "x", poolSize: 3 });
    try {
      await migrate(a.db, a.engine);
      let active = 0;
      let maxActive = 0;
      const slowJob = {
        name: "slow",
        run: async () => {
          active += 1;
          maxActive = Math.max(maxActive, active);
          await pace(200); // the job's work
          active -= 1;
          return { slept: 200 };
        },
      };
      const runners = [a, b].map(({ db }) => {
        const r = new JobRunner(db, silent, createMetrics());
        r.register(slowJob);
        return r;
      });
      // runNow waits for the lock: all four calls run, one after another.
      const outcomes = await Promise.all([...runners, ...runners].map((r) => r.runNow("slow")));
      expect(outcomes.every((o) => o.ran && o.ok)).toBe(true);
      expect(maxActive).toBe(1);
      const { rows } = await a.db.query<Run>(
        "SELECT runner, started_at, finished_at FROM job_runs WHERE job = 'slow'",
        [],
      );
      expect(rows).toHaveLength(4);
      expect(overlaps(rows)).toEqual([]);
      // The try-lock used by schedules: while one holds it, the other skips.
      let release = () => {};
      const gate = new Promise<void>((r) => {
        release = r;
      });
      let holding = false;
      const held = a.db.tryWithLock("job:slow", async () => {
        holding = true;
        await gate;
      });
      await until(
        () => holding,
        (h) => h,
      );
      expect(await b.db.tryWithLock("job:slow", async () => "ran")).toEqual({ acquired: false });
      release();
      await held;
      expect(await b.db.tryWithLock("job:slow", async () => "ran")).toEqual({ acquired: true, value: "ran" });
    } finally {
      await a.db.close();
      await b.db.close();
      await database.drop();
    }
  });

  it("when a job fails, then the run is recorded as failed with the error", async () => {
    const database = await createTestDatabase("postgres");
    const { db, engine } = await database.open();
    try {
      await migrate(db, engine);
      const runner = new JobRunner(db, silent, createMetrics());
      runner.register({
        name: "broken",
        run: async () => {
          throw new Error("boom");
        },
      });
      expect(await runner.runNow("broken")).toMatchObject({ ran: true, ok: false, error: "boom" });
      const { rows } = await db.query("SELECT outcome, error FROM job_runs WHERE job = 'broken'", []);
      expect(rows).toEqual([{ outcome: "failed", error: "boom" }]);
    } finally {
      await db.close();
      await database.drop();
    }
  });
});

describe("two Tally processes with every-second schedules", () => {
  const KEY = "jobs-two-process-key-0123";
  let db: Awaited<ReturnType<typeof createServerDatabase>>;
  beforeAll(async () => {
    db = await createServerDatabase();
  });
  afterAll(() => db.drop());

  it("when both schedule refresh-rollups every second while events arrive, then no two runs ever overlap", async () => {
    const env = {
      DATABASE_URL: db.url,
      TALLY_ADMIN_KEY: KEY,
      LOG_LEVEL: "warn",
      TALLY_JOBS: "on",
      TALLY_CRON_REFRESH: "* * * * * *",
    };
    const [p1, p2] = await Promise.all([spawnTally(env), spawnTally(env)]);
    try {
      const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };
      await fetch(`${p1.url}/v1/meters/calls`, {
        method: "PUT",
        headers,
        body: JSON.stringify({ name: "c", unit: "u", aggregation: "sum" }),
      });
      const deadline = Date.now() + 5_000;
      let n = 0;
      while (Date.now() < deadline) {
        const events = Array.from({ length: 200 }, (_, i) => ({
          id: `e${n}-${i}`,
          customer: `c${i % 10}`,
          meter: "calls",
        }));
        await fetch(`${(n++ % 2 ? p1 : p2).url}/v1/events`, {
          method: "POST",
          headers,
          body: JSON.stringify({ events }),
        });
        await pace(50);
      }
    } finally {
      await Promise.all([p1.stop(), p2.stop()]);
    }
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<Run & { outcome: string }>(
      "SELECT runner, started_at, finished_at, outcome FROM job_runs WHERE job = 'refresh-rollups'",
    );
    const marks = await client.query("SELECT count(*)::int AS n FROM rollup_claims");
    const ticks = await client.query<{ runs: number; ticks: number }>(
      `SELECT count(*)::int AS runs, count(DISTINCT scheduled_for)::int AS ticks
       FROM job_runs WHERE job = 'refresh-rollups' AND scheduled_for IS NOT NULL`,
    );
    await client.end();
    expect(rows.length).toBeGreaterThanOrEqual(4);
    // both processes fire every tick; each tick ran once
    expect(ticks.rows[0]?.runs).toBe(ticks.rows[0]?.ticks);
    expect(rows.every((r) => r.outcome === "ok")).toBe(true);
    expect(overlaps(rows)).toEqual([]);
    expect(marks.rows[0].n).toBe(0);
  }, 180_000);
});

describe.each(BACKENDS)("the scheduler on %s", (backend) => {
  it("when a late event arrives, then the refresh job materializes it by itself within seconds", async () => {
    const t = await startTestTally(backend, { env: { TALLY_CRON_REFRESH: "* * * * * *" } });
    try {
      await defineMeters(t.tally, { calls: "sum" });
      const late = new Date(Date.now() - 3 * 86_400_000).toISOString();
      await postJson(t.tally, [{ id: "x1", customer: "c", meter: "calls", value: 2, timestamp: late }]);
      expect((await request(t.tally.app).post("/v1/jobs/refresh-rollups/run").set(admin)).status).toBe(200);
      t.tally.ctx.jobs.start();
      await postJson(t.tally, [{ id: "x2", customer: "c", meter: "calls", value: 3, timestamp: late }]);
      const started = Date.now();
      await until(
        async () =>
          (
            await t.tally.ctx.db.query<{ n: string }>(
              "SELECT (SELECT count(*) FROM rollup_invalidations) + (SELECT count(*) FROM rollup_claims) AS n",
              [],
            )
          ).rows[0]?.n,
        (n) => n === "0",
        { timeout: 10_000, interval: 200, message: "late event materialized by the schedule" },
      );
      // Nothing is dirty any more: this answer comes from the rollups alone.
      const res = await request(t.tally.app)
        .get("/v1/usage")
        .query({ customer: "c", meter: "calls", granularity: "day", from: late, to: new Date().toISOString() })
        .set(admin);
      expect(res.body.data).toEqual([expect.objectContaining({ value: "5", count: 2 })]);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await t.close();
    }
  });

  it("when an unknown job is asked to run, then 404 naming the jobs", async () => {
    const t = await startTestTally(backend);
    try {
      const res = await request(t.tally.app).post("/v1/jobs/nope/run").set(admin);
      expect(res.status).toBe(404);
      expect(res.body.detail).toContain("refresh-rollups");
    } finally {
      await t.close();
    }
  });
});
