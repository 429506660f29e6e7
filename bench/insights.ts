// npm run bench:query (second part) — price simulation and forecasts at scale.
// BENCH_SIM_CUSTOMERS (default 10,000) customers on one plan with 4 priced meters (per_unit, graduated, volume,
// package), BENCH_SIM_EVENTS_PER_PAIR (default 12) events per (customer, meter) in the previous month and as many in
// the current one, loaded with COPY and refreshed. Then Tally runs as a process of its own and is asked over HTTP:
//   - POST /v1/simulations for the whole plan over the previous month (target < 2 s), beside the time to compute
//     the same invoices one by one (GET /v1/customers/{id}/invoice for every customer), and the check that the
//     simulation's current totals equal those invoices; and the same simulation over the current month to date;
//   - GET /v1/customers/{id}/forecast for BENCH_QUERIES (default 200) random customers (target p95 < 20 ms).
//   DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset → embedded engine.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { loadConfig } from "../src/config.js";
import { copyRow } from "../src/ingest/copyText.js";
import { createLogger } from "../src/logger.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { createTally } from "../src/tally.js";
import { benchDatabase, httpRequest, percentile, startTally, table } from "./harness.js";

const CUSTOMERS = Number(process.env.BENCH_SIM_CUSTOMERS ?? 10_000);
const PER_PAIR = Number(process.env.BENCH_SIM_EVENTS_PER_PAIR ?? 12);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 200);
const KEY = `bench-${randomBytes(12).toString("hex")}`;
const METERS = {
  api_calls: { aggregation: "sum", price: { model: "per_unit", unit_price: "0.001" } },
  tokens: {
    aggregation: "sum",
    price: {
      model: "graduated",
      tiers: [
        { up_to: "1000", unit_price: "0.002" },
        { up_to: null, unit_price: "0.001" },
      ],
      base_fee: "10",
    },
  },
  storage_gb: {
    aggregation: "max",
    price: {
      model: "volume",
      tiers: [
        { up_to: "50", unit_price: "0.5" },
        { up_to: null, unit_price: "0.25" },
      ],
    },
  },
  seats: { aggregation: "last", price: { model: "package", package_size: "5", package_price: "20" } },
} as const;

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = (url: string) => httpRequest(url, { key: KEY, agent });
const post = (url: string, body: unknown) =>
  httpRequest(url, { key: KEY, method: "POST", agent: false, body: JSON.stringify(body) });

