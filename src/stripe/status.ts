// Where the Stripe sync stands: its persistent state (install id, recent request times) and the ledger's backlog.
import type { Queryable } from "../db/types.js";
import { HAS_WORK, sendable, sendableParams } from "./work.js";

export async function readSyncState(db: Queryable): Promise<{ installId: string; recentRequests: number[] }> {
  const { rows } = await db.query<{ install_id: string; recent_requests: number[] }>(
    "SELECT install_id, recent_requests FROM stripe_sync_state",
    [],
  );
  if (!rows[0]) throw new Error("stripe_sync_state is empty (migration 0008 not applied?)");
  return { installId: rows[0].install_id, recentRequests: rows[0].recent_requests.map(Number) };
}

export async function saveRecentRequests(db: Queryable, endedAt: number[]): Promise<void> {
  await db.query("UPDATE stripe_sync_state SET recent_requests = $1::float8[]", [endedAt]);
}

export interface LedgerState {
  pending: number;
  errors: number;
  stale: number;
  stale_buckets: { customer: string; meter: string; bucket: string }[];
}

/**
 * Where the ledger stands for mapped pairs: rows still to deliver, in error, and too old for Stripe — in the periods
 * the ledger still tracks, those overlapping Stripe's window (rules.ts isTracked; older periods keep their status in
 * the reconciliation).
 */
export async function ledgerState(db: Queryable, now: Date): Promise<LedgerState> {
  const { rows } = await db.query<{ pending: string; errors: string; stale: string; sample: string | null }>(
    `WITH work AS (
       SELECT l.*, ${sendable(1)} AS sendable
       FROM stripe_ledger l
       JOIN stripe_pairs p ON p.customer_id = l.customer_id AND p.meter = l.meter AND p.kind = l.kind
       WHERE ${HAS_WORK} AND l.period_end > $1
     )
     SELECT count(*) FILTER (WHERE error_message IS NULL AND sendable)::text AS pending,
            count(*) FILTER (WHERE error_message IS NOT NULL)::text AS errors,
            count(*) FILTER (WHERE error_message IS NULL AND NOT sendable)::text AS stale,
            (SELECT json_agg(s)::text FROM (
               SELECT customer_id AS customer, meter, bucket FROM work
               WHERE error_message IS NULL AND NOT sendable ORDER BY bucket DESC LIMIT 10) AS s) AS sample
     FROM work`,
    sendableParams(now),
  );
  const r = rows[0];
  const sample = r?.sample ? (JSON.parse(r.sample) as { customer: string; meter: string; bucket: string }[]) : [];
  return {
    pending: Number(r?.pending ?? 0),
    errors: Number(r?.errors ?? 0),
    stale: Number(r?.stale ?? 0),
    stale_buckets: sample.map((s) => ({ ...s, bucket: new Date(s.bucket).toISOString() })),
  };
}
