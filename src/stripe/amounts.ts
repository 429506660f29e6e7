// Stripe as amounts: a meter with stripe_value "amount" sends, per (customer, meter, hour), the change of its priced
// usage amount in the currency's minor units (so Stripe invoices exactly what Tally rated, whatever the grouping or
// tiers). The amount up to an instant t is what the statement's usage lines of the customer's billing period cut at t
// add up to — segments, versions, groups, overrides, tiers and half-up rounding per line as on the invoice; base fees
// are not usage and are not sent. An hour's target is amount(end of hour) − amount(start of hour), so a period's
// targets add up to the invoice's usage amount. A change to a pair's period (a late event, a new price) recomputes
// that whole period in memory from one hourly read per segment; only targets that changed are written. Each group's
// hours are joined as stretches (pricing/running.ts): min, avg (the sum ÷ count so far) and the rest equal the
// invoice's figure of the segment so far at every hour; a unique_count meter's hours are the values first seen in
// the segment (and group) in each hour (rollups/firstSeen.ts), so they add up to its distinct count.
import type { BillingPeriod } from "../billing/calendar.js";
import { loadPlanPrices } from "../billing/plans.js";
import { subscriptionsBetween } from "../billing/subscriptions.js";
import type { Aggregation } from "../catalog/schemas.js";
import { readAll } from "../db/reads.js";
import type { Queryable } from "../db/types.js";
import { dimensionsObject } from "../dimensions/query.js";
import type { Dimensions } from "../dimensions/values.js";
import { type PricedSegment, priceInvoice } from "../pricing/invoice.js";
import { Dec, minorUnits, sum, ZERO } from "../pricing/money.js";
import { firstSeenStretch, joinStretches, quantityOfStretch, type Stretch, stretchOf } from "../pricing/running.js";
import { planPeriod, type Segment } from "../pricing/segments.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { firstSeenHours } from "../rollups/firstSeen.js";
import { runSeries } from "../rollups/series.js";
import { rangeTotals } from "../rollups/totals.js";

const HOUR_MS = 3_600_000;

/** One group's usage over a stretch of time (an hour, or part of one). */
interface GroupRow {
  dims: Dimensions;
  row: Stretch;
}
/** One group's usage of the segment so far. */
interface Acc {
  dims: Dimensions;
  so: Stretch;
}

/**
 * One segment's usage up to `upTo`: the partial hour at its start, its whole hours (by hour start), and the partial
 * hour at its end (counted once the hour that holds it is over), each per group of its version's group_by.
 */
interface SegmentUsage {
  segment: Segment;
  head: GroupRow[];
  hours: Map<number, GroupRow[]>;
  tail: GroupRow[];
  tailHour: number;
}

async function partial(
  db: Queryable,
  customer: string,
  s: Segment,
  aggregation: Aggregation,
  [from, to]: [Date, Date],
): Promise<GroupRow[]> {
  if (from >= to) return [];
  const groupBy = s.version.groupBy ?? [];
  const totals = await rangeTotals(db, { from, to, customer, meter: s.meter, groupBy });
  return totals.map((t) => ({ dims: dimensionsObject(groupBy, t.dimensionValues), row: stretchOf(aggregation, t) }));
}

/** A unique_count segment up to `upTo`: the values first seen in it (per group) in each hour, cut hours included. */
async function firstSeenUsage(db: Queryable, customer: string, s: Segment, upTo: Date): Promise<SegmentUsage> {
  const groupBy = s.version.groupBy ?? [];
  const to = s.end < upTo ? s.end : upTo;
  const hours = new Map<number, GroupRow[]>();
  for (const r of await firstSeenHours(db, { customer, meter: s.meter, from: s.start, to, groupBy })) {
    const list = hours.get(r.hour.getTime()) ?? [];
    list.push({ dims: dimensionsObject(groupBy, r.dimensionValues), row: firstSeenStretch(r.added) });
    hours.set(r.hour.getTime(), list);
  }
  return { segment: s, head: [], hours, tail: [], tailHour: Number.NaN };
}

