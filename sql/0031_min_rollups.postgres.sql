-- The min of values at every rollup level (v1.2 aggregation `min`). A minimum cannot be derived from the figures the
-- rollups held, so the materialized rows go and the watermarks return to nothing materialized: reads take raw events
-- until the refresh job's next run, which, seeing no watermark, recomputes every level from raw events (kept for good).
TRUNCATE usage_hourly_mat, usage_daily_mat, usage_monthly_mat;
ALTER TABLE usage_hourly_mat ADD COLUMN value_min numeric NOT NULL;
ALTER TABLE usage_daily_mat ADD COLUMN value_min numeric NOT NULL;
ALTER TABLE usage_monthly_mat ADD COLUMN value_min numeric NOT NULL;
UPDATE rollup_watermarks SET watermark = '-infinity';
