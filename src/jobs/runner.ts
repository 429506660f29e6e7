// Jobs: named units of background work, each run under a database-wide lock so that exactly one runs at a
// time across all Tally processes; scheduled with node-cron, runnable on demand, logged and measured.

import { hostname } from "node:os";
import cron, { type ScheduledTask } from "node-cron";
import { inBackground } from "../db/priority.js";
import type { Db, Queryable } from "../db/types.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";

export type JobSummary = Record<string, unknown>;

export interface Job {
  name: string;
  /** node-cron expression (with seconds); undefined = on demand only. */
  schedule?: string;
  /** `scheduled`: a run of the schedule (not one asked for through POST /v1/jobs/{name}/run). */
  run(how: { scheduled: boolean }): Promise<JobSummary>;
}

type JobOutcome =
  | { job: string; ran: true; ok: true; started_at: string; duration_ms: number; summary: JobSummary }
  | { job: string; ran: true; ok: false; started_at: string; duration_ms: number; error: string }
  | { job: string; ran: false; reason: string };

class UnknownJobError extends Error {
  override name = "UnknownJobError";
}

const MANUAL_WAIT_MS = 30_000;
/** Who ran a job, as recorded in job_runs. */
const RUNNER_ID = `${hostname()}:${process.pid}`;

export class JobRunner {
  readonly #jobs = new Map<string, Job>();
  readonly #tasks: ScheduledTask[] = [];
  readonly #running = new Set<Promise<unknown>>();
  readonly #runs;
  readonly #duration;
  readonly #lastSuccess;
  #stopped = false;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    metrics: Metrics,
  ) {
    this.#runs = metrics.counter("tally_job_runs_total", "Job runs by outcome (ok, failed, skipped)", [
      "job",
      "outcome",
    ]);
    this.#duration = metrics.histogram(
      "tally_job_duration_seconds",
      "Job run duration",
      ["job"],
      [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300],
    );
    this.#lastSuccess = metrics.gauge(
      "tally_job_last_success_timestamp_seconds",
      "When each job last succeeded",
      ["job"],
      "max",
    );
  }

  register(job: Job): void {
    this.#jobs.set(job.name, job);
  }

  names(): string[] {
    return [...this.#jobs.keys()];
  }

  /** Starts the cron schedules (TALLY_JOBS=on). */
  start(): void {
    for (const job of this.#jobs.values()) {
      if (!job.schedule) continue;
      const task = cron.schedule(job.schedule, (context) => {
        if (this.#stopped) return;
        // The tick itself (whole seconds), the same in every process whose clock agrees to within the interval.
        const tick = new Date(Math.floor(context.date.getTime() / 1000) * 1000);
        void this.#track(this.#attempt(job, false, tick));
      });
      this.#tasks.push(task);
    }
  }

  /** Runs a job now; waits (bounded) if another process is running it, so the caller sees a real run. */
  async runNow(name: string): Promise<JobOutcome> {
    const job = this.#jobs.get(name);
    if (!job) throw new UnknownJobError(`no job named ${name}`);
    return this.#track(this.#attempt(job, true));
  }

  /** Starts a run now unless one is running anywhere (does not wait; for work that just became due). */
  trigger(name: string): void {
    const job = this.#jobs.get(name);
    if (job && !this.#stopped) void this.#track(this.#attempt(job, false));
  }

  /** Stops scheduling and waits for runs in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const task of this.#tasks) await task.stop();
    await Promise.allSettled([...this.#running]);
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#running.add(p);
    void p.finally(() => this.#running.delete(p));
    return p;
  }

  async #attempt(job: Job, wait: boolean, tick?: Date): Promise<JobOutcome> {
    const lockKey = `job:${job.name}`;
    const deadline = Date.now() + MANUAL_WAIT_MS;
    for (;;) {
      const result = await this.db
        .tryWithLock(lockKey, () => inBackground(() => this.#execute(job, tick)))
        .catch((err: Error): { acquired: true; value: JobOutcome } => ({
          acquired: true,
          value: {
            job: job.name,
            ran: true,
            ok: false,
            started_at: new Date().toISOString(),
            duration_ms: 0,
            error: err.message,
          },
        }));
      if (result.acquired) return result.value;
      if (!wait || Date.now() > deadline) {
        this.#runs.inc({ job: job.name, outcome: "skipped" });
        this.log.debug({ job: job.name }, "job skipped: running elsewhere");
        return { job: job.name, ran: false, reason: "another process is running this job" };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async #record(id: string | undefined, outcome: "ok" | "failed", summary: JobSummary | null, error: string | null) {
    if (!id) return;
    await this.db
      .query(
        "UPDATE job_runs SET finished_at = clock_timestamp(), outcome = $2, summary = $3, error = $4 WHERE id = $1",
        [id, outcome, summary === null ? null : JSON.stringify(summary), error],
      )
      .catch((err: Error) => this.log.warn({ job: id, err: { message: err.message } }, "could not record job run"));
  }

  async #execute(job: Job, tick?: Date): Promise<JobOutcome> {
    const started = new Date();
    const t0 = performance.now();
    const { rows } = await this.db.query<{ id: string }>(
      `INSERT INTO job_runs (job, runner, started_at, scheduled_for) VALUES ($1, $2, clock_timestamp(), $3)
       ON CONFLICT (job, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
       RETURNING id::text`,
      [job.name, RUNNER_ID, tick ?? null],
    );
    const runId = rows[0]?.id;
    if (tick && !runId) {
      this.#runs.inc({ job: job.name, outcome: "skipped" });
      this.log.debug({ job: job.name, tick: tick.toISOString() }, "job skipped: tick already run elsewhere");
      return { job: job.name, ran: false, reason: `the ${tick.toISOString()} run happened in another process` };
    }
    try {
      const summary = await job.run({ scheduled: tick !== undefined });
      await this.#record(runId, "ok", summary, null);
      const duration_ms = Math.round(performance.now() - t0);
      this.#runs.inc({ job: job.name, outcome: "ok" });
      this.#duration.observe({ job: job.name }, duration_ms / 1000);
      this.#lastSuccess.set({ job: job.name }, Date.now() / 1000);
      this.log.info({ job: job.name, duration_ms, summary }, "job done");
      return { job: job.name, ran: true, ok: true, started_at: started.toISOString(), duration_ms, summary };
    } catch (err) {
      await this.#record(runId, "failed", null, (err as Error).message);
      const duration_ms = Math.round(performance.now() - t0);
      this.#runs.inc({ job: job.name, outcome: "failed" });
      this.#duration.observe({ job: job.name }, duration_ms / 1000);
      this.log.error(
        { job: job.name, duration_ms, err: { message: (err as Error).message, code: (err as { code?: string }).code } },
        "job failed",
      );
      return {
        job: job.name,
        ran: true,
        ok: false,
        started_at: started.toISOString(),
        duration_ms,
        error: (err as Error).message,
      };
    }
  }
}

/** Deletes the record of job runs started before `before`. */
export async function pruneJobRuns(db: Queryable, before: Date): Promise<number> {
  return (await db.query("DELETE FROM job_runs WHERE started_at < $1", [before])).rowCount;
}
