// npm run bench:query (its dimensional data set; alone: npm run bench:dimensions) — grouped reads of a meter with
// dimensions vs the same answers from raw events, and how many rollup rows the dimensions cost per level.
// Loads BENCH_DIM_EVENTS (default 10,000,000) events of one meter, llm_tokens, with dimensions model (20 values) and
// token_type (2 values), uniformly over 30 days and 1,000 customers, with COPY (the 40 dimension sets are created
// first by ingesting one event per combination over HTTP); refreshes the rollups; counts rollup rows per level;
// then the planner's statistics are taken as production keeps them (autovacuum; the analyze-tables job on the
// embedded engine); then Tally runs as a process of its own and answers over HTTP, after a warm-up, BENCH_QUERIES (200) questions of
// each kind: GET /v1/usage daily over 30 days grouped by model, the same ungrouped, and the current-period summary
// of a customer whose plan prices llm_tokens with group_by model (and an override for one model). Every answer is
// compared with the one computed from raw events (their properties, not the dimension set ids).
//   DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset → embedded engine.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { loadavg } from "node:os";
import { Decimal } from "decimal.js";
import { loadConfig } from "../src/config.js";
import { analyzeChangedTables } from "../src/db/analyze.js";
import { EVENT_COLUMNS } from "../src/ingest/batch.js";
import { createLogger } from "../src/logger.js";
import { refreshRollups } from "../src/rollups/refresh.js";
import { createTally } from "../src/tally.js";
import {
  askAll,
  benchDatabase,
  copyEvents,
  httpRequest,
  LATENCY_HEAD,
  type Question,
  rng,
  startTally,
  table,
  time,
} from "./harness.js";

const EVENTS = Number(process.env.BENCH_DIM_EVENTS ?? 10_000_000);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 200);
const CUSTOMERS = 1000;
const DAYS = 30;
const METER = "llm_tokens";
const MODELS = Array.from({ length: 20 }, (_, i) => `model-${String(i).padStart(2, "0")}`);
const TOKEN_TYPES = ["input", "output"];
const COMBINATIONS = MODELS.flatMap((model) => TOKEN_TYPES.map((token_type) => ({ model, token_type })));
/** Default 0.01 per token; model-00: graduated, 0.02 up to 10,000 then 0.01. Cents exactly: no rounding to guess. */
const PRICE = {
  meter: METER,
  effective_from: "2020-01-01T00:00:00Z",
  model: "per_unit",
  unit_price: "0.01",
  group_by: ["model"],
  overrides: [
    {
      match: { model: "model-00" },
      model: "graduated",
      tiers: [
        { up_to: "10000", unit_price: "0.02" },
        { up_to: null, unit_price: "0.01" },
      ],
    },
  ],
};
const KEY = `bench-${randomBytes(12).toString("hex")}`;
const DAY = 86_400_000;

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
/** Requests whose connection failed and were sent again (a run with 10 M events once ended on an ECONNRESET). */
let resent = 0;
async function once<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    resent += 1;
    console.log(`  ${what}: ${(err as Error).message}; sending it again`);
    return fn();
  }
}
const get = (url: string) => once(`GET ${url}`, () => httpRequest(url, { key: KEY, agent }));
/** Fresh connections: the embedded engine may block the event loop for minutes while loading and refreshing. */
const send = (method: string, url: string, body: unknown) =>
  once(`${method} ${url}`, () => httpRequest(url, { key: KEY, method, agent: false, body: JSON.stringify(body) }));
