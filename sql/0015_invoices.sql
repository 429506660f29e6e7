-- Invoices: one per (customer, period). A draft is a row whose content is computed when it is read; finalizing
-- it freezes the document exactly as served (text, byte for byte), its number, and the figures that later
-- corrections compare against. Corrections are rows of their own: each points at the final invoice it adjusts
-- and sits on a later draft of the same customer.

CREATE TABLE invoices (
  id           text        PRIMARY KEY,
  customer_id  text        NOT NULL REFERENCES customers (id),
  period_start timestamptz NOT NULL,
  period_end   timestamptz NOT NULL,
  status       text        NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'final')),
  number       text        UNIQUE,
  currency     text,
  total        numeric,
  -- JSON: per meter the period quantity and the sum of its lines, plus the rest of the total (credits).
  figures      text,
  -- The final invoice as served by the API.
  document     text,
  finalized_at timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  UNIQUE (customer_id, period_start),
  CHECK (status = 'draft' OR (number IS NOT NULL AND total IS NOT NULL AND figures IS NOT NULL
                              AND document IS NOT NULL AND finalized_at IS NOT NULL))
);
CREATE INDEX invoices_drafts ON invoices (period_end) WHERE status = 'draft';
CREATE INDEX invoices_finals ON invoices (period_end) WHERE status = 'final';

-- The last number given per year. The finalizing transaction increments it and keeps the row locked until it
-- commits, so a finalization that fails or dies gives its number back: numbers have no gaps.
CREATE TABLE invoice_numbers (
  year        integer PRIMARY KEY,
  last_number bigint  NOT NULL CHECK (last_number > 0)
);

-- Append-only: a difference carried from a final invoice (adjusts) to a draft (invoice_id), with what the final
-- invoice's figure for the meter amounted to when it was carried (as_of_*). Only the Stripe columns ever change.
CREATE TABLE invoice_adjustments (
  id                  bigserial   PRIMARY KEY,
  invoice_id          text        NOT NULL REFERENCES invoices (id),
  adjusts             text        NOT NULL REFERENCES invoices (id),
  meter               text,
  quantity            numeric     NOT NULL,
  amount              numeric     NOT NULL,
  currency            text,
  as_of_quantity      numeric     NOT NULL,
  as_of_amount        numeric     NOT NULL,
  as_of               timestamptz NOT NULL,
  stripe_invoice_item text,
  stripe_error        text,
  stripe_attempts     integer     NOT NULL DEFAULT 0,
  stripe_sent_at      timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  CHECK (invoice_id <> adjusts)
);
CREATE INDEX invoice_adjustments_adjusts ON invoice_adjustments (adjusts);
CREATE INDEX invoice_adjustments_invoice ON invoice_adjustments (invoice_id);
CREATE INDEX invoice_adjustments_unsent ON invoice_adjustments (id) WHERE stripe_invoice_item IS NULL;

-- A final invoice never changes, and neither does a carried difference: the database refuses it.
CREATE FUNCTION tally_invoice_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'invoices' THEN
    IF OLD.status = 'final' THEN
      RAISE EXCEPTION 'invoice % is final and cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  ELSIF TG_OP = 'DELETE' OR (NEW.invoice_id, NEW.adjusts, NEW.meter, NEW.quantity, NEW.amount, NEW.currency,
                             NEW.as_of_quantity, NEW.as_of_amount, NEW.as_of)
        IS DISTINCT FROM (OLD.invoice_id, OLD.adjusts, OLD.meter, OLD.quantity, OLD.amount, OLD.currency,
                          OLD.as_of_quantity, OLD.as_of_amount, OLD.as_of) THEN
    RAISE EXCEPTION 'invoice adjustment % cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER invoices_frozen BEFORE UPDATE OR DELETE ON invoices
  FOR EACH ROW EXECUTE FUNCTION tally_invoice_frozen();
CREATE TRIGGER invoice_adjustments_frozen BEFORE UPDATE OR DELETE ON invoice_adjustments
  FOR EACH ROW EXECUTE FUNCTION tally_invoice_frozen();
