// npm run bench:ingest — ingest throughput and latency over HTTP against a Tally child process, compared in the
// same run with a raw baseline: COPY of the same rows straight into an identical table with the same unique
// index, no HTTP. Then one 200 MB NDJSON body, watching the server's RSS.
//   DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset → embedded engine.
//   BENCH_SECONDS (default 10) per phase, BENCH_CLIENTS (default 4), BENCH_NDJSON_MB (default 200),
//   BENCH_SIZES (default 100,1000,10000).
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { migrate } from "../src/db/migrate.js";
import { openDatabase } from "../src/db/open.js";
import { ServerDb } from "../src/db/server.js";
import type { Db } from "../src/db/types.js";
import { copyRow } from "../src/ingest/copyText.js";
import { freshServerDatabase, httpRequest, percentile, startTally, type TallyChild, table } from "./harness.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const NDJSON_MB = Number(process.env.BENCH_NDJSON_MB ?? 200);
const SIZES = (process.env.BENCH_SIZES ?? "100,1000,10000").split(",").filter(Boolean).map(Number);
const CUSTOMERS = 1000;
const METERS = ["api_calls", "tokens", "storage_gb", "seats"];
const KEY = `bench-${randomBytes(12).toString("hex")}`;

let agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });
/** A fresh connection pool per phase: no socket left idle across phases. */
function freshAgent(): void {
  agent.destroy();
  agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });
}

/** Event i of batch b: unique id, spread over customers and meters, a timestamp within the last hour. */
function eventFields(b: string, i: number, nowMs: number) {
  return {
    id: `${b}-${i}`,
    customer: `cust-${(i * 7919) % CUSTOMERS}`,
    meter: METERS[i % METERS.length] as string,
    value: String((i % 97) + 1),
    timestamp: new Date(nowMs - ((i * 37) % 3_600_000)).toISOString(),
  };
}

function jsonBody(b: string, size: number, nowMs: number): string {
  const parts: string[] = new Array(size);
  for (let i = 0; i < size; i++) parts[i] = JSON.stringify(eventFields(b, i, nowMs));
  return `{"events":[${parts.join(",")}]}`;
}

const post = (url: string, body: string | Readable, type: string) =>
  httpRequest(`${url}/v1/events`, { key: KEY, method: "POST", agent, contentType: type, body });

interface PhaseResult {
  size: number;
  events: number;
  seconds: number;
  p50: number;
  p99: number;
  peakRssMb: number;
}

async function httpPhase(t: TallyChild, size: number): Promise<PhaseResult> {
  freshAgent();
  const latencies: number[] = [];
  let events = 0;
  let batchNo = 0;
  const nowMs = Date.now();
  const rss = t.watchRss();
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < deadline) {
        const body = jsonBody(`h${size}-${batchNo++}-${randomBytes(3).toString("hex")}`, size, nowMs);
        const t0 = performance.now();
        const res = await post(t.url, body, "application/json");
        latencies.push(performance.now() - t0);
        if (res.status !== 202) throw new Error(`ingest failed: ${res.status} ${res.text.slice(0, 300)}`);
        events += (JSON.parse(res.text) as { accepted: number }).accepted;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return {
    size,
    events,
    seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    peakRssMb: rss.stop(),
  };
}

// "An identical table with the same unique index": usage_events' columns and indexes, plus the dedupe key.
const RAW_TABLE = `
  DROP TABLE IF EXISTS bench_raw_events;
  CREATE TABLE bench_raw_events (LIKE usage_events INCLUDING DEFAULTS INCLUDING INDEXES);
  CREATE UNIQUE INDEX bench_raw_events_key ON bench_raw_events (customer_id, event_id);`;
const RAW_COLUMNS = ["ts", "customer_id", "meter", "value", "event_id", "properties", "received_at"];

/** The same rows, COPYed straight into a table with the same unique index: what the database alone can do. */
async function baselinePhase(db: Db, size: number, clients: number): Promise<{ events: number; seconds: number }> {
  await db.query(RAW_TABLE);
  let events = 0;
  let batchNo = 0;
  const nowMs = Date.now();
  const received = new Date().toISOString();
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < deadline) {
        const b = `r${size}-${batchNo++}`;
        const rows: string[] = [];
        for (let i = 0; i < size; i++) {
          const e = eventFields(b, i, nowMs);
          rows.push(copyRow([e.timestamp, e.customer, e.meter, e.value, e.id, null, received]));
        }
        events += await db.transaction((tx) =>
          tx.copyIn({ table: "bench_raw_events", columns: RAW_COLUMNS }, [rows.join("")]),
        );
      }
    }),
  );
  return { events, seconds: (performance.now() - started) / 1000 };
}

