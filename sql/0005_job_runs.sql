-- Every job run, for operators (what ran where, how long, what it did) and for the guarantee that one job
-- never runs twice at once across processes. Runs older than 7 days are pruned by prune-dedupe-keys.
CREATE TABLE job_runs (
  id          bigserial PRIMARY KEY,
  job         text        NOT NULL,
  runner      text        NOT NULL,
  started_at  timestamptz NOT NULL,
  finished_at timestamptz,
  outcome     text        NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'failed')),
  summary     jsonb,
  error       text
);

CREATE INDEX job_runs_job_started ON job_runs (job, started_at DESC);
