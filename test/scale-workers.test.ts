// TALLY_WORKERS=2 as `npm start` runs it (the built `node dist/src/main.js`) on the real PostgreSQL: two workers answer
// on one port, the jobs run in the primary only, a worker that dies is restarted, and SIGTERM to the primary lets
// every in-flight request finish and exits 0.
import http from "node:http";
import { availableParallelism } from "node:os";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createServerDatabase } from "./helpers/databases.js";
import { until } from "./helpers/eventually.js";
import { buildDist, type DetachedTally, slowUpload, spawnDetachedTally } from "./helpers/process.js";

const KEY = "scale-workers-admin-key-0123456789";

/** One request on a connection of its own (a kept-alive socket would stay with one worker). */
function request(
  url: string,
  method: string,
  path: string,
  body?: string,
  contentType = "application/json",
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}${path}`,
      {
        method,
        agent: false,
        headers: { Authorization: `Bearer ${KEY}`, "Content-Type": contentType, Connection: "close" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (d) => {
          text += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const workerPids = (output: string) =>
  output
    .split("\n")
    .filter((l) => l.includes('"msg":"worker listening"'))
    .map((l) => JSON.parse(l) as { worker: string; pid: number });

describe("TALLY_WORKERS=2 (PostgreSQL)", () => {
  let database: Awaited<ReturnType<typeof createServerDatabase>>;
  let tally: DetachedTally | undefined;
  beforeAll(async () => {
    [database] = await Promise.all([createServerDatabase(), buildDist()]);
  }, 240_000);
  afterAll(async () => {
    tally?.kill();
    await database.drop();
  });

  it("when two workers serve one port, then both answer, jobs run in the primary only, a dead worker comes back, and SIGTERM drains in-flight requests and exits 0", async () => {
    tally = spawnDetachedTally({
      DATABASE_URL: database.url,
      TALLY_ADMIN_KEY: KEY,
      TALLY_WORKERS: "2",
      TALLY_JOBS: "on",
      TALLY_CRON_REFRESH: "* * * * * *",
      TALLY_SHUTDOWN_TIMEOUT_MS: "15000",
    });
    const p = tally;
    await p.waitFor(/Tally is running at \S+ \(engine: postgres, 2 workers\)/, 120_000);
    const url = /Tally is running at (\S+)/.exec(p.output())?.[1] as string;
    const first = workerPids(p.output());
    expect(first.map((w) => w.worker).sort()).toEqual(["1", "2"]);
    expect(new Set(first.map((w) => w.pid)).size).toBe(2);

    const meter = await request(
      url,
      "PUT",
      "/v1/meters/calls",
      JSON.stringify({ name: "Calls", unit: "call", aggregation: "sum" }),
    );
    expect(meter.status).toBe(201);
    // The port hands new connections to the workers in turn: both answer.
    for (let i = 0; i < 20; i++) expect((await request(url, "GET", "/v1/meters")).status).toBe(200);
    const metrics = (await request(url, "GET", "/metrics")).body;
    const answered = [...metrics.matchAll(/^tally_worker_requests_total\{worker="(\d+)"\} (\d+)$/gm)].map((m) => ({
      worker: m[1],
      n: Number(m[2]),
    }));
    expect(answered.map((a) => a.worker).sort()).toEqual(["1", "2"]);
    expect(answered.every((a) => a.n > 0)).toBe(true);
    // Jobs: the primary's (every run is recorded with the pid that ran it), and /metrics shows them from any worker.
    await until(
      async () =>
        /^tally_job_runs_total\{job="refresh-rollups",outcome="ok"\} \d+$/m.test(
          (await request(url, "GET", "/metrics")).body,
        ),
      (seen) => seen,
      { message: "the primary's job runs in /metrics" },
    );
    const runners = async () => {
      const c = new pg.Client({ connectionString: database.url });
      await c.connect();
      try {
        const { rows } = await c.query<{ runner: string }>("SELECT DISTINCT runner FROM job_runs");
        return rows.map((r) => r.runner.split(":").at(-1));
      } finally {
        await c.end();
      }
    };
    await until(runners, (r) => r.length > 0);
    expect(await runners()).toEqual([String(p.pid)]);

    // A worker killed outright: logged, and replaced by a new one that answers.
    const victim = first[0] as { worker: string; pid: number };
    process.kill(victim.pid, "SIGKILL");
    await p.waitFor(/"msg":"worker died: restarting it"/);
    await until(
      () => workerPids(p.output()).length,
      (n) => n === 3,
      { timeout: 30_000, message: "a third worker listening" },
    );
    const died = p
      .output()
      .split("\n")
      .find((l) => l.includes('"msg":"worker died: restarting it"'));
    expect(JSON.parse(died as string)).toMatchObject({ worker: victim.worker, pid: victim.pid, signal: "SIGKILL" });
    for (let i = 0; i < 4; i++) expect((await request(url, "GET", "/v1/meters")).status).toBe(200);

    // SIGTERM to the primary while uploads stream into both workers: each is answered, then every process exits.
    const uploads = ["a", "b", "c", "d"].map((tag) =>
      slowUpload(url, { key: KEY, customer: "workers", tag, lines: 150, ms: 3_000 }),
    );
    await until(
      () => Math.min(...uploads.map((u) => u.written())),
      (n) => n >= 30,
    );
    process.kill(p.pid, "SIGTERM");
    const answers = await Promise.all(uploads.map((u) => u.answer));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202]);
    expect(await p.exited).toBe(0);
    expect(await p.goneWithin(5_000)).toBeDefined();
    const stopped = p
      .output()
      .split("\n")
      .filter((l) => l.includes('"msg":"worker stopped"'))
      .map((l) => (JSON.parse(l) as { code: number }).code);
    expect(stopped).toEqual([0, 0]);
    const c = new pg.Client({ connectionString: database.url });
    await c.connect();
    try {
      const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM usage_events");
      expect(rows[0]?.n).toBe(600);
    } finally {
      await c.end();
    }
  }, 240_000);
});

describe("TALLY_WORKERS configuration", () => {
  const server = { DATABASE_URL: "postgres://tally@db/tally" };

  it("when unset, then one process; auto, then one worker per core", () => {
    expect(loadConfig(server).TALLY_WORKERS).toBe(1);
    expect(loadConfig({ ...server, TALLY_WORKERS: "auto" }).TALLY_WORKERS).toBe(availableParallelism());
    expect(loadConfig({ ...server, TALLY_WORKERS: "3" }).TALLY_WORKERS).toBe(3);
  });

  it("when more than one worker is asked for on the embedded database, then the start is refused and says why", () => {
    expect(() => loadConfig({ TALLY_WORKERS: "2" })).toThrow(
      /TALLY_WORKERS: is 2, but the embedded database belongs to one process: set DATABASE_URL/,
    );
    expect(loadConfig({ TALLY_WORKERS: "1" }).TALLY_WORKERS).toBe(1);
  });

  it("when the value is not auto or a whole number from 1, then it is named", () => {
    for (const bad of ["0", "-1", "1.5", "many"])
      expect(() => loadConfig({ ...server, TALLY_WORKERS: bad }), bad).toThrow(
        /TALLY_WORKERS: must be auto or a whole/,
      );
  });
});
