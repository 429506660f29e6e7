// Usage totals over a time range — a billing period, or a segment of one that may start or end mid-hour — exact
// the moment an event is acknowledged: whole months, days and hours come from the rollups (dirty-aware, as the
// usage series), partial hours at either end from raw events, all in one statement.
import type { Aggregation } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import type { DimensionQuery } from "./dimensionSql.js";
import { buildSeriesSql, planCover, readState, withDimensionValues } from "./series.js";

export interface Totals {
  customer: string;
  meter: string;
  sum: string;
  count: string;
  max: string;
  last: string;
  /** Orders `last` values (tally_last_key): the greatest wins when totals are combined. */
  lastKey: string;
  lastAt: Date;
  /** Grouped totals: the values of the group_by dimensions, in order (null: absent). */
  dimensionValues?: (string | null)[];
}

/** The meter's aggregation applied to rolled-up figures. */
export function quantityOf(t: Pick<Totals, "sum" | "count" | "max" | "last">, aggregation: Aggregation): string {
  if (aggregation === "sum") return t.sum;
  if (aggregation === "count") return t.count;
  if (aggregation === "max") return t.max;
  return t.last;
}

/** Totals per (customer, meter) — and per values of `groupBy`, if given — over [from, to), for any instants. */
export async function rangeTotals(
  db: Queryable,
  q: { from: Date; to: Date; customer?: string | undefined; meter?: string | undefined } & DimensionQuery,
): Promise<Totals[]> {
  if (q.from >= q.to) return [];
  const state = await readState(db, q.from, q.to);
  const series = buildSeriesSql(
    { granularity: "total", customer: q.customer, meter: q.meter, groupBy: q.groupBy, filter: q.filter },
    planCover(q.from, q.to, state),
  );
  const { rows } = await db.query<{
    customer_id: string;
    meter: string;
    value_sum: string;
    event_count: string;
    value_max: string;
    last_value: string;
    last_key: string;
    last_at: Date;
    dimension_values?: (string | null)[];
  }>(series.text, series.params);
  return withDimensionValues(rows, q.groupBy?.length ?? 0).map((r) => ({
    customer: r.customer_id,
    meter: r.meter,
    sum: r.value_sum,
    count: r.event_count,
    max: r.value_max,
    last: r.last_value,
    lastKey: r.last_key,
    lastAt: r.last_at,
    ...(r.dimension_values ? { dimensionValues: r.dimension_values } : {}),
  }));
}
