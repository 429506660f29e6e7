// npm run bench:ingest (after bench/ingest.ts) — ingest in the steady state of the dedupe key store: HTTP ingest
// (4 clients × 1,000-event JSON batches, random UUIDv4 ids over 1,000 customers) on an empty database, then the
// same once BENCH_KEYS keys are stored, fresh batches and with 5% of batches retried, in one run.
// The stored keys are generated with SQL in the layout ingest and the daily upkeep leave (src/ingest/keys.ts):
// arrival times spread over the 35-day window, the last day's keys in the hot table (inserted in random order,
// as a btree of random keys grows), the rest packed in the cold tier. Only keys are generated: usage_events holds the
// events of the measured phases (the key store never reads events except to check a hash match exactly).
// Reported: events/s, the ratio to the empty figure, CPU and WAL per event, bytes per stored key (tables and
// indexes), load average; then (BENCH_KEYS_MERGE=0 skips) one upkeep: rotation, merge and flip, timed.
//   DATABASE_URL → a fresh database on that server (dropped afterwards); unset → the embedded engine (a temporary
//   data directory; Tally is stopped while the bench process generates the keys, as one process owns PGlite).
//   BENCH_KEYS (100,000,000 on a server, 10,000,000 embedded; e.g. 2000000 for a smoke run),
//   BENCH_KEYS_BATCHES (1,000 per phase: phases of a few seconds swing with a checkpoint or a neighbour's load),
//   BENCH_BATCH (1000), BENCH_CLIENTS (4), BENCH_KEYS_MERGE (1).
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import http from "node:http";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { openDatabase } from "../src/db/open.js";
import { ServerDb } from "../src/db/server.js";
import type { Db } from "../src/db/types.js";
import { maintainKeys } from "../src/ingest/rotate.js";
import {
  cpuMeter,
  freshServerDatabase,
  percentile,
  postBatches,
  startTally,
  type TallyChild,
  table,
  walMeter,
} from "./harness.js";

const SERVER = process.env.DATABASE_URL;
const KEYS = Number(process.env.BENCH_KEYS ?? (SERVER ? 100_000_000 : 10_000_000));
const BATCHES = Number(process.env.BENCH_KEYS_BATCHES ?? 1000);
const BATCH = Number(process.env.BENCH_BATCH ?? 1000);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 4);
const MERGE = process.env.BENCH_KEYS_MERGE !== "0";
const CUSTOMERS = 1000;
const METERS = ["api_calls", "tokens", "storage_gb", "seats"];
const KEY = `bench-${randomUUID()}`;
const DAY_S = 86_400;
const KEY_TABLES = [
  "event_keys_hot_0",
  "event_keys_hot_1",
  "event_keys_cold_0",
  "event_keys_cold_1",
  "event_key_collisions",
];

const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS * 2 });

const body = (nowMs: number) =>
  JSON.stringify({
    events: Array.from({ length: BATCH }, (_, i) => ({
      id: randomUUID(),
      customer: `cust-${Math.floor(Math.random() * CUSTOMERS)}`,
      meter: METERS[i % METERS.length],
      value: String((i % 97) + 1),
      timestamp: new Date(nowMs - ((i * 37_003) % 3_600_000)).toISOString(),
    })),
  });

interface Phase {
  events: number;
  accepted: number;
  seconds: number;
  cpuPg: number;
  cpuTally: number;
  wal: number;
  p99: number;
}

/** CLIENTS clients post BATCHES bodies; with `retryEvery`, every retryEvery-th send repeats an acknowledged body. */
async function phase(admin: pg.Client | undefined, t: TallyChild, retryEvery?: number): Promise<Phase> {
  const nowMs = Date.now();
  const fresh = retryEvery ? BATCHES - Math.floor(BATCHES / retryEvery) : BATCHES;
  const bodies = Array.from({ length: fresh }, () => body(nowMs));
  // Every phase starts right after a checkpoint: each pays the full-page images of the pages it touches first.
  await admin?.query("CHECKPOINT");
  const cpu = await cpuMeter(t.child.pid, admin);
  const wal = await walMeter(admin);
  const started = performance.now();
  const {
    posted: events,
    accepted,
    latencies,
  } = await postBatches(t.url, KEY, agent, bodies, {
    clients: CLIENTS,
    retryEvery,
  });
  const seconds = (performance.now() - started) / 1000;
  const c = await cpu.stop();
  return {
    events,
    accepted,
    seconds,
    cpuPg: c.pgBackends + c.pgBackground,
    cpuTally: c.tally,
    wal: (await wal.stop()) ?? 0,
    p99: percentile(latencies, 99),
  };
}

