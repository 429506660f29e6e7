-- Prepaid credits: grants, each customer's credit settings, the credit side of every (customer, meter) state that
-- entitlement decisions poll, and credit alerts (one per crossing). Draws, give-backs and forfeits are not
-- stored: they are computed on read from the grants and the hourly usage charges (docs/credits.md).

ALTER TABLE customers
  ADD COLUMN credit_mode text NOT NULL DEFAULT 'credit_then_invoice'
    CHECK (credit_mode IN ('credit_then_invoice', 'credit_only')),
  ADD COLUMN credit_alert_below numeric CHECK (credit_alert_below >= 0);

-- The customers whose credits the evaluate-limits job watches.
CREATE INDEX customers_credit_watched ON customers (id)
  WHERE credit_mode = 'credit_only' OR credit_alert_below IS NOT NULL;

-- A grant never changes but for voided_at. The same Idempotency-Key of a customer always answers the same grant.
CREATE TABLE credit_grants (
  id              text        PRIMARY KEY,
  customer_id     text        NOT NULL REFERENCES customers (id),
  currency        text        NOT NULL,
  amount          numeric     NOT NULL CHECK (amount > 0),
  priority        integer     NOT NULL DEFAULT 50 CHECK (priority BETWEEN 0 AND 100),
  effective_at    timestamptz NOT NULL,
  expires_at      timestamptz,
  meters          text[],
  description     text,
  idempotency_key text,
  request_hash    text,
  voided_at       timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (expires_at IS NULL OR expires_at > effective_at),
  UNIQUE (customer_id, idempotency_key)
);

CREATE INDEX credit_grants_customer ON credit_grants (customer_id, effective_at);

-- credit_only customers: 'exhausted' blocks the meter (429 credits_exhausted) like a reached hard limit.
ALTER TABLE limit_states
  ADD COLUMN credits text CHECK (credits IN ('ok', 'exhausted')),
  ADD COLUMN credit_balance numeric;

-- Where each customer's balance stood at its last evaluation, so a crossing of credit_alert_below (or zero) is
-- recorded once, by whichever process sees it first (the row is locked while it decides).
CREATE TABLE credit_states (
  customer_id text        PRIMARY KEY,
  currency    text,
  balance     numeric     NOT NULL,
  low         boolean     NOT NULL,
  exhausted   boolean     NOT NULL,
  as_of       timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE credit_alerts (
  id           bigserial   PRIMARY KEY,
  customer_id  text        NOT NULL,
  level        text        NOT NULL CHECK (level IN ('credits_low', 'credits_exhausted')),
  threshold    numeric     NOT NULL,
  balance      numeric     NOT NULL,
  currency     text,
  triggered_at timestamptz NOT NULL
);

CREATE INDEX credit_alerts_customer ON credit_alerts (customer_id, triggered_at);
