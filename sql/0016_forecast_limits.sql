-- Forecast alerts: a limit with forecast = true also alerts (level 'forecast', once per threshold and period) when
-- the period-end forecast crosses its soft or hard threshold.
ALTER TABLE customer_limits ADD COLUMN forecast boolean NOT NULL DEFAULT false;
ALTER TABLE plan_limits ADD COLUMN forecast boolean NOT NULL DEFAULT false;
ALTER TABLE alerts DROP CONSTRAINT alerts_level_check;
ALTER TABLE alerts ADD CONSTRAINT alerts_level_check CHECK (level IN ('soft', 'hard', 'forecast'));
