-- What an adjustment corrects: a meter's usage, a meter's base fees, one fixed charge (`charge`), or the rest of the
-- total (credits and other changes). Rows carried before had one figure per meter (usage and base fees together)
-- and one for everything else, fixed charges included: they read as `usage` and `other`.
ALTER TABLE invoice_adjustments ADD COLUMN kind text, ADD COLUMN charge text;

UPDATE invoice_adjustments SET kind = CASE WHEN meter IS NULL THEN 'other' ELSE 'usage' END;

ALTER TABLE invoice_adjustments
  ALTER COLUMN kind SET NOT NULL,
  ADD CONSTRAINT invoice_adjustments_kind CHECK (kind IN ('usage', 'base_fee', 'fixed', 'other')),
  ADD CONSTRAINT invoice_adjustments_charge CHECK ((kind = 'fixed') = (charge IS NOT NULL)),
  ADD CONSTRAINT invoice_adjustments_meter CHECK ((kind IN ('usage', 'base_fee')) = (meter IS NOT NULL));

-- A carried difference never changes (its kind and charge neither); only the Stripe columns do.
CREATE OR REPLACE FUNCTION tally_invoice_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'invoices' THEN
    IF OLD.status = 'final' THEN
      RAISE EXCEPTION 'invoice % is final and cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
  ELSIF TG_OP = 'DELETE' OR (NEW.invoice_id, NEW.adjusts, NEW.meter, NEW.quantity, NEW.amount, NEW.currency,
                             NEW.as_of_quantity, NEW.as_of_amount, NEW.as_of, NEW.kind, NEW.charge)
        IS DISTINCT FROM (OLD.invoice_id, OLD.adjusts, OLD.meter, OLD.quantity, OLD.amount, OLD.currency,
                          OLD.as_of_quantity, OLD.as_of_amount, OLD.as_of, OLD.kind, OLD.charge) THEN
    RAISE EXCEPTION 'invoice adjustment % cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
