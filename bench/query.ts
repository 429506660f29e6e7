// npm run bench:query — read latency from rollups vs. the same answers from raw events.
// Loads BENCH_EVENTS (default 10,000,000) events over 30 days, 1,000 customers and 4 meters with COPY, refreshes
// the rollups, then measures p50/p95/p99 of GET /v1/usage (hourly over 7 days, daily over 30 days, monthly over
// 12 months) and of the current-period totals (GET /v1/customers/{id}/summary), each next to the same answer
// computed from raw events. Loading and the raw answers run in this process; then Tally runs as a process of its
// own on the same database and is asked over HTTP, so client and server do not share an event loop.
//   DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset → embedded engine.
//   BENCH_QUERIES (default 200) per kind.
import { randomBytes } from "node:crypto";
import http from "node:http";
import pg from "pg";
import { loadConfig } from "../src/config.js";
import type { Queryable } from "../src/db/types.js";
import { createLogger } from "../src/logger.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { createTally } from "../src/tally.js";
import { benchCycleReads } from "./cycleReads.js";
import {
  benchDatabase,
  copyEvents,
  httpRequest,
  LATENCY_HEAD,
  latencyRow,
  rng,
  startTally,
  table,
  time,
} from "./harness.js";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 10_000_000);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 200);
const CUSTOMERS = 1000;
const METERS = ["api_calls", "tokens", "storage_gb", "seats"] as const;
const AGG = { api_calls: "sum", tokens: "sum", storage_gb: "max", seats: "last" } as const;
const DAYS = 30;
const KEY = `bench-${randomBytes(12).toString("hex")}`;
const HOUR = 3_600_000;

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = (url: string) => httpRequest(url, { key: KEY, agent });
/** POSTs JSON on a fresh connection: the embedded engine may block the event loop for minutes while loading and
 * refreshing, long enough for a pooled keep-alive socket to be closed under us. */
