-- The min of values at every rollup level (v1.2 aggregation `min`) on TimescaleDB. A continuous aggregate's columns
-- cannot be altered, so the three are dropped and created again with value_min: hourly on raw events, daily on hourly,
-- monthly on daily, real-time, as in 0013. The watermarks go back to nothing materialized: reads take raw events until
-- the refresh job's next run, which, seeing no watermark, refreshes everything from raw events.

DROP VIEW usage_monthly_mat;
DROP VIEW usage_daily_mat;
DROP VIEW usage_hourly_mat;
DROP MATERIALIZED VIEW usage_monthly;
DROP MATERIALIZED VIEW usage_daily;
DROP MATERIALIZED VIEW usage_hourly;

CREATE MATERIALIZED VIEW usage_hourly
  WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       customer_id,
       meter,
       dimension_set,
       sum(value)                                 AS value_sum,
       count(*)                                   AS event_count,
       max(value)                                 AS value_max,
       min(value)                                 AS value_min,
       last(value, tally_last_key(ts, value))     AS last_value,
       max(tally_last_key(ts, value))             AS last_key,
       max(ts)                                    AS last_at
FROM usage_events
GROUP BY 1, 2, 3, 4
WITH NO DATA;

CREATE MATERIALIZED VIEW usage_daily
  WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
       customer_id,
       meter,
       dimension_set,
       sum(value_sum)                AS value_sum,
       sum(event_count)::bigint      AS event_count,
       max(value_max)                AS value_max,
       min(value_min)                AS value_min,
       last(last_value, last_key)    AS last_value,
       max(last_key)                 AS last_key,
       max(last_at)                  AS last_at
FROM usage_hourly
GROUP BY 1, 2, 3, 4
WITH NO DATA;

CREATE MATERIALIZED VIEW usage_monthly
  WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket) AS bucket,
       customer_id,
       meter,
       dimension_set,
       sum(value_sum)                AS value_sum,
       sum(event_count)::bigint      AS event_count,
       max(value_max)                AS value_max,
       min(value_min)                AS value_min,
       last(last_value, last_key)    AS last_value,
       max(last_key)                 AS last_key,
       max(last_at)                  AS last_at
FROM usage_daily
GROUP BY 1, 2, 3, 4
WITH NO DATA;

SELECT add_continuous_aggregate_policy('usage_hourly',
  start_offset => INTERVAL '36 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('usage_daily',
  start_offset => INTERVAL '37 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '15 minutes');
SELECT add_continuous_aggregate_policy('usage_monthly',
  start_offset => INTERVAL '3 months', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour');

-- usage_*_mat name the new materialization hypertables, as 0013 did.
DO $$
DECLARE
  cagg record;
BEGIN
  FOR cagg IN
    SELECT view_name, materialization_hypertable_schema AS s, materialization_hypertable_name AS n
    FROM timescaledb_information.continuous_aggregates
    WHERE view_name IN ('usage_hourly', 'usage_daily', 'usage_monthly')
  LOOP
    EXECUTE format(
      'CREATE VIEW %I AS SELECT bucket, customer_id, meter, dimension_set, value_sum, event_count, value_max, value_min, last_value, last_key, last_at FROM %I.%I',
      cagg.view_name || '_mat', cagg.s, cagg.n);
  END LOOP;
END
$$;

-- One index on the columns every read names (as in 0013), in place of TimescaleDB's one index per group-by column.
CREATE INDEX usage_hourly_customer_meter_bucket ON usage_hourly (customer_id, meter, bucket);
CREATE INDEX usage_daily_customer_meter_bucket ON usage_daily (customer_id, meter, bucket);
CREATE INDEX usage_monthly_customer_meter_bucket ON usage_monthly (customer_id, meter, bucket);

DO $$
DECLARE
  idx record;
BEGIN
  FOR idx IN
    SELECT i.schemaname, i.indexname
    FROM timescaledb_information.continuous_aggregates c
    JOIN pg_indexes i ON i.schemaname = c.materialization_hypertable_schema
                     AND i.tablename = c.materialization_hypertable_name
    WHERE c.view_name IN ('usage_hourly', 'usage_daily', 'usage_monthly')
      AND (i.indexname LIKE '%\_meter\_bucket\_idx' OR i.indexname LIKE '%\_customer\_id\_bucket\_idx'
           OR i.indexname LIKE '%\_dimension\_set\_bucket\_idx')
  LOOP
    EXECUTE format('DROP INDEX %I.%I', idx.schemaname, idx.indexname);
  END LOOP;
END
$$;

UPDATE rollup_watermarks SET watermark = '-infinity';
