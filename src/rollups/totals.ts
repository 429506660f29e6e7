// Usage totals over a time range — a billing period, or a segment of one that may start or end mid-hour — exact
// the moment an event is acknowledged: whole months, days and hours come from the rollups (dirty-aware, as the
// usage series), partial hours at either end from raw events, all in one statement.
import type { Aggregation } from "../catalog/schemas.js";
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import type { DimensionQuery } from "./dimensionSql.js";
import { buildSeriesSql, planCover, readState } from "./series.js";

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
  // A simulation reads tens of thousands of totals: one JSON text.
  const gs = Array.from({ length: q.groupBy?.length ?? 0 }, (_, i) => `g${i + 1}`);
  const groups = gs.map((g) => `, ${g}`).join("");
  const cells = await jsonRows<(string | number | null)[]>(db, {
    cells: `customer_id, meter, value_sum, event_count, value_max, last_value, last_key,
            extract(epoch FROM last_at) * 1000${groups}`,
    source: `(${series.text}) AS t`,
    orderBy: ["customer_id", "meter", ...gs.map((g) => `${g} COLLATE "C" NULLS LAST`)].join(", "),
    params: series.params,
  });
  return cells.map((c) => ({
    customer: c[0] as string,
    meter: c[1] as string,
    sum: c[2] as string,
    count: c[3] as string,
    max: c[4] as string,
    last: c[5] as string,
    lastKey: c[6] as string,
    lastAt: new Date(c[7] as number),
    ...(groups ? { dimensionValues: c.slice(8) as (string | null)[] } : {}),
  }));
}