/** `count` keys with random v4 ids over CUSTOMERS customers, arrived over the last 35 days, as ingest stores them. */
async function generate(admin: Db, count: number): Promise<void> {
  const t0 = performance.now();
  await admin.query(
    "CREATE UNLOGGED TABLE bench_keys (h bigint NOT NULL, h2 bigint NOT NULL, t integer NOT NULL, r integer NOT NULL)",
  );
  const step = 5_000_000;
  for (let from = 0; from < count; from += step) {
    const n = Math.min(step, count - from);
    await admin.query(
      `INSERT INTO bench_keys (h, h2, t, r)
       SELECT event_key_part(d, 0), event_key_part(d, 1), a, a
       FROM (SELECT event_key_digest('cust-' || (random() * ${CUSTOMERS - 1})::integer, gen_random_uuid()::text) AS d,
                    event_key_second(now()) - (random() * ${35 * DAY_S - 60})::integer AS a
             FROM generate_series(1, $1)) AS g`,
      [n],
    );
    console.log(
      `  generated ${(from + n).toLocaleString("en-US")} keys (${((performance.now() - t0) / 1000).toFixed(0)} s)`,
    );
  }
  const cut = `event_key_second(now()) - ${DAY_S}`;
  // The last day in the current hot table, in random order (as a btree of random keys grows); the rest packed.
  await admin.query(`INSERT INTO event_keys_hot_0 (h, h2, t, r) SELECT h, h2, t, r FROM bench_keys WHERE r >= ${cut}`);
  await admin.transaction(async (tx) => {
    await tx.query(`SET LOCAL work_mem = '${SERVER ? "1GB" : "256MB"}'`);
    await tx.query(
      `UPDATE event_key_state SET keys_0 = (SELECT count(*) FROM bench_keys WHERE r < ${cut}),
                                  shift_0 = event_key_shift((SELECT count(*) FROM bench_keys WHERE r < ${cut}))`,
    );
    await tx.query(
      `INSERT INTO event_keys_cold_0 (bucket, hb, h2s, ts, rs)
       SELECT (h >> (SELECT shift_0 FROM event_key_state))::integer, string_agg(int8send(h), ''::bytea),
              array_agg(h2), array_agg(t), array_agg(r)
       FROM bench_keys WHERE r < ${cut} GROUP BY 1`,
    );
  });
  await admin.query("UPDATE event_key_state SET hot_since = now() - interval '1 hour'");
  await admin.query("DROP TABLE bench_keys");
  await admin.query(`VACUUM ANALYZE ${KEY_TABLES.join(", ")}`);
  await admin.query("CHECKPOINT");
  console.log(`  stored state ready (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}

/** The current hot table's keys and size, and whether an upkeep is under way (sealed). */
async function hotState(db: Db): Promise<string> {
  const { rows } = await db.query<{ hot: number; sealed: boolean; keys: string; mib: string }>(
    `SELECT s.hot, s.sealed,
            (SELECT count(*) FROM event_key_entries WHERE tier = 'hot')::text AS keys,
            (pg_total_relation_size(('event_keys_hot_' || s.hot)::regclass) / 1048576)::text AS mib
     FROM event_key_state s`,
  );
  const r = rows[0];
  return r ? `hot table ${r.hot}: ${num(Number(r.keys))} keys, ${r.mib} MiB${r.sealed ? ", a merge pending" : ""}` : "";
}

async function storedKeys(admin: Db): Promise<{ keys: number; bytes: number }> {
  const { rows } = await admin.query<{ keys: string; bytes: string }>(
    `SELECT (SELECT count(*) FROM event_key_entries)::text AS keys,
            (${KEY_TABLES.map((t) => `pg_total_relation_size('${t}')`).join(" + ")})::text AS bytes`,
  );
  return { keys: Number(rows[0]?.keys), bytes: Number(rows[0]?.bytes) };
}

const num = (n: number) => Math.round(n).toLocaleString("en-US");
const rate = (p: Phase) => p.events / p.seconds;
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

function row(name: string, p: Phase, empty: Phase): string[] {
  return [
    name,
    num(rate(p)),
    (rate(p) / rate(empty)).toFixed(2),
    ((p.cpuPg * 1e6) / p.events).toFixed(1),
    ((p.cpuTally * 1e6) / p.events).toFixed(1),
    (p.wal / p.events).toFixed(0),
    p.p99.toFixed(0),
  ];
}
const HEAD = ["phase", "events/s", "× empty", "PostgreSQL µs/event", "Tally µs/event", "WAL bytes/event", "p99 ms"];

/** Where the run's data lives: a fresh server database, or an embedded data directory. */
interface Target {
  env: Record<string, string>;
  /** The server's admin client (CPU of backends, WAL); undefined embedded. */
  admin?: pg.Client;
  /** A connection for SQL of the bench itself; embedded only while Tally is stopped. */
  open(): Promise<Db>;
  close(db: Db): Promise<void>;
  cleanup(): Promise<void>;
}

async function target(): Promise<Target> {
  if (SERVER) {
    const fresh = await freshServerDatabase(SERVER);
    const admin = new pg.Client({ connectionString: fresh.url });
    await admin.connect();
    return {
      env: { DATABASE_URL: fresh.url, TALLY_DB_POOL_SIZE: String(Math.max(10, CLIENTS * 2)) },
      admin,
      open: async () => new ServerDb({ connectionString: fresh.url, max: 2 }),
      close: (db) => db.close(),
      cleanup: async () => {
        await admin.end();
        await fresh.drop();
      },
    };
  }
  const dir = await mkdtemp(join(tmpdir(), "tally-bench-keys-"));
  return {
    env: { TALLY_DATA_DIR: dir },
    open: async () => (await openDatabase({ dataDir: dir })).db,
    close: (db) => db.close(),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

async function main(): Promise<void> {
  const where = await target();
  let t: TallyChild | undefined;
  const start = async () => {
    t = await startTally({ ...where.env, TALLY_ADMIN_KEY: KEY, TALLY_JOBS: "off" });
    return t;
  };
  /** SQL of the bench: beside Tally on a server; embedded, with Tally stopped (one process owns PGlite). */
  const withDb = async <T>(fn: (db: Db) => Promise<T>): Promise<T> => {
    if (!SERVER && t) {
      await t.stop();
      t = undefined;
    }
    const db = await where.open();
    try {
      return await fn(db);
    } finally {
      await where.close(db);
    }
  };
  try {
    let tally = await start();
    for (const m of METERS) await tally.put(`/v1/meters/${m}`, KEY, { name: m, unit: "unit", aggregation: "sum" });
    const settings = await withDb(
      async (db) =>
        (
          await db.query<Record<string, string>>(
            `SELECT current_setting('shared_buffers') AS shared_buffers,
                    current_setting('wal_compression') AS wal_compression,
                    current_setting('max_wal_size') AS max_wal_size, current_setting('server_version') AS version`,
          )
        ).rows[0],
    );
    tally = t ?? (await start());
    console.log(
      `\nKey store steady state — ${SERVER ? new URL(SERVER).host : "embedded (PGlite + TimescaleDB)"}, ` +
        `${num(KEYS)} stored keys, ${BATCHES} × ${BATCH}-event batches per phase, ${CLIENTS} clients, random ` +
        `UUIDv4 ids; ${JSON.stringify(settings)}; load ${load()}\n`,
    );
    const empty = await phase(where.admin, tally);
    const emptyRetries = await phase(where.admin, tally, 20);
    console.log(`  empty: ${num(rate(empty))}/s, with 5% retries ${num(rate(emptyRetries))}/s; load ${load()}`);
    await withDb((db) => generate(db, KEYS));
    console.log(`  ${await withDb(hotState)}`);
    tally = t ?? (await start());
    const loaded = await phase(where.admin, tally);
    const loadedRetries = await phase(where.admin, tally, 20);
    const stored = await withDb(storedKeys);
    console.log(`  after the phases: ${await withDb(hotState)}`);
    console.log(
      `\n${table(HEAD, [
        row("empty database", empty, empty),
        row("empty database, 5% of batches retried", emptyRetries, empty),
        row(`${num(KEYS)} keys stored`, loaded, empty),
        row(`${num(KEYS)} keys stored, 5% of batches retried`, loadedRetries, empty),
      ])}\n\nKey store: ${num(stored.keys)} keys in ${num(stored.bytes / 1024 / 1024)} MiB (tables and indexes): ` +
        `${(stored.bytes / stored.keys).toFixed(1)} bytes per key; load ${load()}`,
    );
    if (MERGE) {
      await withDb(async (db) => {
        const wal = await walMeter(where.admin);
        const t0 = performance.now();
        const upkeep = await maintainKeys(db, new Date(), { force: true, lockTimeoutMs: 10_000 });
        const s = (performance.now() - t0) / 1000;
        const after = await storedKeys(db);
        const walMb = ((await wal.stop()) ?? Number.NaN) / 1024 / 1024;
        console.log(
          `Upkeep (rotation, merge of ${num(upkeep.merged_keys)} hot keys into the cold tier, flip): ${s.toFixed(1)} s, ` +
            `WAL ${num(walMb)} MiB; then ${(after.bytes / after.keys).toFixed(1)} bytes per key; load ${load()}`,
        );
      });
    }
  } finally {
    agent.destroy();
    await t?.stop();
    await where.cleanup();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
