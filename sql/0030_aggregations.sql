-- Aggregations of v1.2: min, avg and unique_count. A unique_count meter counts the distinct values of one event
-- property (unique_property, e.g. "user_id") over any range. A distinct count does not add up across buckets, so it
-- has a state of its own: usage_distinct holds one row per distinct value per (customer, meter, dimension set, UTC
-- day), with the first time it was seen that day. Ingest writes it in the events' own transaction, only for events
-- it stored; a range's count is count(DISTINCT value) over its whole days here plus the raw events of the hours at
-- its edges (docs/aggregations.md). It grows with the distinct values per day, never with the events.
ALTER TABLE meters DROP CONSTRAINT meters_aggregation_check;
ALTER TABLE meters
  ADD CONSTRAINT meters_aggregation_check
    CHECK (aggregation IN ('sum', 'count', 'max', 'last', 'min', 'avg', 'unique_count')),
  ADD COLUMN unique_property text CHECK (char_length(unique_property) BETWEEN 1 AND 64),
  ADD CONSTRAINT meters_unique_property_of_unique_count CHECK ((unique_property IS NOT NULL) = (aggregation = 'unique_count'));

-- Values compare byte by byte (COLLATE "C"): equality is exact, and counting them sorts fast.
CREATE TABLE usage_distinct (
  customer_id   text        NOT NULL,
  meter         text        NOT NULL,
  day           timestamptz NOT NULL,
  dimension_set integer     NOT NULL,
  value         text        COLLATE "C" NOT NULL,
  first_ts      timestamptz NOT NULL,
  PRIMARY KEY (customer_id, meter, day, dimension_set, value)
);

-- Reads of every customer at once (exports, simulations) select days only: rows arrive roughly in day order.
CREATE INDEX usage_distinct_day ON usage_distinct USING brin (day) WITH (pages_per_range = 32);