const post = (url: string, body: unknown) =>
  httpRequest(url, { key: KEY, method: "POST", agent: false, body: JSON.stringify(body) });

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  const data = await benchDatabase("tally-qbench-");
  const cleanup = data.cleanup;
  const env: Record<string, string> = { TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "warn", ...data.env };
  const config = loadConfig(env);
  const tally = await createTally({ config, logger: createLogger("warn") });
  let stopped = false;
  const base = await tally.listen(0, "127.0.0.1");
  const { db, engine } = tally.ctx;
  try {
    for (const m of METERS) {
      await fetch(`${base}/v1/meters/${m}`, {
        method: "PUT",
        headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
        body: JSON.stringify({ name: m, unit: "unit", aggregation: AGG[m] }),
      });
    }
    const now = new Date();
    const start = now.getTime() - DAYS * 86_400_000;
    console.log(`\nTally query benchmark — ${serverUrl ? "server" : "embedded"}, engine ${engine}`);
    console.log(
      `loading ${EVENTS.toLocaleString("en-US")} events (${DAYS} days, ${CUSTOMERS} customers, ${METERS.length} meters) with COPY…`,
    );
    const received = now.toISOString();
    const random = rng(42);
    const [loadMs] = await time(async () => {
      const columns = ["ts", "customer_id", "meter", "value", "event_id", "properties", "received_at"];
      await copyEvents(db, EVENTS, columns, (i) => {
        const ts = new Date(start + Math.floor(random() * (now.getTime() - start))).toISOString();
        const customer = `cust-${Math.floor(random() * CUSTOMERS)}`;
        const m = METERS[i % METERS.length] as string;
        return [ts, customer, m, String(1 + Math.floor(random() * 100)), `l${i}`, null, received];
      });
      await db.query(
        `INSERT INTO customers (id) SELECT 'cust-' || g FROM generate_series(0, ${CUSTOMERS - 1}) g ON CONFLICT DO NOTHING`,
        [],
      );
      await db.query("ANALYZE usage_events", []);
    });
    console.log(
      `  loaded in ${(loadMs / 1000).toFixed(1)} s (${Math.round(EVENTS / (loadMs / 1000)).toLocaleString("en-US")} events/s)`,
    );
    const [refreshMs] = await time(() => refreshRollups(db, engine, now, { full: true }));
    console.log(`  full refresh in ${(refreshMs / 1000).toFixed(1)} s`);
    // Steady state: the current hour has fresh events (marked dirty, read from raw), as it always does live.
    const live = Array.from({ length: 1000 }, (_, i) => ({
      id: `live-${i}`,
      customer: `cust-${i % CUSTOMERS}`,
      meter: METERS[i % 4],
      value: 1,
    }));
    const first = await post(`${base}/v1/events`, { events: live });
    if (first.status !== 202) throw new Error(`ingest: ${first.status} ${first.text}`);
    const [steadyMs] = await time(() => refreshRollups(db, engine, new Date()));
    console.log(`  steady-state refresh job run: ${steadyMs.toFixed(0)} ms\n`);
    // …and events keep arriving: the current hour is marked again while the queries run.
    const second = await post(`${base}/v1/events`, { events: live.map((e) => ({ ...e, id: `${e.id}-b` })) });
    if (second.status !== 202) throw new Error(`ingest: ${second.status} ${second.text}`);

    // The questions, and their answers computed from raw events here, in this process.
    const pick = rng(7);
    const aligned = (t: number, unit: number) => Math.floor(t / unit) * unit;
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const kinds = [
      {
        name: "hourly over 7 days",
        granularity: "hour",
        from: new Date(aligned(now.getTime(), HOUR) - 7 * 86_400_000),
        to: new Date(aligned(now.getTime(), HOUR) + HOUR),
      },
      {
        name: "daily over 30 days",
        granularity: "day",
        from: new Date(aligned(now.getTime(), 86_400_000) - 29 * 86_400_000),
        to: new Date(aligned(now.getTime(), 86_400_000) + 86_400_000),
      },
      {
        name: "monthly over 12 months",
        granularity: "month",
        from: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1)),
        to: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)),
      },
    ] as const;
    const rawExpr = {
      api_calls: "trim_scale(sum(value))::text",
      tokens: "trim_scale(sum(value))::text",
      storage_gb: "trim_scale(max(value))::text",
      seats: "trim_scale((array_agg(value ORDER BY ts DESC, value DESC))[1])::text",
    } as const;
    interface Question {
      kind: string;
      path: string;
      answer: string;
      rawMs: number;
      read(body: string): string;
    }
    const questions: Question[] = [];
    for (const k of kinds) {
      for (let q = 0; q < QUERIES; q++) {
        const customer = `cust-${Math.floor(pick() * CUSTOMERS)}`;
        const meter = METERS[Math.floor(pick() * 4)] as (typeof METERS)[number];
        const [rawMs, rawRes] = await time(() =>
          db.query<{ value: string; count: string }>(
            `SELECT date_trunc('${k.granularity}', ts, 'UTC') AS start, ${rawExpr[meter]} AS value, count(*)::text AS count
             FROM usage_events WHERE customer_id = $1 AND meter = $2 AND ts >= $3 AND ts < $4 GROUP BY 1 ORDER BY 1`,
            [customer, meter, k.from, k.to],
          ),
        );
        questions.push({
          kind: k.name,
          path: `/v1/usage?customer=${customer}&meter=${meter}&granularity=${k.granularity}&from=${k.from.toISOString()}&to=${k.to.toISOString()}`,
          answer: rawRes.rows.map((r) => `${r.value}/${r.count}`).join(),
          rawMs,
          read: (body) =>
            (JSON.parse(body) as { data: { value: string; count: number }[] }).data
              .map((p) => `${p.value}/${p.count}`)
              .join(),
        });
      }
    }
    const totalsKind = "customer summary: current-period totals, 1 customer, all meters";
    for (let q = 0; q < QUERIES; q++) {
      const customer = `cust-${Math.floor(pick() * CUSTOMERS)}`;
      const [rawMs, rawRes] = await time(() =>
        db.query<{ meter: string; q: string }>(
          `SELECT meter, CASE meter WHEN 'storage_gb' THEN trim_scale(max(value))::text
                                    WHEN 'seats' THEN trim_scale((array_agg(value ORDER BY ts DESC, value DESC))[1])::text
                                    ELSE trim_scale(sum(value))::text END AS q
           FROM usage_events WHERE customer_id = $1 AND ts >= $2 GROUP BY 1 ORDER BY 1`,
          [customer, monthStart],
        ),
      );
      questions.push({
        kind: totalsKind,
        path: `/v1/customers/${customer}/summary`,
        answer: rawRes.rows.map((r) => `${r.meter}:${r.q}`).join(),
        rawMs,
        read: (body) =>
          (JSON.parse(body) as { meters: { meter: string; quantity: string }[] }).meters
            .map((m) => `${m.meter}:${m.quantity}`)
            .join(),
      });
    }
    await tally.shutdown();
    stopped = true;

    // Tally as a process of its own (as in production: the client is elsewhere), on the same database.
    const child = await startTally(env);
    try {
      // A fresh process: warm its JIT and the database's caches with questions of each kind first.
      for (const kind of [...kinds.map((k) => k.name), totalsKind]) {
        for (const question of questions.filter((x) => x.kind === kind).slice(0, 25))
          await get(`${child.url}${question.path}`);
      }
      const rows: string[][] = [];
      let mismatches = 0;
      for (const kind of [...kinds.map((k) => k.name), totalsKind]) {
        const tallyMs: number[] = [];
        const rawMs: number[] = [];
        for (const question of questions.filter((x) => x.kind === kind)) {
          const [ms, res] = await time(() => get(`${child.url}${question.path}`));
          if (res.status !== 200) throw new Error(`${res.status} ${res.text}`);
          tallyMs.push(ms);
          rawMs.push(question.rawMs);
          if (question.read(res.text) !== question.answer) mismatches += 1;
        }
        rows.push(latencyRow(kind, tallyMs, rawMs));
      }
      console.log(table(LATENCY_HEAD, rows));
      console.log(
        `\nanswers compared with raw events: ${questions.length - mismatches} equal, ${mismatches} different`,
      );
      const raw = serverUrl ? new pg.Client({ connectionString: env.DATABASE_URL }) : undefined;
      await raw?.connect();
      try {
        const rawDb = raw && { query: (text: string, params: unknown[]) => raw.query(text, params) };
        await benchCycleReads({ base: child.url, key: KEY, db: rawDb as Queryable | undefined, get, count: 200 });
      } finally {
        await raw?.end();
      }
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
