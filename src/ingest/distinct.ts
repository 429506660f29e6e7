// Distinct values of unique_count meters at ingest: each stored event of such a meter puts its value in
// usage_distinct — one row per (customer, meter, UTC day, dimension set, value), with the first instant the value was
// seen that day — in the events' own transaction, so the distinct counts of every range are exact at the commit
// (src/rollups/distinctSql.ts reads them). The state grows with the distinct values per day, not with the events.
//
// Exactly once: the optimistic write stores every event of its batch, so its rows come from the batch here; the
// conflict path (some keys were taken) derives them in SQL from the events it actually stored (store.ts), so a
// dropped duplicate — even one with another value — adds nothing. A row only ever gains an earlier first instant.
//
// Rows known to be stored (committed) with a first instant at or before an event's are not sent again: after its
// first event of a day, a value costs nothing until the next day. The definition is read from the database in the
// transaction, after the batch's meters were marked as having events under their row lock (dimensions/resolver.ts),
// because the check (validate.ts) used a cached copy: a meter with events cannot change its unique property
// (catalog/meters.ts), so what is read here holds until the commit.
import { LRUCache } from "lru-cache";
import type { Queryable } from "../db/types.js";
import { unprocessable } from "../errors.js";
import { compareCodePoints } from "./batch.js";
import { pgMicros } from "./copyBinary.js";
import type { ValidEvent } from "./validate.js";

const DAY_US = 86_400_000_000;
/** PostgreSQL counts time from 2000-01-01 UTC, a midnight: its days are whole multiples of DAY_US from there. */
const PG_EPOCH_MS = 946_684_800_000;
/** Rows remembered per process: some 20 MB of short keys at most (the dimension resolver keeps 100,000 of its own). */
const CACHE_SIZE = 150_000;

/** One row for usage_distinct. */
export interface DistinctRow {
  key: string;
  customer: string;
  meter: string;
  /** The UTC day, ISO. */
  day: string;
  set: number;
  value: string;
  /** The earliest event's timestamp as sent (PostgreSQL reads it as `micros`). */
  firstTs: string;
  micros: number;
}

/** What a batch (or a chunk of a stream) brings to usage_distinct. */
export interface DistinctBatch {
  /** The definitions read in the transaction: meter → unique property (null: another aggregation). */
  meters: Map<string, string | null>;
  /** Its rows not known to be stored, in key order. */
  rows: DistinctRow[];
  /** Whether any of its events belongs to a unique_count meter. */
  any: boolean;
}

const sep = "\u0000";

/** Key order: customer, meter, day, dimension set, value — the order every writer takes rows in (no deadlocks). */
function compareRows(a: DistinctRow, b: DistinctRow): number {
  return (
    compareCodePoints(a.customer, b.customer) ||
    compareCodePoints(a.meter, b.meter) ||
    (a.day < b.day ? -1 : a.day > b.day ? 1 : 0) ||
    a.set - b.set ||
    compareCodePoints(a.value, b.value)
  );
}

const INSERT_ROWS = `
  INSERT INTO usage_distinct (customer_id, meter, day, dimension_set, value, first_ts)
  SELECT u.c, u.m, u.d, u.s, u.v, u.t
  FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[], $5::text[], $6::timestamptz[]) WITH ORDINALITY
    AS u(c, m, d, s, v, t, n)
  WHERE NOT EXISTS (
    SELECT 1 FROM usage_distinct x
    WHERE x.customer_id = u.c AND x.meter = u.m AND x.day = u.d AND x.dimension_set = u.s AND x.value = u.v
      AND x.first_ts <= u.t)
  ORDER BY u.n
  ON CONFLICT (customer_id, meter, day, dimension_set, value)
    DO UPDATE SET first_ts = EXCLUDED.first_ts WHERE EXCLUDED.first_ts < usage_distinct.first_ts`;

export class DistinctValues {
  /** Meters that have events: their unique property (null: another aggregation), fixed for good. */
  readonly #fixed = new Map<string, string | null>();
  /** Committed rows: key → a first instant (µs) the database holds or is earlier than. */
  readonly #stored = new LRUCache<string, number>({ max: CACHE_SIZE });

