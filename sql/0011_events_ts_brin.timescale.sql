-- TimescaleDB gives a hypertable a btree on its time column. Raw events arrive roughly in time order and every
-- time-range read either goes by customer (usage_events_customer_meter_ts) or scans whole hours, where chunk
-- exclusion and a BRIN do the same work: the btree is one more index to maintain for each event at ingest.
-- The same BRIN as on plain PostgreSQL (sql/0002_events.postgres.sql).
DROP INDEX IF EXISTS usage_events_ts_idx;
CREATE INDEX usage_events_ts ON usage_events USING brin (ts) WITH (pages_per_range = 32);
