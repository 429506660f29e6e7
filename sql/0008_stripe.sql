-- Stripe sync: hour marks for the sync job, the per-pair sync state, the ledger of what Stripe was sent (and what
-- it should have), and the per-month rounding carry. The ledger is the work queue: a row whose target differs
-- from what its sends cover, or that holds a pending send, still has something to deliver.

-- Hours touched by ingest since the sync job last looked (marked in the ingest transaction, beside
-- rollup_invalidations, under the same shared advisory lock).
CREATE TABLE stripe_marks (
  hour            timestamptz PRIMARY KEY,
  first_marked_at timestamptz NOT NULL DEFAULT now()
);

-- One row. install_id: a random value per database, mixed into every meter event identifier, so a freshly
-- installed Tally never reuses an identifier an earlier installation sent (Stripe would answer "already exists"
-- for usage it never got). recent_requests: when the last run's requests of its final second ended (epoch ms), so
-- the next run — perhaps in another process — keeps to Stripe's per-second limit from its first request.
CREATE TABLE stripe_sync_state (
  singleton       boolean  NOT NULL DEFAULT true PRIMARY KEY CHECK (singleton),
  install_id      text     NOT NULL,
  recent_requests float8[] NOT NULL DEFAULT '{}'
);
INSERT INTO stripe_sync_state (install_id) VALUES (md5(random()::text || clock_timestamp()::text));

-- Where each (customer, meter) pair was last synced to. A new pair, or a changed destination, scale or kind,
-- is detected by comparing this with customers/meters; `backfilled` is set once its 35-day window has targets.
CREATE TABLE stripe_pairs (
  customer_id        text        NOT NULL,
  meter              text        NOT NULL,
  stripe_customer_id text        NOT NULL,
  event_name         text        NOT NULL,
  scale              numeric     NOT NULL,
  kind               text        NOT NULL CHECK (kind IN ('hour', 'period')),
  backfilled         boolean     NOT NULL DEFAULT false,
  mapped_at          timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (customer_id, meter)
);

-- One row per (customer, meter, hour) for sum/count meters (kind 'hour': deltas), per (customer, meter, month) for
-- max/last meters (kind 'period': the running value). Quantities in meter units, units as Stripe whole numbers.
CREATE TABLE stripe_ledger (
  customer_id         text        NOT NULL,
  meter               text        NOT NULL,
  kind                text        NOT NULL CHECK (kind IN ('hour', 'period')),
  bucket              timestamptz NOT NULL,
  -- The UTC month the bucket belongs to (carry and reconciliation).
  period              timestamptz NOT NULL,
  -- Tally's exact value of the bucket now, and the scale to send it with.
  target              numeric     NOT NULL,
  scale               numeric     NOT NULL,
  -- The value and scale that delivered sends account for.
  covered             numeric     NOT NULL DEFAULT 0,
  covered_scale       numeric     NOT NULL,
  -- Whole units Stripe confirmed: their sum ('hour'), or the last value it got ('period').
  sent_units          numeric     NOT NULL DEFAULT 0,
  -- Sends created so far; the next one is seq + 1 (part of its identifier).
  seq                 integer     NOT NULL DEFAULT 0,
  sends_delivered     integer     NOT NULL DEFAULT 0,
  -- A send written before its call: retried with exactly these values until Stripe confirms or refuses it.
  pending_identifier  text,
  pending_units       numeric,
  pending_target      numeric,
  pending_scale       numeric,
  pending_timestamp   timestamptz,
  pending_since       timestamptz,
  attempts            integer     NOT NULL DEFAULT 0,
  last_attempt_error  text,
  last_sent_timestamp timestamptz,
  delivered_at        timestamptz,
  -- Stripe refused the send (a 4xx): not retried until the target changes or an operator resets it.
  error_code          text,
  error_message       text,
  error_at            timestamptz,
  updated_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (customer_id, meter, kind, bucket),
  CHECK ((pending_identifier IS NULL) = (pending_units IS NULL))
);

CREATE UNIQUE INDEX stripe_ledger_pending ON stripe_ledger (pending_identifier) WHERE pending_identifier IS NOT NULL;
-- The work queue: small in steady state, so the job never scans the whole ledger.
CREATE INDEX stripe_ledger_work ON stripe_ledger (customer_id, meter, bucket)
  WHERE pending_identifier IS NOT NULL OR target <> covered OR scale <> covered_scale;
CREATE INDEX stripe_ledger_period ON stripe_ledger (period, customer_id, meter);

-- The rounding remainder of the 'hour' sends of a (customer, meter, month): Σ sent and pending units + carry =
-- Σ scale × covered value, so the month's sent total never drifts from scale × Tally's total by more than a unit.
CREATE TABLE stripe_carry (
  customer_id text        NOT NULL,
  meter       text        NOT NULL,
  period      timestamptz NOT NULL,
  carry       numeric     NOT NULL DEFAULT 0,
  PRIMARY KEY (customer_id, meter, period)
);
