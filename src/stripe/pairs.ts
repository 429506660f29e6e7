// Stripe pairs (customer, meter) and their mappings: a new, remapped or rescaled pair gets its targets backfilled
// from the start of the month of Stripe's 35-day window.
import type { Aggregation } from "../catalog/schemas.js";
import type { Db } from "../db/types.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { runSeries } from "../rollups/series.js";
import { amountMeters, backfillAmounts } from "./amountTargets.js";
import { windowStart } from "./rules.js";
import { hourTargets, mappedMeters, periodTargets, STRIPE_SCALE, trackedFrom, upsertTargets } from "./targets.js";
import { kindOf, type LedgerKind } from "./types.js";

const DAY_MS = 86_400_000;
/** Up to this many new pairs of one meter are backfilled one by one; more, by reading the meter's usage day by day. */
const PAIRWISE_BACKFILL_MAX = 20;

interface ChangedPair {
  customer_id: string;
  meter: string;
  stripe_customer_id: string;
  event_name: string;
  scale: string;
  aggregation: Aggregation;
  /** What is sent: quantities, or priced amounts in minor units (always as hourly deltas, scale 1). */
  value: "quantity" | "amount";
  old_value: string | null;
  known: boolean;
  old_customer: string | null;
  old_event: string | null;
  old_scale: string | null;
  old_kind: LedgerKind | null;
  backfilled: boolean | null;
}

export interface PairChanges {
  new: number;
  remapped: number;
  rescaled: number;
  backfilled: number;
  targets_backfilled: number;
}

/**
 * Compares every mapped (customer, meter) with the state it was last synced with. A new pair, or one whose
 * destination (Stripe customer, event name) or kind changed, gets its targets from the start of the month of
 * Stripe's 35-day window (older hours of that month become stale rows: reported, never sent); a changed destination
 * first resets what was sent inside the window, since the new destination has none of it. A changed scale re-sends
 * the window's rows at the new scale (the difference to what was sent).
 */