async function ndjsonPhase(
  t: TallyChild,
): Promise<{ mb: number; events: number; seconds: number; rssBeforeMb: number; peakRssMb: number }> {
  const target = NDJSON_MB * 1024 * 1024;
  const nowMs = Date.now();
  let bytes = 0;
  let i = 0;
  const lines = Readable.from(
    (function* () {
      while (bytes < target) {
        let chunk = "";
        for (let k = 0; k < 500; k++) chunk += `${JSON.stringify(eventFields("nd", i++, nowMs))}\n`;
        bytes += Buffer.byteLength(chunk);
        yield chunk;
      }
    })(),
  );
  freshAgent();
  await new Promise((r) => setTimeout(r, 500));
  const rssBeforeMb = t.rssMb();
  const rss = t.watchRss();
  const started = performance.now();
  const res = await post(t.url, lines, "application/x-ndjson");
  const seconds = (performance.now() - started) / 1000;
  const peakRssMb = rss.stop();
  if (res.status !== 202) throw new Error(`NDJSON failed: ${res.status} ${res.text.slice(0, 300)}`);
  return {
    mb: bytes / 1024 / 1024,
    events: (JSON.parse(res.text) as { accepted: number }).accepted,
    seconds,
    rssBeforeMb,
    peakRssMb,
  };
}

async function main(): Promise<void> {
  const serverUrl = process.env.DATABASE_URL;
  let cleanup = async () => {};
  let env: Record<string, string>;
  let baselineDb: Db;
  let engineLabel: string;
  if (serverUrl) {
    const fresh = await freshServerDatabase(serverUrl);
    env = { DATABASE_URL: fresh.url, TALLY_DB_POOL_SIZE: String(Math.max(10, CLIENTS * 2)) };
    baselineDb = new ServerDb({ connectionString: fresh.url, max: CLIENTS });
    engineLabel = `server (${new URL(serverUrl).host})`;
    cleanup = async () => {
      await baselineDb.close();
      await fresh.drop();
    };
  } else {
    const dir = await mkdtemp(join(tmpdir(), "tally-bench-"));
    const rawDir = await mkdtemp(join(tmpdir(), "tally-bench-raw-"));
    env = { TALLY_DATA_DIR: dir };
    const opened = await openDatabase({ dataDir: rawDir });
    await migrate(opened.db, opened.engine);
    baselineDb = opened.db;
    engineLabel = "embedded (PGlite + TimescaleDB)";
    cleanup = async () => {
      await baselineDb.close();
      await rm(dir, { recursive: true, force: true });
      await rm(rawDir, { recursive: true, force: true });
    };
  }

  const t = await startTally({ ...env, TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off" });
  try {
    for (const m of METERS) await t.put(`/v1/meters/${m}`, KEY, { name: m, unit: "unit", aggregation: "sum" });
    console.log(
      `\nTally ingest benchmark — ${engineLabel}, engine ${t.engine}; ${CLIENTS} clients, ${SECONDS} s per phase\n`,
    );
    const rows: string[][] = [];
    for (const size of SIZES) {
      const h = await httpPhase(t, size);
      // PostgreSQL 15 serializes concurrent COPYs into one table on its relation-extension lock, so the
      // baseline is measured with one writer and with as many as Tally had, and the better one counts.
      const b1 = await baselinePhase(baselineDb, size, 1);
      const bN = await baselinePhase(baselineDb, size, CLIENTS);
      const rate = h.events / h.seconds;
      const rate1 = b1.events / b1.seconds;
      const rateN = bN.events / bN.seconds;
      const baseRate = Math.max(rate1, rateN);
      rows.push([
        String(size),
        Math.round(rate).toLocaleString("en-US"),
        `${h.p50.toFixed(1)} ms`,
        `${h.p99.toFixed(1)} ms`,
        `${Math.round(h.peakRssMb)} MB`,
        `${Math.round(rate1).toLocaleString("en-US")} / ${Math.round(rateN).toLocaleString("en-US")}`,
        `${(rate / baseRate).toFixed(2)}×`,
      ]);
      console.log(
        `  batch ${size}: ${Math.round(rate)} events/s (raw COPY: ${Math.round(rate1)}/s with 1 writer, ${Math.round(rateN)}/s with ${CLIENTS})`,
      );
    }
    console.log(
      `\n${table(
        [
          "batch",
          "Tally events/s",
          "p50 batch",
          "p99 batch",
          "server peak RSS",
          `raw COPY events/s (1 / ${CLIENTS} writers)`,
          "ratio to the better",
        ],
        rows,
      )}`,
    );
    if (NDJSON_MB > 0) {
      const n = await ndjsonPhase(t);
      console.log(
        `\n${table(
          ["NDJSON body", "events", "seconds", "events/s", "server RSS before", "server peak RSS", "RSS growth"],
          [
            [
              `${Math.round(n.mb)} MB`,
              n.events.toLocaleString("en-US"),
              n.seconds.toFixed(1),
              Math.round(n.events / n.seconds).toLocaleString("en-US"),
              `${Math.round(n.rssBeforeMb)} MB`,
              `${Math.round(n.peakRssMb)} MB`,
              `${Math.round(n.peakRssMb - n.rssBeforeMb)} MB`,
            ],
          ],
        )}`,
      );
    }
  } finally {
    await t.stop();
    agent.destroy();
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
