// npm run bench:ingest — ingest throughput against a same-run baseline: a raw COPY of the same rows, from one client,
// into a table whose only index is UNIQUE (customer_id, event_id) — what the database alone can take.
// Each round measures, on empty tables: the baseline; Tally's write path without HTTP (4 writers); Tally end to end
// over HTTP (4 clients × 1,000-event JSON batches); the same with 5% of batches being retries of acknowledged ones.
// Medians over the rounds are printed with CPU per event (PostgreSQL, Tally, load generator), WAL bytes per event
// and the Node-side cost per event without HTTP. Then one large NDJSON body, watching the server's RSS.
//   DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset → embedded engine.
//   BENCH_ROUNDS (3), BENCH_BATCHES (400 per phase), BENCH_BATCH (1000 events), BENCH_CLIENTS (4),
//   BENCH_NDJSON_MB (200; 0 skips), BENCH_IDS (ordered: time-ordered ids like ULID/UUIDv7 | random: UUIDv4),
//   The steady state (ingest with many stored keys) is bench/keys.ts, which npm run bench:ingest runs next.
//   BENCH_TALLY_NODE_ARGS: options for Tally's node, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" (written at exit).
//   BENCH_DIMENSIONS=1: each round also ingests over HTTP on meters with 2 dimensions (bench/ingestDimensions.ts).
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import pg from "pg";
import { migrate } from "../src/db/migrate.js";
import { openDatabase } from "../src/db/open.js";
import { ServerDb } from "../src/db/server.js";
import type { Db } from "../src/db/types.js";
import { distinctInKeyOrder } from "../src/ingest/batch.js";
import { encodeBinaryBatch } from "../src/ingest/copyBinary.js";
import { copyRow } from "../src/ingest/copyText.js";
import { hashOrder, keyHashes } from "../src/ingest/keys.js";
import { KnownCustomers, writeBatch } from "../src/ingest/store.js";
import { EventChecker, type ValidEvent } from "../src/ingest/validate.js";
import {
  type CpuSplit,
  cpuMeter,
  freshServerDatabase,
  httpRequest,
  percentile,
  postBatches,
  startTally,
  type TallyChild,
  table,
  walMeter,
} from "./harness.js";
import * as dims from "./ingestDimensions.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BATCHES = Number(process.env.BENCH_BATCHES ?? 400);
const BATCH = Number(process.env.BENCH_BATCH ?? 1000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const NDJSON_MB = Number(process.env.BENCH_NDJSON_MB ?? 200);
const RANDOM_IDS = process.env.BENCH_IDS === "random";
const RETRY_EVERY = 20; // 5% of batches
const CUSTOMERS = 1000;
const METERS = ["api_calls", "tokens", "storage_gb", "seats"];
const KEY = `bench-${randomUUID()}`;
const NODE_ARGS = (process.env.BENCH_TALLY_NODE_ARGS ?? "").split(" ").filter(Boolean);

let agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });
function freshAgent(): void {
  agent.destroy();
  agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });
}

interface Fields {
  id: string;
  customer: string;
  meter: string;
  value: string;
  timestamp: string;
  properties?: Record<string, string>;
}

/** Event i of batch `tag`: spread over customers and meters, a timestamp within the last hour. */
function batchFields(tag: string, size: number, nowMs: number): Fields[] {
  return Array.from({ length: size }, (_, i) => ({
    id: RANDOM_IDS ? randomUUID() : `${tag}-${String(i).padStart(5, "0")}`,
    customer: `cust-${(i * 7919) % CUSTOMERS}`,
    meter: METERS[i % METERS.length] as string,
    value: String((i % 97) + 1),
    timestamp: new Date(nowMs - ((i * 37_003) % 3_600_000)).toISOString(),
  }));
}

/** Time-ordered batch tags (a clock prefix and a counter), so ids grow in byte order like ULIDs or UUIDv7. */
let tagCounter = 0;
const nextTag = () => `${Date.now().toString(36)}${String(tagCounter++).padStart(8, "0")}`;

const jsonBody = (events: Fields[]) => `{"events":[${events.map((e) => JSON.stringify(e)).join(",")}]}`;

