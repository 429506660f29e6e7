// Exact usage per bucket, from rollups: buckets with no pending marks are read from the rollup of their level;
// a "dirty" bucket (an hour marked since the last refresh lies inside it) is assembled from the level below —
// clean days of a dirty month from usage_daily, clean hours of a dirty day from usage_hourly, and the dirty
// hours themselves from raw events. So an acknowledged event counts at once, late ones included, and a read
// touches raw events only for the few hours not yet refreshed. The SQL builder is pure; run it with runSeries.
import type { Queryable } from "../db/types.js";

export type Granularity = "hour" | "day" | "month";

export interface SeriesQuery {
  granularity: Granularity;
  /** Inclusive, aligned to the granularity. */
  from: Date;
  /** Exclusive, aligned to the granularity. */
  to: Date;
  customer?: string | undefined;
  meter?: string | undefined;
}

export interface SeriesRow {
  bucket: Date;
  customer_id: string;
  meter: string;
  value_sum: string;
  event_count: string;
  value_max: string;
  last_value: string;
  last_key: string;
  last_at: Date;
}

const VIEW: Record<Granularity, string> = { hour: "usage_hourly", day: "usage_daily", month: "usage_monthly" };
const ROLLUP_COLUMNS = "value_sum, event_count, value_max, last_value, last_key, last_at";

/** Builds the statement; parameters: $1 from, $2 to, then customer and meter when given. */
export function buildSeriesSql(q: Pick<SeriesQuery, "granularity" | "customer" | "meter">): {
  text: string;
  params: (from: Date, to: Date, customer?: string, meter?: string) => unknown[];
} {
  const g = q.granularity;
  const args: string[] = [];
  const filters = (alias: string): string => {
    const parts: string[] = [];
    if (q.customer !== undefined) parts.push(`${alias}.customer_id = $3`);
    if (q.meter !== undefined) parts.push(`${alias}.meter = $${q.customer !== undefined ? 4 : 3}`);
    return parts.map((p) => ` AND ${p}`).join("");
  };
  if (q.customer !== undefined) args.push("customer");
  if (q.meter !== undefined) args.push("meter");
  // Raw events of one customer but all meters: walk the (customer_id, meter, ts) index meter by meter.
  const rawMeterFilter =
    q.customer !== undefined && q.meter === undefined ? " AND e.meter IN (SELECT key FROM meters)" : "";

  const parts: string[] = [];
  parts.push(`
    SELECT v.bucket, v.customer_id, v.meter, ${ROLLUP_COLUMNS}
    FROM ${VIEW[g]} v
    WHERE v.bucket >= $1 AND v.bucket < $2${filters("v")}
      AND NOT EXISTS (SELECT 1 FROM dirty d WHERE date_trunc('${g}', d.hour, 'UTC') = v.bucket)`);
  if (g === "month") {
    parts.push(`
    SELECT date_trunc('month', v.bucket, 'UTC'), v.customer_id, v.meter, ${ROLLUP_COLUMNS.split(", ")
      .map((c) => `v.${c}`)
      .join(", ")}
    FROM (SELECT DISTINCT date_trunc('month', hour, 'UTC') AS month FROM dirty) dm
    CROSS JOIN LATERAL (
      SELECT * FROM usage_daily v
      WHERE v.bucket >= dm.month AND v.bucket < dm.month + INTERVAL '1 month'${filters("v")}
    ) v
    WHERE NOT EXISTS (SELECT 1 FROM dirty d WHERE date_trunc('day', d.hour, 'UTC') = v.bucket)`);
  }
  if (g === "month" || g === "day") {
    parts.push(`
    SELECT date_trunc('${g}', v.bucket, 'UTC'), v.customer_id, v.meter, ${ROLLUP_COLUMNS.split(", ")
      .map((c) => `v.${c}`)
      .join(", ")}
    FROM (SELECT DISTINCT date_trunc('day', hour, 'UTC') AS day FROM dirty) dd
    CROSS JOIN LATERAL (
      SELECT * FROM usage_hourly v
      WHERE v.bucket >= dd.day AND v.bucket < dd.day + INTERVAL '1 day'${filters("v")}
    ) v
    WHERE NOT EXISTS (SELECT 1 FROM dirty d WHERE d.hour = v.bucket)`);
  }
  parts.push(`
    SELECT date_trunc('${g}', e.ts, 'UTC'), e.customer_id, e.meter,
           e.value, 1::bigint, e.value, e.value, tally_last_key(e.ts, e.value), e.ts
    FROM dirty d
    JOIN usage_events e ON e.ts >= d.hour AND e.ts < d.hour + INTERVAL '1 hour'${filters("e")}${rawMeterFilter}`);

  const text = `
    WITH dirty AS MATERIALIZED (
      SELECT hour FROM rollup_invalidations WHERE hour >= $1 AND hour < $2
      UNION
      SELECT hour FROM rollup_claims WHERE hour >= $1 AND hour < $2
    ), parts (bucket, customer_id, meter, value_sum, event_count, value_max, last_value, last_key, last_at) AS (
      ${parts.join("\n      UNION ALL")}
    )
    SELECT bucket, customer_id, meter,
           trim_scale(sum(value_sum))::text AS value_sum,
           sum(event_count)::text AS event_count,
           trim_scale(max(value_max))::text AS value_max,
           trim_scale((array_agg(last_value ORDER BY last_key DESC))[1])::text AS last_value,
           max(last_key)::text AS last_key,
           max(last_at) AS last_at
    FROM parts
    GROUP BY bucket, customer_id, meter
    ORDER BY customer_id, meter, bucket`;
  return {
    text,
    params: (from, to, customer, meter) => [
      from,
      to,
      ...(args.includes("customer") ? [customer] : []),
      ...(args.includes("meter") ? [meter] : []),
    ],
  };
}

export async function runSeries(db: Queryable, q: SeriesQuery): Promise<SeriesRow[]> {
  const { text, params } = buildSeriesSql(q);
  const { rows } = await db.query<SeriesRow>(text, params(q.from, q.to, q.customer, q.meter));
  return rows;
}
