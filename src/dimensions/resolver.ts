// Dimension sets at ingest: each event of a meter with dimensions gets the id of its combination of values,
// created on first sight, before the events are written (they carry the id); after the write, every combination a
// (customer, meter, month) uses is counted, refusing the event that would exceed TALLY_MAX_DIMENSION_VALUES.
//
// Everything runs in the ingest transaction: a refused or rolled-back batch leaves no sets and no counts behind.
// The count is exact across batches and processes: a combination is recorded once (primary key of dimension_usage;
// a concurrent inserter of the same one waits for the first and then does nothing or takes it), and the number per
// (customer, meter, month) is a counter row updated by the transaction that adds combinations, which waits for any
// other such transaction to end first. Rows are taken in key order, so concurrent batches cannot deadlock here.
// Two steps: `resolve` (the ids, which the events are written with) comes before the write, `guard` (the counts)
// after it: for a JSON batch, at the end of its transaction (only the hours are marked after it), so the counter
// rows it locks are held just until the commit, and concurrent batches bringing new combinations of the same
// customers do not wait for each other's COPY. An NDJSON body guards chunk by chunk, holding each chunk's counters
// until the whole body commits (docs/ingest.md).
// What a committed batch resolved is remembered (ids never change, recorded combinations stay), so a steady
// stream of known combinations costs no query at all.
import { LRUCache } from "lru-cache";
import type { Queryable } from "../db/types.js";
import { unprocessable } from "../errors.js";
import { combinationKey, NO_DIMENSIONS, presentValues, valuesOf } from "./values.js";

/** What resolution needs of an event (ingest's ValidEvent), and where it puts the id. */
interface DimensionedEvent {
  customer: string;
  meter: string;
  tsMs: number;
  /** The properties as stored (JSON text), or null. */
  properties: string | null;
  /** The same as an object, when the caller has it (then the text is not parsed again). */
  propertyValues?: Readonly<Record<string, string>> | null;
  dimensionSet?: number;
}

/** What a batch resolved, for its guard and, once it has committed, for the caches. */
export interface Resolved {
  fixedMeters: [string, string[]][];
  sets: [string, number][];
  used: string[];
  /** The dimensions of the batch's meters. */
  dimensions: Map<string, string[]>;
}

const CACHE_SIZE = 100_000;
const sep = "\u0000";
const monthOf = (ms: number) => {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
};
const HOUR = 3_600_000;

export class DimensionResolver {
  /** Dimensions of meters that have events: fixed for good. */
  readonly #fixed = new Map<string, string[]>();
  readonly #sets = new LRUCache<string, number>({ max: CACHE_SIZE });
  readonly #used = new LRUCache<string, true>({ max: CACHE_SIZE });

  constructor(readonly maxCombinations: number) {}

  /** Call after the batch's transaction committed. */
  committed(r: Resolved): void {
    for (const [meter, dims] of r.fixedMeters) this.#fixed.set(meter, dims);
    for (const [k, id] of r.sets) this.#sets.set(k, id);
    for (const k of r.used) this.#used.set(k, true);
  }

  /** Sets `dimensionSet` on every event (0 for meters without dimensions). Then write them, then `guard`. */
  async resolve(tx: Queryable, events: DimensionedEvent[]): Promise<Resolved> {
    const resolved: Resolved = { fixedMeters: [], sets: [], used: [], dimensions: new Map() };
    const dims = await this.#meterDimensions(tx, [...new Set(events.map((e) => e.meter))], resolved);
    resolved.dimensions = dims;
    const wanted = new Map<string, { meter: string; key: string; present: Record<string, string> }>();
    const known = new Map<string, number>();
    const keyOf: (string | null)[] = events.map((e) => {
      const d = dims.get(e.meter);
      if (!d || d.length === 0) return null;
      const properties =
        e.propertyValues !== undefined
          ? e.propertyValues
          : e.properties
            ? (JSON.parse(e.properties) as Record<string, string>)
            : null;
      const values = valuesOf(d, properties);
      const key = combinationKey(values);
      if (key === null) return null;
      const k = e.meter + sep + key;
      if (known.has(k) || wanted.has(k)) return k;
      const cached = this.#sets.get(k);
      if (cached !== undefined) known.set(k, cached);
      else wanted.set(k, { meter: e.meter, key, present: presentValues(d, values) });
      return k;
    });
    const ids = await this.#setIds(tx, [...wanted.values()]);
    for (const [k, id] of ids) resolved.sets.push([k, id]);
    const idOf = (k: string) => {
      const id = known.get(k) ?? ids.get(k);
      if (id === undefined) throw new Error(`dimension set ${k} was not resolved`);
      return id;
    };
    events.forEach((e, i) => {
      const k = keyOf[i];
      e.dimensionSet = k === null || k === undefined ? NO_DIMENSIONS : idOf(k);
    });
    return resolved;
  }

