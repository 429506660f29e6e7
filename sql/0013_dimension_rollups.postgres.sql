-- Rollups keyed by (bucket, customer, meter, dimension set) on the portable engine. Existing events and rollup rows
-- have no dimensions (set 0), so nothing needs recomputing.
ALTER TABLE usage_events ADD COLUMN dimension_set integer NOT NULL DEFAULT 0;

ALTER TABLE usage_hourly_mat ADD COLUMN dimension_set integer NOT NULL DEFAULT 0;
ALTER TABLE usage_daily_mat ADD COLUMN dimension_set integer NOT NULL DEFAULT 0;
ALTER TABLE usage_monthly_mat ADD COLUMN dimension_set integer NOT NULL DEFAULT 0;

ALTER TABLE usage_hourly_mat DROP CONSTRAINT usage_hourly_mat_pkey,
  ADD PRIMARY KEY (customer_id, meter, bucket, dimension_set);
ALTER TABLE usage_daily_mat DROP CONSTRAINT usage_daily_mat_pkey,
  ADD PRIMARY KEY (customer_id, meter, bucket, dimension_set);
ALTER TABLE usage_monthly_mat DROP CONSTRAINT usage_monthly_mat_pkey,
  ADD PRIMARY KEY (customer_id, meter, bucket, dimension_set);
