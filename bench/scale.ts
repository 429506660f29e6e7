// npm run bench:scale — Tally under load as it scales (issue: every core, a read replica, reads through a burst).
//   latency  batch latency p50/p99 under BENCH_CLIENTS (4) × 1,000-event batches with the jobs running (refresh every
//            10 s, limits every 30 s on 1,000 customers with a limit each), BENCH_SCALE_BATCHES (400) batches;
//   workers  (server only) ingest events/s and usage-series reads/s with TALLY_WORKERS=1 and 2, same run;
//   burst    the dashboard customer list (GET /v1/dashboard/customers) of BENCH_SCALE_CUSTOMERS (10,000) customers:
//            p95 with current rollups (BENCH_SCALE_PRELOAD events, 2,000,000), during a burst of BENCH_BURST
//            (10,000,000) events over every hour of the last day, and in the BENCH_AFTER_S (60) seconds after it;
//            the refresh job's runs meanwhile, and how long the rollups take to catch up afterwards;
//   replica  (server only; bench/scaleReplica.ts) series p95 from the primary vs a streaming replica while ingest
//            runs, and the primary's ingest rate with heavy reads on the replica against no reads.
// BENCH_SCALE_PHASES picks phases (comma-separated; default all that apply). DATABASE_URL=postgres://… → fresh
// databases on that server; unset → the embedded engine.
import { randomBytes } from "node:crypto";
import { benchDatabase, httpRequest, percentile, startTally, table } from "./harness.js";
import { ingestLoad, latencySummary, ms, perS, readLoop, timedGet } from "./scaleLoad.js";
import { replicaPhase } from "./scaleReplica.js";
import { prepare } from "./scaleSetup.js";

const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const CLIENTS = num("BENCH_CLIENTS", 4);
const BATCHES = num("BENCH_SCALE_BATCHES", 400);
const CUSTOMERS = num("BENCH_SCALE_CUSTOMERS", 10_000);
const PRELOAD = num("BENCH_SCALE_PRELOAD", 2_000_000);
const BURST = num("BENCH_BURST", 10_000_000);
const AFTER_S = num("BENCH_AFTER_S", 60);
const KEY = `bench-${randomBytes(12).toString("hex")}`;
const SERVER = process.env.DATABASE_URL;
const PHASES = (process.env.BENCH_SCALE_PHASES ?? "latency,workers,burst,replica").split(",");
const LIST = "/v1/dashboard/customers";

const lastHour = (i: number, nowMs: number) => nowMs - ((i * 37_003) % 3_600_000);
const lastDay = (i: number, nowMs: number) => nowMs - 60_000 - ((i * 86_413 + Math.random() * 1e6) % 86_340_000);

async function withTally<T>(
  s: { customers: number; events: number },
  env: Record<string, string>,
  fn: (url: string) => Promise<T>,
) {
  const { env: where, cleanup } = await benchDatabase("tally-scale-", SERVER);
  try {
    await prepare(where, KEY, s);
    const t = await startTally({ TALLY_ADMIN_KEY: KEY, ...where, ...env });
    try {
      return await fn(t.url);
    } finally {
      await t.stop();
    }
  } finally {
    await cleanup();
  }
}

async function latencyPhase(): Promise<string[][]> {
  return withTally(
    { customers: 1000, events: 0 },
    { LOG_LEVEL: process.env.BENCH_TALLY_LOG ?? "warn" },
    async (url) => {
      const r = await ingestLoad(url, KEY, {
        clients: CLIENTS,
        batches: BATCHES,
        size: 1000,
        customers: 1000,
        tsOf: lastHour,
      });
      return [["batch latency, jobs on", perS(r.rate), ms(r.p50), ms(r.p99), ms(r.max), "p99 < 1 s"]];
    },
  );
}

/** Series reads per second from `readers` loops at once for `seconds`. */
async function readRate(url: string, readers: number, seconds: number): Promise<{ rate: number; p95: number }> {
  const now = new Date();
  const from = new Date(now.getTime() - 7 * 86_400_000).toISOString();
  const lat: number[] = [];
  const stop = new Promise((r) => setTimeout(r, seconds * 1000));
  await Promise.all(
    Array.from({ length: readers }, async (_, i) => {
      const path = `/v1/usage?customer=cust-${i}&meter=api_calls&granularity=hour&from=${from}&to=${now.toISOString()}`;
      lat.push(...(await readLoop(url, KEY, path, stop)));
    }),
  );
  return { rate: lat.length / seconds, p95: percentile(lat, 95) };
}

