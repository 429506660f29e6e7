// Two Tally processes on one PostgreSQL database ingesting the same events at once: each event stored once.
// (The embedded engine is one process by construction: PGlite's data directory belongs to the process that opened it.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServerDatabase } from "./helpers/databases.js";
import { spawnTally, type TallyProcess } from "./helpers/process.js";

const KEY = "two-process-admin-key-0123";
const auth = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };

describe("two processes on the real PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof createServerDatabase>>;
  let a: TallyProcess;
  let b: TallyProcess;

  beforeAll(async () => {
    db = await createServerDatabase();
    const env = { DATABASE_URL: db.url, TALLY_ADMIN_KEY: KEY, LOG_LEVEL: "warn", TALLY_JOBS: "off" };
    [a, b] = await Promise.all([spawnTally(env), spawnTally(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await db?.drop();
  });

  it("when both processes receive the same batches at once, then every event is stored exactly once and the counts add up", async () => {
    const put = await fetch(`${a.url}/v1/meters/calls`, {
      method: "PUT",
      headers: auth,
      body: JSON.stringify({ name: "Calls", unit: "call", aggregation: "sum" }),
    });
    expect(put.status).toBe(201);
    const events = Array.from({ length: 6000 }, (_, i) => ({
      id: `evt-${i}`,
      customer: `cust-${i % 50}`,
      meter: "calls",
      value: (i % 7) + 1,
    }));
    // 12 overlapping batches of 1,000, each sent to both processes concurrently.
    const batches = Array.from({ length: 12 }, (_, i) => events.slice((i * 500) % 5000, ((i * 500) % 5000) + 1000));
    const post = (url: string, batch: unknown[]) =>
      fetch(`${url}/v1/events`, { method: "POST", headers: auth, body: JSON.stringify({ events: batch }) }).then(
        async (r) => ({ status: r.status, body: (await r.json()) as { accepted: number; duplicates: number } }),
      );
    const results = await Promise.all(batches.flatMap((batch) => [post(a.url, batch), post(b.url, batch)]));
    for (const r of results) expect(r.status).toBe(202);
    const distinct = new Set(batches.flat().map((e) => e.id));
    const sent = batches.reduce((s, batch) => s + batch.length * 2, 0);
    expect(results.reduce((s, r) => s + r.body.accepted, 0)).toBe(distinct.size);
    expect(results.reduce((s, r) => s + r.body.duplicates, 0)).toBe(sent - distinct.size);

    const pg = await import("pg");
    const client = new pg.default.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query(
      "SELECT count(*)::int AS n, count(DISTINCT (customer_id, event_id))::int AS d, sum(value)::text AS total FROM usage_events",
    );
    await client.end();
    const expectedTotal = [...distinct].reduce((s, id) => s + (Number(id.slice(4)) % 7) + 1, 0);
    expect(rows[0]).toEqual({ n: distinct.size, d: distinct.size, total: String(expectedTotal) });
  });
});
