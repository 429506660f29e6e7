// Two Tally processes on one PostgreSQL database, both scheduling finalize-invoices every second and both asked to
// run it at once, on the real clock (grace 0): last month's invoices get one number each, gapless, and late events
// for last month are carried once. (The embedded engine is one process by construction; its concurrent runs are in
// invoices.test.ts.)
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServerDatabase } from "./helpers/databases.js";
import { until } from "./helpers/eventually.js";
import { spawnTally, type TallyProcess } from "./helpers/process.js";

const KEY = "invoice-two-process-key-0123";
const headers = { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" };
const CUSTOMERS = 8;

describe("two processes finalizing invoices on the real PostgreSQL", () => {
  let db: Awaited<ReturnType<typeof createServerDatabase>>;
  let a: TallyProcess;
  let b: TallyProcess;

  beforeAll(async () => {
    db = await createServerDatabase();
    const env = {
      DATABASE_URL: db.url,
      TALLY_ADMIN_KEY: KEY,
      LOG_LEVEL: "warn",
      TALLY_JOBS: "on",
      TALLY_CRON_FINALIZE: "* * * * * *",
      TALLY_INVOICE_GRACE: "PT0S",
    };
    [a, b] = await Promise.all([spawnTally(env), spawnTally(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await db?.drop();
  });

  it("when both finalize at once, repeatedly, while late events arrive, then numbers are gapless and each difference is carried once", async () => {
    const call = async (p: TallyProcess, method: string, path: string, body?: unknown) => {
      const res = await fetch(`${p.url}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const ok = async (p: TallyProcess, method: string, path: string, body?: unknown) => {
      const res = await call(p, method, path, body);
      expect(res.status, `${method} ${path}: ${JSON.stringify(res.body)}`).toBeLessThan(300);
      return res.body;
    };
    const thisMonth = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1));
    const lastMonth = new Date(Date.UTC(thisMonth.getUTCFullYear(), thisMonth.getUTCMonth() - 1, 1));
    // Within the 35 days late events are accepted for, whatever today is: the last hours of last month.
    const late = (minutes: number) => new Date(thisMonth.getTime() - minutes * 60_000).toISOString();
    await ok(a, "PUT", "/v1/meters/calls", { name: "Calls", unit: "calls", aggregation: "sum" });
    await ok(a, "PUT", "/v1/plans/std", { name: "Std", currency: "USD" });
    await ok(a, "POST", "/v1/plans/std/prices", {
      meter: "calls",
      effective_from: "2020-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "0.01",
    });
    for (let c = 0; c < CUSTOMERS; c++) {
      await ok(a, "PUT", `/v1/customers/c${c}`, {});
      await ok(a, "PUT", `/v1/customers/c${c}/subscription`, { plan: "std", start: lastMonth.toISOString() });
    }
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const events = (round: number) => ({
        events: Array.from({ length: CUSTOMERS }, (_, c) => ({
          id: `r${round}-c${c}`,
          customer: `c${c}`,
          meter: "calls",
          value: 10 * (round + 1),
          timestamp: late(60 + round),
        })),
      });
      // Four rounds of late events, each followed by both processes running the job at once, back to back.
      for (let round = 0; round < 4; round++) {
        await ok(round % 2 ? a : b, "POST", "/v1/events", events(round));
        const runs = await Promise.all([a, b].map((p) => call(p, "POST", "/v1/jobs/finalize-invoices/run")));
        for (const r of runs) expect([200, 409]).toContain(r.status);
      }
      // Settle: both schedulers keep running every second; wait until every final invoice with its adjustments bills
      // exactly the usage (to the cent, as decimal strings), and until each process has run the job at least once.
      const billing = async () =>
        (
          await client.query<{ customer_id: string; billed: string; used: string }>(
            `SELECT f.customer_id,
                    round((SELECT sum((x ->> 'amount')::numeric) FROM json_array_elements(f.figures::json) AS x)
                      + coalesce((SELECT sum(amount) FROM invoice_adjustments a WHERE a.adjusts = f.id), 0), 2)::text
                      AS billed,
                    round((SELECT sum(value) FROM usage_events e WHERE e.customer_id = f.customer_id) * 0.01, 2)::text
                      AS used
             FROM invoices f WHERE f.status = 'final' AND f.period_start = $1 ORDER BY f.customer_id`,
            [lastMonth],
          )
        ).rows;
      const settled = await until(
        billing,
        (rows) => rows.length === CUSTOMERS && rows.every((r) => r.billed === r.used),
        {
          timeout: 15_000,
          interval: 250,
          message: "every final invoice billing its usage",
        },
      );
      // 10 + 20 + 30 + 40 calls at 0.01 for each customer.
      expect(settled.value.map((r) => [r.billed, r.used])).toEqual(Array(CUSTOMERS).fill(["1.00", "1.00"]));
      await until(
        async () =>
          (
            await client.query<{ n: number }>(
              "SELECT count(DISTINCT runner)::int AS n FROM job_runs WHERE job = 'finalize-invoices' AND outcome = 'ok'",
            )
          ).rows[0]?.n,
        (n) => n === 2,
        { timeout: 15_000, interval: 250, message: "both processes running the job" },
      );
      const numbers = await client.query<{ number: string }>(
        "SELECT number FROM invoices WHERE number IS NOT NULL ORDER BY number",
      );
      const year = thisMonth.getUTCFullYear();
      expect(numbers.rows.map((r) => r.number)).toEqual(
        numbers.rows.map((_, i) => `${year}-${String(i + 1).padStart(6, "0")}`),
      );
      expect(numbers.rows).toHaveLength(CUSTOMERS);
      // Nothing billed twice (billed = used above), and no round's batch carried in more than one row.
      const adjustments = await client.query<{ customer_id: string; n: number; total: string }>(
        `SELECT f.customer_id, count(*)::int AS n, sum(a.amount)::text AS total
         FROM invoice_adjustments a JOIN invoices f ON f.id = a.adjusts GROUP BY 1 ORDER BY 1`,
      );
      for (const r of adjustments.rows) expect(r.n).toBeLessThanOrEqual(4);
      const runs = await client.query<{ runner: string; started_at: Date; finished_at: Date }>(
        "SELECT runner, started_at, finished_at FROM job_runs WHERE job = 'finalize-invoices' AND outcome = 'ok' ORDER BY started_at",
      );
      expect(new Set(runs.rows.map((r) => r.runner)).size).toBe(2);
      for (let i = 1; i < runs.rows.length; i++) {
        expect(runs.rows[i]!.started_at >= runs.rows[i - 1]!.finished_at).toBe(true);
      }
    } finally {
      await client.end();
    }
  });
});