  async #meterDimensions(tx: Queryable, meters: string[], resolved: Resolved): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    const open = meters.filter((m) => {
      const d = this.#fixed.get(m);
      if (d) out.set(m, d);
      return !d;
    });
    if (open.length === 0) return out;
    // A meter's first events set has_events under its row lock, so a concurrent change of its dimensions either
    // happened before (and is read here) or waits and then finds events (409).
    const marked = await tx.query<{ key: string; dimensions: string[] }>(
      "UPDATE meters SET has_events = true WHERE key = ANY($1::text[]) AND NOT has_events RETURNING key, dimensions",
      [open],
    );
    for (const r of marked.rows) {
      out.set(r.key, r.dimensions);
      resolved.fixedMeters.push([r.key, r.dimensions]);
    }
    const rest = open.filter((m) => !out.has(m));
    if (rest.length > 0) {
      const { rows } = await tx.query<{ key: string; dimensions: string[] }>(
        "SELECT key, dimensions FROM meters WHERE key = ANY($1::text[]) AND has_events",
        [rest],
      );
      for (const r of rows) {
        out.set(r.key, r.dimensions);
        this.#fixed.set(r.key, r.dimensions);
      }
    }
    return out;
  }

  async #setIds(
    tx: Queryable,
    wanted: { meter: string; key: string; present: Record<string, string> }[],
  ): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (wanted.length === 0) return out;
    wanted.sort((a, b) => (a.meter + sep + a.key < b.meter + sep + b.key ? -1 : 1));
    const cols = [wanted.map((w) => w.meter), wanted.map((w) => w.key)];
    const inserted = await tx.query<{ id: number; meter: string; key: string }>(
      `INSERT INTO dimension_sets (meter, key, dimensions)
       SELECT u.m, u.k, u.d FROM unnest($1::text[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS u(m, k, d, n)
       ORDER BY u.n
       ON CONFLICT (meter, key) DO NOTHING
       RETURNING id, meter, key`,
      [...cols, wanted.map((w) => JSON.stringify(w.present))],
    );
    for (const r of inserted.rows) out.set(r.meter + sep + r.key, r.id);
    if (out.size < wanted.length) {
      // Those that existed (or that a concurrent batch created and committed meanwhile): a fresh statement sees them.
      const { rows } = await tx.query<{ id: number; meter: string; key: string }>(
        `SELECT d.id, d.meter, d.key FROM dimension_sets d
         JOIN unnest($1::text[], $2::text[]) AS u(m, k) ON d.meter = u.m AND d.key = u.k`,
        cols,
      );
      for (const r of rows) out.set(r.meter + sep + r.key, r.id);
    }
    return out;
  }

  /**
   * Counts the combinations the resolved events use per (customer, meter, month); throws 422 (nothing stored) at
   * the event that would pass TALLY_MAX_DIMENSION_VALUES. Call after the write, as late in the transaction as
   * possible: it locks counter rows until the commit.
   * `indexOf`: an event's index in the request, for the error.
   */
  async guard(
    tx: Queryable,
    events: DimensionedEvent[],
    resolved: Resolved,
    indexOf: (i: number) => number = (i) => i,
  ): Promise<void> {
    const dims = resolved.dimensions;
    const fresh = new Map<string, { c: string; m: string; mo: string; s: number }>();
    // Per event, on the hot path: the month from the event's hour (a batch holds few), the key as one template.
    const months = new Map<number, string>();
    for (const e of events) {
      if ((dims.get(e.meter)?.length ?? 0) === 0) continue;
      const hour = Math.floor(e.tsMs / HOUR) * HOUR;
      let mo = months.get(hour);
      if (mo === undefined) {
        mo = new Date(monthOf(e.tsMs)).toISOString();
        months.set(hour, mo);
      }
      const k = `${e.customer}${sep}${e.meter}${sep}${mo}${sep}${e.dimensionSet ?? 0}`;
      if (!this.#used.has(k) && !fresh.has(k)) fresh.set(k, { c: e.customer, m: e.meter, mo, s: e.dimensionSet ?? 0 });
    }
    if (fresh.size === 0) return;
    const list = [...fresh.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
    // One statement: record the combinations (in key order), add the new ones to their counters (in key order),
    // and bring back only the counters past the limit, with the combinations this batch added to them.
    const over = await tx.query<{
      customer_id: string;
      meter: string;
      month: Date;
      combinations: number;
      sets: number[];
    }>(
      `WITH added AS (
         INSERT INTO dimension_usage (customer_id, meter, month, dimension_set)
         SELECT u.c, u.m, u.mo, u.s FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::int[]) WITH ORDINALITY
           AS u(c, m, mo, s, n)
         ORDER BY u.n
         ON CONFLICT DO NOTHING
         RETURNING customer_id, meter, month, dimension_set
       ), per_key AS (
         SELECT customer_id, meter, month, array_agg(dimension_set) AS sets FROM added GROUP BY customer_id, meter, month
       ), counted AS (
         INSERT INTO dimension_counts (customer_id, meter, month, combinations)
         SELECT customer_id, meter, month, cardinality(sets) FROM per_key
         ORDER BY customer_id COLLATE "C", meter COLLATE "C", month
         ON CONFLICT (customer_id, meter, month)
           DO UPDATE SET combinations = dimension_counts.combinations + EXCLUDED.combinations
         RETURNING customer_id, meter, month, combinations
       )
       SELECT c.customer_id, c.meter, c.month, c.combinations, p.sets
       FROM counted c JOIN per_key p USING (customer_id, meter, month)
       WHERE c.combinations > $5
       ORDER BY c.customer_id COLLATE "C", c.meter COLLATE "C", c.month`,
      [list.map((x) => x.c), list.map((x) => x.m), list.map((x) => x.mo), list.map((x) => x.s), this.maxCombinations],
    );
    resolved.used.push(...fresh.keys());
    for (const r of over.rows) {
      const entry = { c: r.customer_id, m: r.meter, mo: r.month, sets: new Set(r.sets.map(Number)) };
      await this.#refuse(tx, events, dims.get(r.meter) ?? [], entry, r.combinations, indexOf);
    }
  }

  /** The event that brought the (max + 1)-th combination, and the dimension with the most distinct values. */
  async #refuse(
    tx: Queryable,
    events: DimensionedEvent[],
    dims: string[],
    entry: { c: string; m: string; mo: Date; sets: Set<number> },
    total: number,
    indexOf: (i: number) => number,
  ): Promise<never> {
    const allowed = this.maxCombinations - (total - entry.sets.size);
    const seen = new Set<number>();
    let offender = 0;
    for (const [i, e] of events.entries()) {
      const s = e.dimensionSet ?? 0;
      if (e.customer !== entry.c || e.meter !== entry.m || monthOf(e.tsMs) !== entry.mo.getTime()) continue;
      if (!entry.sets.has(s) || seen.has(s)) continue;
      seen.add(s);
      if (seen.size > allowed) {
        offender = i;
        break;
      }
    }
    const { rows } = await tx.query<{ dimension: string; n: string }>(
      `SELECT k AS dimension, count(DISTINCT d.dimensions ->> k)::text AS n
       FROM dimension_usage u JOIN dimension_sets d ON d.id = u.dimension_set, unnest($4::text[]) AS k
       WHERE u.customer_id = $1 AND u.meter = $2 AND u.month = $3
       GROUP BY k ORDER BY count(DISTINCT d.dimensions ->> k) DESC, k LIMIT 1`,
      [entry.c, entry.m, entry.mo, dims],
    );
    const worst = rows[0]?.dimension ?? dims[0] ?? "";
    const month = entry.mo.toISOString().slice(0, 7);
    const index = indexOf(offender);
    const detail =
      `meter "${entry.m}" may keep at most ${this.maxCombinations} distinct combinations of its dimensions ` +
      `(${dims.join(", ")}) per customer and month; this event would add one more for customer "${entry.c}" in ` +
      `${month}. Dimension "${worst}" has the most distinct values (${rows[0]?.n ?? "?"}): is it an id rather than a kind?`;
    throw unprocessable("too_many_dimension_values", `${detail} Nothing was stored.`, [
      { index, field: `events[${index}].properties.${worst}`, message: detail },
    ]);
  }
}
