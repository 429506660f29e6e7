-- Plans, their effective-dated price versions, and customers' subscriptions.

CREATE TABLE plans (
  key        text PRIMARY KEY CHECK (key ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
  name       text NOT NULL,
  currency   text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- A version is never changed once created: a new price is a new version with a later effective_from, so every
-- invoice ever previewed can be reproduced.
CREATE TABLE price_versions (
  plan_key       text        NOT NULL REFERENCES plans (key),
  meter          text        NOT NULL REFERENCES meters (key),
  effective_from timestamptz NOT NULL,
  model          text        NOT NULL CHECK (model IN ('per_unit', 'graduated', 'volume', 'package')),
  unit_price     numeric CHECK (unit_price >= 0),
  -- [{"up_to": "10000" | null, "unit_price": "0.001", "flat_price": "0"}], amounts as decimal strings
  tiers          jsonb,
  package_size   numeric CHECK (package_size > 0),
  package_price  numeric CHECK (package_price >= 0),
  base_fee       numeric CHECK (base_fee >= 0),
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan_key, meter, effective_from)
);

-- Subscriptions of one customer never overlap: setting a new one ends the one in effect at its start (and
-- drops any that would only have started later), under a lock on the customer row.
CREATE TABLE subscriptions (
  id          bigserial   PRIMARY KEY,
  customer_id text        NOT NULL REFERENCES customers (id),
  plan_key    text        NOT NULL REFERENCES plans (key),
  start_at    timestamptz NOT NULL,
  end_at      timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CHECK (end_at IS NULL OR end_at > start_at)
);

CREATE INDEX subscriptions_customer_start ON subscriptions (customer_id, start_at);
CREATE INDEX subscriptions_plan ON subscriptions (plan_key);
