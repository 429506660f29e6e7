// Ledger targets of amount meters (stripe_value "amount"): for each (customer, meter, month) touched — by marked
// hours, or a new pair's backfill — the month's hourly amount changes (amounts.ts) become 'hour' rows in minor units
// (scale 1). Hours whose change is 0 get no row, unless one exists (its target then goes back to 0).
import type { Aggregation } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import { formatDecimal } from "../pricing/money.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { runSeries } from "../rollups/series.js";
import { monthAmounts } from "./amounts.js";

/** A ledger target, as targets.ts upserts them. */
interface Target {
  customer: string;
  meter: string;
  bucket: Date;
  period: Date;
  target: string;
}

/** Mapped meters whose priced amount is sent. */
export async function amountMeters(q: Queryable): Promise<Map<string, Aggregation>> {
  const { rows } = await q.query<{ key: string; aggregation: Aggregation }>(
    "SELECT key, aggregation FROM meters WHERE stripe_event_name IS NOT NULL AND stripe_value = 'amount'",
    [],
  );
  return new Map(rows.map((r) => [r.key, r.aggregation]));
}

/** Recomputes the months of these pairs up to `cut`: the targets to upsert (kind 'hour'). */
async function amountTargets(
  q: Queryable,
  meters: Map<string, Aggregation>,
  pairs: { customer: string; meter: string; month: Date }[],
  cut: Date,
): Promise<Target[]> {
  const items: Target[] = [];
  for (const { customer, meter, month } of pairs) {
    const aggregation = meters.get(meter);
    if (!aggregation) continue;
    const amounts = await monthAmounts(q, customer, { key: meter, aggregation }, month, cut);
    const { rows } = await q.query<{ bucket: Date }>(
      "SELECT bucket FROM stripe_ledger WHERE customer_id = $1 AND meter = $2 AND kind = 'hour' AND period = $3",
      [customer, meter, month],
    );
    const existing = new Set(rows.map((r) => r.bucket.getTime()));
    for (const [hour, delta] of amounts) {
      if (delta.isZero() && !existing.has(hour)) continue;
      items.push({ customer, meter, bucket: new Date(hour), period: month, target: formatDecimal(delta) });
    }
  }
  return items;
}

/** The (customer, amount meter, month) triples with usage in the marked hours, for mapped customers. */
export async function amountTargetsFromMarks(
  q: Queryable,
  ranges: { from: Date; to: Date }[],
  cut: Date,
): Promise<Target[]> {
  if (ranges.length === 0) return [];
  const meters = await amountMeters(q);
  if (meters.size === 0) return [];
  const touched = new Map<string, { customer: string; meter: string; month: Date }>();
  for (const meter of meters.keys()) {
    for (const range of ranges) {
      for (const r of await runSeries(q, { granularity: "hour", ...range, meter })) {
        const month = alignDown(r.bucket, "month");
        touched.set(`${r.customer_id}\u0000${meter}\u0000${month.getTime()}`, {
          customer: r.customer_id,
          meter,
          month,
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

/** A new (or remapped) amount pair: every month from `from` up to `cut`. */
export async function backfillAmounts(
  q: Queryable,
  meters: Map<string, Aggregation>,
  pair: { customer: string; meter: string },
  from: Date,
  cut: Date,
): Promise<Target[]> {
  const months: { customer: string; meter: string; month: Date }[] = [];
  for (let m = alignDown(from, "month"); m < cut; m = addBuckets(m, "month", 1)) months.push({ ...pair, month: m });
  return amountTargets(q, meters, months, cut);
}