async function ok(method: string, url: string, body: unknown): Promise<void> {
  const res = await send(method, url, body);
  if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${res.text}`);
}
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(", ");
const num = (n: number) => n.toLocaleString("en-US");

/** The amount of one group as priced above, in cents exactly (the rounding of lines cannot change it). */
function groupAmount(model: string | null, quantity: Decimal): Decimal {
  if (model !== "model-00") return quantity.times("0.01");
  const first = Decimal.min(quantity, 10_000);
  return first.times("0.02").plus(quantity.minus(first).times("0.01"));
}

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  console.log(`\nTally dimensions benchmark — load average at start: ${load()}`);
  const { env: where, cleanup } = await benchDatabase("tally-dbench-", serverUrl);
  const env: Record<string, string> = { ...{ TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "warn" }, ...where };
  const tally = await createTally({ config: loadConfig(env), logger: createLogger("warn") });
  let stopped = false;
  const base = await tally.listen(0, "127.0.0.1");
  const { db, engine } = tally.ctx;
  try {
    await ok("PUT", `${base}/v1/meters/${METER}`, {
      name: "LLM tokens",
      unit: "token",
      aggregation: "sum",
      dimensions: ["model", "token_type"],
    });
    await ok("PUT", `${base}/v1/plans/llm`, { name: "LLM", currency: "USD" });
    await ok("POST", `${base}/v1/plans/llm/prices`, PRICE);
    const now = new Date();
    const start = now.getTime() - DAYS * DAY;
    // One event per combination through the ingest path creates the 40 dimension sets; COPY then uses their ids.
    await ok("POST", `${base}/v1/events`, {
      events: COMBINATIONS.map((properties, i) => ({
        id: `seed-${i}`,
        customer: `cust-${i}`,
        meter: METER,
        value: 1,
        timestamp: new Date(now.getTime() - 60_000).toISOString(),
        properties,
      })),
    });
    const sets = await db.query<{ id: number; model: string; token_type: string }>(
      "SELECT id, dimensions ->> 'model' AS model, dimensions ->> 'token_type' AS token_type FROM dimension_sets WHERE meter = $1",
      [METER],
    );
    const setOf = new Map(sets.rows.map((r) => [`${r.model}/${r.token_type}`, r.id]));
    if (setOf.size !== COMBINATIONS.length) throw new Error(`expected 40 dimension sets, found ${setOf.size}`);
    const combos = COMBINATIONS.map((c) => ({
      properties: JSON.stringify(c),
      set: String(setOf.get(`${c.model}/${c.token_type}`)),
    }));

    console.log(`Tally dimensions benchmark — ${serverUrl ? "server" : "embedded"}, engine ${engine}`);
    console.log(
      `loading ${num(EVENTS)} events of ${METER} (${DAYS} days, ${CUSTOMERS} customers, ` +
        `dimensions model × token_type = ${MODELS.length} × ${TOKEN_TYPES.length}) with COPY…`,
    );
    const received = now.toISOString();
    const random = rng(42);
    const loadStart = performance.now();
    const time0 = () => ((performance.now() - loadStart) / 1000).toFixed(0);
    const [loadMs] = await time(async () => {
      // The columns ingest writes, in that order.
      await copyEvents(
        db,
        EVENTS,
        EVENT_COLUMNS,
        (i) => {
          const ts = new Date(start + Math.floor(random() * (now.getTime() - start))).toISOString();
          const c = combos[Math.floor(random() * combos.length)] as (typeof combos)[number];
          const customer = `cust-${Math.floor(random() * CUSTOMERS)}`;
          const value = String(1 + Math.floor(random() * 100));
          return [ts, customer, METER, value, `d${i}`, c.properties, received, c.set];
        },
        (loaded) => {
          if (loaded % 1_000_000 === 0) console.log(`  ${num(loaded)} events (${time0()} s)`);
        },
      );
      await db.query(
        `INSERT INTO customers (id) SELECT 'cust-' || g FROM generate_series(0, ${CUSTOMERS - 1}) g ON CONFLICT DO NOTHING`,
        [],
      );
      await db.query("ANALYZE usage_events", []);
    });
    console.log(`  loaded in ${(loadMs / 1000).toFixed(1)} s (${num(Math.round(EVENTS / (loadMs / 1000)))} events/s)`);
    const [refreshMs] = await time(() => refreshRollups(db, engine, now, { full: true }));
    console.log(`  full refresh in ${(refreshMs / 1000).toFixed(1)} s`);
    // Planner statistics, as autovacuum (server) or the analyze-tables job (embedded) keeps them in production.
    const [analyzeMs, analyzed] = await time(() => analyzeChangedTables(db));
    console.log(`  analyze-tables: ${analyzed.tables_analyzed} tables in ${(analyzeMs / 1000).toFixed(1)} s`);

    // Rows per level: what the dimensions cost. A row per (bucket, customer, combination) that has events, so a
    // level's rows are bounded by buckets × customers × combinations used, whatever the number of events.
    const levels = [
      ["hour", "usage_hourly_mat"],
      ["day", "usage_daily_mat"],
      ["month", "usage_monthly_mat"],
    ] as const;
    const used = await db.query<{ n: string }>(
      "SELECT count(DISTINCT dimension_set)::text AS n FROM usage_events WHERE meter = $1",
      [METER],
    );
    const combinationsUsed = Number(used.rows[0]?.n);
    const rowCounts: string[][] = [];
    for (const [level, relation] of levels) {
      const { rows } = await db.query<{ n: string; b: string; e: string }>(
        `SELECT count(*)::text AS n, count(DISTINCT bucket)::text AS b, coalesce(sum(event_count), 0)::text AS e
         FROM ${relation} WHERE meter = $1`,
        [METER],
      );
      const n = Number(rows[0]?.n);
      const bound = Number(rows[0]?.b) * CUSTOMERS * combinationsUsed;
      rowCounts.push([
        level,
        num(Number(rows[0]?.e)),
        num(n),
        `${rows[0]?.b} × ${CUSTOMERS} × ${combinationsUsed} = ${num(bound)}`,
        (Number(rows[0]?.e) / n).toFixed(1),
      ]);
    }

    // Steady state, as in bench/query.ts: the current hour has fresh events, marked dirty, read from raw events.
    const live = (tag: string) =>
      Array.from({ length: 1000 }, (_, i) => ({
        id: `live-${tag}-${i}`,
        customer: `cust-${i % CUSTOMERS}`,
        meter: METER,
        value: 1 + (i % 7),
        properties: COMBINATIONS[i % COMBINATIONS.length],
      }));
    await ok("POST", `${base}/v1/events`, { events: live("a") });
    const [steadyMs] = await time(() => refreshRollups(db, engine, new Date()));
    console.log(`  steady-state refresh job run: ${steadyMs.toFixed(0)} ms`);
    await ok("POST", `${base}/v1/events`, { events: live("b") });

    // The questions, and their answers computed from raw events (properties, not set ids) in this process.
    const pick = rng(7);
    const dayNow = Math.floor(now.getTime() / DAY) * DAY;
    const from = new Date(dayNow - 29 * DAY);
    const to = new Date(dayNow + DAY);
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const iso = (d: string | Date) => new Date(d).toISOString();
    const questions: Question[] = [];
    const daily = `/v1/usage?meter=${METER}&granularity=day&from=${from.toISOString()}&to=${to.toISOString()}`;
    const grouped = "daily over 30 days, group_by=model";
    const ungrouped = "daily over 30 days, ungrouped";
    for (let q = 0; q < QUERIES; q++) {
      const customer = `cust-${Math.floor(pick() * CUSTOMERS)}`;
      const [rawMs, raw] = await time(() =>
        db.query<{ start: Date; model: string | null; value: string; count: string }>(
          `SELECT date_trunc('day', ts, 'UTC') AS start, properties ->> 'model' AS model,
                  trim_scale(sum(value))::text AS value, count(*)::text AS count
           FROM usage_events WHERE customer_id = $1 AND meter = $2 AND ts >= $3 AND ts < $4
           GROUP BY 1, 2 ORDER BY 1, (properties ->> 'model') COLLATE "C" NULLS LAST`,
          [customer, METER, from, to],
        ),
      );
      questions.push({
        kind: grouped,
        path: `${daily}&customer=${customer}&group_by=model`,
        answer: raw.rows.map((r) => `${iso(r.start)} ${r.model} ${r.value}/${r.count}`).join(),
        rawMs,
        read: (body) =>
          (
            JSON.parse(body) as {
              data: { start: string; value: string; count: number; dimensions: { model: string | null } }[];
            }
          ).data
            .map((p) => `${iso(p.start)} ${p.dimensions.model} ${p.value}/${p.count}`)
            .join(),
      });
      const [rawAllMs, rawAll] = await time(() =>
        db.query<{ start: Date; value: string; count: string }>(
          `SELECT date_trunc('day', ts, 'UTC') AS start, trim_scale(sum(value))::text AS value, count(*)::text AS count
           FROM usage_events WHERE customer_id = $1 AND meter = $2 AND ts >= $3 AND ts < $4 GROUP BY 1 ORDER BY 1`,
          [customer, METER, from, to],
        ),
      );
      questions.push({
        kind: ungrouped,
        path: `${daily}&customer=${customer}`,
        answer: rawAll.rows.map((r) => `${iso(r.start)} ${r.value}/${r.count}`).join(),
        rawMs: rawAllMs,
        read: (body) =>
          (JSON.parse(body) as { data: { start: string; value: string; count: number }[] }).data
            .map((p) => `${iso(p.start)} ${p.value}/${p.count}`)
            .join(),
      });
    }
    const summary = "current-period summary, group_by=model price (20 groups)";
    const subscribed = new Set<string>();
    const subscriptionStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString();
    for (let q = 0; q < QUERIES; q++) {
      const customer = `cust-${Math.floor(pick() * CUSTOMERS)}`;
      if (!subscribed.has(customer)) {
        await ok("PUT", `${base}/v1/customers/${customer}/subscription`, { plan: "llm", start: subscriptionStart });
        subscribed.add(customer);
      }
      const [rawMs, raw] = await time(() =>
        db.query<{ model: string | null; q: string }>(
          `SELECT properties ->> 'model' AS model, trim_scale(sum(value))::text AS q
           FROM usage_events WHERE customer_id = $1 AND meter = $2 AND ts >= $3
           GROUP BY 1 ORDER BY (properties ->> 'model') COLLATE "C" NULLS LAST`,
          [customer, METER, monthStart],
        ),
      );
      const groups = raw.rows.map((r) => ({
        model: r.model,
        q: new Decimal(r.q),
        amount: groupAmount(r.model, new Decimal(r.q)),
      }));
      const quantity = groups.reduce((s, g) => s.plus(g.q), new Decimal(0));
      const amount = groups.reduce((s, g) => s.plus(g.amount), new Decimal(0));
      questions.push({
        kind: summary,
        path: `/v1/customers/${customer}/summary`,
        answer: `${quantity} ${amount.toFixed(2)}: ${groups.map((g) => `${g.model} ${g.q} ${g.amount.toFixed(2)}`).join()} = ${amount.toFixed(2)}`,
        rawMs,
        read: (body) => {
          const s = JSON.parse(body) as {
            meters: {
              meter: string;
              quantity: string;
              amount: string;
              groups?: { dimensions: { model: string | null }; quantity: string; amount: string }[];
            }[];
            total: string;
          };
          const m = s.meters.find((x) => x.meter === METER);
          const gs = (m?.groups ?? []).map((g) => `${g.dimensions.model} ${g.quantity} ${g.amount}`).join();
          return `${m?.quantity} ${m?.amount}: ${gs} = ${s.total}`;
        },
      });
    }
    console.log(`  raw answers computed; ${subscribed.size} customers subscribed (load average ${load()})`);
    await tally.shutdown();
    stopped = true;

    const child = await startTally(env);
    child.child.on("exit", (code, signal) => console.log(`  Tally (child) exited: ${code ?? signal}`));
    try {
      const kinds = [grouped, ungrouped, summary];
      for (const kind of kinds) {
        for (const question of questions.filter((x) => x.kind === kind).slice(0, 25))
          await get(`${child.url}${question.path}`);
      }
      const { rows, mismatches } = await askAll(questions, kinds, async (q) => {
        const res = await get(`${child.url}${q.path}`);
        if (res.status !== 200) throw new Error(`${res.status} ${res.text}`);
        return res.text;
      });
      console.log(`\n${table(LATENCY_HEAD, rows)}`);
      console.log(
        `\nanswers compared with raw events: ${questions.length - mismatches} equal, ${mismatches} different`,
      );
      if (resent > 0) console.log(`requests sent again after a failed connection: ${resent}`);
      console.log(
        `\nMaterialized rollup rows of ${METER} per level (${num(EVENTS)} events loaded, ${combinationsUsed} combinations ` +
          `used; the current hour, day and month are read from the level below, not materialized):\n\n` +
          table(
            ["level", "events in materialized buckets", "rows", "bound: buckets × customers × combos", "events/row"],
            rowCounts,
          ),
      );
      console.log(`\nload average at end: ${load()}`);
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
