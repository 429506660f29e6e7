// Two Tally processes on one PostgreSQL database, both scheduling sync-stripe every second and both asked to run
// it at once while late events arrive: the advisory job lock lets one run at a time, and Stripe gets every unit
// once. (The embedded engine is one process by construction; its concurrent runs are in stripe-sync.test.ts.)
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServerDatabase } from "./helpers/databases.js";
import { pace, until } from "./helpers/eventually.js";
import { type FakeStripe, startFakeStripe } from "./helpers/fakeStripe.js";
import { spawnTally, type TallyProcess } from "./helpers/process.js";

const KEY = "stripe-two-process-key-0123";
const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };

describe("two processes syncing to Stripe on the real PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof createServerDatabase>>;
  let fake: FakeStripe;
  let a: TallyProcess;
  let b: TallyProcess;

  beforeAll(async () => {
    db = await createServerDatabase();
    fake = await startFakeStripe();
    const env = {
      DATABASE_URL: db.url,
      TALLY_ADMIN_KEY: KEY,
      LOG_LEVEL: "warn",
      TALLY_JOBS: "on",
      TALLY_CRON_STRIPE: "* * * * * *",
      STRIPE_SECRET_KEY: fake.apiKey,
      STRIPE_API_BASE: fake.url,
    };
    [a, b] = await Promise.all([spawnTally(env), spawnTally(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await fake?.close();
    await db?.drop();
  });

  it("when both run the sync at once, repeatedly, while late events arrive, then no event reaches Stripe twice", async () => {
    const call = async (p: TallyProcess, method: string, path: string, body?: unknown) => {
      try {
        const res = await fetch(`${p.url}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      } catch (err) {
        throw new Error(
          `${method} ${path}: ${(err as Error).message}\n${p.stdout().slice(-3000)}\n${p.stderr().slice(-3000)}`,
        );
      }
    };
    expect(
      (
        await call(a, "PUT", "/v1/meters/calls", {
          name: "c",
          unit: "u",
          aggregation: "sum",
          stripe_event_name: "calls",
        })
      ).status,
    ).toBe(201);
    for (let c = 0; c < 5; c++) {
      expect((await call(a, "PUT", `/v1/customers/c${c}`, { stripe_customer_id: `cus_${c}` })).status).toBe(201);
    }
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    for (let round = 0; round < 6; round++) {
      const events = Array.from({ length: 20 }, (_, i) => ({
        id: `r${round}-${i}`,
        customer: `c${i % 5}`,
        meter: "calls",
        value: round + 1,
        // Complete hours only, each round reaching back into hours already sent.
        timestamp: new Date(hour - (1 + ((i + round) % 6)) * 3_600_000 + i * 1000).toISOString(),
      }));
      expect((await call(round % 2 ? a : b, "POST", "/v1/events", { events })).status).toBe(202);
      const runs = await Promise.all([a, b].map((p) => call(p, "POST", "/v1/jobs/sync-stripe/run")));
      for (const r of runs) expect([200, 409]).toContain(r.status);
      await pace(150);
    }
    // Settle: a final run that finds nothing left to send.
    await until(
      async () => {
        const { status, body } = await call(a, "POST", "/v1/jobs/sync-stripe/run");
        return { status, summary: body.summary as { pending: number; sent: number } | undefined };
      },
      ({ status, summary }) => status === 200 && summary?.pending === 0 && summary.sent === 0,
      { timeout: 20_000, interval: 200, message: "a sync run with nothing left to send" },
    );

    const identifiers = fake.requests.flatMap((r) => r.identifiers);
    expect(fake.requests.filter((r) => r.status !== 200)).toEqual([]);
    expect(new Set(identifiers).size).toBe(identifiers.length);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const totals = await client.query<{ customer_id: string; total: string }>(
        "SELECT customer_id, sum(value)::text AS total FROM usage_events GROUP BY 1 ORDER BY 1",
      );
      expect(totals.rows).toHaveLength(5);
      for (const r of totals.rows) {
        expect(fake.sum(`cus_${r.customer_id.slice(1)}`, "calls").toString(), r.customer_id).toBe(r.total);
      }
      const runs = await client.query<{ runner: string; started_at: Date; finished_at: Date }>(
        "SELECT runner, started_at, finished_at FROM job_runs WHERE job = 'sync-stripe' AND outcome = 'ok' ORDER BY started_at",
      );
      expect(runs.rows.length).toBeGreaterThanOrEqual(6);
      // Both processes did sync, and never at the same time.
      expect(new Set(runs.rows.map((r) => r.runner)).size).toBe(2);
      for (let i = 1; i < runs.rows.length; i++) {
        expect(runs.rows[i]!.started_at >= runs.rows[i - 1]!.finished_at).toBe(true);
      }
    } finally {
      await client.end();
    }
  });
});
