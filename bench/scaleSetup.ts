// Data for bench/scale.ts: a plan with two priced meters, N customers on it (with a default limit, so the limit
// job has work), and optionally events loaded by COPY with rollups refreshed — done by an in-process Tally that is
// closed afterwards, so that the measured Tally (a child process, jobs on) starts on a loaded database.
import { loadConfig } from "../src/config.js";
import { createLogger } from "../src/logger.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { createTally } from "../src/tally.js";
import { copyEvents, httpRequest } from "./harness.js";

interface Setup {
  customers: number;
  /** Events loaded by COPY over this month and last, rollups refreshed and last month's invoices finalized. */
  events: number;
}

export async function prepare(env: Record<string, string>, key: string, s: Setup): Promise<void> {
  const config = loadConfig({ ...env, TALLY_ADMIN_KEY: key, TALLY_JOBS: "off", LOG_LEVEL: "warn" });
  const tally = await createTally({ config, logger: createLogger("warn") });
  const base = await tally.listen(0, "127.0.0.1");
  const { db, engine } = tally.ctx;
  try {
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await httpRequest(`${base}${path}`, {
        key,
        method,
        agent: false,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text.slice(0, 300)}`);
    };
    await benchPlan(call);
    await call("PUT", "/v1/plans/bench/limits/api_calls", { soft: "1000000000", hard: "2000000000", unit: "quantity" });
    await db.query(
      `INSERT INTO customers (id, name) SELECT 'cust-' || g, 'Customer ' || g FROM generate_series(0, ${s.customers - 1}) g`,
      [],
    );
    await db.query(
      `INSERT INTO subscriptions (customer_id, plan_key, start_at, billing_anchor)
       SELECT id, 'bench', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z' FROM customers`,
      [],
    );
    if (s.events > 0) await loadEvents(tally.ctx.db, s);
    await db.query("ANALYZE", []);
    await refreshRollups(db, engine, new Date(), { full: true });
    await call("POST", "/v1/jobs/finalize-invoices/run");
  } finally {
    await tally.shutdown();
  }
}

/**
 * The plan `bench` with two priced meters: api_calls per unit at 0.001, tokens graduated with a base fee of 10 (the
 * dashboard benchmark's plan too). `call` sends one setup request and throws unless it succeeded.
 */
export async function benchPlan(call: (method: string, path: string, body: unknown) => Promise<void>): Promise<void> {
  await call("PUT", "/v1/plans/bench", { name: "Bench", currency: "USD" });
  await call("PUT", "/v1/meters/api_calls", { name: "API calls", unit: "calls", aggregation: "sum" });
  await call("PUT", "/v1/meters/tokens", { name: "Tokens", unit: "tokens", aggregation: "sum" });
  await call("POST", "/v1/plans/bench/prices", {
    meter: "api_calls",
    effective_from: "2020-01-01T00:00:00Z",
    model: "per_unit",
    unit_price: "0.001",
  });
  await call("POST", "/v1/plans/bench/prices", {
    meter: "tokens",
    effective_from: "2020-01-01T00:00:00Z",
    model: "graduated",
    tiers: [
      { up_to: "100000", unit_price: "0.00002" },
      { up_to: null, unit_price: "0.00001" },
    ],
    base_fee: "10",
  });
}

/** s.events events by COPY, half last month, half this month up to two minutes ago, spread over customers. */
async function loadEvents(db: Parameters<typeof copyEvents>[0], s: Setup): Promise<void> {
  const now = Date.now();
  const d = new Date(now);
  const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const lastMonthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 1);
  const spans = [
    { from: lastMonthStart, span: monthStart - lastMonthStart },
    { from: monthStart, span: Math.max(1, now - monthStart - 120_000) },
  ];
  const received = d.toISOString();
  await copyEvents(
    db,
    s.events,
    ["ts", "customer_id", "meter", "value", "event_id", "properties", "received_at"],
    (i) => {
      const month = spans[i % 2] as { from: number; span: number };
      const meter = i % 4 < 2 ? "api_calls" : "tokens";
      return [
        new Date(month.from + ((i * 7919) % month.span)).toISOString(),
        `cust-${(i * 31) % s.customers}`,
        meter,
        String(meter === "tokens" ? 1000 + (i % 9000) : 1 + (i % 300)),
        `pre-${i}`,
        null,
        received,
      ];
    },
  );
}
