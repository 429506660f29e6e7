// Writing a batch. The common case — every (customer, id) is new — is optimistic: one probe finds none of the
// batch's keys stored (keys.ts), then COPY the keys straight into the current hot table and the events straight
// into usage_events, as fast as the database takes rows. The hot table's primary key is the arbiter between
// concurrent writers: a COPY that meets a key of an open transaction waits for it, then goes on (it rolled back)
// or fails with a unique violation (it committed). Only when a key is found or the COPY fails is the batch written
// again with the ON CONFLICT statement, which stores exactly the keys nobody has. Nothing is visible until the
// caller commits. Customers are taken in byte order, then keys in hash order (see batch.ts, keys.ts).

import { markTouchedHours } from "../changes/hours.js";
import type { Db, Queryable } from "../db/types.js";
import { ascending, customersInOrder, distinctInKeyOrder, EVENT_COLUMNS, hoursOf, KEY_COLUMNS } from "./batch.js";
import { encodeBinaryBatch } from "./copyBinary.js";
import { copyRow } from "./copyText.js";
import type { DistinctBatch, DistinctValues } from "./distinct.js";
import {
  DEFAULT_WINDOW_MS,
  hashOrder,
  hashTexts,
  heldElsewhere,
  type KeyTables,
  keyHashes,
  lockKeys,
  secondOf,
  storedCount,
  storedExactly,
} from "./keys.js";
import type { ValidEvent } from "./validate.js";

/** A unique violation: a key of the batch exists (only the hot key table has a unique index that ingest writes). */
const isKeyConflict = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === "23505";

/** The optimistic probe found a key of the batch stored: the same way out as a unique violation. */
class KeyStored extends Error {
  readonly code = "23505";
}

/** The second from which keys count as stored: the dedupe window back from `receivedAt`. */
const cutOf = (receivedAt: Date, windowMs: number) => secondOf(receivedAt.getTime() - windowMs);

// Customers are registered before any key, in byte order, so that order is the same for every writer.
const REGISTER_CUSTOMERS = `
  INSERT INTO customers (id)
  SELECT u.id FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)
  WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = u.id)
  ORDER BY u.n
  ON CONFLICT DO NOTHING`;

/** Customers are never deleted, so one seen committed stays registered: no statement for it next time. */
export class KnownCustomers {
  static readonly MAX = 100_000;
  readonly #seen = new Set<string>();

