// Writing a batch: COPY into a session-local staging table, then one statement that registers unknown
// customers, claims each (customer, id) in event_keys (first claim wins, exactly once even across processes)
// and inserts only the events whose claim succeeded. Nothing is visible until the caller commits.
import type { Queryable } from "../db/types.js";
import { copyRow } from "./copyText.js";
import type { ValidEvent } from "./validate.js";

// ON COMMIT DELETE ROWS: the table lives as long as the connection, its rows only as long as the transaction.
const CREATE_STAGING = `
  CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    ord         integer     NOT NULL,
    customer_id text        NOT NULL,
    event_id    text        NOT NULL,
    meter       text        NOT NULL,
    value       numeric     NOT NULL,
    ts          timestamptz NOT NULL,
    properties  jsonb,
    dimension_set integer NOT NULL DEFAULT 0
  ) ON COMMIT DELETE ROWS`;

export const STAGING_COLUMNS = [
  "ord",
  "customer_id",
  "event_id",
  "meter",
  "value",
  "ts",
  "properties",
  "dimension_set",
] as const;

// Keys and customers are inserted in (customer, id) order: two batches claiming overlapping keys then lock
// them in the same order and cannot deadlock. A concurrent claimer of the same key waits for the first
// transaction and then does nothing (committed) or takes the key (rolled back): ON CONFLICT is race-free.
export const APPLY_SQL = `
  WITH firsts AS MATERIALIZED (
    SELECT DISTINCT ON (customer_id, event_id) customer_id, event_id, meter, value, ts, properties, dimension_set
    FROM ingest_staging
    ORDER BY customer_id, event_id, ord
  ), registered AS (
    INSERT INTO customers (id)
    SELECT DISTINCT f.customer_id FROM firsts f
    WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = f.customer_id)
    ORDER BY 1
    ON CONFLICT DO NOTHING
  ), fresh AS (
    INSERT INTO event_keys (customer_id, event_id, meter, ts, received_at)
    SELECT customer_id, event_id, meter, ts, $1 FROM firsts
    ORDER BY customer_id, event_id
    ON CONFLICT DO NOTHING
    RETURNING customer_id, event_id
  )
  INSERT INTO usage_events (ts, customer_id, meter, value, event_id, properties, received_at, dimension_set)
  SELECT f.ts, f.customer_id, f.meter, f.value, f.event_id, f.properties, $1, f.dimension_set
  FROM firsts f JOIN fresh USING (customer_id, event_id)`;

export function encodeEvent(ord: number, e: ValidEvent): string {
  return copyRow([String(ord), e.customer, e.id, e.meter, e.value, e.ts, e.properties, String(e.dimensionSet ?? 0)]);
}

export async function prepareStaging(tx: Queryable): Promise<void> {
  await tx.query(CREATE_STAGING, []);
}

/** COPYs encoded rows (from encodeEvent) into the staging table. */
export function stageRows(tx: Queryable, rows: AsyncIterable<string> | Iterable<string>): Promise<number> {
  return tx.copyIn({ table: "ingest_staging", columns: STAGING_COLUMNS }, rows);
}

/** Empties the staging table within the transaction, for the next chunk of a long stream. */
export async function clearStaging(tx: Queryable): Promise<void> {
  await tx.query("TRUNCATE ingest_staging", []);
}

/** Moves staged rows into the event store; returns how many were new (the rest were duplicates). */
export async function applyStaged(tx: Queryable, receivedAt: Date): Promise<number> {
  const { rowCount } = await tx.query(APPLY_SQL, [receivedAt]);
  return rowCount;
}

export interface StoredEvent {
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
