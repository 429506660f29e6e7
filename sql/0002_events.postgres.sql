-- Raw usage events on plain PostgreSQL: an append-mostly table indexed by time (BRIN: tiny and cheap to
-- maintain for rows that arrive roughly in time order) and by (customer, meter, time) for reads.

CREATE TABLE usage_events (
  ts          timestamptz NOT NULL,
  customer_id text        NOT NULL,
  meter       text        NOT NULL,
  value       numeric     NOT NULL,
  event_id    text        NOT NULL,
  properties  jsonb,
  received_at timestamptz NOT NULL
);

CREATE INDEX usage_events_ts ON usage_events USING brin (ts) WITH (pages_per_range = 32);
CREATE INDEX usage_events_customer_meter_ts ON usage_events (customer_id, meter, ts DESC);

-- Dedupe keys: the first insert of (customer, id) wins; concurrent inserters wait on its index entry.
-- tally:include event_keys.sql
