// The rollup levels and the aggregate expressions that build and combine them — one definition, used by the
// refresh job (portable engine), the series reads and the CSV export. TimescaleDB's continuous aggregates
// (sql/0004_rollups.timescale.sql) compute the same figures with time_bucket and last(); the contract tests hold
// them equal.
import type { Aggregation } from "../catalog/schemas.js";

export type Granularity = "hour" | "day" | "month";
export type Level = Granularity;

export const LEVELS: readonly Level[] = ["hour", "day", "month"];

/**
 * Per level: its materialized relation (usage_*_mat on both engines), TimescaleDB's continuous aggregate over it,
 * its SQL interval and the level below.
 */
export const LEVEL: Record<Level, { table: string; cagg: string; span: string; below: Level | undefined }> = {
  hour: { table: "usage_hourly_mat", cagg: "usage_hourly", span: "1 hour", below: undefined },
  day: { table: "usage_daily_mat", cagg: "usage_daily", span: "1 day", below: "hour" },
  month: { table: "usage_monthly_mat", cagg: "usage_monthly", span: "1 month", below: "day" },
};

/**
 * The group-by keys of every rollup row: a rollup is kept per (bucket, customer, meter, dimension set). The set is
 * 0 for events without dimensions, so a meter without dimensions keeps one row per bucket.
 */
export const ROLLUP_KEYS = "bucket, customer_id, meter, dimension_set";

/** A rollup column after the keys. */
export type RollupColumn =
  | "value_sum"
  | "event_count"
  | "value_max"
  | "value_min"
  | "last_value"
  | "last_key"
  | "last_at";

/** Each rollup column from raw events `e`, and its type. */
export const EVENT_FIGURES: Record<RollupColumn, { expr: string; type: string }> = {
  value_sum: { expr: "sum(e.value)", type: "numeric" },
  event_count: { expr: "count(*)", type: "bigint" },
  value_max: { expr: "max(e.value)", type: "numeric" },
  value_min: { expr: "min(e.value)", type: "numeric" },
  last_value: { expr: "(array_agg(e.value ORDER BY tally_last_key(e.ts, e.value) DESC))[1]", type: "numeric" },
  last_key: { expr: "max(tally_last_key(e.ts, e.value))", type: "numeric" },
  last_at: { expr: "max(e.ts)", type: "timestamptz" },
};

/** The rollup columns, in order, after the keys. */
export const ROLLUP_COLUMN_LIST = Object.keys(EVENT_FIGURES) as RollupColumn[];
export const ROLLUP_COLUMNS = ROLLUP_COLUMN_LIST.join(", ");

/**
 * The rollup columns that a figure (a meter's aggregation) and the event count are combined from. A distinct count
 * is not in the rollups (it does not add up): it comes from usage_distinct and raw events (distinctSql.ts), the
 * rollups give its event count.
 */
export const FIGURE_COLUMNS: Record<Aggregation, RollupColumn[]> = {
  sum: ["value_sum", "event_count"],
  count: ["event_count"],
  max: ["value_max", "event_count"],
  last: ["last_value", "last_key", "event_count"],
  min: ["value_min", "event_count"],
  avg: ["value_sum", "event_count"],
  unique_count: ["event_count"],
};

/** Raw events `e` → one hourly rollup row per (hour, customer, meter, dimension set); group by the first four. */
export const aggregateEvents = (bucket = "date_trunc('hour', e.ts, 'UTC')") => `
  ${bucket}, e.customer_id, e.meter, e.dimension_set,
  ${ROLLUP_COLUMN_LIST.map((c) => EVENT_FIGURES[c].expr).join(", ")}`;

/** Rollup rows `r` of a finer level → rows of a coarser one (sum of sums, count of counts, max, last of lasts). */
export const aggregateRollups = (bucket: string) => `
  ${bucket}, r.customer_id, r.meter, r.dimension_set,
  sum(r.value_sum), sum(r.event_count)::bigint, max(r.value_max), min(r.value_min),
  (array_agg(r.last_value ORDER BY r.last_key DESC))[1],
  max(r.last_key), max(r.last_at)`;

/**
 * The last of lasts among rollup rows: the value of the greatest last_key. A key encodes its event's time and value
 * (tally_last_key), so equal keys carry equal values and the greatest pair is the answer; unlike an ordered
 * array_agg, a plain max lets the planner hash the groups instead of sorting each one.
 */
const LAST_OF_LASTS = "(max(ARRAY[last_key, last_value]))[2]";

/**
 * The average of a range: its sum ÷ its count, rounded half away from zero to 9 decimal places (the places an event
 * value may have), computed exactly: div() truncates an exact integer quotient, and multiplying by 1e-9 is exact,
 * where numeric division would round to a scale of its own choosing first. Never an average of averages.
 */
const AVG_OF = (sum: string, count: string) =>
  `trim_scale(sign(${sum}) * div(2 * abs(${sum}) * 1000000000 + ${count}, 2 * ${count}) * 0.000000001)`;

/** A column of a combined answer (rows of a series or of totals): its name, expression and type. */
interface CombinedColumn {
  name: string;
  expr: string;
  type: string;
}

/**
 * The same combination applied to rows that are already rollups (parts of a series): no table alias. Every figure,
 * as text; the distinct count is filled in by the distinct part of a statement (distinctSql.ts), if any.
 */
export const COMBINED_COLUMNS: CombinedColumn[] = [
  { name: "value_sum", expr: "trim_scale(sum(value_sum))::text", type: "text" },
  { name: "event_count", expr: "sum(event_count)::text", type: "text" },
  { name: "value_max", expr: "trim_scale(max(value_max))::text", type: "text" },
  { name: "value_min", expr: "trim_scale(min(value_min))::text", type: "text" },
  { name: "value_avg", expr: `${AVG_OF("sum(value_sum)", "sum(event_count)")}::text`, type: "text" },
  { name: "last_value", expr: `trim_scale(${LAST_OF_LASTS})::text`, type: "text" },
  { name: "last_key", expr: "max(last_key)::text", type: "text" },
  { name: "last_at", expr: "max(last_at)", type: "timestamptz" },
  { name: "distinct_count", expr: "NULL::text", type: "text" },
];

/**
 * Only a meter's own figure (its aggregation) as `value`, and the event count: what a usage series answers. Half
 * the work of all the columns per row, which a grouped read of hundreds of buckets notices. A unique_count's value
 * is filled in by the distinct part of the statement.
 */
export function figureColumns(aggregation: Aggregation): CombinedColumn[] {
  const value = {
    sum: "trim_scale(sum(value_sum))",
    count: "sum(event_count)",
    max: "trim_scale(max(value_max))",
    last: `trim_scale(${LAST_OF_LASTS})`,
    min: "trim_scale(min(value_min))",
    avg: AVG_OF("sum(value_sum)", "sum(event_count)"),
    unique_count: "NULL",
  }[aggregation];
  return [
    { name: "value", expr: `${value}::text`, type: "text" },
    { name: "event_count", expr: "sum(event_count)::text", type: "text" },
  ];
}

/** A select list of combined columns. */
export const selectColumns = (columns: readonly CombinedColumn[]) =>
  columns.map((c) => `${c.expr} AS ${c.name}`).join(", ");
