-- A subscription's quantity that it only inherited (from the subscription it followed, at its start), as opposed to
-- one set for it (asked for with the change, or by PUT …/quantities/{charge}): a quantity change earlier on follows
-- through to inherited ones and stops at one that was set. Rows from before could not tell: the starting quantities
-- of a subscription that follows another read as inherited, as they were treated until now.
ALTER TABLE subscription_quantities ADD COLUMN inherited boolean NOT NULL DEFAULT false;

UPDATE subscription_quantities q SET inherited = true
FROM subscriptions s
WHERE s.id = q.subscription_id AND q.effective_at = s.start_at
  AND EXISTS (SELECT 1 FROM subscriptions p WHERE p.customer_id = s.customer_id AND p.end_at = s.start_at);
