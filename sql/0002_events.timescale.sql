-- Raw usage events in a TimescaleDB hypertable (daily chunks), and the dedupe keys beside it.

CREATE TABLE usage_events (
  ts          timestamptz NOT NULL,
  customer_id text        NOT NULL,
  meter       text        NOT NULL,
  value       numeric     NOT NULL,
  event_id    text        NOT NULL,
  properties  jsonb,
  received_at timestamptz NOT NULL
);

SELECT create_hypertable('usage_events', by_range('ts', INTERVAL '1 day'));

CREATE INDEX usage_events_customer_meter_ts ON usage_events (customer_id, meter, ts DESC);

-- A hypertable's unique indexes must include its time column, so (customer, id) dedupe lives in a plain
-- table: the first insert of a key wins, concurrent inserters wait on its index entry (see ingest/).
-- tally:include event_keys.sql
