// Hourly usage charges of grouped prices (a price version with group_by): each combination of the grouped
// dimensions is priced on its own, by its override or the version's spec, exactly as the invoice prices it
// (pricing/invoice.ts), so a segment's charge at the end of an hour is the sum over its groups of each group's
// rounded lines for the group's quantity so far. Only the groups with usage in an hour are re-priced in that hour.
// A group's hours are stretches (pricing/running.ts) joined in time order; a unique_count meter's are the values first
// seen in the segment (and group) in each hour (rollups/firstSeen.ts), read per segment.
import type { Aggregation } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import { dimensionsObject } from "../dimensions/query.js";
import { priceInvoice } from "../pricing/invoice.js";
import { type Dec, ZERO } from "../pricing/money.js";
import { firstSeenStretch, joinStretches, quantityOfStretch, type Stretch, stretchOf } from "../pricing/running.js";
import type { Segment } from "../pricing/segments.js";
import { alignDown } from "../rollups/buckets.js";
import { firstSeenHours } from "../rollups/firstSeen.js";
import { runSeries } from "../rollups/series.js";
import { rangeTotals } from "../rollups/totals.js";

const HOUR = 3_600_000;

/** One group's usage over a stretch of time, as the meter's aggregation combines it. */
interface GroupFigure {
  /** JSON of `values`: the group's identity. */
  key: string;
  values: (string | null)[];
  figure: Stretch;
}

/** What a grouped read is keyed by: the meter and the version's group_by. */
const groupedKey = (meter: string, groupBy: readonly string[]) => `${meter}|${JSON.stringify(groupBy)}`;

/** The grouped figures of one customer: whole hours from the hourly series, cut hours from their own reads. */
export class GroupedHours {
  /** groupedKey → hour (epoch ms) → the groups with usage in that hour. */
  readonly #hours = new Map<string, Map<number, GroupFigure[]>>();
  /** groupedKey → "from/to" of a cut hour → its groups. */
  readonly #splits = new Map<string, Map<string, GroupFigure[]>>();

  /** Reads every grouped segment's figures over [from, to): one hourly read per (meter, group_by). */
  static async read(
    db: Queryable,
    customer: string,
    segments: readonly Segment[],
    from: Date,
    to: Date,
    aggregationOf: (meter: string) => Aggregation | undefined,
    partialHours: (s: Segment) => [Date, Date][],
  ): Promise<GroupedHours> {
    const out = new GroupedHours();
    for (const s of segments) {
      const groupBy = s.version.groupBy;
      const aggregation = aggregationOf(s.meter);
      // A unique_count meter's hours are first-seen counts of each segment (firstSeenSegments).
      if (!groupBy?.length || !aggregation || aggregation === "unique_count") continue;
      const key = groupedKey(s.meter, groupBy);
      if (!out.#hours.has(key)) {
        const rows = await runSeries(db, { granularity: "hour", from, to, customer, meter: s.meter, groupBy });
        const byHour = new Map<number, GroupFigure[]>();
        for (const r of rows) {
          const t = { sum: r.value_sum, count: r.event_count, max: r.value_max, min: r.value_min, last: r.last_value };
          const hour = new Date(r.bucket).getTime();
          byHour.set(hour, [...(byHour.get(hour) ?? []), figureOf(r.dimension_values, stretchOf(aggregation, t))]);
        }
        out.#hours.set(key, byHour);
        out.#splits.set(key, new Map());
      }
      const splits = out.#splits.get(key) as Map<string, GroupFigure[]>;
      for (const [a, b] of partialHours(s)) {
        const k = `${a.getTime()}/${b.getTime()}`;
        if (splits.has(k)) continue;
        const totals = await rangeTotals(db, { from: a, to: b, customer, meter: s.meter, groupBy });
        splits.set(
          k,
          totals.map((t) => figureOf(t.dimensionValues, stretchOf(aggregation, t))),
        );
      }
    }
    return out;
  }

