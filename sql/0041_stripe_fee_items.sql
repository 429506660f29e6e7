-- Base fees and fixed charges in Stripe (TALLY_STRIPE_FEES=invoice_items): once a period's invoice is final, each of
-- its base-fee and fixed-charge lines (prorated as the invoice shows it) reaches Stripe once, as one invoice item
-- created with a deterministic Idempotency-Key. A row is written (pending) before its request; 'sent' rows are
-- never sent again. Later changes of those lines are adjustments of a later invoice, sent as its invoice items.
CREATE TABLE stripe_fee_items (
  invoice_id      text        NOT NULL REFERENCES invoices (id),
  -- The line's identity on the invoice: kind, plan, meter or charge, and the start of the part it bills.
  line_key        text        NOT NULL,
  customer_id     text        NOT NULL,
  period_start    timestamptz NOT NULL,
  period_end      timestamptz NOT NULL,
  kind            text        NOT NULL CHECK (kind IN ('base_fee', 'fixed')),
  description     text        NOT NULL,
  amount          numeric     NOT NULL,
  currency        text        NOT NULL,
  idempotency_key text        NOT NULL UNIQUE,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'error')),
  stripe_id       text,
  attempts        integer     NOT NULL DEFAULT 0,
  error_message   text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  sent_at         timestamptz,
  PRIMARY KEY (invoice_id, line_key)
);

CREATE INDEX stripe_fee_items_pending ON stripe_fee_items (created_at) WHERE status = 'pending';

-- The final invoices whose fee lines were written as items (also those that had none).
CREATE TABLE stripe_fee_invoices (
  invoice_id text        PRIMARY KEY REFERENCES invoices (id),
  settled_at timestamptz NOT NULL,
  items      integer     NOT NULL
);
