-- Dimensions: a meter may key its usage by up to 4 event properties ("model", "token_type"). Each distinct
-- combination of values of a meter is stored once, in dimension_sets, under a small integer id; events and rollup
-- rows carry that id (0: no dimensions, or every value absent), so rollups stay narrow and grouped reads join a
-- small table. The per-engine files (0013_dimension_rollups.*.sql) add the id to events and rollups.

ALTER TABLE meters
  ADD COLUMN dimensions   text[]  NOT NULL DEFAULT '{}' CHECK (cardinality(dimensions) <= 4),
  ADD COLUMN stripe_value text    NOT NULL DEFAULT 'quantity' CHECK (stripe_value IN ('quantity', 'amount')),
  -- Set by the first committed batch of the meter (under the meter row's lock): dimensions are fixed from then on.
  ADD COLUMN has_events   boolean NOT NULL DEFAULT false;

UPDATE meters SET has_events = true WHERE key IN (SELECT DISTINCT meter FROM usage_events);

-- One row per distinct combination of a meter's dimension values. `key` is the canonical text (the JSON array of
-- the values in the meter's dimension order); `dimensions` the object of the values present (absent ones left out).
CREATE TABLE dimension_sets (
  id         integer     PRIMARY KEY CHECK (id > 0),
  meter      text        NOT NULL,
  key        text        NOT NULL,
  dimensions jsonb       NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (meter, key)
);
CREATE SEQUENCE dimension_set_ids OWNED BY dimension_sets.id;
ALTER TABLE dimension_sets ALTER COLUMN id SET DEFAULT nextval('dimension_set_ids');

-- The cardinality guard: which combinations each (customer, meter, month) used, and how many (a counter row locked
-- by the ingest transaction that adds one, so concurrent batches in any process count exactly).
CREATE TABLE dimension_usage (
  customer_id   text        NOT NULL,
  meter         text        NOT NULL,
  month         timestamptz NOT NULL,
  dimension_set integer     NOT NULL,
  PRIMARY KEY (customer_id, meter, month, dimension_set)
);
CREATE TABLE dimension_counts (
  customer_id  text        NOT NULL,
  meter        text        NOT NULL,
  month        timestamptz NOT NULL,
  combinations integer     NOT NULL,
  PRIMARY KEY (customer_id, meter, month)
);

-- Per-dimension prices: each combination of the group_by dimensions is priced on its own, by the first override
-- whose match fits ([{"match": {...}, "model", "unit_price"?, "tiers"?, ...}]), else by the version's own spec.
ALTER TABLE price_versions
  ADD COLUMN group_by  text[],
  ADD COLUMN overrides jsonb;

-- What a Stripe pair sends: quantities, or the priced amount in minor units. A change re-sends the window.
ALTER TABLE stripe_pairs
  ADD COLUMN value text NOT NULL DEFAULT 'quantity' CHECK (value IN ('quantity', 'amount'));
