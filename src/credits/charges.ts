// Hourly usage charges, the input of the burn-down: for each hour h of a period, the period's usage charges up to
// the end of h minus those up to the end of h − 1, per meter. "Usage charges up to the end of h" are the invoice's
// usage lines (never base fees) priced by the invoice's own code (planPeriod → priceInvoice, rounded per line)
// from each segment's quantity over the part of the segment before the end of h. So the increments of a period
// add up, to the cent, to the usage lines of its invoice read in the same snapshot.
//
// Quantities come from the hourly rollups (exact: series.ts serves dirty hours from raw events); an hour split by
// a segment boundary (a subscription or price version starting mid-hour) is read in its two parts. Hours are joined
// as stretches (pricing/running.ts), so min, avg (sum ÷ count of the stretch so far) and the rest are the segment's
// exact figure at every hour; a unique_count meter's hours are the values first seen in the segment in each hour
// (rollups/firstSeen.ts), which add up to the segment's distinct count as the invoice counts it.
import { loadPlanPrices } from "../billing/plans.js";
import { subscriptionsBetween } from "../billing/subscriptions.js";
import type { Aggregation } from "../catalog/schemas.js";
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { priceInvoice } from "../pricing/invoice.js";
import { Dec, minorUnits, ZERO } from "../pricing/money.js";
import { COMBINES_FROM, joinStretches, quantityOfStretch, type Stretch, stretchOf } from "../pricing/running.js";
import { type Period, planPeriod, type Segment } from "../pricing/segments.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import { prepareSeries } from "../rollups/series.js";
import { rangeTotals } from "../rollups/totals.js";
import type { ChargeIncrement } from "./burndown.js";
import { firstSeenSegments, GroupedHours, GroupPricer, groupedSegmentCharges } from "./groupCharges.js";

const HOUR = 3_600_000;

export interface PeriodPricing {
  period: Period;
  /** null: no subscription in the period (nothing is priced). */
  currency: string | null;
  segments: Segment[];
  /** Changes whenever anything that prices the period changes (plans, versions, subscriptions, aggregations). */
  fingerprint: string;
}

export interface PeriodCharges {
  pricing: PeriodPricing;
  increments: ChargeIncrement[];
  /** The period's usage charges per meter at the end of its last hour with usage (the invoice's usage lines). */
  totals: Map<string, Dec>;
}

/** How each period in [from, to) is priced; one read of subscriptions and plans for all of them. */
export async function periodPricings(
  db: Queryable,
  customer: string,
  periods: Period[],
  aggregationOf: (meter: string) => Aggregation | undefined,
): Promise<PeriodPricing[]> {
  const first = periods[0];
  const last = periods.at(-1);
  if (!first || !last) return [];
  const subscriptions = await subscriptionsBetween(db, customer, first.start, last.end);
  const plans = await loadPlanPrices(
    db,
    subscriptions.map((s) => s.plan),
  );
  return periods.map((period) => {
    const inPeriod = subscriptions.filter((s) => s.start < period.end && (s.end === null || s.end > period.start));
    const currency = inPeriod.map((s) => plans.get(s.plan)?.currency).find((c) => c !== undefined) ?? null;
    const { segments } = planPeriod(period, inPeriod, plans);
    const fingerprint = JSON.stringify([
      currency,
      segments.map((s) => [
        s.plan,
        s.meter,
        aggregationOf(s.meter) ?? null,
        s.version.effectiveFrom.getTime(),
        s.start.getTime(),
        s.end.getTime(),
        s.trial ?? false,
      ]),
    ]);
    return { period, currency, segments, fingerprint };
  });
}

/** Per meter, per hour (epoch ms): the hour as a stretch of the meter's aggregation (unique_count meters: none). */
type HourFigures = Map<string, Map<number, Stretch>>;

/** The series' column of each rolled-up figure. */
const SERIES_COLUMN = {
  sum: "value_sum",
  count: "event_count",
  max: "value_max",
  min: "value_min",
  last: "last_value",
};
/** The one figure a meter's hours combine from (COMBINES_FROM), per its aggregation; NULL for unique_count. */
const FIGURE_CASE = `CASE m.aggregation ${Object.entries(COMBINES_FROM)
  .map(([a, f]) => `WHEN '${a}' THEN s.${SERIES_COLUMN[f]}`)
  .join(" ")} END`;

