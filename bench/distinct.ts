// npm run bench:query (its distinct-count data set; alone: npm run bench:distinct) — a unique_count meter (monthly
// active users): read latency vs the same answers from raw events (count(DISTINCT …)), ingest speed against the same
// events on a sum meter, and the size of the distinct state per day.
// Loads BENCH_DISTINCT_EVENTS (default BENCH_EVENTS, else 10,000,000) events of active_users (unique_count on user_id)
// with COPY, uniformly over 30 days, from BENCH_DISTINCT_USERS (default 50,000) users, each of one of 1,000 customers;
// refreshes everything (which builds usage_distinct from the raw events, as ingest would have); measures the state's
// rows and bytes per day; then Tally runs as a process of its own and answers over HTTP, after a warm-up,
// BENCH_QUERIES (200) questions of each kind: GET /v1/usage daily over 30 days, monthly over 12 months, hourly over
// 7 days, and the current-period summary of a customer whose plan prices active_users per user; every answer is
// compared with the one from raw events. Last, BENCH_DISTINCT_INGEST (default a tenth of the load, at most 1,000,000)
// events of the last day are posted to that process as JSON batches of 5,000, once to a sum meter and once to the
// unique_count meter (the same events — customers, user_id properties, times — but for the meter; rounds alternating
// which goes first): events/s of each.
//   DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset → embedded engine.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { loadavg } from "node:os";
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