  unknown(customers: readonly string[]): string[] {
    return customers.filter((c) => !this.#seen.has(c));
  }

  /** Call after the commit that registered them. */
  add(customers: Iterable<string>): void {
    for (const c of customers) {
      if (this.#seen.size >= KnownCustomers.MAX) this.#seen.clear();
      this.#seen.add(c);
    }
  }
}

/** The distinct values a batch brings (unique_count meters), and who writes them. */
interface DistinctWork {
  values: DistinctValues;
  batch: DistinctBatch;
}

/**
 * The optimistic write of distinct events in key order (distinctInKeyOrder). Throws a unique violation
 * (isKeyConflict) if any key is taken; the transaction (or savepoint) must then be rolled back.
 * `customers`: those of the batch that may be new, in byte order. Every event is stored, so the distinct values
 * gathered from them are written as they are.
 */
export async function copyBatch(
  tx: Queryable,
  events: readonly ValidEvent[],
  customers: readonly string[],
  receivedAt: Date,
  distinct?: DistinctWork,
  windowMs = DEFAULT_WINDOW_MS,
): Promise<number> {
  if (events.length === 0) return 0;
  const tables = await lockKeys(tx);
  const hashes = keyHashes(events);
  if ((await storedCount(tx, tables, hashes, cutOf(receivedAt, windowMs))) > 0) throw new KeyStored();
  if (customers.length > 0) await tx.query(REGISTER_CUSTOMERS, [customers]);
  const encoded = encodeBinaryBatch(events, receivedAt, hashes, hashOrder(hashes));
  await tx.copyIn({ table: tables.hot, columns: KEY_COLUMNS, format: "binary" }, [encoded.keys]);
  await tx.copyIn({ table: "usage_events", columns: EVENT_COLUMNS, format: "binary" }, [encoded.events]);
  if (distinct?.batch.any) await distinct.values.write(tx, distinct.batch);
  return events.length;
}

// The conflict path: COPY into a session-local staging table, then one statement that registers unknown customers,
// claims each key that is still free and inserts only the events whose claim succeeded. ON COMMIT DELETE ROWS:
// the table lives as long as the connection, its rows only as long as the transaction.
const CREATE_STAGING = `
  CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    ord         integer     NOT NULL,
    customer_id text        NOT NULL,
    event_id    text        NOT NULL,
    meter       text        NOT NULL,
    value       numeric     NOT NULL,
    ts          timestamptz NOT NULL,
    properties  jsonb,
    dimension_set integer NOT NULL DEFAULT 0,
    distinct_value text,
    h           bigint      NOT NULL,
    h2          bigint      NOT NULL
  ) ON COMMIT DELETE ROWS`;

const STAGING_COLUMNS = [
  "ord",
  "customer_id",
  "event_id",
  "meter",
  "value",
  "ts",
  "properties",
  "dimension_set",
  "distinct_value",
  "h",
  "h2",
] as const;

const FIRSTS = `firsts AS MATERIALIZED (
    SELECT DISTINCT ON (customer_id, event_id) customer_id, event_id, meter, value, ts, properties, dimension_set,
           distinct_value, h, h2
    FROM ingest_staging
    ORDER BY customer_id, event_id, ord
  )`;

/** The events of `source` whose claim (`claimed`, joined on `using`) succeeded, into usage_events. */
const insertEvents = (source: string, claimed: string, using: string) => `
  INSERT INTO usage_events (ts, customer_id, meter, value, event_id, properties, received_at, dimension_set)
  SELECT f.ts, f.customer_id, f.meter, f.value, f.event_id, f.properties, $1, f.dimension_set
  FROM ${source} f JOIN ${claimed} USING (${using})`;

// The same lock order as the optimistic path: customers in byte order (COLLATE "C"), then keys in hash order. A
// concurrent claimer of the same key waits for the first transaction and then does nothing (committed) or takes
// the key (rolled back): ON CONFLICT is race-free. Keys the sealed or cold tables hold are not claimed. Of keys
// sharing a hash in one batch, one is claimed here; the others are left to the exact statement below. With
// unique_count events, the distinct values of the events whose claim succeeded — and only those — go to
// usage_distinct, in its key order (ingest/distinct.ts). $1 received_at, $2 the window's first second, $3 r.
const claimSql = (t: KeyTables, distinct: boolean) => `
  WITH ${FIRSTS}, candidates AS MATERIALIZED (
    SELECT DISTINCT ON (f.h) f.* FROM firsts f
    WHERE NOT ${heldElsewhere(t, "f.h", "$2")}
    ORDER BY f.h, f.customer_id COLLATE "C", f.event_id COLLATE "C"
  ), registered AS (
    INSERT INTO customers (id)
    SELECT DISTINCT f.customer_id COLLATE "C" FROM firsts f
    WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = f.customer_id)
    ORDER BY 1
    ON CONFLICT DO NOTHING
  ), fresh AS (
    INSERT INTO ${t.hot} (h, h2, t, r)
    SELECT h, h2, event_key_second(ts), $3 FROM candidates
    ORDER BY h
    ON CONFLICT DO NOTHING
    RETURNING h
  )${distinct ? distinctCte("candidates", "h") : ""}${insertEvents("candidates", "fresh", "h")}`;

// After the claim, in a new snapshot: the keys of the batch not stored — neither their 128 bits in a key table nor
// their customer and id among the collisions — have an h another key holds. They are claimed, exactly by customer
// and id, in event_key_collisions (a row there older than the window is taken over).
const collisionSql = (distinct: boolean) => `
  WITH ${FIRSTS}, unstored AS MATERIALIZED (
    SELECT f.* FROM firsts f WHERE NOT ${storedExactly("f.h", "f.h2", "f.customer_id", "f.event_id", "$2")}
  ), fresh AS (
    INSERT INTO event_key_collisions AS x (customer_id, event_id, h, t, r)
    SELECT customer_id, event_id, h, event_key_second(ts), $3 FROM unstored
    ORDER BY customer_id COLLATE "C", event_id COLLATE "C"
    ON CONFLICT (customer_id, event_id) DO UPDATE SET h = EXCLUDED.h, t = EXCLUDED.t, r = EXCLUDED.r
      WHERE x.r < $2
    RETURNING customer_id, event_id
  )${distinct ? distinctCte("unstored", "customer_id, event_id") : ""}${insertEvents("unstored", "fresh", "customer_id, event_id")}`;

const distinctCte = (source: string, using: string) => `, seen AS (
    INSERT INTO usage_distinct (customer_id, meter, day, dimension_set, value, first_ts)
    SELECT * FROM (
      SELECT f.customer_id, f.meter, date_trunc('day', f.ts, 'UTC') AS day, f.dimension_set, f.distinct_value,
             min(f.ts) AS first_ts
      FROM ${source} f JOIN fresh USING (${using})
      WHERE f.distinct_value IS NOT NULL
      GROUP BY 1, 2, 3, 4, 5
    ) AS d
    ORDER BY d.customer_id COLLATE "C", d.meter COLLATE "C", d.day, d.dimension_set, d.distinct_value COLLATE "C"
    ON CONFLICT (customer_id, meter, day, dimension_set, value)
      DO UPDATE SET first_ts = EXCLUDED.first_ts WHERE EXCLUDED.first_ts < usage_distinct.first_ts
  )`;

function* stagingRows(events: readonly ValidEvent[], hashes: Buffer): Generator<string> {
  const h = hashTexts(hashes, 0);
  const h2 = hashTexts(hashes, 1);
  let piece = "";
  for (let i = 0; i < events.length; i++) {
    const e = events[i] as ValidEvent;
    piece += copyRow([
      String(i),
      e.customer,
      e.id,
      e.meter,
      e.value,
      e.ts,
      e.properties,
      String(e.dimensionSet ?? 0),
      e.distinctValue ?? null,
      h[i] as string,
      h2[i] as string,
    ]);
    if (piece.length >= 256 * 1024) {
      yield piece;
      piece = "";
    }
  }
  if (piece) yield piece;
}

/** Writes the events (distinct keys) whose key is still free; returns how many (the rest were duplicates). */
async function applyWithConflicts(
  tx: Queryable,
  events: readonly ValidEvent[],
  receivedAt: Date,
  opts: { moreToCome?: boolean; distinct?: boolean; windowMs?: number } = {},
): Promise<number> {
  if (events.length === 0) return 0;
  const tables = await lockKeys(tx);
  const params = [receivedAt, cutOf(receivedAt, opts.windowMs ?? DEFAULT_WINDOW_MS), secondOf(receivedAt.getTime())];
  await tx.query(CREATE_STAGING, []);
  await tx.copyIn({ table: "ingest_staging", columns: STAGING_COLUMNS }, stagingRows(events, keyHashes(events)));
  let stored = (await tx.query(claimSql(tables, opts.distinct ?? false), params)).rowCount;
  if (stored < events.length) stored += (await tx.query(collisionSql(opts.distinct ?? false), params)).rowCount;
  // Emptied for the next chunk of a stream; otherwise the commit does it.
  if (opts.moreToCome) await tx.query("TRUNCATE ingest_staging", []);
  return stored;
}

/**
 * One chunk of a stream inside its transaction: optimistic under a savepoint, so a conflict rolls back only this
 * chunk, which is then written with ON CONFLICT. Returns how many events were stored and whether it conflicted.
 */
export async function writeChunk(
  tx: Queryable,
  events: readonly ValidEvent[],
  known: KnownCustomers,
  receivedAt: Date,
  distinct?: DistinctWork,
  windowMs = DEFAULT_WINDOW_MS,
): Promise<{ stored: number; conflicted: boolean }> {
  if (events.length === 0) return { stored: 0, conflicted: false };
  // Held by the transaction itself, not by the savepoint: the key tables stay the same for the whole body.
  await lockKeys(tx);
  await tx.query("SAVEPOINT ingest_chunk", []);
  try {
    const customers = known.unknown(customersInOrder(events));
    const stored = await copyBatch(tx, events, customers, receivedAt, distinct, windowMs);
    await tx.query("RELEASE SAVEPOINT ingest_chunk", []);
    return { stored, conflicted: false };
  } catch (err) {
    if (!isKeyConflict(err)) throw err;
  }
  await tx.query("ROLLBACK TO SAVEPOINT ingest_chunk", []);
  await tx.query("RELEASE SAVEPOINT ingest_chunk", []);
  const stored = await applyWithConflicts(tx, events, receivedAt, {
    moreToCome: true,
    distinct: distinct?.batch.any ?? false,
    windowMs,
  });
  return { stored, conflicted: true };
}

/** What runs in a batch's transaction besides the write: `prepare` before it, `finish` after it. */
interface BatchSteps {
  /** First (dimension sets are resolved there). */
  prepare?(tx: Queryable): Promise<void>;
  /** After the events are written, before the hours are marked (the dimension guard, which locks counters). */
  finish?(tx: Queryable): Promise<void>;
}

/**
 * A whole batch (JSON): `steps.prepare` runs first in each transaction, then the distinct values of unique_count
 * events are gathered (`values`); optimistic in one transaction; if a key was taken, written again in a new
 * transaction with ON CONFLICT; then `steps.finish`. Hours are marked last in the same transaction. Returns how many
 * events were stored.
 */
export async function writeBatch(
  db: Db,
  valid: readonly ValidEvent[],
  known: KnownCustomers,
  receivedAt: Date,
  steps: BatchSteps = {},
  values?: DistinctValues,
  windowMs = DEFAULT_WINDOW_MS,
): Promise<{ stored: number; conflicted: boolean }> {
  const distinct = distinctInKeyOrder(valid);
  const customers = known.unknown(customersInOrder(distinct));
  const hours = ascending(hoursOf(distinct));
  // Only stored events count: the batch's duplicates of its own keys are gone from `distinct`.
  const gather = async (tx: Queryable): Promise<DistinctWork | undefined> =>
    values ? { values, batch: await values.prepare(tx, distinct, (e) => valid.indexOf(e)) } : undefined;
  let result: { stored: number; conflicted: boolean };
  let work: DistinctWork | undefined;
  try {
    const stored = await db.transaction(async (tx) => {
      await steps.prepare?.(tx);
      work = await gather(tx);
      const n = await copyBatch(tx, distinct, customers, receivedAt, work, windowMs);
      await steps.finish?.(tx);
      await markTouchedHours(tx, hours);
      return n;
    });
    result = { stored, conflicted: false };
  } catch (err) {
    if (!isKeyConflict(err)) throw err;
    const stored = await db.transaction(async (tx) => {
      await steps.prepare?.(tx);
      work = await gather(tx);
      const n = await applyWithConflicts(tx, distinct, receivedAt, {
        distinct: work?.batch.any ?? false,
        windowMs,
      });
      await steps.finish?.(tx);
      if (n > 0) await markTouchedHours(tx, hours);
      return n;
    });
    result = { stored, conflicted: true };
  }
  known.add(customers);
  if (work) work.values.committed(work.batch, !result.conflicted);
  return result;
}

interface StoredEvent {
  id: string;
  customer: string;
  meter: string;
  value: string;
  timestamp: Date;
  properties: Record<string, string> | null;
  receivedAt: Date;
}

/** The receipt of an event: what was stored for (customer, id), if its key arrived at or after `since`. */
export async function findEvent(
  db: Queryable,
  customer: string,
  id: string,
  since: Date,
): Promise<StoredEvent | undefined> {
  const { rows } = await db.query<{
    event_id: string;
    customer_id: string;
    meter: string;
    value: string;
    ts: Date;
    properties: Record<string, string> | null;
    received_at: Date;
  }>(
    // The seconds of the key (by its 128 bits, or exactly among the collisions), then the event within that
    // second, meter by meter along usage_events' (customer_id, meter, ts) index.
    `WITH k AS (SELECT event_key_digest($1, $2) AS d), at AS (
       SELECT m.t FROM k, event_key_matches(event_key_part(k.d, 0), $3) AS m WHERE m.h2 = event_key_part(k.d, 1)
       UNION SELECT x.t FROM event_key_collisions x WHERE x.customer_id = $1 AND x.event_id = $2 AND x.r >= $3
     )
     SELECT e.event_id, e.customer_id, e.meter, e.value::text AS value, e.ts, e.properties, e.received_at
     FROM at CROSS JOIN meters CROSS JOIN LATERAL (
       SELECT * FROM usage_events e
       WHERE e.customer_id = $1 AND e.meter = meters.key
         AND e.ts >= timestamptz '2000-01-01 00:00:00+00' + at.t * interval '1 second'
         AND e.ts < timestamptz '2000-01-01 00:00:00+00' + (at.t + 1) * interval '1 second'
         AND e.event_id = $2
       ORDER BY e.received_at DESC
       LIMIT 1
     ) AS e
     ORDER BY e.received_at DESC
     LIMIT 1`,
    [customer, id, secondOf(since.getTime())],
  );
  const r = rows[0];
  if (!r) return undefined;
  return {
    id: r.event_id,
    customer: r.customer_id,
    meter: r.meter,
    value: r.value,
    timestamp: r.ts,
    properties: r.properties,
    receivedAt: r.received_at,
  };
}
