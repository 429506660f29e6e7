// The prune-expired job: what Tally keeps only for a while goes when its time is up — dedupe keys after the dedupe
// window (the key store's upkeep: a daily rotation of its hot table, whose merge into the cold tier leaves the
// expired keys out; ingest/rotate.ts), the record of job runs after 7 days, finished webhook deliveries and their
// attempts after 30 days (pending ones stay until delivered, or given up after 24 hours), and the dimension guard's
// combinations of months no event can arrive for any more, and portal tokens a day after they expired.
import { pruneExpiredTokens } from "../auth/portalTokens.js";
import type { Db } from "../db/types.js";
import { pruneDimensionUsage } from "../dimensions/prune.js";
import { maintainKeys } from "../ingest/rotate.js";
import { pruneDeliveries } from "../webhooks/outbox.js";
import { pruneJobRuns } from "./runner.js";

const DAY_MS = 86_400_000;

export async function pruneExpired(
  db: Db,
  now: Date,
  dedupeWindowDays: number,
  eventMaxAgeDays = 35,
  dedupeHotMaxBytes?: number,
) {
  const keysBefore = new Date(now.getTime() - dedupeWindowDays * DAY_MS);
  return {
    dedupe_keys: await maintainKeys(db, now, { windowMs: dedupeWindowDays * DAY_MS, hotMaxBytes: dedupeHotMaxBytes }),
    dedupe_keys_before: keysBefore.toISOString(),
    job_runs_deleted: await pruneJobRuns(db, new Date(now.getTime() - 7 * DAY_MS)),
    webhook_deliveries_deleted: await pruneDeliveries(db, new Date(now.getTime() - 30 * DAY_MS)),
    dimension_combinations_deleted: await pruneDimensionUsage(db, new Date(now.getTime() - eventMaxAgeDays * DAY_MS)),
    portal_tokens_deleted: await pruneExpiredTokens(db, new Date(now.getTime() - DAY_MS)),
  };
}
