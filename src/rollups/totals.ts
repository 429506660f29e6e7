// Usage totals over a time range — a billing period, or a segment of one that may start or end mid-hour — exact
// the moment an event is acknowledged: whole months, days and hours come from the rollups (dirty-aware, as the
// usage series), partial hours at either end from raw events, all in one statement.
import type { Aggregation } from "../catalog/schemas.js";
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { type DimensionQuery, groupColumns } from "./dimensionSql.js";
import { buildSeriesSql, planCover, type RollupState, readState } from "./series.js";

export interface Totals {
  customer: string;
  meter: string;
  sum: string;
  count: string;
  max: string;
  min: string;
  /** sum ÷ count, rounded half away from zero to 9 decimal places. */
  avg: string;
  last: string;
  /** The distinct values of a unique_count meter's property over the range ("0" for other meters). */
  unique: string;
  /** Orders `last` values (tally_last_key): the greatest wins when totals are combined. */
  lastKey: string;
  lastAt: Date;
  /** Grouped totals: the values of the group_by dimensions, in order (null: absent). */
  dimensionValues?: (string | null)[];
}

/** The meter's aggregation applied to rolled-up figures. */
export function quantityOf(
  t: Pick<Totals, "sum" | "count" | "max" | "last"> & Partial<Pick<Totals, "min" | "avg" | "unique">>,
  aggregation: Aggregation,
): string {
  const figure = {
    sum: t.sum,
    count: t.count,
    max: t.max,
    last: t.last,
    min: t.min,
    avg: t.avg,
    unique_count: t.unique,
  }[aggregation];
  // Callers that combine figures of their own (hourly reads) and pass none of the new ones are wrong for these.
  if (figure === undefined) throw new Error(`no ${aggregation} figure in these totals`);
  return figure;
}

/** A range to total: [from, to) for any instants, of one customer and meter or all, grouped or not. */
interface RangeQuery extends DimensionQuery {
  from: Date;
  to: Date;
  customer?: string | undefined;
  meter?: string | undefined;
  /** The rollup state read for a range that holds [from, to) (several reads of one statement share it). */
  state?: RollupState | undefined;
}

/** Totals per (customer, meter) — and per values of `groupBy`, if given — over [from, to), for any instants. */
export async function rangeTotals(db: Queryable, q: RangeQuery): Promise<Totals[]> {
  if (q.from >= q.to) return [];
  // A simulation reads tens of thousands of totals: one JSON text.
  const gs = groupColumns(q.groupBy);
  const cells = await jsonRows<(string | number | null)[]>(db, {
    cells: `customer_id, meter, value_sum, event_count, value_max, last_value, last_key,
            extract(epoch FROM last_at) * 1000, value_min, value_avg, distinct_count${gs.map((g) => `, ${g}`).join("")}`,
    ...(await coverSql(db, q, undefined)),
  });
  return cells.map((c) => ({
    customer: c[0] as string,
    meter: c[1] as string,
    sum: c[2] as string,
    count: (c[3] as string | null) ?? "0",
    max: c[4] as string,
    last: c[5] as string,
    lastKey: c[6] as string,
    lastAt: new Date(c[7] as number),
    min: c[8] as string,
    avg: c[9] as string,
    unique: (c[10] as string | null) ?? "0",
    ...(gs.length > 0 ? { dimensionValues: c.slice(11) as (string | null)[] } : {}),
  }));
}

/** A meter's own figure (its aggregation) over a range, and the event count. */
interface RangeFigure {
  customer: string;
  meter: string;
  value: string;
  count: string;
  dimensionValues?: (string | null)[];
}

/** Like rangeTotals, but only the figure `figure` of each row: half the work for reads that price one meter. */
export async function rangeFigures(db: Queryable, q: RangeQuery, figure: Aggregation): Promise<RangeFigure[]> {
  if (q.from >= q.to) return [];
  const gs = groupColumns(q.groupBy);
  const cells = await jsonRows<(string | null)[]>(db, {
    cells: `customer_id, meter, value, event_count${gs.map((g) => `, ${g}`).join("")}`,
    ...(await coverSql(db, q, figure)),
  });
  return cells.map((c) => ({
    customer: c[0] as string,
    meter: c[1] as string,
    value: c[2] ?? "0",
    count: c[3] ?? "0",
    ...(gs.length > 0 ? { dimensionValues: c.slice(4) } : {}),
  }));
}

/** The statement whose rows hold the totals of a range, as the source of a JSON read, in a stable order. */
async function coverSql(db: Queryable, q: RangeQuery, figure: Aggregation | undefined) {
  const state = q.state ?? (await readState(db, q.from, q.to));
  const series = buildSeriesSql(
    {
      granularity: "total",
      customer: q.customer,
      meter: q.meter,
      groupBy: q.groupBy,
      filter: q.filter,
      figure,
      distinct: { meters: state.distinct, from: q.from, to: q.to },
    },
    planCover(q.from, q.to, state),
  );
  return { source: `(${series.text}) AS t`, orderBy: series.orderBy, params: series.params };
}
