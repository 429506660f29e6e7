-- Hourly, daily and monthly rollups as hierarchical continuous aggregates (daily on hourly, monthly on
-- daily), all in UTC, with real-time aggregation on (off by default since TimescaleDB 2.13).
-- Per (bucket, customer, meter): sum, count, max and the last value by tally_last_key, in a form that rolls up.

CREATE MATERIALIZED VIEW usage_hourly
  WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket,
       customer_id,
       meter,
       sum(value)                                 AS value_sum,
       count(*)                                   AS event_count,
       max(value)                                 AS value_max,
       last(value, tally_last_key(ts, value))     AS last_value,
       max(tally_last_key(ts, value))             AS last_key,
       max(ts)                                    AS last_at
FROM usage_events
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW usage_daily
  WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
       customer_id,
       meter,
       sum(value_sum)                AS value_sum,
       sum(event_count)::bigint      AS event_count,
       max(value_max)                AS value_max,
       last(last_value, last_key)    AS last_value,
       max(last_key)                 AS last_key,
       max(last_at)                  AS last_at
FROM usage_hourly
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW usage_monthly
  WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 month', bucket) AS bucket,
       customer_id,
       meter,
       sum(value_sum)                AS value_sum,
       sum(event_count)::bigint      AS event_count,
       max(value_max)                AS value_max,
       last(last_value, last_key)    AS last_value,
       max(last_key)                 AS last_key,
       max(last_at)                  AS last_at
FROM usage_daily
GROUP BY 1, 2, 3
WITH NO DATA;

-- Policies for TimescaleDB's own scheduler (a server; the embedded engine has none and relies on Tally's
-- refresh job, which runs everywhere and makes late events visible within seconds). Windows span more than
-- two buckets and reach back past the 35-day event window so late events are always re-materialized.
-- No retention policy on raw events: invoices need raw events for partial hours.
SELECT add_continuous_aggregate_policy('usage_hourly',
  start_offset => INTERVAL '36 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '5 minutes');
SELECT add_continuous_aggregate_policy('usage_daily',
  start_offset => INTERVAL '37 days', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '15 minutes');
SELECT add_continuous_aggregate_policy('usage_monthly',
  start_offset => INTERVAL '3 months', end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour');
