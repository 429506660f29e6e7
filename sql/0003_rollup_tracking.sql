-- What rollups must still pick up: every hour that received events since the last refresh (marked at
-- ingest, in the same transaction as the events), like TimescaleDB's invalidation log. The refresh job moves
-- marks into rollup_claims while it works and deletes them once every level is refreshed; until then,
-- reads treat those hours as "dirty" and take them from raw events, so answers are exact at once.

CREATE TABLE rollup_invalidations (
  hour            timestamptz PRIMARY KEY,
  first_marked_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollup_claims (
  claim_id   bigint      NOT NULL,
  hour       timestamptz NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (claim_id, hour)
);

CREATE INDEX rollup_claims_hour ON rollup_claims (hour);

CREATE SEQUENCE rollup_claim_ids;

-- Orders events for the `last` aggregation: latest timestamp first; among events with the same timestamp,
-- the greatest value. One numeric, so it rolls up level by level (max of keys) and is the same on both
-- engines. Values have at most 18 significant digits and 9 decimals: value * 1e9 + 1e27 lies in [0, 2e27).
CREATE FUNCTION tally_last_key(ts timestamptz, value numeric) RETURNS numeric
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN trunc(extract(epoch FROM ts) * 1000000) * 1e28 + (value * 1e9 + 1e27);