  /** The segment's groups hour by hour, ascending: whole hours inside it, and its cut hours. */
  hoursOf(s: Segment, groupBy: readonly string[], partialHours: (s: Segment) => [Date, Date][]) {
    const key = groupedKey(s.meter, groupBy);
    const out: [number, GroupFigure[]][] = [];
    const cut = new Set<number>();
    for (const [from, to] of partialHours(s)) {
      const hour = alignDown(from, "hour").getTime();
      cut.add(hour);
      const groups = this.#splits.get(key)?.get(`${from.getTime()}/${to.getTime()}`);
      if (groups?.length) out.push([hour, groups]);
    }
    const start = s.start.getTime();
    const end = s.end.getTime();
    for (const [h, groups] of this.#hours.get(key) ?? []) {
      if (h >= start && h + HOUR <= end && !cut.has(h)) out.push([h, groups]);
    }
    return out.sort((a, b) => a[0] - b[0]);
  }
}

function figureOf(values: readonly (string | null)[] | undefined, figure: Stretch): GroupFigure {
  const v = [...(values ?? [])];
  return { key: JSON.stringify(v), values: v, figure };
}

/**
 * The hours of each segment of a unique_count meter (grouped or not; ungrouped: one group, no values): per hour, the
 * values seen in the segment — in its group — for the first time in that hour, cut hours at its ends included. Their
 * sum up to an hour is the segment's distinct count up to the end of that hour, what the invoice counts.
 */
export async function firstSeenSegments(
  db: Queryable,
  customer: string,
  segments: readonly Segment[],
  aggregationOf: (meter: string) => Aggregation | undefined,
): Promise<Map<Segment, [number, GroupFigure[]][]>> {
  const out = new Map<Segment, [number, GroupFigure[]][]>();
  for (const s of segments) {
    if (aggregationOf(s.meter) !== "unique_count") continue;
    const groupBy = s.version.groupBy ?? [];
    const rows = await firstSeenHours(db, { customer, meter: s.meter, from: s.start, to: s.end, groupBy });
    const hours: [number, GroupFigure[]][] = [];
    for (const r of rows) {
      const figure = figureOf(r.dimensionValues, firstSeenStretch(r.added));
      const last = hours.at(-1);
      if (last && last[0] === r.hour.getTime()) last[1].push(figure);
      else hours.push([r.hour.getTime(), [figure]]);
    }
    out.set(s, hours);
  }
  return out;
}

/** Prices one group of a grouped segment as the invoice does (its rounded lines), memoized. */
export class GroupPricer {
  readonly #memo = new Map<string, Dec>();
  constructor(private readonly max = 200_000) {}

  charge(currency: string, segment: Segment, group: GroupFigure, quantity: Dec): Dec {
    if (quantity.lte(0)) quantity = ZERO;
    const v = segment.version;
    const key = `${currency}|${segment.plan}|${segment.meter}|${v.effectiveFrom.getTime()}|${segment.trial ?? false}|${group.key}|${quantity.toFixed()}`;
    let amount = this.#memo.get(key);
    if (amount === undefined) {
      const dimensions = dimensionsObject(v.groupBy ?? [], group.values);
      const priced = [{ ...segment, quantity, groups: [{ dimensions, quantity }] }];
      const invoice = priceInvoice(currency, priced, [], undefined, { totalOnly: true });
      amount = invoice.lines.reduce((a, l) => (l.kind === "usage" ? a.plus(l.amount) : a), ZERO);
      if (this.#memo.size >= this.max) this.#memo.delete(this.#memo.keys().next().value as string);
      this.#memo.set(key, amount);
    }
    return amount;
  }
}

/**
 * A grouped segment's charge changes hour by hour (only the hours where it changed) and its charge at the end, each
 * group's stretches joined by the meter's aggregation.
 */
export function groupedSegmentCharges(
  currency: string,
  s: Segment,
  hours: [number, GroupFigure[]][],
  aggregation: Aggregation,
  pricer: GroupPricer,
): { changes: [number, Dec][]; total: Dec } {
  const quantities = new Map<string, Stretch>();
  const charged = new Map<string, Dec>();
  const changes: [number, Dec][] = [];
  for (const [hour, groups] of hours) {
    let change = ZERO;
    for (const g of groups) {
      const before = quantities.get(g.key);
      const q = before === undefined ? g.figure : joinStretches(aggregation, before, g.figure);
      quantities.set(g.key, q);
      const charge = pricer.charge(currency, s, g, quantityOfStretch(aggregation, q));
      change = change.plus(charge.minus(charged.get(g.key) ?? ZERO));
      charged.set(g.key, charge);
    }
    if (!change.isZero()) changes.push([hour, change]);
  }
  let total = ZERO;
  for (const c of charged.values()) total = total.plus(c);
  return { changes, total };
}
