-- Subscription changes (v1.2): how fees treat a subscription's start and end (prorated by hours, or "none": the plan
-- of the period start charges in full), trials, scheduled changes, and fixed charges (seats) with their quantities.
ALTER TABLE subscriptions
  ADD COLUMN proration       text NOT NULL DEFAULT 'prorate' CHECK (proration IN ('prorate', 'none')),
  ADD COLUMN end_proration   text NOT NULL DEFAULT 'prorate' CHECK (end_proration IN ('prorate', 'none')),
  ADD COLUMN trial_end       timestamptz,
  -- A change asked for at the period end: shown as `scheduled` until it starts, cancelable until then.
  ADD COLUMN scheduled       boolean NOT NULL DEFAULT false,
  -- A scheduled change's: the end of the subscription it cut short, given back when the change is canceled.
  ADD COLUMN replaced_end_at timestamptz;

-- Versions of a plan's fixed charges, never changed once created (as price versions).
CREATE TABLE fixed_charge_versions (
  plan_key       text        NOT NULL REFERENCES plans (key),
  charge         text        NOT NULL CHECK (charge ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$'),
  name           text        NOT NULL,
  unit_price     numeric     NOT NULL CHECK (unit_price >= 0),
  effective_from timestamptz NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan_key, charge, effective_from)
);

-- A subscription's quantity of a fixed charge, from `effective_at` on (the latest one at or before an instant).
CREATE TABLE subscription_quantities (
  subscription_id bigint      NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
  charge          text        NOT NULL,
  effective_at    timestamptz NOT NULL,
  quantity        numeric     NOT NULL CHECK (quantity >= 0),
  PRIMARY KEY (subscription_id, charge, effective_at)
);
