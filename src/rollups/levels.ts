// The rollup levels and the two aggregate expressions that build them — one definition, used by the refresh job
// (portable engine), the series reads and the CSV export. TimescaleDB's continuous aggregates (sql/0004_rollups
// .timescale.sql) compute the same figures with time_bucket and last(); the contract tests hold them equal.

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

/** The rollup columns, in order, after (bucket, customer_id, meter). */
export const ROLLUP_COLUMNS = "value_sum, event_count, value_max, last_value, last_key, last_at";

/** Raw events `e` → one hourly rollup row per (hour, customer, meter); group by the first three columns. */
export const aggregateEvents = (bucket = "date_trunc('hour', e.ts, 'UTC')") => `
  ${bucket}, e.customer_id, e.meter,
  sum(e.value), count(*), max(e.value),
  (array_agg(e.value ORDER BY tally_last_key(e.ts, e.value) DESC))[1],
  max(tally_last_key(e.ts, e.value)), max(e.ts)`;

/** Rollup rows `r` of a finer level → rows of a coarser one (sum of sums, count of counts, max, last of lasts). */
export const aggregateRollups = (bucket: string) => `
  ${bucket}, r.customer_id, r.meter,
  sum(r.value_sum), sum(r.event_count)::bigint, max(r.value_max),
  (array_agg(r.last_value ORDER BY r.last_key DESC))[1],
  max(r.last_key), max(r.last_at)`;