async function segmentUsage(
  db: Queryable,
  customer: string,
  s: Segment,
  aggregation: Aggregation,
  upTo: Date,
): Promise<SegmentUsage> {
  if (aggregation === "unique_count") return firstSeenUsage(db, customer, s, upTo);
  const groupBy = s.version.groupBy ?? [];
  const firstHour = addBuckets(alignDown(new Date(s.start.getTime() - 1), "hour"), "hour", 1);
  const endHour = alignDown(s.end, "hour");
  const sameHour = firstHour > endHour;
  const wholeTo = endHour < upTo ? endHour : upTo;
  const hours = new Map<number, GroupRow[]>();
  if (firstHour < wholeTo) {
    const rows = await runSeries(db, {
      granularity: "hour",
      from: firstHour,
      to: wholeTo,
      customer,
      meter: s.meter,
      groupBy,
    });
    for (const r of rows) {
      const list = hours.get(r.bucket.getTime()) ?? [];
      const t = { sum: r.value_sum, count: r.event_count, max: r.value_max, min: r.value_min, last: r.last_value };
      list.push({ dims: dimensionsObject(groupBy, r.dimension_values), row: stretchOf(aggregation, t) });
      hours.set(r.bucket.getTime(), list);
    }
  }
  const hasTail = !sameHour && s.end > endHour && endHour < upTo;
  return {
    segment: s,
    head: await partial(db, customer, s, aggregation, [s.start, sameHour ? s.end : firstHour]),
    hours,
    tail: hasTail ? await partial(db, customer, s, aggregation, [endHour, s.end]) : [],
    tailHour: endHour.getTime(),
  };
}

/**
 * The amount targets of one (customer, meter) for every hour of the customer's billing period `period` before `cut`
 * (the last complete hour), in the currency's minor units, by hour start. Empty without a subscription (nothing is
 * priced).
 */
export async function periodAmounts(
  db: Queryable,
  customer: string,
  meter: { key: string; aggregation: Aggregation },
  period: BillingPeriod,
  cut: Date,
): Promise<Map<number, Dec>> {
  const upTo = cut < period.end ? alignDown(cut, "hour") : period.end;
  const out = new Map<number, Dec>();
  if (upTo <= period.start) return out;
  const subscriptions = await subscriptionsBetween(db, customer, period.start, period.end);
  const plans = await loadPlanPrices(
    db,
    subscriptions.map((s) => s.plan),
  );
  const currency = subscriptions.map((s) => plans.get(s.plan)?.currency).find((c) => c !== undefined);
  if (!currency) return out;
  const scale = new Dec(10).pow(minorUnits(currency));
  const segments = planPeriod(period, subscriptions, plans).segments.filter(
    (s) => s.meter === meter.key && s.start < upTo,
  );
  const usage = await readAll(
    db,
    segments.map((s) => () => segmentUsage(db, customer, s, meter.aggregation, upTo)),
  );
  const running = usage.map(() => new Map<string, Acc>());
  const fold = (i: number, rows: GroupRow[]) => {
    const groups = running[i] as Map<string, Acc>;
    for (const { dims, row } of rows) {
      const k = JSON.stringify(Object.values(dims));
      const acc = groups.get(k);
      if (acc) acc.so = joinStretches(meter.aggregation, acc.so, row);
      else groups.set(k, { dims, so: row });
    }
  };
  usage.forEach((u, i) => {
    fold(i, u.head);
  });
  const amountAt = (t: Date): Dec => {
    const priced: PricedSegment[] = [];
    usage.forEach((u, i) => {
      if (u.segment.start >= t) return;
      const groups = [...(running[i]?.values() ?? [])];
      const grouped = (u.segment.version.groupBy ?? []).length > 0;
      priced.push({
        ...u.segment,
        end: u.segment.end < t ? u.segment.end : t,
        // Ungrouped, the read had no dimension columns: one group holds the whole segment.
        quantity: !grouped && groups[0] ? quantityOfStretch(meter.aggregation, groups[0].so) : ZERO,
        ...(grouped
          ? {
              groups: groups.map((g) => ({ dimensions: g.dims, quantity: quantityOfStretch(meter.aggregation, g.so) })),
            }
          : {}),
      });
    });
    const lines = priceInvoice(currency, priced, []).lines.filter((l) => l.kind === "usage");
    return sum(lines.map((l) => l.amount)).times(scale);
  };
  let previous = ZERO;
  for (let h = period.start.getTime(); h < upTo.getTime(); h += HOUR_MS) {
    usage.forEach((u, i) => {
      const rows = u.hours.get(h);
      if (rows) fold(i, rows);
      if (u.tailHour === h) fold(i, u.tail);
    });
    const amount = amountAt(new Date(h + HOUR_MS));
    out.set(h, amount.minus(previous));
    previous = amount;
  }
  return out;
}
