-- The portable engine's usage_hourly/daily/monthly views were never read: series and totals are assembled from
-- the usage_*_mat tables, the level below and raw events (src/rollups/series.ts). One path, so drop them.
DROP VIEW usage_monthly;
DROP VIEW usage_daily;
DROP VIEW usage_hourly;
