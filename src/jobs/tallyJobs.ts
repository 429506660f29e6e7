// The jobs Tally runs, with their schedules. Later capabilities add theirs here.
import type { Clock } from "../clock.js";
import type { Config } from "../config.js";
import type { Engine } from "../db/open.js";
import type { Db } from "../db/types.js";
import type { LimitsService } from "../limits/service.js";
import { deliverDue } from "../limits/webhooks.js";
import type { Logger } from "../logger.js";
import { refreshRollups } from "../rollups/refresh.js";
import { createStripeSync } from "../stripe/sync.js";
import type { Job } from "./runner.js";

export interface JobDeps {
  db: Db;
  engine: Engine;
  clock: Clock;
  config: Config;
  limits: LimitsService;
  log: Logger;
  /** Aborted at shutdown: long jobs (a Stripe backlog) stop between requests instead of holding shutdown. */
  signal?: AbortSignal;
}

/** Dedupe keys older than the window are deleted in batches, so a huge backlog never holds one long lock. */
async function pruneDedupeKeys(db: Db, before: Date): Promise<{ deleted: number; before: string }> {
  let deleted = 0;
  for (;;) {
    const { rowCount } = await db.query(
      `DELETE FROM event_keys WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM event_keys WHERE received_at < $1 LIMIT 10000))`,
      [before],
    );
    deleted += rowCount;
    if (rowCount < 10_000) return { deleted, before: before.toISOString() };
  }
}

export function tallyJobs(d: JobDeps): Job[] {
  const stripe = createStripeSync(d);
  return [
    {
      name: "refresh-rollups",
      schedule: d.config.TALLY_CRON_REFRESH,
      run: async () => ({ ...(await refreshRollups(d.db, d.engine, d.clock.now())) }),
    },
    {
      name: "evaluate-limits",
      schedule: d.config.TALLY_CRON_LIMITS,
      run: async () => ({ ...(await d.limits.evaluateAll()) }),
    },
    {
      name: "deliver-webhooks",
      schedule: d.config.TALLY_CRON_WEBHOOKS,
      run: async () => ({
        ...(await deliverDue(d.db, d.clock, d.log, { retryBaseMs: d.config.TALLY_WEBHOOK_RETRY_BASE_MS })),
      }),
    },
    {
      name: "prune-dedupe-keys",
      schedule: "0 7 * * * *",
      run: async () => {
        const now = d.clock.now().getTime();
        const keys = await pruneDedupeKeys(d.db, new Date(now - d.config.TALLY_DEDUPE_WINDOW_DAYS * 86_400_000));
        const runs = await d.db.query("DELETE FROM job_runs WHERE started_at < $1", [new Date(now - 7 * 86_400_000)]);
        // Finished webhook deliveries and their attempt log are kept for 30 days (pending ones until delivered
        // or given up after 24 hours).
        const hooks = await d.db.transaction(async (tx) => {
          const old = new Date(now - 30 * 86_400_000);
          const done = "status <> 'pending' AND created_at < $1";
          await tx.query(
            `DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE ${done})`,
            [old],
          );
          return (await tx.query(`DELETE FROM webhook_deliveries WHERE ${done}`, [old])).rowCount;
        });
        return {
          dedupe_keys_deleted: keys.deleted,
          dedupe_keys_before: keys.before,
          job_runs_deleted: runs.rowCount,
          webhook_deliveries_deleted: hooks,
        };
      },
    },
    {
      name: "sync-stripe",
      schedule: d.config.TALLY_CRON_STRIPE,
      run: async () => ({ ...(await stripe.run()) }),
    },
  ];
}
