// npm run bench:dashboard — first meaningful paint of the dashboard in a real headless Chromium, measured in the
// browser with the Performance API: the page marks `tally:meaningful` once its first data is on screen (the operator
// view: the ranked customer list; the customer view: its meters with quantities and amounts). Target p95 < 1 s.
//   - the operator view with BENCH_DASH_CUSTOMERS (default 1,000) customers, each with usage this month and last;
//   - the customer view of one customer with 12 months of usage on two meters (BENCH_DASH_EVENTS_PER_DAY a day).
// Last month's invoices are finalized first, as they are in a deployment an hour into the month.
// BENCH_DASH_RUNS (default 20) page loads of each, after 2 warm-ups. Also reported: the customer view until every
// chart has drawn. DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset →
// embedded engine. The Vite build of the page comes from `npm run build` (the npm script runs it first).
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Page } from "puppeteer-core";
import { loadConfig } from "../src/config.js";
import { copyRow } from "../src/ingest/copyText.js";
import { createLogger } from "../src/logger.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { createTally } from "../src/tally.js";
import { launchBrowser } from "../test/helpers/browser.js";
import { benchDatabase, httpRequest, percentile, table } from "./harness.js";
import { benchPlan } from "./scaleSetup.js";

const CUSTOMERS = Number(process.env.BENCH_DASH_CUSTOMERS ?? 1000);
const RUNS = Number(process.env.BENCH_DASH_RUNS ?? 20);
const PER_DAY = Number(process.env.BENCH_DASH_EVENTS_PER_DAY ?? 24);
const EVENTS_PER_PAIR = 20;
const KEY = `bench-${randomBytes(12).toString("hex")}`;
const TWELVE = "bench-12m";

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  const { env: where, cleanup } = await benchDatabase("tally-dbench-", serverUrl);
  const env: Record<string, string> = { ...{ TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "warn" }, ...where };
  const tally = await createTally({ config: loadConfig(env), logger: createLogger("warn") });
  const base = await tally.listen(0, "127.0.0.1");
  const { db, engine } = tally.ctx;
  const browser = await launchBrowser();
  try {
    console.log(`\nTally dashboard benchmark — ${serverUrl ? "server" : "embedded"}, engine ${engine}`);
    const setup = async (method: string, path: string, body: unknown) => {
      const res = await httpRequest(`${base}${path}`, { key: KEY, method, agent: false, body: JSON.stringify(body) });
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
    };
    await benchPlan(setup);

    const now = new Date();
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    const lastMonthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1);
    const yearAgo = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1);
    const t0 = performance.now();
    await db.query(
      `INSERT INTO customers (id, name) SELECT 'cust-' || g, 'Customer ' || g FROM generate_series(0, ${CUSTOMERS - 1}) g
       UNION ALL SELECT '${TWELVE}', 'Twelve Months Ltd'`,
      [],
    );
    await db.query(
      `INSERT INTO subscriptions (customer_id, plan_key, start_at, billing_anchor)
       SELECT id, 'bench', '2020-01-01T00:00:00Z', '2020-01-01T00:00:00Z' FROM customers`,
      [],
    );
    const received = now.toISOString();
    let events = 0;
    await db.transaction((tx) =>
      tx.copyIn(
        {
          table: "usage_events",
          columns: ["ts", "customer_id", "meter", "value", "event_id", "properties", "received_at"],
        },
        (function* () {
          let chunk = "";
          const months = [
            { from: lastMonthStart, span: monthStart - lastMonthStart },
            { from: monthStart, span: Math.max(1, now.getTime() - monthStart - 120_000) },
          ];
          for (let c = 0; c < CUSTOMERS; c++) {
            for (const meter of ["api_calls", "tokens"]) {
              for (let e = 0; e < 2 * EVENTS_PER_PAIR; e++) {
                events += 1;
                const month = months[e % 2] as { from: number; span: number };
                const ts = new Date(month.from + ((events * 7919) % month.span)).toISOString();
                const value = meter === "tokens" ? 1000 + ((events * 31) % 9000) : 1 + ((events * 17) % 300);
                chunk += copyRow([ts, `cust-${c}`, meter, String(value), `d${events}`, null, received]);
                if (chunk.length > 1_000_000) {
                  yield chunk;
                  chunk = "";
                }
              }
            }
          }
          // Twelve months of one customer: PER_DAY events a day on each meter.
          const step = 86_400_000 / PER_DAY;
          for (let ts = yearAgo; ts < now.getTime() - 120_000; ts += step) {
            for (const meter of ["api_calls", "tokens"]) {
              events += 1;
              const value = meter === "tokens" ? 500 + ((events * 13) % 4000) : 1 + ((events * 7) % 50);
              chunk += copyRow([
                new Date(ts).toISOString(),
                TWELVE,
                meter,
                String(value),
                `y${events}`,
                null,
                received,
              ]);
            }
            if (chunk.length > 1_000_000) {
              yield chunk;
              chunk = "";
            }
          }
          if (chunk) yield chunk;
        })(),
      ),
    );
    await db.query("ANALYZE", []);
    await refreshRollups(db, engine, now, { full: true });
    console.log(
      `loaded ${CUSTOMERS + 1} customers, ${events.toLocaleString("en")} events (12 months for ${TWELVE}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    // Last month's invoices are final, as in any deployment an hour into the month (TALLY_INVOICE_GRACE).
    const t1 = performance.now();
    const fin = await httpRequest(`${base}/v1/jobs/finalize-invoices/run`, { key: KEY, method: "POST", agent: false });
    if (fin.status !== 200) throw new Error(`finalize-invoices: ${fin.status} ${fin.text.slice(0, 300)}`);
    console.log(`finalized last month's invoices in ${((performance.now() - t1) / 1000).toFixed(1)} s`);

    // The one call behind the operator's first paint, on its own.
    const apiMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      const res = await httpRequest(`${base}/v1/dashboard/customers`, { key: KEY, agent: false });
      if (res.status !== 200) throw new Error(`overview: ${res.status} ${res.text.slice(0, 200)}`);
      apiMs.push(performance.now() - t);
    }

    const page = await browser.newPage();
    await page.goto(`${base}/dashboard`);
    await page.evaluate(`sessionStorage.setItem("tally.key", ${JSON.stringify(KEY)})`);

    /** One page load from a blank page; the mark's time from navigation start, and until `done` holds. */
    const load = async (p: Page, url: string, done: string) => {
      await p.goto("about:blank");
      await p.goto(url);
      await p.waitForFunction(`performance.getEntriesByName("tally:meaningful").length > 0`, { timeout: 60_000 });
      await p.waitForFunction(done, { timeout: 60_000 });
      return (await p.evaluate(`({
        meaningful: performance.getEntriesByName("tally:meaningful")[0].startTime,
        done: performance.now(),
        rows: document.querySelectorAll("tr[data-customer]").length,
      })`)) as { meaningful: number; done: number; rows: number };
    };
    const measure = async (name: string, url: string, done: string) => {
      const runs: { meaningful: number; done: number; rows: number }[] = [];
      for (let i = 0; i < RUNS + 2; i++) {
        const r = await load(page, url, done);
        if (i >= 2) runs.push(r);
      }
      const m = runs.map((r) => r.meaningful);
      const d = runs.map((r) => r.done);
      return { name, runs, m, d };
    };
    // Each load waits until the page has everything (no request of it still queued in the server), so one load's
    // late panels never delay the next load's first paint.
    const operator = await measure(
      "operator view",
      `${base}/dashboard`,
      `document.querySelector('main[data-complete="true"]')`,
    );
    await page.screenshot({ path: join("test-artifacts", "bench-dashboard-operator.png") });
    const chartsDrawn = `document.querySelector('main[data-complete="true"]') && [...document.querySelectorAll(".chart")].length > 0 && [...document.querySelectorAll(".chart")].every((c) => c.dataset.draws === "1")`;
    const customer = await measure("customer view (12 months)", `${base}/dashboard#/customers/${TWELVE}`, chartsDrawn);
    // The month chart: 12 months of one meter, after a click.
    const monthMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      await load(page, `${base}/dashboard#/customers/${TWELVE}`, chartsDrawn);
      const t = (await page.evaluate(`(async () => {
        const chart = document.querySelector('.chart[data-meter="tokens"]');
        const t0 = performance.now();
        chart.querySelector('button[data-granularity="month"]').click();
        while (chart.dataset.draws !== "2") await new Promise((r) => requestAnimationFrame(r));
        return performance.now() - t0;
      })()`)) as number;
      monthMs.push(t);
    }
    await page.screenshot({ path: join("test-artifacts", "bench-dashboard-customer.png"), fullPage: true });
    const fmt = (v: number) => `${Math.round(v)} ms`;
    console.log(
      `\n${RUNS} page loads each (after 2 warm-ups), loopback, headless Chromium ${await browser.version()}\n`,
    );
    console.log(
      table(
        ["view", "what", "p50", "p95", "max"],
        [
          [
            `operator, ${operator.runs[0]?.rows ?? 0} customer rows of ${CUSTOMERS + 1}`,
            "meaningful paint",
            fmt(percentile(operator.m, 50)),
            fmt(percentile(operator.m, 95)),
            fmt(Math.max(...operator.m)),
          ],
          [
            "operator",
            "every panel loaded (meters, plans, Stripe, alerts)",
            fmt(percentile(operator.d, 50)),
            fmt(percentile(operator.d, 95)),
            fmt(Math.max(...operator.d)),
          ],
          [
            `GET /v1/dashboard/customers, ${CUSTOMERS + 1} customers`,
            "API answer (alone)",
            fmt(percentile(apiMs, 50)),
            fmt(percentile(apiMs, 95)),
            fmt(Math.max(...apiMs)),
          ],
          [
            "customer, 12 months",
            "meaningful paint",
            fmt(percentile(customer.m, 50)),
            fmt(percentile(customer.m, 95)),
            fmt(Math.max(...customer.m)),
          ],
          [
            "customer, 12 months",
            "every chart drawn, every panel loaded",
            fmt(percentile(customer.d, 50)),
            fmt(percentile(customer.d, 95)),
            fmt(Math.max(...customer.d)),
          ],
          [
            "customer, 12 months",
            "month chart after a click",
            fmt(percentile(monthMs, 50)),
            fmt(percentile(monthMs, 95)),
            fmt(Math.max(...monthMs)),
          ],
        ],
      ),
    );
    const worst = Math.max(percentile(operator.m, 95), percentile(customer.m, 95));
    console.log(`\ntarget: meaningful paint p95 < 1000 ms — ${worst < 1000 ? "met" : "NOT met"} (${fmt(worst)})`);
  } finally {
    await browser.close();
    await tally.shutdown();
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
