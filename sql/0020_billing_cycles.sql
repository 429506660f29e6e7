-- Billing cycles (v1.2): a subscription's periods follow its own cycle — an interval of `billing_interval_count`
-- days, weeks, months or years from `billing_anchor`, in the local time of `billing_time_zone`. Subscriptions that
-- existed before keep UTC calendar months (anchored at the first instant of the month they start in).
ALTER TABLE subscriptions
  ADD COLUMN billing_interval       text        NOT NULL DEFAULT 'month'
    CHECK (billing_interval IN ('day', 'week', 'month', 'year')),
  ADD COLUMN billing_interval_count integer     NOT NULL DEFAULT 1 CHECK (billing_interval_count > 0),
  ADD COLUMN billing_anchor         timestamptz,
  ADD COLUMN billing_time_zone      text        NOT NULL DEFAULT 'UTC';
UPDATE subscriptions SET billing_anchor = date_trunc('month', start_at, 'UTC');
ALTER TABLE subscriptions ALTER COLUMN billing_anchor SET NOT NULL;

-- A limit state and an alert belong to one period of the customer's cycle: its end is stored, since it is no longer
-- the start plus a month.
ALTER TABLE limit_states ADD COLUMN period_end timestamptz;
UPDATE limit_states SET period_end = (period_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
ALTER TABLE limit_states ALTER COLUMN period_end SET NOT NULL;
ALTER TABLE alerts ADD COLUMN period_end timestamptz;
UPDATE alerts SET period_end = (period_start AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