const validEvents = (events: Fields[]): ValidEvent[] =>
  events.map((e) => ({ ...e, ts: e.timestamp, tsMs: Date.parse(e.timestamp), properties: null }));

interface PhaseResult {
  posted: number;
  accepted: number;
  seconds: number;
  cpu: CpuSplit;
  walBytes: number | undefined;
  p50?: number;
  p99?: number;
}

const rate = (p: PhaseResult) => p.posted / p.seconds;

/** A database on the server: the admin client measures, truncates and loads; Tally and the writers use the URL. */
interface Target {
  engine: "server" | "embedded";
  admin?: pg.Client;
  url?: string;
}

async function measured(
  target: Target,
  tallyPid: number | undefined,
  run: () => Promise<Omit<PhaseResult, "cpu" | "walBytes" | "seconds">>,
): Promise<PhaseResult> {
  const cpu = await cpuMeter(tallyPid, target.admin);
  const wal = await walMeter(target.admin);
  const started = performance.now();
  const r = await run();
  const seconds = (performance.now() - started) / 1000;
  return { ...r, seconds, cpu: await cpu.stop(), walBytes: await wal.stop() };
}

const RAW_TABLE = `
  DROP TABLE IF EXISTS bench_raw_events;
  CREATE TABLE bench_raw_events (LIKE usage_events INCLUDING DEFAULTS);
  CREATE UNIQUE INDEX bench_raw_events_key ON bench_raw_events (customer_id, event_id);`;
const RAW_COLUMNS = ["ts", "customer_id", "meter", "value", "event_id", "properties", "received_at"];

/** The same rows, encoded before the clock starts, COPYed from one client in 1,000-row transactions. */
async function baselinePhase(target: Target, db: Db): Promise<PhaseResult> {
  await db.query(RAW_TABLE);
  const received = new Date().toISOString();
  const nowMs = Date.now();
  const batches = Array.from({ length: BATCHES }, () =>
    batchFields(nextTag(), BATCH, nowMs)
      .map((e) => copyRow([e.timestamp, e.customer, e.meter, e.value, e.id, null, received]))
      .join(""),
  );
  return measured(target, undefined, async () => {
    let posted = 0;
    for (const rows of batches) {
      const n = await db.transaction((tx) => tx.copyIn({ table: "bench_raw_events", columns: RAW_COLUMNS }, [rows]));
      posted += n;
    }
    return { posted, accepted: posted };
  });
}

/** Tally's write path without HTTP: validated events in, sorted, encoded, COPYed, hours marked; 4 writers. */
async function databasePhase(target: Target, db: Db): Promise<PhaseResult> {
  const nowMs = Date.now();
  const batches = Array.from({ length: BATCHES }, () => validEvents(batchFields(nextTag(), BATCH, nowMs)));
  const known = new KnownCustomers();
  return measured(target, undefined, async () => {
    let next = 0;
    let accepted = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < batches.length) {
          const batch = batches[next++] as ValidEvent[];
          const written = await writeBatch(db, batch, known, new Date());
          accepted += written.stored;
        }
      }),
    );
    return { posted: BATCHES * BATCH, accepted };
  });
}

/** 4 clients posting 1,000-event JSON bodies (built before the clock starts); every `retryEvery`-th send is a
 * retry of a batch that client already had acknowledged (its answer "lost"): all duplicates. */
async function httpPhase(
  target: Target,
  t: TallyChild,
  retryEvery?: number,
  dress: (events: Fields[]) => Fields[] = (events) => events,
): Promise<PhaseResult> {
  const nowMs = Date.now();
  const fresh = retryEvery ? BATCHES - Math.floor(BATCHES / retryEvery) : BATCHES;
  const bodies = Array.from({ length: fresh }, () => jsonBody(dress(batchFields(nextTag(), BATCH, nowMs))));
  freshAgent();
  return measured(target, t.child.pid, async () => {
    const r = await postBatches(t.url, KEY, agent, bodies, { clients: CLIENTS, retryEvery });
    return {
      posted: r.posted,
      accepted: r.accepted,
      p50: percentile(r.latencies, 50),
      p99: percentile(r.latencies, 99),
    };
  });
}