  /**
   * In the batch's transaction, after its meters were marked as having events: sets `distinctValue` on each event of
   * a unique_count meter and gathers the rows to write. Throws 422 (nothing is stored) for such an event without the
   * property, which only a meter changed after the batch was checked can bring. `events`: the stored ones (each key
   * once); `indexOf`: an event's index in the request.
   */
  async prepare(
    tx: Queryable,
    events: readonly ValidEvent[],
    indexOf: (e: ValidEvent) => number,
  ): Promise<DistinctBatch> {
    const meters = await this.#definitions(tx, events);
    const batch: DistinctBatch = { meters, rows: [], any: false };
    if (![...meters.values()].some((p) => p !== null)) return batch;
    batch.any = true;
    const rows = new Map<string, DistinctRow>();
    const days = new Map<number, string>();
    for (const e of events) {
      const property = meters.get(e.meter);
      if (!property) continue;
      const value =
        e.propertyValues?.[property] ??
        (e.properties ? (JSON.parse(e.properties) as Record<string, string>)[property] : undefined);
      if (value === undefined) {
        const index = indexOf(e);
        const message = `meter "${e.meter}" counts distinct values of "${property}": every event needs it`;
        throw unprocessable("events_rejected", `${message}. Nothing was stored.`, [
          { index, field: `events[${index}].properties.${property}`, message },
        ]);
      }
      e.distinctValue = value;
      const micros = pgMicros(e.ts, e.tsMs);
      const dayUs = Math.floor(micros / DAY_US) * DAY_US;
      let day = days.get(dayUs);
      if (day === undefined) {
        day = new Date(dayUs / 1000 + PG_EPOCH_MS).toISOString();
        days.set(dayUs, day);
      }
      const set = e.dimensionSet ?? 0;
      const key = `${e.customer}${sep}${e.meter}${sep}${dayUs / DAY_US}${sep}${set}${sep}${value}`;
      const known = this.#stored.get(key);
      if (known !== undefined && known <= micros) continue;
      const row = rows.get(key);
      if (!row) rows.set(key, { key, customer: e.customer, meter: e.meter, day, set, value, firstTs: e.ts, micros });
      else if (micros < row.micros) {
        row.firstTs = e.ts;
        row.micros = micros;
      }
    }
    batch.rows = [...rows.values()].sort(compareRows);
    return batch;
  }

  /** The optimistic path's write: every event of the batch was stored. */
  async write(tx: Queryable, batch: DistinctBatch): Promise<void> {
    const rows = batch.rows;
    if (rows.length === 0) return;
    await tx.query(INSERT_ROWS, [
      rows.map((r) => r.customer),
      rows.map((r) => r.meter),
      rows.map((r) => r.day),
      rows.map((r) => r.set),
      rows.map((r) => r.value),
      rows.map((r) => r.firstTs),
    ]);
  }

  /**
   * After the commit. `written`: whether the rows were written as gathered (the optimistic path); rows of a batch
   * written with conflicts are not remembered, as some of its events were duplicates and stored nothing.
   */
  committed(batch: DistinctBatch, written: boolean): void {
    for (const [meter, property] of batch.meters) this.#fixed.set(meter, property);
    if (!written) return;
    for (const r of batch.rows) {
      const known = this.#stored.get(r.key);
      if (known === undefined || r.micros < known) this.#stored.set(r.key, r.micros);
    }
  }

  /** The unique property of each meter of the batch, as the database has it now (null: another aggregation). */
  async #definitions(tx: Queryable, events: readonly ValidEvent[]): Promise<Map<string, string | null>> {
    const out = new Map<string, string | null>();
    const open: string[] = [];
    for (const e of events) {
      if (out.has(e.meter)) continue;
      const fixed = this.#fixed.get(e.meter);
      out.set(e.meter, fixed ?? null);
      if (fixed === undefined) open.push(e.meter);
    }
    if (open.length === 0) return out;
    const { rows } = await tx.query<{ key: string; unique_property: string | null }>(
      "SELECT key, unique_property FROM meters WHERE key = ANY($1::text[])",
      [open],
    );
    for (const r of rows) out.set(r.key, r.unique_property);
    return out;
  }
}
