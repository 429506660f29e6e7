// Crash safety: clients ingest concurrently, retrying each batch with the same ids until it is acknowledged,
// while Tally is killed with SIGKILL and restarted several times. Afterwards every event is stored exactly once
// — nothing lost, nothing counted twice — in raw events, dedupe keys and rollups. On the real PostgreSQL, and on
// the embedded engine (kill the process, reopen its data directory).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/open.js";
import type { Queryable } from "../../src/db/types.js";
import { BACKENDS, createServerDatabase } from "../helpers/databases.js";
import { spawnTally, type TallyProcess } from "../helpers/process.js";
import { freePort, newStats, pace, postUntilAccepted } from "./helpers.js";

const KEY = "chaos-admin-key-0123456789abcdef";
const CLIENTS = 4;
const EVENTS = 100;
const KILLS = 5;

describe.each(BACKENDS)("crash on %s", (backend) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it("when Tally is SIGKILLed and restarted while clients retry, then every event is stored exactly once", async () => {
    const port = await freePort();
    const env: Record<string, string> = {
      TALLY_ADMIN_KEY: KEY,
      PORT: String(port),
      LOG_LEVEL: "warn",
      TALLY_JOBS: "off",
    };
    let inspect: () => Promise<{ db: Queryable; close(): Promise<void> }>;
    if (backend === "postgres") {
      const server = await createServerDatabase();
      cleanups.push(server.drop);
      env.DATABASE_URL = server.url;
      inspect = async () => {
        const { db } = await openDatabase({ databaseUrl: server.url, dataDir: "unused" });
        return { db, close: () => db.close() };
      };
    } else {
      const dir = await mkdtemp(join(tmpdir(), "tally-crash-"));
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      env.TALLY_DATA_DIR = dir;
      inspect = async () => {
        const { db } = await openDatabase({ dataDir: dir });
        return { db, close: () => db.close() };
      };
    }
    const url = `http://127.0.0.1:${port}`;
    let tally: TallyProcess = await spawnTally(env, 60_000);
    const meter = await fetch(`${url}/v1/meters/calls`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ name: "Calls", unit: "call", aggregation: "sum" }),
    });
    expect(meter.status).toBe(201);

    const stats = newStats();
    // Clients send until the last restart is done (so every kill lands under load), then a few batches more.
    let killing = true;
    let batchesSent = 0;
    const clients = Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        for (let b = 0, after = 0; killing || after++ < 5; b++) {
          batchesSent += 1;
          const events = Array.from({ length: EVENTS }, (_, i) => ({
            id: `c${c}-b${b}-e${i}`,
            customer: `cust-${(c * 7 + b + i) % 20}`,
            meter: "calls",
          }));
          await postUntilAccepted(() => url, KEY, events, stats);
          await pace(10);
        }
      }),
    );

    let kills = 0;
    const t0 = Date.now();
    while (kills < KILLS) {
      await pace(700 + Math.random() * 800);
      tally.child.kill("SIGKILL");
      await tally.exited;
      kills += 1;
      tally = await spawnTally(env, 60_000);
    }
    killing = false;
    await clients;
    const seconds = (Date.now() - t0) / 1000;
    await tally.stop("SIGTERM");

    const { db, close } = await inspect();
    try {
      const { rows } = await db.query<{ events: string; distinct_events: string; keys: string; total: string }>(
        `SELECT (SELECT count(*) FROM usage_events)::text AS events,
                (SELECT count(DISTINCT (customer_id, event_id)) FROM usage_events)::text AS distinct_events,
                (SELECT count(*) FROM event_key_entries)::text AS keys,
                (SELECT sum(value) FROM usage_events)::text AS total`,
        [],
      );
      const sent = batchesSent * EVENTS;
      console.log(
        `[crash ${backend}] ${sent} events sent in ${batchesSent} batches by ${CLIENTS} clients over ${seconds.toFixed(1)} s; ` +
          `${kills} SIGKILLs and restarts; ${stats.attempts} attempts, failures retried: ${JSON.stringify(Object.fromEntries(stats.failures))}; ` +
          `accepted ${stats.accepted}, reported duplicates ${stats.duplicates}; stored ${rows[0]?.events} (distinct ${rows[0]?.distinct_events})`,
      );
      expect(rows[0]).toEqual({
        events: String(sent),
        distinct_events: String(sent),
        keys: String(sent),
        total: String(sent),
      });
      // Each 202 covers its whole batch; a batch that committed but lost its answer to the kill comes back on
      // retry as duplicates, never stored twice.
      expect(stats.accepted + stats.duplicates).toBe(sent);
    } finally {
      await close();
    }
  });
});
