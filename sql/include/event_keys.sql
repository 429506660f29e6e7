CREATE TABLE event_keys (
  customer_id text        NOT NULL,
  event_id    text        NOT NULL,
  meter       text        NOT NULL,
  ts          timestamptz NOT NULL,
  received_at timestamptz NOT NULL,
  PRIMARY KEY (customer_id, event_id)
);

-- Keys older than the dedupe window are pruned by received_at.
CREATE INDEX event_keys_received_at ON event_keys USING brin (received_at);
