-- The portable engine's rollups: the same relation names and columns as TimescaleDB's continuous aggregates.
-- Materialized rows live in *_mat tables, kept by Tally's refresh job (only buckets touched since the last
-- refresh, from rollup_invalidations); the views add real-time results for what is not yet materialized
-- (everything at or above each level's watermark), as TimescaleDB's real-time aggregation does.

CREATE TABLE usage_hourly_mat (
  bucket      timestamptz NOT NULL,
  customer_id text        NOT NULL,
  meter       text        NOT NULL,
  value_sum   numeric     NOT NULL,
  event_count bigint      NOT NULL,
  value_max   numeric     NOT NULL,
  last_value  numeric     NOT NULL,
  last_key    numeric     NOT NULL,
  last_at     timestamptz NOT NULL,
  PRIMARY KEY (customer_id, meter, bucket)
);
CREATE INDEX usage_hourly_mat_bucket ON usage_hourly_mat (bucket);

CREATE TABLE usage_daily_mat (LIKE usage_hourly_mat INCLUDING ALL);
CREATE TABLE usage_monthly_mat (LIKE usage_hourly_mat INCLUDING ALL);

-- Everything below a level's watermark is materialized (except hours still marked in rollup_invalidations).
-- tally:include rollup_watermarks.sql

CREATE VIEW usage_hourly AS
SELECT bucket, customer_id, meter, value_sum, event_count, value_max, last_value, last_key, last_at
FROM usage_hourly_mat
WHERE bucket < (SELECT watermark FROM rollup_watermarks WHERE level = 'hour')
UNION ALL
SELECT date_trunc('hour', ts, 'UTC'),
       customer_id,
       meter,
       sum(value),
       count(*),
       max(value),
       (array_agg(value ORDER BY tally_last_key(ts, value) DESC))[1],
       max(tally_last_key(ts, value)),
       max(ts)
FROM usage_events
WHERE ts >= (SELECT watermark FROM rollup_watermarks WHERE level = 'hour')
GROUP BY 1, 2, 3;

CREATE VIEW usage_daily AS
SELECT bucket, customer_id, meter, value_sum, event_count, value_max, last_value, last_key, last_at
FROM usage_daily_mat
WHERE bucket < (SELECT watermark FROM rollup_watermarks WHERE level = 'day')
UNION ALL
SELECT date_trunc('day', bucket, 'UTC'),
       customer_id,
       meter,
       sum(value_sum),
       sum(event_count)::bigint,
       max(value_max),
       (array_agg(last_value ORDER BY last_key DESC))[1],
       max(last_key),
       max(last_at)
FROM usage_hourly
WHERE bucket >= (SELECT watermark FROM rollup_watermarks WHERE level = 'day')
GROUP BY 1, 2, 3;

CREATE VIEW usage_monthly AS
SELECT bucket, customer_id, meter, value_sum, event_count, value_max, last_value, last_key, last_at
FROM usage_monthly_mat
WHERE bucket < (SELECT watermark FROM rollup_watermarks WHERE level = 'month')
UNION ALL
SELECT date_trunc('month', bucket, 'UTC'),
       customer_id,
       meter,
       sum(value_sum),
       sum(event_count)::bigint,
       max(value_max),
       (array_agg(last_value ORDER BY last_key DESC))[1],
       max(last_key),
       max(last_at)
FROM usage_daily
WHERE bucket >= (SELECT watermark FROM rollup_watermarks WHERE level = 'month')
GROUP BY 1, 2, 3;
