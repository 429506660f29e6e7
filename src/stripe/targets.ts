// Stripe targets: the exact value of each hour (sum/count meters) or the running value of each customer's billing
// period (max, last, min, avg, unique_count: the period's figure as the invoice reads it) that Stripe should have,
// computed from the hours ingest marked.
import type { BillingPeriod } from "../billing/calendar.js";
import type { Aggregation } from "../catalog/schemas.js";
import { takeStripeMarks } from "../changes/hours.js";
import type { Db, Queryable } from "../db/types.js";
import { alignDown } from "../rollups/buckets.js";
import { runSeries } from "../rollups/series.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";
import { amountTargetsFromMarks } from "./amountTargets.js";
import type { CustomerPeriods, PeriodGroup } from "./periods.js";
import { isTracked } from "./rules.js";
import { type LedgerKind, ledgerKind } from "./types.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** A ledger target: the value `bucket` should have, in the customer's billing period `period`. */
export interface Target {
  customer: string;
  meter: string;
  bucket: Date;
  period: BillingPeriod;
  target: string;
}

/** The scale a meter's ledger rows use: amounts are kept in minor units already (whole numbers). */
export const STRIPE_SCALE = "CASE WHEN me.stripe_value = 'amount' THEN 1 ELSE me.stripe_scale END";

/**
 * Creates or updates targets of mapped pairs (others are left out) in periods the ledger tracks at `now`; an error is
 * cleared when its target changes. A period whose invoice is final gets no new targets: what changes after
 * finalization reaches Stripe as the adjustment's invoice item (stripe/invoiceItems), never again as meter events.
 */
export async function upsertTargets(q: Queryable, kind: LedgerKind, all: Target[], now: Date): Promise<number> {
  const items = all.filter((i) => isTracked(i.period, now));
  if (items.length === 0) return 0;
  const { rowCount } = await q.query(
    `INSERT INTO stripe_ledger (customer_id, meter, kind, bucket, period, period_end, target, scale, covered_scale)
     SELECT t.c, t.m, $1, t.b, t.p, t.e, t.v, ${STRIPE_SCALE}, ${STRIPE_SCALE}
     FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::numeric[])
       AS t(c, m, b, p, e, v)
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
      items.map((i) => i.period.start),
      items.map((i) => i.period.end),
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

/** Hour targets over [from, to) from the exact hourly series, each in its customer's period. */
export async function hourTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  periods: CustomerPeriods,
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
      period: periods.periodOf(r.customer_id, r.bucket),
      target: aggregation === "sum" ? r.value_sum : r.event_count,
    });
  }
  return out;
}

/** Running values of a period up to `to` (the last complete hour, or the period's end). */
async function periodTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  range: { period: BillingPeriod; to: Date; customer?: string | undefined; meter?: string | undefined },
): Promise<Target[]> {
  const totals = await rangeTotals(q, {
    from: range.period.start,
    to: range.to,
    customer: range.customer,
    meter: range.meter,
  });
  const out: Target[] = [];
  for (const t of totals) {
    const aggregation = meters.get(t.meter);
    if (!aggregation || ledgerKind(aggregation, "quantity") !== "period") continue;
    out.push({
      customer: t.customer,
      meter: t.meter,
      bucket: range.period.start,
      period: range.period,
      target: quantityOf(t, aggregation),
    });
  }
  return out;
}

/**
 * The running values of each group's period up to `cut`, for its customers (of one meter, or all): a group is read
 * once whatever its number of customers, or customer by customer when it is small.
 */
export async function groupTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  periods: CustomerPeriods,
  groups: PeriodGroup[],
  cut: Date,
  meter?: string,
): Promise<Target[]> {
  const out: Target[] = [];
  for (const group of groups) {
    const { period } = group;
    const to = period.end < cut ? period.end : cut;
    if (to <= period.start) continue;
    out.push(
      ...(await periods.readGroup(group, (customer) => periodTargets(q, meters, { period, to, customer, meter }))),
    );
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
 * running value of each customer's period holding a marked hour (max, last, min, avg and unique_count meters), for
 * mapped pairs. Runs holding the invalidation lock exclusively, which every marking ingest transaction holds shared
 * until it commits: an event committed into an hour after its mark was taken marks it again, so no change is missed.
 */
export async function targetsFromMarks(
  db: Db,
  now: Date,
  periods: CustomerPeriods,
): Promise<{ marked_hours: number; targets_updated: number }> {
  const cut = alignDown(now, "hour");
  return db.transaction(async (tx) => {
    const marked = await takeStripeMarks(tx, cut);
    // The ledger starts at the period holding the start of Stripe's window, as backfills do: older hours can never be
    // sent, and their periods show the difference in the reconciliation (upsertTargets keeps to each customer's).
    const horizon = periods.earliestTracked(now).getTime();
    const hours = marked.filter((h) => h >= horizon).sort((a, b) => a - b);
    const meters = await mappedMeters(tx);
    // Amount meters: the periods of the pairs with usage in the marked hours are recomputed (amountTargets.ts).
    const amounts = await amountTargetsFromMarks(tx, hourRanges(hours), cut, periods);
    let updated = await upsertTargets(tx, "hour", amounts, now);
    if (hours.length === 0 || meters.size === 0) return { marked_hours: hours.length, targets_updated: updated };
    const kinds = new Set([...meters.values()].map((a) => ledgerKind(a, "quantity")));
    if (kinds.has("hour")) {
      for (const range of hourRanges(hours))
        updated += await upsertTargets(tx, "hour", await hourTargets(tx, meters, periods, range), now);
    }
    if (kinds.has("period")) {
      const first = new Date(hours[0] as number);
      const groups = periods.groups(periods.customers, () => first, cut, hours);
      updated += await upsertTargets(tx, "period", await groupTargets(tx, meters, periods, groups, cut), now);
    }
    return { marked_hours: hours.length, targets_updated: updated };
  });
}
