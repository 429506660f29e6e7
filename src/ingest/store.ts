// Writing a batch. The common case — every (customer, id) is new — is optimistic: COPY the keys straight into
// event_keys and the events straight into usage_events, as fast as the database takes rows. event_keys' primary key
// is the only arbiter: a COPY that meets a key of an open transaction waits for it, then goes on (it rolled back)
// or fails with a unique violation (it committed, or the key was stored before). Only then is the batch written
// again with the ON CONFLICT statement, which stores exactly the keys nobody has. Nothing is visible until the
// caller commits. Keys and customers are always taken in (customer, id) byte order (see batch.ts).

import { markTouchedHours } from "../changes/hours.js";
import type { Db, Queryable } from "../db/types.js";
import { ascending, customersInOrder, distinctInKeyOrder, EVENT_COLUMNS, hoursOf, KEY_COLUMNS } from "./batch.js";
import { encodeBinaryBatch } from "./copyBinary.js";
import { copyRow } from "./copyText.js";
import type { DistinctBatch, DistinctValues } from "./distinct.js";
import type { ValidEvent } from "./validate.js";

/** A unique violation: a key of the batch exists (only event_keys has a unique index that ingest writes). */
const isKeyConflict = (err: unknown): boolean => (err as { code?: unknown } | null)?.code === "23505";

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
): Promise<number> {
  if (events.length === 0) return 0;
  if (customers.length > 0) await tx.query(REGISTER_CUSTOMERS, [customers]);
  const encoded = encodeBinaryBatch(events, receivedAt);
  await tx.copyIn({ table: "event_keys", columns: KEY_COLUMNS, format: "binary" }, [encoded.keys]);
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
    distinct_value text
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
] as const;

// The same lock order as the optimistic path: customers, then keys, each in byte order (COLLATE "C"). A concurrent
// claimer of the same key waits for the first transaction and then does nothing (committed) or takes the key
// (rolled back): ON CONFLICT is race-free. With unique_count events, the distinct values of the events whose claim
// succeeded — and only those — go to usage_distinct, in its key order (ingest/distinct.ts).
const applySql = (distinct: boolean) => `
  WITH firsts AS MATERIALIZED (
    SELECT DISTINCT ON (customer_id, event_id) customer_id, event_id, meter, value, ts, properties, dimension_set,
           distinct_value
    FROM ingest_staging
    ORDER BY customer_id, event_id, ord
  ), registered AS (
    INSERT INTO customers (id)
    SELECT DISTINCT f.customer_id COLLATE "C" FROM firsts f
    WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = f.customer_id)
    ORDER BY 1
    ON CONFLICT DO NOTHING
  ), fresh AS (
    INSERT INTO event_keys (customer_id, event_id, meter, ts, received_at)
    SELECT customer_id, event_id, meter, ts, $1 FROM firsts
    ORDER BY customer_id COLLATE "C", event_id COLLATE "C"
    ON CONFLICT DO NOTHING
    RETURNING customer_id, event_id
  )${distinct ? DISTINCT_CTE : ""}
  INSERT INTO usage_events (ts, customer_id, meter, value, event_id, properties, received_at, dimension_set)
  SELECT f.ts, f.customer_id, f.meter, f.value, f.event_id, f.properties, $1, f.dimension_set
  FROM firsts f JOIN fresh USING (customer_id, event_id)`;

const DISTINCT_CTE = `, seen AS (
    INSERT INTO usage_distinct (customer_id, meter, day, dimension_set, value, first_ts)
    SELECT * FROM (
      SELECT f.customer_id, f.meter, date_trunc('day', f.ts, 'UTC') AS day, f.dimension_set, f.distinct_value,
             min(f.ts) AS first_ts
      FROM firsts f JOIN fresh USING (customer_id, event_id)
      WHERE f.distinct_value IS NOT NULL
      GROUP BY 1, 2, 3, 4, 5
    ) AS d
    ORDER BY d.customer_id COLLATE "C", d.meter COLLATE "C", d.day, d.dimension_set, d.distinct_value COLLATE "C"
    ON CONFLICT (customer_id, meter, day, dimension_set, value)
      DO UPDATE SET first_ts = EXCLUDED.first_ts WHERE EXCLUDED.first_ts < usage_distinct.first_ts
  )`;

function* stagingRows(events: readonly ValidEvent[]): Generator<string> {
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
    ]);
    if (piece.length >= 256 * 1024) {
      yield piece;
      piece = "";
    }
  }
  if (piece) yield piece;
}

/** Writes the events whose key is still free; returns how many (the rest were duplicates). */
async function applyWithConflicts(
  tx: Queryable,
  events: readonly ValidEvent[],
  receivedAt: Date,
  opts: { moreToCome?: boolean; distinct?: boolean } = {},
): Promise<number> {
  if (events.length === 0) return 0;
  await tx.query(CREATE_STAGING, []);
  await tx.copyIn({ table: "ingest_staging", columns: STAGING_COLUMNS }, stagingRows(events));
  const { rowCount } = await tx.query(applySql(opts.distinct ?? false), [receivedAt]);
  // Emptied for the next chunk of a stream; otherwise the commit does it.
  if (opts.moreToCome) await tx.query("TRUNCATE ingest_staging", []);
  return rowCount;
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
): Promise<{ stored: number; conflicted: boolean }> {
  if (events.length === 0) return { stored: 0, conflicted: false };
  await tx.query("SAVEPOINT ingest_chunk", []);
  try {
    const stored = await copyBatch(tx, events, known.unknown(customersInOrder(events)), receivedAt, distinct);
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
      const n = await copyBatch(tx, distinct, customers, receivedAt, work);
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
      const n = await applyWithConflicts(tx, distinct, receivedAt, { distinct: work?.batch.any ?? false });
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

/** The receipt of an event: what was stored for (customer, id), if it arrived within the dedupe window. */
export async function findEvent(db: Queryable, customer: string, id: string): Promise<StoredEvent | undefined> {
  const { rows } = await db.query<{
    event_id: string;
    customer_id: string;
    meter: string;
    value: string;
    ts: Date;
    properties: Record<string, string> | null;
    received_at: Date;
  }>(
    `SELECT e.event_id, e.customer_id, e.meter, e.value::text AS value, e.ts, e.properties, e.received_at
     FROM event_keys k
     JOIN usage_events e ON e.customer_id = k.customer_id AND e.meter = k.meter AND e.ts = k.ts AND e.event_id = k.event_id
     WHERE k.customer_id = $1 AND k.event_id = $2
     LIMIT 1`,
    [customer, id],
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