const EVENTS = Number(process.env.BENCH_DISTINCT_EVENTS ?? process.env.BENCH_EVENTS ?? 10_000_000);
const USERS = Number(process.env.BENCH_DISTINCT_USERS ?? 50_000);
const INGEST = Number(process.env.BENCH_DISTINCT_INGEST ?? Math.max(10_000, Math.min(1_000_000, EVENTS / 10)));
const QUERIES = Number(process.env.BENCH_QUERIES ?? 200);
const CUSTOMERS = 1000;
const DAYS = 30;
const METER = "active_users";
const SUM_METER = "calls";
const BATCH = 5_000;
const KEY = `bench-${randomBytes(12).toString("hex")}`;
const DAY = 86_400_000;
const HOUR = 3_600_000;

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const get = (url: string) => httpRequest(url, { key: KEY, agent });
/** Fresh connections: the embedded engine may block the event loop for minutes while loading and refreshing. */
async function ok(method: string, url: string, body: unknown): Promise<void> {
  const res = await httpRequest(url, { key: KEY, method, agent: false, body: JSON.stringify(body) });
  if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${res.text}`);
}
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(", ");
const num = (n: number) => Math.round(n).toLocaleString("en-US");
/** User k belongs to customer k mod 1,000: 50 users per customer at the default 50,000. */
const customerOf = (user: number) => `cust-${user % CUSTOMERS}`;

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  console.log(`\nTally distinct-count benchmark — load average at start: ${load()}`);
  const { env: where, cleanup } = await benchDatabase("tally-ubench-", serverUrl);
  const env: Record<string, string> = { TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off", LOG_LEVEL: "warn", ...where };
  const tally = await createTally({ config: loadConfig(env), logger: createLogger("warn") });
  let stopped = false;
  const base = await tally.listen(0, "127.0.0.1");
  const { db, engine } = tally.ctx;
  try {
    await ok("PUT", `${base}/v1/meters/${METER}`, {
      name: "Active users",
      unit: "user",
      aggregation: "unique_count",
      unique_property: "user_id",
    });
    await ok("PUT", `${base}/v1/meters/${SUM_METER}`, { name: "Calls", unit: "call", aggregation: "sum" });
    await ok("PUT", `${base}/v1/plans/mau`, { name: "MAU", currency: "USD" });
    await ok("POST", `${base}/v1/plans/mau/prices`, {
      meter: METER,
      effective_from: "2020-01-01T00:00:00Z",
      model: "per_unit",
      unit_price: "1.50",
    });
    const now = new Date();
    const start = now.getTime() - DAYS * DAY;
    console.log(`Tally distinct-count benchmark — ${serverUrl ? "server" : "embedded"}, engine ${engine}`);
    console.log(
      `loading ${num(EVENTS)} events of ${METER} (${DAYS} days, ${CUSTOMERS} customers, ${num(USERS)} users) with COPY…`,
    );
    const received = now.toISOString();
    const random = rng(42);
    const [loadMs] = await time(async () => {
      await copyEvents(db, EVENTS, EVENT_COLUMNS, (i) => {
        const ts = new Date(start + Math.floor(random() * (now.getTime() - start))).toISOString();
        const user = Math.floor(random() * USERS);
        const properties = JSON.stringify({ user_id: `user-${user}` });
        return [ts, customerOf(user), METER, "1", `d${i}`, properties, received, "0"];
      });
      await db.query(
        `INSERT INTO customers (id) SELECT 'cust-' || g FROM generate_series(0, ${CUSTOMERS - 1}) g ON CONFLICT DO NOTHING`,
        [],
      );
      await db.query("UPDATE meters SET has_events = true WHERE key = $1", [METER]);
      await db.query("ANALYZE usage_events", []);
    });
    console.log(`  loaded in ${(loadMs / 1000).toFixed(1)} s (${num(EVENTS / (loadMs / 1000))} events/s)`);
    const [refreshMs] = await time(() => refreshRollups(db, engine, now, { full: true }));
    console.log(`  full refresh (rollups and usage_distinct) in ${(refreshMs / 1000).toFixed(1)} s`);
    const [analyzeMs, analyzed] = await time(() => analyzeChangedTables(db));
    console.log(`  analyze-tables: ${analyzed.tables_analyzed} tables in ${(analyzeMs / 1000).toFixed(1)} s`);
    const stateTable = await distinctState(db);

    const questions = await ask(db, base, now);
    console.log(`  raw answers computed (load average ${load()})`);
    await tally.shutdown();
    stopped = true;

    const child = await startTally(env);
    child.child.on("exit", (code, signal) => console.log(`  Tally (child) exited: ${code ?? signal}`));
    try {
      const kinds = [...new Set(questions.map((q) => q.kind))];
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
        `\nanswers compared with raw events (count(DISTINCT …)): ${questions.length - mismatches} equal, ${mismatches} different`,
      );
      console.log(`\nusage_distinct after the load (${num(EVENTS)} events, ${num(USERS)} users):\n\n${stateTable}`);
      console.log(`\n${await ingestRace(child.url, now)}`);
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

type Db = Awaited<ReturnType<typeof createTally>>["ctx"]["db"];

/** Rows and bytes of usage_distinct per day (the table with its indexes). */
async function distinctState(db: Db): Promise<string> {
  const { rows } = await db.query<{ n: string; days: string; bytes: string; events: string }>(
    `SELECT count(*)::text AS n, count(DISTINCT day)::text AS days,
            pg_total_relation_size('usage_distinct')::text AS bytes,
            (SELECT count(*) FROM usage_events WHERE meter = $1)::text AS events
     FROM usage_distinct WHERE meter = $1`,
    [METER],
  );
  const r = rows[0];
  const n = Number(r?.n);
  const days = Math.max(1, Number(r?.days));
  const bytes = Number(r?.bytes);
  return table(
    ["rows", "days", "rows/day", "bytes (table + indexes)", "bytes/day", "bytes/row", "events/row"],
    [
      [
        num(n),
        String(days),
        num(n / days),
        num(bytes),
        num(bytes / days),
        (bytes / Math.max(1, n)).toFixed(0),
        (Number(r?.events) / Math.max(1, n)).toFixed(1),
      ],
    ],
  );
}

/** The questions, and their answers from raw events (count(DISTINCT …) of the user_id property). */
async function ask(db: Db, base: string, now: Date): Promise<Question[]> {
  const pick = rng(7);
  const dayNow = Math.floor(now.getTime() / DAY) * DAY;
  const hourNow = Math.floor(now.getTime() / HOUR) * HOUR;
  const iso = (d: string | Date) => new Date(d).toISOString();
  const kinds = [
    { name: "daily over 30 days", g: "day", from: new Date(dayNow - 29 * DAY), to: new Date(dayNow + DAY) },
    {
      name: "monthly over 12 months",
      g: "month",
      from: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1)),
      to: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)),
    },
    { name: "hourly over 7 days", g: "hour", from: new Date(hourNow - 7 * DAY), to: new Date(hourNow + HOUR) },
  ];
  const questions: Question[] = [];
  const series = (body: string) =>
    (JSON.parse(body) as { data: { start: string; value: string; count: number }[] }).data
      .map((p) => `${iso(p.start)} ${p.value}/${p.count}`)
      .join();
  for (const k of kinds) {
    for (let q = 0; q < QUERIES; q++) {
      const customer = `cust-${Math.floor(pick() * CUSTOMERS)}`;
      const [rawMs, raw] = await time(() =>
        db.query<{ start: Date; value: string; count: string }>(
          `SELECT date_trunc('${k.g}', ts, 'UTC') AS start, count(DISTINCT properties ->> 'user_id')::text AS value,
                  count(*)::text AS count
           FROM usage_events WHERE customer_id = $1 AND meter = $2 AND ts >= $3 AND ts < $4 GROUP BY 1 ORDER BY 1`,
          [customer, METER, k.from, k.to],
        ),
      );
      questions.push({
        kind: k.name,
        path: `/v1/usage?customer=${customer}&meter=${METER}&granularity=${k.g}&from=${k.from.toISOString()}&to=${k.to.toISOString()}`,
        answer: raw.rows.map((r) => `${iso(r.start)} ${r.value}/${r.count}`).join(),
        rawMs,
        read: series,
      });
    }
  }
  const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const subscribed = new Set<string>();
  for (let q = 0; q < QUERIES; q++) {
    const customer = `cust-${Math.floor(pick() * CUSTOMERS)}`;
    if (!subscribed.has(customer)) {
      const startAt = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1)).toISOString();
      await ok("PUT", `${base}/v1/customers/${customer}/subscription`, { plan: "mau", start: startAt });
      subscribed.add(customer);
    }
    const [rawMs, raw] = await time(() =>
      db.query<{ q: string }>(
        `SELECT count(DISTINCT properties ->> 'user_id')::text AS q
         FROM usage_events WHERE customer_id = $1 AND meter = $2 AND ts >= $3`,
        [customer, METER, monthStart],
      ),
    );
    const quantity = raw.rows[0]?.q ?? "0";
    questions.push({
      kind: "current-period summary (unique_count × 1.50)",
      path: `/v1/customers/${customer}/summary`,
      answer: `${quantity} ${(Number(quantity) * 1.5).toFixed(2)}`,
      rawMs,
      read: (body) => {
        const m = (JSON.parse(body) as { meters: { meter: string; quantity: string; amount: string }[] }).meters.find(
          (x) => x.meter === METER,
        );
        return `${m?.quantity ?? "0"} ${m?.amount ?? "0.00"}`;
      },
    });
  }
  return questions;
}

/**
 * Events of the last day, posted as JSON batches: once to the sum meter, once to the unique_count meter (the same
 * customers, users and times), rounds alternating which goes first. Events/s of each, and their ratio.
 */
async function ingestRace(url: string, now: Date): Promise<string> {
  const random = rng(99);
  const elapsed = { [SUM_METER]: 0, [METER]: 0 };
  const rounds = Math.ceil(INGEST / BATCH);
  for (let r = 0; r < rounds; r++) {
    const n = Math.min(BATCH, INGEST - r * BATCH);
    const shape = Array.from({ length: n }, () => {
      const user = Math.floor(random() * USERS);
      const timestamp = new Date(now.getTime() - Math.floor(random() * (DAY - 60_000))).toISOString();
      return { user, timestamp };
    });
    const order = r % 2 === 0 ? [SUM_METER, METER] : [METER, SUM_METER];
    for (const meter of order) {
      const events = shape.map((e, i) => ({
        id: `${meter}-${r}-${i}`,
        customer: customerOf(e.user),
        meter,
        value: 1,
        timestamp: e.timestamp,
        properties: { user_id: `user-${e.user}` },
      }));
      const body = JSON.stringify({ events });
      const [ms, res] = await time(() => httpRequest(`${url}/v1/events`, { key: KEY, method: "POST", agent, body }));
      if (res.status !== 202) throw new Error(`ingest ${meter}: ${res.status} ${res.text}`);
      elapsed[meter as keyof typeof elapsed] += ms;
    }
  }
  const rate = (meter: keyof typeof elapsed) => INGEST / (elapsed[meter] / 1000);
  return `Ingest of ${num(INGEST)} events of the last day per meter, JSON batches of ${num(BATCH)}, one connection:\n\n${table(
    ["meter", "events/s", "vs sum"],
    [
      [`${SUM_METER} (sum)`, num(rate(SUM_METER)), "1.00×"],
      [`${METER} (unique_count)`, num(rate(METER)), `${(rate(METER) / rate(SUM_METER)).toFixed(2)}×`],
    ],
  )}`;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
