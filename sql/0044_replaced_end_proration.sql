-- A scheduled change also keeps how the subscription it cut short was to end (its end_proration), so that
-- canceling the change gives back the end as it was: a cancellation with proration "none" stays "none".
ALTER TABLE subscriptions
  ADD COLUMN replaced_end_proration text CHECK (replaced_end_proration IN ('prorate', 'none'));