/**
 * Hourly figures over [from, to) for one customer, from the exact hourly series (series.ts), reduced in the database
 * to what the burn-down needs: the hour (epoch ms), the one figure the meter's aggregation combines from and the
 * event count (an avg's divisor). Hourly distinct counts are not read: they do not add up.
 */
async function hourly(
  db: Queryable,
  customer: string,
  from: Date,
  to: Date,
  aggregationOf: (meter: string) => Aggregation | undefined,
): Promise<HourFigures> {
  const series = await prepareSeries(db, { granularity: "hour", from, to, customer, distinctCounts: false });
  // Thousands of hours: one JSON text.
  const rows = await jsonRows<[number, string, string | null, string]>(db, {
    cells: `extract(epoch FROM s.bucket) * 1000, s.meter, ${FIGURE_CASE}, s.event_count`,
    source: `(${series.text}) AS s JOIN meters m ON m.key = s.meter`,
    params: series.params,
  });
  const out: HourFigures = new Map();
  for (const [at, meter, figure, count] of rows) {
    const aggregation = aggregationOf(meter);
    if (!aggregation || aggregation === "unique_count" || figure === null) continue;
    const byHour = out.get(meter) ?? new Map<number, Stretch>();
    out.set(meter, byHour);
    byHour.set(at, { value: new Dec(figure), count: new Dec(count) });
  }
  return out;
}

/** Prices a segment's quantity as the invoice does (rounded lines), memoized: versions never change. */
export class SegmentPricer {
  readonly #memo = new Map<string, Dec>();
  /** Grouped prices: each group on its own. */
  readonly groups = new GroupPricer();
  constructor(private readonly max = 200_000) {}

