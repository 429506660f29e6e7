-- Limits (per customer, or a plan default), the evaluated state of each limited (customer, meter), alerts, and
-- signed webhooks delivered from an outbox.

CREATE TABLE customer_limits (
  customer_id text        NOT NULL REFERENCES customers (id),
  meter       text        NOT NULL REFERENCES meters (key),
  soft        numeric CHECK (soft >= 0),
  hard        numeric CHECK (hard >= 0),
  unit        text        NOT NULL CHECK (unit IN ('quantity', 'amount')),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (customer_id, meter),
  CHECK (soft IS NOT NULL OR hard IS NOT NULL)
);

CREATE TABLE plan_limits (
  plan_key   text        NOT NULL REFERENCES plans (key),
  meter      text        NOT NULL REFERENCES meters (key),
  soft       numeric CHECK (soft >= 0),
  hard       numeric CHECK (hard >= 0),
  unit       text        NOT NULL CHECK (unit IN ('quantity', 'amount')),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan_key, meter),
  CHECK (soft IS NOT NULL OR hard IS NOT NULL)
);

-- What the last evaluation found for a (customer, meter) in a period. Every Tally process keeps a copy in memory
-- (polled by updated_at), so entitlement decisions cost no query. A block holds for the rest of the period
-- unless the hard limit is raised above the value it was reached at, or removed.
CREATE TABLE limit_states (
  customer_id      text        NOT NULL,
  meter            text        NOT NULL,
  period_start     timestamptz NOT NULL,
  unit             text        CHECK (unit IN ('quantity', 'amount')),
  soft             numeric,
  hard             numeric,
  quantity         numeric     NOT NULL,
  amount           numeric,
  currency         text,
  state            text        NOT NULL CHECK (state IN ('ok', 'soft', 'blocked')),
  blocked_at_hard  numeric,
  as_of            timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (customer_id, meter)
);

CREATE INDEX limit_states_updated_at ON limit_states (updated_at);

-- One alert per (customer, meter, period, level) and threshold: a limit raised and crossed again alerts again.
CREATE TABLE alerts (
  id           bigserial   PRIMARY KEY,
  customer_id  text        NOT NULL,
  meter        text        NOT NULL,
  period_start timestamptz NOT NULL,
  level        text        NOT NULL CHECK (level IN ('soft', 'hard')),
  threshold    numeric     NOT NULL,
  unit         text        NOT NULL CHECK (unit IN ('quantity', 'amount')),
  value        numeric     NOT NULL,
  triggered_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (customer_id, meter, period_start, level, threshold, unit)
);

CREATE INDEX alerts_customer ON alerts (customer_id, triggered_at);

-- Receivers of alerts. The secret signs deliveries (HMAC-SHA256), so it is kept, but shown only once.
CREATE TABLE webhook_endpoints (
  id         text        PRIMARY KEY,
  url        text        NOT NULL,
  secret     text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  disabled_at timestamptz
);

-- The outbox: written in the transaction that records the alert, delivered by the deliver-webhooks job.
CREATE TABLE webhook_deliveries (
  id              bigserial   PRIMARY KEY,
  event_id        text        NOT NULL,
  endpoint_id     text        NOT NULL REFERENCES webhook_endpoints (id),
  body            text        NOT NULL,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  delivered_at    timestamptz,
  UNIQUE (event_id, endpoint_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
  delivery_id bigint      NOT NULL REFERENCES webhook_deliveries (id),
  attempt     integer     NOT NULL,
  at          timestamptz NOT NULL DEFAULT now(),
  status_code integer,
  error       text,
  duration_ms integer     NOT NULL,
  PRIMARY KEY (delivery_id, attempt)
);
