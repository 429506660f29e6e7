// Stripe targets: the exact value of each hour (sum/count meters) or running value of each month (max/last)
// that Stripe should have, computed from the hours ingest marked.
import type { Aggregation } from "../catalog/schemas.js";
import { takeStripeMarks } from "../changes/hours.js";
import type { Db, Queryable } from "../db/types.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { runSeries } from "../rollups/series.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";
import { amountTargetsFromMarks } from "./amountTargets.js";
import { windowStart } from "./rules.js";
import { type LedgerKind, ledgerKind } from "./types.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

interface Target {
  customer: string;
  meter: string;
  bucket: Date;
  period: Date;
  target: string;
}

/** The scale a meter's ledger rows use: amounts are kept in minor units already (whole numbers). */
export const STRIPE_SCALE = "CASE WHEN me.stripe_value = 'amount' THEN 1 ELSE me.stripe_scale END";

/**
 * Creates or updates targets of mapped pairs (others are left out); an error is cleared when its target changes.
 * A period whose invoice is final gets no new targets: what changes after finalization reaches Stripe as the
 * adjustment's invoice item (stripe/invoiceItems), never again as meter events.
 */
export async function upsertTargets(q: Queryable, kind: LedgerKind, items: Target[]): Promise<number> {
  if (items.length === 0) return 0;
  const { rowCount } = await q.query(
    `INSERT INTO stripe_ledger (customer_id, meter, kind, bucket, period, target, scale, covered_scale)
     SELECT t.c, t.m, $1, t.b, t.p, t.v, ${STRIPE_SCALE}, ${STRIPE_SCALE}
     FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::numeric[]) AS t(c, m, b, p, v)
     JOIN customers cu ON cu.id = t.c AND cu.stripe_customer_id IS NOT NULL
     JOIN meters me ON me.key = t.m AND me.stripe_event_name IS NOT NULL
     WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE i.customer_id = t.c AND i.period_start = t.p AND i.status = 'final')
     ON CONFLICT (customer_id, meter, kind, bucket) DO UPDATE SET
       target = EXCLUDED.target, error_code = NULL, error_message = NULL, error_at = NULL, updated_at = now()
     WHERE stripe_ledger.target IS DISTINCT FROM EXCLUDED.target`,
    [
      kind,
      items.map((i) => i.customer),
      items.map((i) => i.meter),
      items.map((i) => i.bucket),
      items.map((i) => i.period),
      items.map((i) => i.target),
    ],
  );
  return rowCount;
}

/** Mapped meters whose quantities are sent (amount meters are in amountTargets.ts). */
export async function mappedMeters(q: Queryable): Promise<Map<string, Aggregation>> {
  const { rows } = await q.query<{ key: string; aggregation: Aggregation }>(
    "SELECT key, aggregation FROM meters WHERE stripe_event_name IS NOT NULL AND stripe_value = 'quantity'",
    [],
  );
  return new Map(rows.map((r) => [r.key, r.aggregation]));
}

/** Hour targets over [from, to) from the exact hourly series. */
export async function hourTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  range: { from: Date; to: Date; customer?: string; meter?: string },
  keep: (customer: string, meter: string) => boolean = () => true,
): Promise<Target[]> {
  const rows = await runSeries(q, { granularity: "hour", ...range });
  const out: Target[] = [];
  for (const r of rows) {
    const aggregation = meters.get(r.meter);
    if (!aggregation || ledgerKind(aggregation, "quantity") !== "hour" || !keep(r.customer_id, r.meter)) continue;
    out.push({
      customer: r.customer_id,
      meter: r.meter,
      bucket: r.bucket,
      period: alignDown(r.bucket, "month"),
      target: aggregation === "sum" ? r.value_sum : r.event_count,
    });
  }
  return out;
}

/** Running values of a month up to `to` (the last complete hour, or the month's end). */
export async function periodTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  range: { month: Date; to: Date; customer?: string; meter?: string },
  keep: (customer: string, meter: string) => boolean = () => true,
): Promise<Target[]> {
  const totals = await rangeTotals(q, {
    from: range.month,
    to: range.to,
    customer: range.customer,
    meter: range.meter,
  });
  const out: Target[] = [];
  for (const t of totals) {
    const aggregation = meters.get(t.meter);
    if (!aggregation || ledgerKind(aggregation, "quantity") !== "period" || !keep(t.customer, t.meter)) continue;
    out.push({
      customer: t.customer,
      meter: t.meter,
      bucket: range.month,
      period: range.month,
      target: quantityOf(t, aggregation),
    });
  }
  return out;
}

/** Splits sorted hour starts into contiguous ranges of at most a day each. */
function hourRanges(hours: number[]): { from: Date; to: Date }[] {
  const out: { from: Date; to: Date }[] = [];
  let start: number | undefined;
  let prev = 0;
  for (const h of hours) {
    if (start !== undefined && (h !== prev + HOUR_MS || h - start >= DAY_MS)) {
      out.push({ from: new Date(start), to: new Date(prev + HOUR_MS) });
      start = undefined;
    }
    start ??= h;
    prev = h;
  }
  if (start !== undefined) out.push({ from: new Date(start), to: new Date(prev + HOUR_MS) });
  return out;
}

/**
 * Turns the marks of complete hours into targets: the exact value of each marked hour (sum/count meters) and the
 * running value of each marked month (max/last meters), for mapped pairs. Runs holding the invalidation lock
 * exclusively, which every marking ingest transaction holds shared until it commits: an event committed into an
 * hour after its mark was taken marks it again, so no change is missed.
 */
export async function targetsFromMarks(db: Db, now: Date): Promise<{ marked_hours: number; targets_updated: number }> {
  const cut = alignDown(now, "hour");
  return db.transaction(async (tx) => {
    const marked = await takeStripeMarks(tx, cut);
    // The ledger starts at the month of Stripe's window, as backfills do: older hours can never be sent, and their
    // months show the difference in the reconciliation.
    const horizon = trackedFrom(now).getTime();
    const hours = marked.filter((h) => h >= horizon);
    const meters = await mappedMeters(tx);
    // Amount meters: the months of the pairs with usage in the marked hours are recomputed (amountTargets.ts).
    let updated = await upsertTargets(tx, "hour", await amountTargetsFromMarks(tx, hourRanges(hours), cut));
    if (hours.length === 0 || meters.size === 0) return { marked_hours: hours.length, targets_updated: updated };
    const kinds = new Set([...meters.values()].map((a) => ledgerKind(a, "quantity")));
    if (kinds.has("hour")) {
      for (const range of hourRanges(hours))
        updated += await upsertTargets(tx, "hour", await hourTargets(tx, meters, range));
    }
    if (kinds.has("period")) {
      const months = [...new Set(hours.map((h) => alignDown(new Date(h), "month").getTime()))].map((t) => new Date(t));
      for (const month of months) {
        const end = addBuckets(month, "month", 1);
        const to = end < cut ? end : cut;
        updated += await upsertTargets(tx, "period", await periodTargets(tx, meters, { month, to }));
      }
    }
    return { marked_hours: hours.length, targets_updated: updated };
  });
}

/** The first hour the ledger tracks: the start of the month in which Stripe's 35-day window begins. */
export const trackedFrom = (now: Date): Date => alignDown(windowStart(now), "month");
