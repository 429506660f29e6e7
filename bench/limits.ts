// npm run bench:limits — enforcement speed. Against a Tally child process (embedded by default; DATABASE_URL for a
// server database, created fresh and dropped):
//   1. GET /v1/entitlements/{customer}/{meter} at a fixed rate of 1,000 and 5,000 requests/s (autocannon; latency
//      at millisecond resolution), with GET /healthz at the same rates as the baseline (HTTP alone);
//   2. the middleware's cached decision: cost per call, against a no-op middleware as the baseline;
//   3. time from the 202 of the event that crosses a hard limit to the first 429, with no job call;
//   4. credit_only customers: from the 202 of the event that spends the last cent to the first 429, and from a new
//      grant to the first 200;
//   5. the credit balance read with 12 months of history and 20 grants per customer (bench/creditHistory.ts).
//   BENCH_SECONDS (default 10) per rate, BENCH_RATES (default 1000,5000), BENCH_CONNECTIONS (default 4: a few
//   services' middleware; autocannon paces each connection, so many connections send in bursts).
// All requests use one API key, so Tally runs with TALLY_RATE_LIMIT_RPS=0 (the per-key rate limit off): this
// measures the entitlement decision, not the limiter's 429s.
import { randomBytes } from "node:crypto";
import http from "node:http";
import autocannon from "autocannon";
import type { NextFunction, Request, Response } from "express";
import { usageLimit } from "../src/middleware/index.js";
import { creditHistoryBench } from "./creditHistory.js";
import { freshServerDatabase, httpRequest, percentile, startTally, table } from "./harness.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const RATES = (process.env.BENCH_RATES ?? "1000,5000").split(",").map(Number);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 4);
const KEY = `bench-${randomBytes(12).toString("hex")}`;

const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });

const request = (base: string, method: string, path: string, body?: unknown) =>
  httpRequest(`${base}${path}`, {
    key: KEY,
    method,
    agent,
    body: body === undefined ? undefined : JSON.stringify(body),
  });

async function must(base: string, method: string, path: string, body?: unknown): Promise<string> {
  const r = await request(base, method, path, body);
  if (r.status >= 300 && r.status !== 429) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
  return r.text;
}

/**
 * `rate` requests/s for `seconds` with autocannon (a constant overall rate over CONNECTIONS keep-alive
 * connections, latencies corrected for coordinated omission: a late request counts from when it was due).
 */
