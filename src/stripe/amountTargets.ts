// Ledger targets of amount meters (stripe_value "amount"): for each (customer, meter, billing period of the customer)
// touched — by marked hours, or a new pair's backfill — the period's hourly amount changes (amounts.ts) become 'hour'
// rows in minor units (scale 1). Hours whose change is 0 get no row, unless one exists (its target then goes back
// to 0).
import type { BillingCalendar, BillingPeriod } from "../billing/calendar.js";
import type { Aggregation } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import { formatDecimal } from "../pricing/money.js";
import { runSeriesFigures } from "../rollups/series.js";
import { periodAmounts } from "./amounts.js";
import type { CustomerPeriods } from "./periods.js";
import type { Target } from "./targets.js";

type Touched = { customer: string; meter: string; period: BillingPeriod };

/** Mapped meters whose priced amount is sent. */
export async function amountMeters(q: Queryable): Promise<Map<string, Aggregation>> {
  const { rows } = await q.query<{ key: string; aggregation: Aggregation }>(
    "SELECT key, aggregation FROM meters WHERE stripe_event_name IS NOT NULL AND stripe_value = 'amount'",
    [],
  );
  return new Map(rows.map((r) => [r.key, r.aggregation]));
}

/** Recomputes the periods of these pairs up to `cut`: the targets to upsert (kind 'hour'). */
async function amountTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  pairs: Touched[],
  cut: Date,
): Promise<Target[]> {
  const items: Target[] = [];
  for (const { customer, meter, period } of pairs) {
    const aggregation = meters.get(meter);
    if (!aggregation) continue;
    const amounts = await periodAmounts(q, customer, { key: meter, aggregation }, period, cut);
    const { rows } = await q.query<{ bucket: Date }>(
      "SELECT bucket FROM stripe_ledger WHERE customer_id = $1 AND meter = $2 AND kind = 'hour' AND period = $3",
      [customer, meter, period.start],
    );
    const existing = new Set(rows.map((r) => r.bucket.getTime()));
    for (const [hour, delta] of amounts) {
      if (delta.isZero() && !existing.has(hour)) continue;
      items.push({ customer, meter, bucket: new Date(hour), period, target: formatDecimal(delta) });
    }
  }
  return items;
}

/** The (customer, amount meter, period of the customer) triples with usage in the marked hours, for mapped customers. */
export async function amountTargetsFromMarks(
  q: Queryable,
  ranges: { from: Date; to: Date }[],
  cut: Date,
  periods: CustomerPeriods,
): Promise<Target[]> {
  if (ranges.length === 0) return [];
  const meters = await amountMeters(q);
  if (meters.size === 0) return [];
  const touched = new Map<string, Touched>();
  for (const meter of meters.keys()) {
    for (const range of ranges) {
      // The event counts tell which hours have usage (a distinct count needs no read here).
      for (const r of await runSeriesFigures(q, { granularity: "hour", ...range, meter }, "count")) {
        const period = periods.periodOf(r.customer_id, r.bucket);
        touched.set(`${r.customer_id}\u0000${meter}\u0000${period.start.getTime()}`, {
          customer: r.customer_id,
          meter,
          period,
        });
      }
    }
  }
  if (touched.size === 0) return [];
  const mapped = await q.query<{ id: string }>(
    "SELECT id FROM customers WHERE id = ANY($1::text[]) AND stripe_customer_id IS NOT NULL",
    [[...new Set([...touched.values()].map((t) => t.customer))]],
  );
  const ids = new Set(mapped.rows.map((r) => r.id));
  const pairs = [...touched.values()].filter((t) => ids.has(t.customer));
  return amountTargets(q, meters, pairs, cut);
}

/** A new (or remapped) amount pair: every period of the customer's calendar from the one holding `from` up to `cut`. */
export async function backfillAmounts(
  q: Queryable,
  meters: Map<string, Aggregation>,
  pair: { customer: string; meter: string },
  calendar: BillingCalendar,
  from: Date,
  cut: Date,
): Promise<Target[]> {
  const touched: Touched[] = [];
  for (let p = calendar.periodContaining(from); p.start < cut; p = calendar.next(p))
    touched.push({ ...pair, period: p });
  return amountTargets(q, meters, touched, cut);
}