  charge(currency: string, segment: Segment, quantity: Dec): Dec {
    if (quantity.lte(0)) quantity = ZERO;
    const key = `${currency}|${segment.plan}|${segment.meter}|${segment.version.effectiveFrom.getTime()}|${segment.trial ?? false}|${quantity.toFixed()}`;
    let amount = this.#memo.get(key);
    if (amount === undefined) {
      const invoice = priceInvoice(currency, [{ ...segment, quantity }], [], undefined, { totalOnly: true });
      amount = invoice.lines.reduce((a, l) => (l.kind === "usage" ? a.plus(l.amount) : a), ZERO);
      if (this.#memo.size >= this.max) this.#memo.delete(this.#memo.keys().next().value as string);
      this.#memo.set(key, amount);
    }
    return amount;
  }
}

/**
 * The hourly increments of each period's usage charges. `periods` are consecutive; the hourly figures are read
 * once for all of them.
 */
export async function periodCharges(
  db: Queryable,
  customer: string,
  pricings: PeriodPricing[],
  aggregationOf: (meter: string) => Aggregation | undefined,
  pricer: SegmentPricer,
): Promise<PeriodCharges[]> {
  const first = pricings[0];
  const last = pricings.at(-1);
  if (!first || !last) return [];
  const figures = await hourly(db, customer, first.period.start, last.period.end, aggregationOf);
  // Hours cut by a segment boundary: read each side from the events.
  const splits = new Map<string, Map<string, Stretch>>();
  for (const p of pricings) {
    for (const s of p.segments) {
      for (const [from, to] of partialHours(s)) {
        const k = `${from.getTime()}/${to.getTime()}`;
        if (splits.has(k)) continue;
        const totals = await rangeTotals(db, { from, to, customer });
        const byMeter = new Map<string, Stretch>();
        for (const t of totals) {
          const aggregation = aggregationOf(t.meter);
          if (aggregation && aggregation !== "unique_count") byMeter.set(t.meter, stretchOf(aggregation, t));
        }
        splits.set(k, byMeter);
      }
    }
  }
  const grouped = await GroupedHours.read(
    db,
    customer,
    pricings.flatMap((p) => p.segments),
    first.period.start,
    last.period.end,
    aggregationOf,
    partialHours,
  );
  const firsts = await firstSeenSegments(
    db,
    customer,
    pricings.flatMap((p) => p.segments),
    aggregationOf,
  );
  const usage: Usage = { figures, splits, grouped, firsts };
  return pricings.map((p) => chargesOf(p, usage, aggregationOf, pricer));
}

/** The parts of hours a segment does not fill: its first and last hour when it starts or ends mid-hour. */
function partialHours(s: Segment): [Date, Date][] {
  const firstFull = alignDown(s.start, "hour") < s.start ? addBuckets(alignDown(s.start, "hour"), "hour", 1) : s.start;
  const lastFull = alignDown(s.end, "hour");
  if (firstFull > lastFull) return [[s.start, s.end]];
  const out: [Date, Date][] = [];
  if (s.start < firstFull) out.push([s.start, firstFull]);
  if (lastFull < s.end) out.push([lastFull, s.end]);
  return out;
}

/** A customer's usage read for pricing its periods hour by hour. */
interface Usage {
  figures: HourFigures;
  /** "from/to" of a cut hour → its stretch per meter. */
  splits: Map<string, Map<string, Stretch>>;
  grouped: GroupedHours;
  /** The segments of unique_count meters: their first-seen hours. */
  firsts: Awaited<ReturnType<typeof firstSeenSegments>>;
}

function chargesOf(
  p: PeriodPricing,
  usage: Usage,
  aggregationOf: (meter: string) => Aggregation | undefined,
  pricer: SegmentPricer,
): PeriodCharges {
  const increments: ChargeIncrement[] = [];
  const totals = new Map<string, Dec>();
  const currency = p.currency;
  if (!currency) return { pricing: p, increments, totals };
  const scale = new Dec(10).pow(minorUnits(currency));
  const byMeter = new Map<string, Segment[]>();
  for (const s of p.segments) byMeter.set(s.meter, [...(byMeter.get(s.meter) ?? []), s]);
  for (const [meter, segments] of byMeter) {
    const aggregation = aggregationOf(meter);
    if (!aggregation) continue;
    // Per hour: the change of each segment's charge; a meter's charge is the sum over its segments.
    const changes = new Map<number, Dec>();
    for (const s of segments) {
      const groupBy = s.version.groupBy;
      const firstSeen = usage.firsts.get(s);
      if (groupBy?.length) {
        const hours = firstSeen ?? usage.grouped.hoursOf(s, groupBy, partialHours);
        const g = groupedSegmentCharges(currency, s, hours, aggregation, pricer.groups);
        for (const [hour, amount] of g.changes) changes.set(hour, (changes.get(hour) ?? ZERO).plus(amount));
        totals.set(meter, (totals.get(meter) ?? ZERO).plus(g.total));
        continue;
      }
      const hours = firstSeen
        ? firstSeen.flatMap(([hour, groups]) => groups.map((g): [number, Stretch] => [hour, g.figure]))
        : segmentHours(s, usage.figures.get(meter), usage.splits, meter);
      let q: Stretch | undefined;
      let charged = ZERO;
      for (const [hour, figure] of hours) {
        q = q === undefined ? figure : joinStretches(aggregation, q, figure);
        const charge = pricer.charge(currency, s, quantityOfStretch(aggregation, q));
        if (!charge.eq(charged)) changes.set(hour, (changes.get(hour) ?? ZERO).plus(charge.minus(charged)));
        charged = charge;
      }
      // No model charges for no usage, so a segment's charge starts at zero.
      totals.set(meter, (totals.get(meter) ?? ZERO).plus(charged));
    }
    for (const [hour, amount] of [...changes].sort((a, b) => a[0] - b[0])) {
      if (amount.isZero()) continue;
      increments.push({
        period: p.period.start.getTime(),
        hour,
        meter,
        currency,
        amount: BigInt(amount.times(scale).toFixed(0)),
      });
    }
  }
  return { pricing: p, increments, totals };
}

/** The segment's usage hour by hour, ascending: whole hours from the rollups, cut hours from their split reads. */
function segmentHours(
  s: Segment,
  hours: Map<number, Stretch> | undefined,
  splits: Map<string, Map<string, Stretch>>,
  meter: string,
): [number, Stretch][] {
  const out: [number, Stretch][] = [];
  const cut = new Set<number>();
  for (const [from, to] of partialHours(s)) {
    const hour = alignDown(from, "hour").getTime();
    cut.add(hour);
    const figure = splits.get(`${from.getTime()}/${to.getTime()}`)?.get(meter);
    if (figure) out.push([hour, figure]);
  }
  const start = s.start.getTime();
  const end = s.end.getTime();
  for (const [h, figure] of hours ?? []) if (h >= start && h + HOUR <= end && !cut.has(h)) out.push([h, figure]);
  return out.sort((a, b) => a[0] - b[0]);
}