async function atRate(base: string, path: string, rate: number, seconds: number) {
  const result = await autocannon({
    url: `${base}${path}`,
    connections: CONNECTIONS,
    duration: seconds,
    overallRate: rate,
    ignoreCoordinatedOmission: true,
    headers: { Authorization: `Bearer ${KEY}` },
  });
  return {
    achieved: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
  };
}

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  let cleanup = async () => {};
  const env: Record<string, string> = {
    TALLY_ADMIN_KEY: KEY,
    LOG_LEVEL: "warn",
    TALLY_JOBS: "off",
    TALLY_RATE_LIMIT_RPS: "0",
  };
  if (serverUrl) {
    const fresh = await freshServerDatabase(serverUrl);
    env.DATABASE_URL = fresh.url;
    cleanup = fresh.drop;
  } else {
    env.TALLY_DATA_DIR = `memory://bench-${randomBytes(4).toString("hex")}`;
  }
  const tally = await startTally(env);
  const base = tally.url;
  try {
    console.log(`\nTally limits benchmark — ${serverUrl ? "server" : "embedded"}, engine ${tally.engine}`);
    await must(base, "PUT", "/v1/meters/api_calls", { name: "API calls", unit: "call", aggregation: "sum" });
    await must(base, "PUT", "/v1/customers/limited", {});
    await must(base, "PUT", "/v1/customers/limited/limits/api_calls", {
      soft: "900000000",
      hard: "1000000000",
      unit: "quantity",
    });
    await must(base, "POST", "/v1/events", {
      events: Array.from({ length: 100 }, (_, i) => ({
        id: `w${i}`,
        customer: "limited",
        meter: "api_calls",
        value: 10,
      })),
    });

    // 1. the entitlement endpoint at fixed rates, and /healthz as the HTTP baseline
    const path = "/v1/entitlements/limited/api_calls";
    await atRate(base, path, 1000, 2); // warm up
    await atRate(base, "/healthz", 1000, 1);
    const rows: string[][] = [];
    for (const rate of RATES) {
      const e = await atRate(base, path, rate, SECONDS);
      const h = await atRate(base, "/healthz", rate, SECONDS);
      const ms = (v: number) => `${v} ms`;
      rows.push([
        `${rate.toLocaleString("en-US")}/s`,
        `${Math.round(e.achieved).toLocaleString("en-US")}/s`,
        ms(e.p50),
        ms(e.p99),
        String(e.errors),
        ms(h.p50),
        ms(h.p99),
        `${(Math.max(e.p99, 1) / Math.max(h.p99, 1)).toFixed(2)}×`,
      ]);
    }
    console.log(
      `\n${table(["rate", "achieved", "entitlement p50", "p99", "errors", "/healthz p50", "p99", "p99 ratio to /healthz"], rows)}`,
    );

    // 2. the middleware's cached decision, per call, against a no-op middleware
    // A long cache so every timed call takes the cached path (the default is 1 s).
    const mw = usageLimit({ url: base, apiKey: KEY, customer: () => "limited", meter: "api_calls", cacheMs: 600_000 });
    const req = {} as Request;
    const res = { setHeader: () => res } as unknown as Response;
    let passed = 0;
    const next: NextFunction = () => {
      passed += 1;
    };
    await mw.client.decide("limited", "api_calls"); // fills the cache
    const noop = (_q: Request, _s: Response, n: NextFunction) => n();
    const N = 200_000;
    const time = (fn: () => unknown) => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) fn();
      return Number(process.hrtime.bigint() - t0) / N / 1000;
    };
    time(() => noop(req, res, next));
    time(() => mw(req, res, next));
    const baseline = time(() => noop(req, res, next));
    const cached = time(() => mw(req, res, next));
    console.log(
      `\nmiddleware cached decision: ${cached.toFixed(2)} µs per call (no-op middleware ${baseline.toFixed(2)} µs; ${(cached / baseline).toFixed(1)}×); ${mw.client.lookups} lookup(s) to Tally for ${(N * 2).toLocaleString("en-US")} calls`,
    );
    if (passed < N * 4) throw new Error("middleware did not pass requests");

    // 3. time from the crossing event's 202 to the first 429
    const times: number[] = [];
    for (let i = 0; i < 10; i++) {
      const c = `crossing-${i}`;
      await must(base, "PUT", `/v1/customers/${c}`, {});
      await must(base, "PUT", `/v1/customers/${c}/limits/api_calls`, { hard: "100", unit: "quantity" });
      await must(base, "POST", "/v1/events", { events: [{ id: "a", customer: c, meter: "api_calls", value: 95 }] });
      const accepted = await request(base, "POST", "/v1/events", {
        events: [{ id: "b", customer: c, meter: "api_calls", value: 5 }],
      });
      const t0 = performance.now();
      if (accepted.status !== 202) throw new Error(`ingest: ${accepted.status}`);
      for (;;) {
        const r = await request(base, "GET", `/v1/entitlements/${c}/api_calls`);
        if (r.status === 429) break;
        if (performance.now() - t0 > 30_000) throw new Error(`not enforced within 30 s: ${r.status} ${r.text}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      times.push(performance.now() - t0);
    }
    console.log(
      `time from the crossing event's 202 to the first 429 (10 customers): p50 ${percentile(times, 50).toFixed(1)} ms, max ${Math.max(...times).toFixed(1)} ms`,
    );

    // 4. credit_only customers: from the 202 of the event that spends the last cent to the first 429
    //    credits_exhausted, and from a new grant's 201 to the first 200 again
    await must(base, "PUT", "/v1/plans/prepaid", { name: "Prepaid", currency: "USD" });
    await must(base, "POST", "/v1/plans/prepaid/prices", {
      meter: "api_calls",
      effective_from: "2020-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "0.01",
    });
    const until = async (c: string, status: number, t0: number) => {
      for (;;) {
        const r = await request(base, "GET", `/v1/entitlements/${c}/api_calls`);
        if (r.status === status && (status !== 429 || r.text.includes("credits_exhausted"))) break;
        if (performance.now() - t0 > 30_000) throw new Error(`not ${status} within 30 s: ${r.status} ${r.text}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      return performance.now() - t0;
    };
    const exhausted: number[] = [];
    const unblocked: number[] = [];
    for (let i = 0; i < 10; i++) {
      const c = `prepaid-${i}`;
      await must(base, "PUT", `/v1/customers/${c}`, {});
      await must(base, "PUT", `/v1/customers/${c}/subscription`, { plan: "prepaid", start: "2020-01-01T00:00:00Z" });
      await must(base, "PUT", `/v1/customers/${c}`, { credit_mode: "credit_only" });
      await must(base, "POST", `/v1/customers/${c}/credit-grants`, { amount: "1.00" });
      await must(base, "POST", "/v1/events", { events: [{ id: "a", customer: c, meter: "api_calls", value: 95 }] });
      const spent = await request(base, "POST", "/v1/events", {
        events: [{ id: "b", customer: c, meter: "api_calls", value: 5 }],
      });
      const t0 = performance.now();
      if (spent.status !== 202) throw new Error(`ingest: ${spent.status}`);
      exhausted.push(await until(c, 429, t0));
      const granted = await request(base, "POST", `/v1/customers/${c}/credit-grants`, { amount: "1.00" });
      const t1 = performance.now();
      if (granted.status !== 201) throw new Error(`grant: ${granted.status}`);
      unblocked.push(await until(c, 200, t1));
    }
    console.log(
      `credit_only: from the 202 of the event that spends the last cent to the first 429 credits_exhausted (10 customers): p50 ${percentile(exhausted, 50).toFixed(1)} ms, max ${Math.max(...exhausted).toFixed(1)} ms; from a new grant's 201 to the first 200: p50 ${percentile(unblocked, 50).toFixed(1)} ms, max ${Math.max(...unblocked).toFixed(1)} ms`,
    );
  } finally {
    agent.destroy();
    await tally.stop();
    await cleanup();
  }
  // 5. the credit ledger's read cost with 12 months of history and 20 grants per customer (bench/creditHistory.ts)
  await creditHistoryBench(serverUrl);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