/** In this process, no HTTP and no database: JSON.parse, validation, sort + dedupe + COPY encoding, per event. */
function nodeSide(): { parse: number; validate: number; encode: number } {
  const nowMs = Date.now();
  const bodies = Array.from({ length: 50 }, () => Buffer.from(jsonBody(batchFields(nextTag(), BATCH, nowMs))));
  const aggregationOf = () => "sum" as const;
  const ctx = { aggregationOf, nowMs, maxAgeMs: 35 * 86_400_000, maxFutureMs: 300_000 };
  const total = { parse: 0, validate: 0, encode: 0 };
  for (let round = 0; round < 10; round++) {
    for (const buf of bodies) {
      let t0 = performance.now();
      const { events } = JSON.parse(buf.toString("utf8")) as { events: unknown[] };
      total.parse += performance.now() - t0;
      t0 = performance.now();
      const checker = new EventChecker(ctx);
      const valid = events.map((e, i) => {
        const v = checker.check(e, i);
        if (!v.ok) throw new Error(JSON.stringify(v.errors));
        return v.event;
      });
      total.validate += performance.now() - t0;
      t0 = performance.now();
      const sorted = distinctInKeyOrder(valid);
      const hashes = keyHashes(sorted);
      encodeBinaryBatch(sorted, new Date(), hashes, hashOrder(hashes));
      total.encode += performance.now() - t0;
    }
  }
  const n = 10 * bodies.length * BATCH;
  return { parse: (total.parse * 1000) / n, validate: (total.validate * 1000) / n, encode: (total.encode * 1000) / n };
}

async function ndjsonPhase(t: TallyChild) {
  const target = NDJSON_MB * 1024 * 1024;
  const nowMs = Date.now();
  let bytes = 0;
  const lines = Readable.from(
    (function* () {
      while (bytes < target) {
        const chunk = `${batchFields(nextTag(), 500, nowMs)
          .map((e) => JSON.stringify(e))
          .join("\n")}\n`;
        bytes += Buffer.byteLength(chunk);
        yield chunk;
      }
    })(),
  );
  freshAgent();
  const rssBeforeMb = t.rssMb();
  const rss = t.watchRss();
  const started = performance.now();
  const res = await httpRequest(`${t.url}/v1/events`, {
    key: KEY,
    method: "POST",
    agent,
    contentType: "application/x-ndjson",
    body: lines,
  });
  const seconds = (performance.now() - started) / 1000;
  const peakRssMb = rss.stop();
  if (res.status !== 202) throw new Error(`NDJSON failed: ${res.status} ${res.text.slice(0, 300)}`);
  const events = (JSON.parse(res.text) as { accepted: number }).accepted;
  return { mb: bytes / 1024 / 1024, events, seconds, rssBeforeMb, peakRssMb };
}

const median = <T>(xs: T[], by: (x: T) => number): T => {
  const sorted = [...xs].sort((a, b) => by(a) - by(b));
  return sorted[Math.floor((sorted.length - 1) / 2)] as T;
};
const num = (n: number) => Math.round(n).toLocaleString("en-US");
const us = (seconds: number, events: number) => ((seconds * 1e6) / events).toFixed(1);

function row(name: string, p: PhaseResult, base: PhaseResult, embedded: boolean): string[] {
  const pgCpu = p.cpu.pgBackends + p.cpu.pgBackground;
  return [
    name,
    num(rate(p)),
    p.accepted === p.posted ? "" : num(p.accepted / p.seconds),
    `${(rate(p) / rate(base)).toFixed(2)}×`,
    p.p50 === undefined ? "" : `${p.p50.toFixed(0)} / ${(p.p99 ?? 0).toFixed(0)} ms`,
    embedded ? "(in Tally)" : us(pgCpu, p.posted),
    us(p.cpu.tally, p.posted),
    us(p.cpu.self, p.posted),
    p.walBytes === undefined ? "" : num(p.walBytes / p.posted),
  ];
}

