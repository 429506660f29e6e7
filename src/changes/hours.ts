// Hours that changed: ingest marks every hour a committing batch touched, once for the rollups
// (rollup_invalidations, then rollup_claims while a refresh rebuilds them) and once for the Stripe sync
// (stripe_marks). This module owns those tables and their lock; rollups and stripe only call it.
//
// Ingest takes CHANGED_HOURS_LOCK shared while marking, as the last statement of its transaction; a claim takes it
// exclusive. So a claim waits for every transaction that marked before it to commit, and no event can commit into
// an hour after that hour's mark was claimed (and refreshed, or turned into Stripe targets) without marking it again.
import { type Db, lockId, type Queryable } from "../db/types.js";

const CHANGED_HOURS_LOCK = lockId("rollup-invalidations");

/** Marks the hours (epoch ms) of a committing batch, for the rollups and for the Stripe sync. Run it last. */
export async function markTouchedHours(tx: Queryable, hours: Iterable<number>): Promise<void> {
  const list = [...hours].map((h) => new Date(h));
  if (list.length === 0) return;
  await tx.query(
    `WITH held AS (SELECT pg_advisory_xact_lock_shared($2::bigint)),
          touched AS (SELECT h FROM unnest($1::timestamptz[]) AS h, held),
          stripe AS (INSERT INTO stripe_marks (hour) SELECT h FROM touched ON CONFLICT (hour) DO NOTHING)
     INSERT INTO rollup_invalidations (hour)
     SELECT h FROM touched
     ON CONFLICT (hour) DO NOTHING`,
    [list, CHANGED_HOURS_LOCK],
  );
}

/** The hours a refresh works on: every open claim, and which hours were marked again since the last claim. */
interface RollupClaims {
  claims: { id: string; hour: Date }[];
  /** Hours (epoch ms) that took events since the previous claim (marked, not only carried over from an open claim). */
  fresh: Set<number>;
}

/**
 * Moves the hours marked for the rollups into claims a refresh works on, and returns every open claim (those of
 * a run that crashed, or that a refresh left open, are taken over too). Release them with releaseRollupClaims once
 * the rollups of their hours are rebuilt.
 */
export async function claimRollupHours(db: Db): Promise<RollupClaims> {
  const moved = await db.transaction(async (tx) => {
    await tx.query("SET LOCAL lock_timeout = '30s'", []);
    await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [CHANGED_HOURS_LOCK]);
    const { rows } = await tx.query<{ hour: Date }>(
      `WITH moved AS (DELETE FROM rollup_invalidations RETURNING hour)
       INSERT INTO rollup_claims (claim_id, hour) SELECT nextval('rollup_claim_ids'), hour FROM moved RETURNING hour`,
      [],
    );
    return rows;
  });
  const { rows } = await db.query<{ claim_id: string; hour: Date }>(
    "SELECT claim_id::text, hour FROM rollup_claims",
    [],
  );
  return {
    claims: rows.map((r) => ({ id: r.claim_id, hour: new Date(r.hour) })),
    fresh: new Set(moved.map((r) => new Date(r.hour).getTime())),
  };
}

export async function releaseRollupClaims(db: Queryable, claimIds: string[]): Promise<void> {
  if (claimIds.length > 0) await db.query("DELETE FROM rollup_claims WHERE claim_id = ANY($1::bigint[])", [claimIds]);
}

/**
 * SQL for the hours in [$from, $to) whose rollups may be stale: marked and not yet claimed, or claimed by a
 * refresh that has not finished rebuilding them. Reads must not serve either from the rollups.
 */
export const staleHoursSql = (from: string, to: string) =>
  `SELECT hour FROM rollup_invalidations WHERE hour >= ${from} AND hour < ${to}
   UNION
   SELECT hour FROM rollup_claims WHERE hour >= ${from} AND hour < ${to}`;

/**
 * Takes the Stripe marks of the hours before `before` (ascending, epoch ms), inside the caller's transaction and
 * holding the lock exclusively until it commits: the targets it computes from them cannot miss an event.
 */
export async function takeStripeMarks(tx: Queryable, before: Date): Promise<number[]> {
  await tx.query("SET LOCAL lock_timeout = '30s'", []);
  await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [CHANGED_HOURS_LOCK]);
  const { rows } = await tx.query<{ hour: Date }>("DELETE FROM stripe_marks WHERE hour < $1 RETURNING hour", [before]);
  return rows.map((r) => r.hour.getTime()).sort((a, b) => a - b);
}