async function time<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [performance.now() - t0, v];
}

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  const { env: where, cleanup } = await benchDatabase("tally-sbench-", serverUrl);
  const env: Record<string, string> = { ...{ TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "warn" }, ...where };
  const tally = await createTally({ config: loadConfig(env), logger: createLogger("warn") });
  let stopped = false;
  const base = await tally.listen(0, "127.0.0.1");
  const { db, engine } = tally.ctx;
  const now = new Date();
  const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
  const lastMonthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
  try {
    console.log(`\nTally simulation and forecast benchmark — ${serverUrl ? "server" : "embedded"}, engine ${engine}`);
    const setup = async (method: string, path: string, body: unknown) => {
      const res = await httpRequest(`${base}${path}`, { key: KEY, method, agent: false, body: JSON.stringify(body) });
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
    };
    await setup("PUT", "/v1/plans/bench", { name: "Bench", currency: "USD" });
    for (const [meter, m] of Object.entries(METERS)) {
      await setup("PUT", `/v1/meters/${meter}`, { name: meter, unit: "unit", aggregation: m.aggregation });
      await setup("POST", "/v1/plans/bench/prices", { meter, effective_from: "2020-01-01T00:00:00Z", ...m.price });
    }
    const [loadMs] = await time(async () => {
      await db.query(
        `INSERT INTO customers (id) SELECT 'sim-' || g FROM generate_series(0, ${CUSTOMERS - 1}) g ON CONFLICT DO NOTHING`,
        [],
      );
      await db.query(
        `INSERT INTO subscriptions (customer_id, plan_key, start_at, billing_anchor)
         SELECT 'sim-' || g, 'bench', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z' FROM generate_series(0, ${CUSTOMERS - 1}) g`,
        [],
      );
      const months = [
        { from: lastMonthStart, span: monthStart - lastMonthStart },
        { from: monthStart, span: Math.max(1, now.getTime() - monthStart - 60_000) },
      ];
      const received = now.toISOString();
      await db.transaction((tx) =>
        tx.copyIn(
          {
            table: "usage_events",
            columns: ["ts", "customer_id", "meter", "value", "event_id", "properties", "received_at"],
          },
          (function* () {
            let chunk = "";
            let n = 0;
            for (let c = 0; c < CUSTOMERS; c++) {
              for (const meter of Object.keys(METERS)) {
                for (let e = 0; e < 2 * PER_PAIR; e++) {
                  n += 1;
                  const month = months[e % 2] as { from: number; span: number };
                  const ts = new Date(month.from + ((n * 7919) % month.span)).toISOString();
                  chunk += copyRow([ts, `sim-${c}`, meter, String(1 + ((n * 31) % 200)), `s${n}`, null, received]);
                  if (chunk.length > 1_000_000) {
                    yield chunk;
                    chunk = "";
                  }
                }
              }
            }
            if (chunk) yield chunk;
          })(),
        ),
      );
      await db.query("ANALYZE", []);
      await refreshRollups(db, engine, now, { full: true });
    });
    const events = CUSTOMERS * 4 * 2 * PER_PAIR;
    console.log(
      `loaded ${CUSTOMERS.toLocaleString("en-US")} customers × 4 meters, ${events.toLocaleString("en-US")} events, refreshed: ${(loadMs / 1000).toFixed(1)} s`,
    );
    await tally.shutdown();
    stopped = true;

    const child = await startTally(env);
    try {
      const replacement = {
        plan: "bench",
        period: new Date(lastMonthStart).toISOString().slice(0, 7),
        prices: [
          {
            meter: "api_calls",
            model: "graduated",
            tiers: [
              { up_to: "500", unit_price: "0" },
              { up_to: null, unit_price: "0.0015" },
            ],
          },
          { meter: "tokens", model: "per_unit", unit_price: "0.0012" },
        ],
      };
      await post(`${child.url}/v1/simulations`, replacement); // warm-up
      const simMs: number[] = [];
      let sim: { customers: { customer: string; current: string }[]; totals: Record<string, string> } | undefined;
      for (let i = 0; i < 5; i++) {
        const [ms, res] = await time(() => post(`${child.url}/v1/simulations`, replacement));
        if (res.status !== 200) throw new Error(`simulation: ${res.status} ${res.text.slice(0, 500)}`);
        simMs.push(ms);
        sim = JSON.parse(res.text);
      }
      const current = { ...replacement, period: new Date(monthStart).toISOString().slice(0, 7) };
      const currentMs: number[] = [];
      for (let i = 0; i < 3; i++) {
        const [ms, res] = await time(() => post(`${child.url}/v1/simulations`, current));
        if (res.status !== 200) throw new Error(`simulation: ${res.status} ${res.text.slice(0, 500)}`);
        currentMs.push(ms);
      }
      const [oneByOneMs, invoices] = await time(async () => {
        const totals = new Map<string, string>();
        for (let c = 0; c < CUSTOMERS; c++) {
          const res = await get(`${child.url}/v1/customers/sim-${c}/invoice?period=${replacement.period}`);
          if (res.status !== 200) throw new Error(`invoice: ${res.status} ${res.text}`);
          totals.set(`sim-${c}`, (JSON.parse(res.text) as { total: string }).total);
        }
        return totals;
      });
      const mismatched = (sim?.customers ?? []).filter((c) => invoices.get(c.customer) !== c.current).length;
      const forecastMs: number[] = [];
      for (let q = 0; q < QUERIES + 20; q++) {
        const [ms, res] = await time(() => get(`${child.url}/v1/customers/sim-${(q * 7919) % CUSTOMERS}/forecast`));
        if (res.status !== 200) throw new Error(`forecast: ${res.status} ${res.text}`);
        if (q >= 20) forecastMs.push(ms); // the first 20 warm the process up
      }
      const f = (ms: number) => `${ms.toFixed(1)} ms`;
      console.log(
        table(
          ["what", "p50", "p95 / max", "target", "baseline", "baseline / Tally"],
          [
            [
              `simulation of last month, ${CUSTOMERS.toLocaleString("en-US")} customers × 4 meters`,
              f(percentile(simMs, 50)),
              f(Math.max(...simMs)),
              "< 2 s",
              `${(oneByOneMs / 1000).toFixed(1)} s (same invoices one by one over HTTP)`,
              `${(oneByOneMs / percentile(simMs, 50)).toFixed(1)}×`,
            ],
            [
              `forecast, 1 customer (${QUERIES} asks)`,
              f(percentile(forecastMs, 50)),
              f(percentile(forecastMs, 95)),
              "p95 < 20 ms",
              "",
              "",
            ],
          ],
        ),
      );
      console.log(
        `\nsimulation current totals equal to the invoices: ${(sim?.customers.length ?? 0) - mismatched} of ${sim?.customers.length ?? 0}; totals ${JSON.stringify(sim?.totals)}`,
      );
    } finally {
      await child.stop();
    }
  } finally {
    agent.destroy();
    if (!stopped) await tally.shutdown();
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
