// Stripe pairs (customer, meter) and their mappings: a new, remapped or rescaled pair gets its targets backfilled
// from the start of the customer's billing period that holds the start of Stripe's 35-day window.
import type { Aggregation } from "../catalog/schemas.js";
import type { Db, Queryable } from "../db/types.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { runSeries } from "../rollups/series.js";
import { amountMeters, backfillAmounts } from "./amountTargets.js";
import type { CustomerPeriods } from "./periods.js";
import { firstSendable } from "./rules.js";
import { groupTargets, hourTargets, mappedMeters, STRIPE_SCALE, upsertTargets } from "./targets.js";
import { LEDGER_KIND_TABLE, type LedgerKind, ledgerKind } from "./types.js";
import { bucketSendable, periodSendable } from "./work.js";

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
  /** The ledger kind the pair has now (ledgerKind of its aggregation and value). */
  kind: LedgerKind;
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

type Lists = { remap: ChangedPair[]; rescale: ChangedPair[]; fill: ChangedPair[] };

/**
 * Compares every mapped (customer, meter) with the state it was last synced with. A new pair, or one whose
 * destination (Stripe customer, event name) or kind changed, gets its targets from the start of the customer's
 * billing period that holds the start of Stripe's 35-day window (older hours of that period become stale rows:
 * reported, never sent); a changed destination first resets what was sent inside the window, since the new
 * destination has none of it. A changed scale re-sends the window's rows at the new scale (the difference to what
 * was sent).
 */
export async function syncPairs(db: Db, now: Date, periods: CustomerPeriods): Promise<PairChanges> {
  const changes: PairChanges = { new: 0, remapped: 0, rescaled: 0, backfilled: 0, targets_backfilled: 0 };
  const rows = await changedPairs(db);
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
  const lists = sortChanges(rows, changes);
  await db.transaction(async (tx) => {
    await resetWindow(tx, lists, now);
    await savePairs(tx, rows, lists.fill, now);
  });
  if (lists.fill.length > 0) {
    changes.targets_backfilled = await backfill(db, lists.fill, now, periods);
    await db.query(
      `UPDATE stripe_pairs p SET backfilled = true, updated_at = now()
       FROM unnest($1::text[], $2::text[]) AS t(c, m) WHERE p.customer_id = t.c AND p.meter = t.m`,
      columns(lists.fill),
    );
    changes.backfilled = lists.fill.length;
  }
  return changes;
}

/** Mapped pairs that are new, not backfilled, or whose destination, scale, value or ledger kind changed. */
async function changedPairs(db: Queryable): Promise<ChangedPair[]> {
  const { rows } = await db.query<ChangedPair>(
    `SELECT cu.id AS customer_id, me.key AS meter, cu.stripe_customer_id, me.stripe_event_name AS event_name,
            (${STRIPE_SCALE})::text AS scale, me.aggregation, me.stripe_value AS value, k.kind, p.value AS old_value,
            p.customer_id IS NOT NULL AS known, p.stripe_customer_id AS old_customer, p.event_name AS old_event,
            p.scale::text AS old_scale, p.kind AS old_kind, p.backfilled
     FROM customers cu CROSS JOIN meters me
     JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(value, aggregation, kind)
       ON k.value = me.stripe_value AND k.aggregation = me.aggregation
     LEFT JOIN stripe_pairs p ON p.customer_id = cu.id AND p.meter = me.key
     WHERE cu.stripe_customer_id IS NOT NULL AND me.stripe_event_name IS NOT NULL
       AND (p.customer_id IS NULL OR NOT p.backfilled OR p.stripe_customer_id <> cu.stripe_customer_id
            OR p.event_name <> me.stripe_event_name OR p.scale <> (${STRIPE_SCALE}) OR p.value <> me.stripe_value
            OR p.kind <> k.kind)`,
    LEDGER_KIND_TABLE,
  );
  return rows;
}

/** Counts the changes and sorts the pairs into those to reset, to rescale and to backfill. */
function sortChanges(rows: ChangedPair[], changes: PairChanges): Lists {
  const lists: Lists = { remap: [], rescale: [], fill: [] };
  for (const r of rows) {
    // A switch between quantities and amounts changes what every sent unit means: like a new destination.
    const moved =
      r.known &&
      (r.old_customer !== r.stripe_customer_id ||
        r.old_event !== r.event_name ||
        r.old_kind !== r.kind ||
        r.old_value !== r.value);
    if (!r.known) {
      changes.new += 1;
      lists.fill.push(r);
    } else if (moved) {
      changes.remapped += 1;
      lists.remap.push(r);
      lists.fill.push(r);
    } else {
      if (r.old_scale !== null && r.old_scale !== r.scale) {
        changes.rescaled += 1;
        lists.rescale.push(r);
      }
      if (!r.backfilled) lists.fill.push(r);
    }
  }
  return lists;
}

const columns = (list: ChangedPair[]) => [list.map((r) => r.customer_id), list.map((r) => r.meter)];

