-- Stripe ledger rows belong to the customer's own billing period (v1.2 billing cycles): `period` is its start and
-- `period_end` its end, stored since it is no longer the start plus a month. A 'period' row's last sendable second
-- is the last second of its period, and the ledger tracks a period while it overlaps Stripe's 35-day window.
-- Rows written before were of UTC calendar months.
ALTER TABLE stripe_ledger ADD COLUMN period_end timestamptz;
UPDATE stripe_ledger SET period_end = (period AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC';
ALTER TABLE stripe_ledger ALTER COLUMN period_end SET NOT NULL;
