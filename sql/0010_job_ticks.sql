-- A scheduled run records the cron tick it serves: with the same schedule in several processes, the first to
-- claim a tick runs it and the others skip it, so a job runs exactly once per tick (not just never twice at
-- once). Runs started by hand (POST /v1/jobs/{name}/run) have no tick.
ALTER TABLE job_runs ADD COLUMN scheduled_for timestamptz;
CREATE UNIQUE INDEX job_runs_job_tick ON job_runs (job, scheduled_for) WHERE scheduled_for IS NOT NULL;
