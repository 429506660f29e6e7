// Usage quantities over a time range (a billing period, or a segment of one), exact at once: the same
// dirty-aware series as the usage API, read at the coarsest granularity the range is aligned to and combined.
import type { Aggregation } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import { alignDown } from "./buckets.js";
import { type Granularity, prepareSeries } from "./series.js";

export interface Totals {
  customer: string;
  meter: string;
  sum: string;
  count: string;
  max: string;
  last: string;
  lastAt: Date;
}

/** The meter's aggregation applied to rolled-up figures. */
export function quantityOf(t: Pick<Totals, "sum" | "count" | "max" | "last">, aggregation: Aggregation): string {
  if (aggregation === "sum") return t.sum;
  if (aggregation === "count") return t.count;
  if (aggregation === "max") return t.max;
  return t.last;
}

export function coarsestAligned(from: Date, to: Date): Granularity {
  for (const g of ["month", "day", "hour"] as const) {
    if (alignDown(from, g).getTime() === from.getTime() && alignDown(to, g).getTime() === to.getTime()) return g;
  }
  throw new Error("totals need a range aligned to whole hours (partial hours are read from raw events)");
}

/** Totals per (customer, meter) over [from, to), which must be hour-aligned. */
export async function rangeTotals(
  db: Queryable,
  q: { from: Date; to: Date; customer?: string | undefined; meter?: string | undefined },
): Promise<Totals[]> {
  const granularity = coarsestAligned(q.from, q.to);
  const series = await prepareSeries(db, { granularity, ...q });
  // Buckets combine as the rollups do: sum of sums and counts, max of maxes, the last by its ordering key.
  const { rows } = await db.query<{
    customer_id: string;
    meter: string;
    value_sum: string;
    event_count: string;
    value_max: string;
    last_value: string;
    last_at: Date;
  }>(
    `SELECT customer_id, meter,
            trim_scale(sum(value_sum::numeric))::text AS value_sum,
            sum(event_count::numeric)::text AS event_count,
            trim_scale(max(value_max::numeric))::text AS value_max,
            (array_agg(last_value ORDER BY last_key::numeric DESC))[1] AS last_value,
            max(last_at) AS last_at
     FROM (${series.text}) s
     GROUP BY customer_id, meter
     ORDER BY customer_id, meter`,
    series.params,
  );
  return rows.map((r) => ({
    customer: r.customer_id,
    meter: r.meter,
    sum: r.value_sum,
    count: r.event_count,
    max: r.value_max,
    last: r.last_value,
    lastAt: r.last_at,
  }));
}