const HEAD = [
  "phase",
  "events/s",
  "stored/s",
  "× baseline",
  "batch p50 / p99",
  "PostgreSQL µs/event",
  "Tally µs/event",
  "generator/writer µs/event",
  "WAL B/event",
];

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  const embedded = !serverUrl;
  const rounds: Record<"baseline" | "database" | "retries" | dims.HttpKind, PhaseResult>[] = [];
  let target: Target;
  let startFresh: () => Promise<TallyChild>;
  let writerDb: () => Promise<{ db: Db; close(): Promise<void> }>;
  let truncate = async (_keepDimensions?: boolean) => {};
  let cleanup = async () => {};
  if (serverUrl) {
    const fresh = await freshServerDatabase(serverUrl);
    const admin = new pg.Client({ connectionString: fresh.url });
    await admin.connect();
    target = { engine: "server", admin, url: fresh.url };
    let t: TallyChild | undefined;
    // One Tally for the run; with BENCH_DIMENSIONS a fresh one for each HTTP phase that starts afresh (its guard
    // must not know the combinations of an earlier phase).
    startFresh = async () => {
      if (dims.WITH_DIMENSIONS) {
        await t?.stop();
        t = undefined;
      }
      t ??= await startTally(
        {
          DATABASE_URL: fresh.url,
          TALLY_DB_POOL_SIZE: String(Math.max(10, CLIENTS * 2)),
          TALLY_ADMIN_KEY: KEY,
          TALLY_JOBS: "off",
        },
        NODE_ARGS,
      );
      return t;
    };
    const shared = new ServerDb({ connectionString: fresh.url, max: CLIENTS });
    writerDb = async () => ({ db: shared, close: async () => {} });
    truncate = async (keepDimensions = false) => {
      const dimensionTables = keepDimensions ? "" : ", dimension_usage, dimension_counts";
      await admin.query(
        `TRUNCATE event_keys_hot_0, event_keys_hot_1, event_keys_cold_0, event_keys_cold_1, event_key_collisions, usage_events, rollup_invalidations, stripe_marks${dimensionTables}`,
      );
      await admin.query("CHECKPOINT");
    };
    cleanup = async () => {
      await t?.stop();
      await shared.close();
      await admin.end();
      await fresh.drop();
    };
  } else {
    target = { engine: "embedded" };
    const dirs: string[] = [];
    let t: TallyChild | undefined;
    // One process owns a PGlite directory: a fresh Tally (and directory) for each HTTP phase.
    startFresh = async () => {
      await t?.stop();
      const dir = await mkdtemp(join(tmpdir(), "tally-bench-"));
      dirs.push(dir);
      t = await startTally({ TALLY_DATA_DIR: dir, TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off" }, NODE_ARGS);
      return t;
    };
    writerDb = async () => {
      const opened = await openDatabase({ dataDir: "memory://" });
      await migrate(opened.db, opened.engine);
      return { db: opened.db, close: () => opened.db.close() };
    };
    cleanup = async () => {
      await t?.stop();
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    };
  }

  try {
    const defineMeters = async (t: TallyChild) => {
      for (const m of METERS) await t.put(`/v1/meters/${m}`, KEY, { name: m, unit: "unit", aggregation: "sum" });
      for (const m of dims.WITH_DIMENSIONS ? METERS.map(dims.dimensionalMeter) : []) {
        await t.put(`/v1/meters/${m}`, KEY, { name: m, unit: "unit", aggregation: "sum", dimensions: dims.DIMENSIONS });
      }
      return t;
    };
    let t = await defineMeters(await startFresh());
    const label = serverUrl ? `server (${new URL(serverUrl).host})` : "embedded (PGlite + TimescaleDB)";
    console.log(
      `\nTally ingest benchmark — ${label}, engine ${t.engine}; ${ROUNDS} rounds of ${BATCHES} × ${BATCH}-event batches, ` +
        `${CLIENTS} clients, ${RANDOM_IDS ? "random (UUIDv4)" : "time-ordered"} ids\n`,
    );
    for (let r = 0; r < ROUNDS; r++) {
      const w = await writerDb();
      await truncate();
      const baseline = await baselinePhase(target, w.db);
      await w.db.query("DROP TABLE bench_raw_events");
      await truncate();
      const database = await databasePhase(target, w.db);
      await w.close();
      if (embedded && r > 0) t = await defineMeters(await startFresh());
      // Without and (BENCH_DIMENSIONS=1) with properties and dimensions, in rotating order; each on empty tables.
      const httpPhases: Partial<Record<dims.HttpKind, PhaseResult>> = {};
      for (const [i, kind] of dims.httpKinds(r).entries()) {
        const afresh = dims.startsAfresh(kind);
        if (afresh && (dims.WITH_DIMENSIONS || embedded) && (r > 0 || i > 0))
          t = await defineMeters(await startFresh());
        if (afresh || !embedded) await truncate(!afresh);
        httpPhases[kind] = await httpPhase(target, t, undefined, dims.dressFor(kind));
      }
      const plain = httpPhases.http as PhaseResult;
      if (embedded) t = await defineMeters(await startFresh());
      await truncate();
      const retries = await httpPhase(target, t, RETRY_EVERY);
      rounds.push({ baseline, database, retries, ...dims.byKind(httpPhases, (p) => p) });
      console.log(
        `  round ${r + 1}: raw COPY ${num(rate(baseline))}/s, write path ${num(rate(database))}/s, ` +
          `HTTP ${num(rate(plain))}/s, HTTP with 5% retries ${num(rate(retries))}/s` +
          dims.roundNote(dims.byKind(httpPhases, rate)),
      );
    }
    const pick = (k: keyof (typeof rounds)[number]) => median(rounds, (x) => rate(x[k]))[k];
    const base = pick("baseline");
    const plain = pick("http");
    const retries = pick("retries");
    console.log(
      `\nMedians of ${ROUNDS} rounds; ratios to the raw COPY baseline of this run. CPU per event posted.\n\n${table(
        HEAD,
        [
          row("raw COPY, 1 client, only UNIQUE (customer_id, event_id)", base, base, embedded),
          row(`Tally write path, no HTTP, ${CLIENTS} writers`, pick("database"), base, embedded),
          row(`Tally over HTTP, ${CLIENTS} clients`, plain, base, embedded),
          row("Tally over HTTP, 5% of batches retried", retries, base, embedded),
          ...(dims.WITH_DIMENSIONS
            ? [
                row("Tally over HTTP, 2 properties, meters without dimensions", pick("props"), base, embedded),
                row("Tally over HTTP, 2 dimensions, every combination new", pick("dims"), base, embedded),
                row("Tally over HTTP, 2 dimensions, combinations known", pick("known"), base, embedded),
              ]
            : []),
        ],
      )}`,
    );
    console.log(`\nWith 5% retries: ${(rate(retries) / rate(plain)).toFixed(2)}× the duplicate-free figure.`);
    if (dims.WITH_DIMENSIONS) console.log(dims.dimensionsVerdict(rounds.map((x) => dims.byKind(x, rate))));
    const n = nodeSide();
    console.log(
      `Node side without HTTP (µs/event): JSON.parse ${n.parse.toFixed(2)}, validation ${n.validate.toFixed(2)}, ` +
        `sort + dedupe + COPY encoding ${n.encode.toFixed(2)}; Tally process over HTTP: ${us(plain.cpu.tally, plain.posted)}.`,
    );

    if (NDJSON_MB > 0) {
      const nd = await ndjsonPhase(t);
      console.log(
        `\n${table(
          ["NDJSON body", "events", "seconds", "events/s", "server RSS before", "server peak RSS", "RSS growth"],
          [
            [
              `${Math.round(nd.mb)} MB`,
              num(nd.events),
              nd.seconds.toFixed(1),
              num(nd.events / nd.seconds),
              `${Math.round(nd.rssBeforeMb)} MB`,
              `${Math.round(nd.peakRssMb)} MB`,
              `${Math.round(nd.peakRssMb - nd.rssBeforeMb)} MB`,
            ],
          ],
        )}`,
      );
    }
  } finally {
    agent.destroy();
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