/** A new destination starts from nothing inside the window; a new scale re-sends the window's rows. */
async function resetWindow(tx: Queryable, { remap, rescale }: Lists, now: Date): Promise<void> {
  const first = firstSendable(now);
  if (remap.length > 0) {
    await tx.query(
      `UPDATE stripe_ledger l SET sent_units = 0, covered = 0, covered_scale = t.s, scale = t.s,
         pending_identifier = NULL, pending_units = NULL, pending_target = NULL, pending_scale = NULL,
         pending_timestamp = NULL, pending_since = NULL, attempts = 0, last_attempt_error = NULL,
         last_sent_timestamp = NULL, error_code = NULL, error_message = NULL, error_at = NULL, updated_at = now()
       FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(c, m, s)
       WHERE l.customer_id = t.c AND l.meter = t.m AND ${bucketSendable(4)}`,
      [...columns(remap), remap.map((r) => r.scale), first.hour],
    );
    // The carries of the periods whose rows were reset (a carry exists only beside its period's hour rows).
    await tx.query(
      `DELETE FROM stripe_carry c USING unnest($1::text[], $2::text[]) AS t(c, m)
       WHERE c.customer_id = t.c AND c.meter = t.m
         AND EXISTS (SELECT 1 FROM stripe_ledger l WHERE l.customer_id = c.customer_id AND l.meter = c.meter
                       AND l.period = c.period AND ${periodSendable(3)})`,
      [...columns(remap), first.hour],
    );
  }
  if (rescale.length > 0) {
    await tx.query(
      `UPDATE stripe_ledger l SET scale = t.s, updated_at = now()
       FROM unnest($1::text[], $2::text[], $3::numeric[]) AS t(c, m, s)
       WHERE l.customer_id = t.c AND l.meter = t.m AND ${bucketSendable(4)}`,
      [...columns(rescale), rescale.map((r) => r.scale), first.hour],
    );
  }
}

/** Records each changed pair's current state; those to backfill stay marked as not backfilled until done. */
async function savePairs(tx: Queryable, rows: ChangedPair[], fill: ChangedPair[], now: Date): Promise<void> {
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
      rows.map((r) => r.kind),
      rows.map((r) => !needsFill.has(`${r.customer_id}\u0000${r.meter}`)),
      rows.map(() => now),
      rows.map((r) => r.value),
    ],
  );
}

async function backfill(db: Db, pairs: ChangedPair[], now: Date, periods: CustomerPeriods): Promise<number> {
  const cut = alignDown(now, "hour");
  const from = (customer: string) => periods.trackedFrom(customer, now);
  const meters = await mappedMeters(db);
  const amounts = await amountMeters(db);
  let written = 0;
  for (const p of pairs.filter((x) => x.value === "amount")) {
    const pair = { customer: p.customer_id, meter: p.meter };
    const calendar = periods.calendar(p.customer_id);
    written += await upsertTargets(
      db,
      "hour",
      await backfillAmounts(db, amounts, pair, calendar, from(p.customer_id), cut),
      now,
    );
  }
  const byMeter = new Map<string, ChangedPair[]>();
  for (const p of pairs) {
    const list = byMeter.get(p.meter);
    if (list) list.push(p);
    else byMeter.set(p.meter, [p]);
  }
  for (const [meter, group] of byMeter) {
    const aggregation = meters.get(meter);
    if (!aggregation) continue;
    const customers = new Set(group.map((p) => p.customer_id));
    if (ledgerKind(aggregation, "quantity") === "hour") {
      written += await backfillHours(db, { meters, periods, meter, customers, cut, now });
      continue;
    }
    // Each distinct period of these customers is read once (customer by customer for a few).
    const groups = periods.groups(customers, from, cut);
    written += await upsertTargets(db, "period", await groupTargets(db, meters, periods, groups, cut, meter), now);
  }
  return written;
}

/** Hour targets of one meter's new pairs, from each customer's first tracked hour up to `cut`. */
async function backfillHours(
  db: Db,
  o: {
    meters: Map<string, Aggregation>;
    periods: CustomerPeriods;
    meter: string;
    customers: Set<string>;
    cut: Date;
    now: Date;
  },
): Promise<number> {
  const { meters, periods, meter, customers, cut, now } = o;
  let written = 0;
  if (customers.size <= PAIRWISE_BACKFILL_MAX) {
    for (const customer of customers) {
      const range = { from: periods.trackedFrom(customer, now), to: cut, customer, meter };
      written += await upsertTargets(db, "hour", await hourTargets(db, meters, periods, range), now);
    }
    return written;
  }
  // Many pairs at once (Stripe sync just switched on): the meter's days with usage of these customers first, then
  // their hours one day at a time, so memory stays bounded by a day of the meter's usage. Hours before a customer's
  // tracked period are left out by upsertTargets.
  const keep = (c: string) => customers.has(c);
  let from = cut;
  for (const c of customers) {
    const t = periods.trackedFrom(c, now);
    if (t < from) from = t;
  }
  const days = await runSeries(db, {
    granularity: "day",
    from: alignDown(from, "day"),
    to: addBuckets(alignDown(cut, "day"), "day", 1),
    meter,
  });
  const used = [...new Set(days.filter((d) => keep(d.customer_id)).map((d) => d.bucket.getTime()))].sort();
  for (const start of used) {
    const range = {
      from: new Date(Math.max(start, from.getTime())),
      to: new Date(Math.min(start + DAY_MS, cut.getTime())),
      meter,
    };
    written += await upsertTargets(db, "hour", await hourTargets(db, meters, periods, range, keep), now);
  }
  return written;
}