export async function syncPairs(db: Db, now: Date): Promise<PairChanges> {
  const changes: PairChanges = { new: 0, remapped: 0, rescaled: 0, backfilled: 0, targets_backfilled: 0 };
  const { rows } = await db.query<ChangedPair>(
    `SELECT cu.id AS customer_id, me.key AS meter, cu.stripe_customer_id, me.stripe_event_name AS event_name,
            (${STRIPE_SCALE})::text AS scale, me.aggregation, me.stripe_value AS value, p.value AS old_value,
            p.customer_id IS NOT NULL AS known, p.stripe_customer_id AS old_customer, p.event_name AS old_event,
            p.scale::text AS old_scale, p.kind AS old_kind, p.backfilled
     FROM customers cu CROSS JOIN meters me
     LEFT JOIN stripe_pairs p ON p.customer_id = cu.id AND p.meter = me.key
     WHERE cu.stripe_customer_id IS NOT NULL AND me.stripe_event_name IS NOT NULL
       AND (p.customer_id IS NULL OR NOT p.backfilled OR p.stripe_customer_id <> cu.stripe_customer_id
            OR p.event_name <> me.stripe_event_name OR p.scale <> (${STRIPE_SCALE}) OR p.value <> me.stripe_value
            OR p.kind <> CASE WHEN me.stripe_value = 'amount' OR me.aggregation IN ('sum', 'count') THEN 'hour'
                              ELSE 'period' END)`,
    [],
  );
  // A pair that lost its mapping misses the marks consumed meanwhile: when it is mapped again, it is backfilled.
  await db.query(
    `UPDATE stripe_pairs p SET backfilled = false, updated_at = now()
     WHERE p.backfilled AND NOT EXISTS (
       SELECT 1 FROM customers cu, meters me
       WHERE cu.id = p.customer_id AND me.key = p.meter
         AND cu.stripe_customer_id IS NOT NULL AND me.stripe_event_name IS NOT NULL)`,
    [],
  );
  if (rows.length === 0) return changes;
  const ws = windowStart(now);
  const remap: ChangedPair[] = [];
  const rescale: ChangedPair[] = [];
  const fill: ChangedPair[] = [];
  for (const r of rows) {
    // A switch between quantities and amounts changes what every sent unit means: like a new destination.
    const moved =
      r.known &&
      (r.old_customer !== r.stripe_customer_id ||
        r.old_event !== r.event_name ||
        r.old_kind !== pairKind(r) ||
        r.old_value !== r.value);
    if (!r.known) {
      changes.new += 1;
      fill.push(r);
    } else if (moved) {
      changes.remapped += 1;
      remap.push(r);
      fill.push(r);
    } else {
      if (r.old_scale !== null && r.old_scale !== r.scale) {
        changes.rescaled += 1;
        rescale.push(r);
      }
      if (!r.backfilled) fill.push(r);
    }
  }
  const columns = (list: ChangedPair[]) => [list.map((r) => r.customer_id), list.map((r) => r.meter)];
  const inWindow = `(CASE WHEN l.kind = 'hour' THEN l.bucket + INTERVAL '3599 seconds'
                     ELSE l.period + INTERVAL '1 month' - INTERVAL '1 second' END) >= $4`;
  await db.transaction(async (tx) => {
    if (remap.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET sent_units = 0, covered = 0, covered_scale = t.s, scale = t.s,
           pending_identifier = NULL, pending_units = NULL, pending_target = NULL, pending_scale = NULL,
           pending_timestamp = NULL, pending_since = NULL, attempts = 0, last_attempt_error = NULL,
           last_sent_timestamp = NULL, error_code = NULL, error_message = NULL, error_at = NULL, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(c, m, s)
         WHERE l.customer_id = t.c AND l.meter = t.m AND ${inWindow}`,
        [...columns(remap), remap.map((r) => r.scale), ws],
      );
      await tx.query(
        `DELETE FROM stripe_carry c USING unnest($1::text[], $2::text[]) AS t(c, m)
         WHERE c.customer_id = t.c AND c.meter = t.m AND c.period + INTERVAL '1 month' - INTERVAL '1 second' >= $3`,
        [...columns(remap), ws],
      );
    }
    if (rescale.length > 0) {
      await tx.query(
        `UPDATE stripe_ledger l SET scale = t.s, updated_at = now()
         FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(c, m, s)
         WHERE l.customer_id = t.c AND l.meter = t.m AND ${inWindow}`,
        [...columns(rescale), rescale.map((r) => r.scale), ws],
      );
    }
    const needsFill = new Set(fill.map((r) => `${r.customer_id}\u0000${r.meter}`));
    await tx.query(
      `INSERT INTO stripe_pairs (customer_id, meter, stripe_customer_id, event_name, scale, kind, backfilled, mapped_at,
                                 value)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::boolean[],
                            $8::timestamptz[], $9::text[])
       ON CONFLICT (customer_id, meter) DO UPDATE SET
         mapped_at = CASE WHEN stripe_pairs.stripe_customer_id = EXCLUDED.stripe_customer_id
                            AND stripe_pairs.event_name = EXCLUDED.event_name
                          THEN stripe_pairs.mapped_at ELSE EXCLUDED.mapped_at END,
         stripe_customer_id = EXCLUDED.stripe_customer_id, event_name = EXCLUDED.event_name, scale = EXCLUDED.scale,
         kind = EXCLUDED.kind, backfilled = EXCLUDED.backfilled, value = EXCLUDED.value, updated_at = now()`,
      [
        ...columns(rows),
        rows.map((r) => r.stripe_customer_id),
        rows.map((r) => r.event_name),
        rows.map((r) => r.scale),
        rows.map(pairKind),
        rows.map((r) => !needsFill.has(`${r.customer_id}\u0000${r.meter}`)),
        rows.map(() => now),
        rows.map((r) => r.value),
      ],
    );
  });
  if (fill.length > 0) {
    changes.targets_backfilled = await backfill(db, fill, now);
    await db.query(
      `UPDATE stripe_pairs p SET backfilled = true, updated_at = now()
       FROM unnest($1::text[], $2::text[]) AS t(c, m) WHERE p.customer_id = t.c AND p.meter = t.m`,
      columns(fill),
    );
    changes.backfilled = fill.length;
  }
  return changes;
}

/** Amount meters keep hourly deltas whatever their aggregation. */
const pairKind = (r: Pick<ChangedPair, "value" | "aggregation">): LedgerKind =>
  r.value === "amount" ? "hour" : kindOf(r.aggregation);

async function backfill(db: Db, pairs: ChangedPair[], now: Date): Promise<number> {
  const cut = alignDown(now, "hour");
  const from = trackedFrom(now);
  const meters = await mappedMeters(db);
  const amounts = await amountMeters(db);
  let amountTargets = 0;
  for (const p of pairs.filter((x) => x.value === "amount")) {
    const items = await backfillAmounts(db, amounts, { customer: p.customer_id, meter: p.meter }, from, cut);
    amountTargets += await upsertTargets(db, "hour", items);
  }
  const byMeter = new Map<string, ChangedPair[]>();
  for (const p of pairs) {
    const list = byMeter.get(p.meter);
    if (list) list.push(p);
    else byMeter.set(p.meter, [p]);
  }
  let written = amountTargets;
  for (const [meter, group] of byMeter) {
    const aggregation = meters.get(meter);
    if (!aggregation) continue;
    const customers = new Set(group.map((p) => p.customer_id));
    const keep = (c: string) => customers.has(c);
    const pairwise = group.length <= PAIRWISE_BACKFILL_MAX;
    if (kindOf(aggregation) === "hour") {
      if (pairwise) {
        for (const p of group) {
          const items = await hourTargets(db, meters, { from, to: cut, customer: p.customer_id, meter });
          written += await upsertTargets(db, "hour", items);
        }
      } else {
        // Many pairs at once (Stripe sync just switched on): the meter's days with usage of these customers first,
        // then their hours one day at a time, so memory stays bounded by a day of the meter's usage.
        const days = await runSeries(db, {
          granularity: "day",
          from,
          to: addBuckets(alignDown(cut, "day"), "day", 1),
          meter,
        });
        const used = [...new Set(days.filter((d) => keep(d.customer_id)).map((d) => d.bucket.getTime()))].sort();
        for (const start of used) {
          const to = new Date(Math.min(start + DAY_MS, cut.getTime()));
          written += await upsertTargets(
            db,
            "hour",
            await hourTargets(db, meters, { from: new Date(start), to, meter }, keep),
          );
        }
      }
      continue;
    }
    for (let month = from; month < cut; month = addBuckets(month, "month", 1)) {
      const end = addBuckets(month, "month", 1);
      const to = end < cut ? end : cut;
      const items = pairwise
        ? (
            await Promise.all(
              group.map((p) => periodTargets(db, meters, { month, to, customer: p.customer_id, meter })),
            )
          ).flat()
        : await periodTargets(db, meters, { month, to, meter }, keep);
      written += await upsertTargets(db, "period", items);
    }
  }
  return written;
}
