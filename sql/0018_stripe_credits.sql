-- Prepaid credits in Stripe: the credits applied to a closed period reach Stripe once, as one negative invoice item
-- per (customer, period, grant), created with a deterministic Idempotency-Key. A row is written (pending) before
-- its request, so a retry after a crash or a timeout reuses the key; 'sent' rows are never sent again.
CREATE TABLE stripe_credit_items (
  customer_id     text        NOT NULL,
  period_start    timestamptz NOT NULL,
  period_end      timestamptz NOT NULL,
  grant_id        text        NOT NULL,
  -- The credits applied to the period (positive); the invoice item is its negative, in minor units.
  amount          numeric     NOT NULL CHECK (amount > 0),
  currency        text        NOT NULL,
  idempotency_key text        NOT NULL UNIQUE,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'error')),
  stripe_id       text,
  attempts        integer     NOT NULL DEFAULT 0,
  error_code      text,
  error_message   text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  sent_at         timestamptz,
  PRIMARY KEY (customer_id, period_start, grant_id)
);

CREATE INDEX stripe_credit_items_pending ON stripe_credit_items (created_at) WHERE status = 'pending';

-- The (customer, period) pairs whose credits were settled into items (also those that had none).
CREATE TABLE stripe_credit_periods (
  customer_id  text        NOT NULL,
  period_start timestamptz NOT NULL,
  settled_at   timestamptz NOT NULL,
  items        integer     NOT NULL,
  PRIMARY KEY (customer_id, period_start)
);