async function workersPhase(): Promise<string[][]> {
  const rows: string[][] = [];
  for (const workers of ["1", "2"]) {
    const env = { TALLY_WORKERS: workers, TALLY_JOBS: "off" };
    rows.push(
      await withTally({ customers: 1000, events: 200_000 }, env, async (url) => {
        const r = await ingestLoad(url, KEY, {
          ...{ clients: CLIENTS * Number(workers), batches: BATCHES, size: 1000, customers: 1000 },
          tsOf: lastHour,
        });
        const reads = await readRate(url, 4 * Number(workers), 15);
        return [`${workers} worker(s)`, perS(r.rate), ms(r.p50), ms(r.p99), perS(reads.rate), ms(reads.p95)];
      }),
    );
  }
  return rows;
}

/** Runs the refresh job until a run finds no claimed hours; the time it took and the runs' summaries. */
async function catchUp(url: string): Promise<{ seconds: number; runs: number }> {
  const t0 = performance.now();
  for (let runs = 1; ; runs++) {
    const res = await httpRequest(`${url}/v1/jobs/refresh-rollups/run`, { key: KEY, method: "POST", agent: false });
    const out = JSON.parse(res.text) as { summary?: { claimed_hours?: number }; ran?: boolean };
    if (out.ran !== false && out.summary?.claimed_hours === 0)
      return { seconds: (performance.now() - t0) / 1000, runs };
  }
}

async function burstPhase(): Promise<string[][]> {
  return withTally({ customers: CUSTOMERS, events: PRELOAD }, {}, async (url) => {
    await timedGet(url, KEY, LIST); // warm-up
    const current: number[] = [];
    for (let i = 0; i < 20; i++) current.push(await timedGet(url, KEY, LIST));
    const batches = Math.ceil(BURST / 1000);
    const load = ingestLoad(url, KEY, { clients: CLIENTS, batches, size: 1000, customers: CUSTOMERS, tsOf: lastDay });
    const during = await readLoop(url, KEY, LIST, load);
    const r = await load;
    const first = await timedGet(url, KEY, LIST);
    const after = await readLoop(url, KEY, LIST, new Promise((res) => setTimeout(res, AFTER_S * 1000)));
    const caught = await catchUp(url);
    console.log(`current rollups: ${latencySummary(current)}`);
    console.log(`during the burst: ${latencySummary(during)}`);
    console.log(`first call after it: ${ms(first)}; the ${AFTER_S} s after: ${latencySummary(after)}`);
    console.log(
      `burst ${r.events.toLocaleString("en")} events at ${perS(r.rate)}, batch p50 ${ms(r.p50)} p99 ${ms(r.p99)}`,
    );
    console.log(`rollups clean ${caught.seconds.toFixed(1)} s after the after-window (${caught.runs} refresh run(s))`);
    const p95 = (v: number[]) => ms(percentile(v, 95));
    return [
      [`${CUSTOMERS.toLocaleString("en")} customers, current rollups`, p95(current), ms(Math.max(...current)), ""],
      [
        `during a ${r.events.toLocaleString("en")}-event burst (${perS(r.rate)})`,
        p95(during),
        ms(Math.max(...during)),
        "",
      ],
      [`${AFTER_S} s after it (first call ${ms(first)})`, p95(after), ms(Math.max(...after)), ""],
    ];
  });
}

async function main(): Promise<void> {
  const engine = SERVER ? "PostgreSQL server" : "embedded";
  console.log(`\nTally scale benchmark — ${engine}; load average ${(await import("node:os")).loadavg().join(", ")}`);
  if (PHASES.includes("latency")) {
    const rows = await latencyPhase();
    console.log(table(["phase", "events/s", "batch p50", "p99", "max", "target"], rows));
  }
  if (SERVER && PHASES.includes("workers")) {
    console.log(table(["workers", "ingest", "batch p50", "p99", "series reads", "read p95"], await workersPhase()));
  }
  if (PHASES.includes("burst")) console.log(table(["customer list", "p95", "max", ""], await burstPhase()));
  if (SERVER && PHASES.includes("replica")) await replicaPhase(KEY);
  console.log(`load average at the end: ${(await import("node:os")).loadavg().join(", ")}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
