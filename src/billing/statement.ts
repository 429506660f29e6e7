// A customer's statement for a billing period: the one code path behind the summary, the invoice preview and
// money limits, so they can never disagree. Subscriptions and price versions split the period into segments
// (pricing/segments), each segment's quantity is the meter's aggregation over exactly that segment (rollups
// for whole hours, raw events for partial ones), and the pure pricing module turns them into lines.
import { listMeters, type Meter } from "../catalog/meters.js";
import { readAll } from "../db/reads.js";
import type { Queryable } from "../db/types.js";
import {
  type FixedSummary,
  type GroupQuantity,
  type Invoice,
  type MeterLabel,
  type MeterSummary,
  type PricedSegment,
  priceInvoice,
  summarize,
  summarizeFixed,
} from "../pricing/invoice.js";
import { Dec } from "../pricing/money.js";
import { type Fee, type Period, type PlanPrices, planPeriod, type SubscriptionSpan } from "../pricing/segments.js";
import { readState } from "../rollups/series.js";
import { quantityOf, rangeTotals, type Totals } from "../rollups/totals.js";
import { type GroupedRead, readGroups } from "./groups.js";
import { loadPlanPrices } from "./plans.js";
import { subscriptionsBetween } from "./subscriptions.js";

export interface Statement {
  customer: string;
  period: Period;
  /** null when no subscription covers any part of the period. */
  currency: string | null;
  invoice: Invoice;
  meters: MeterSummary[];
  /** Fixed charges (seats, licences): per charge its latest quantity and amount. */
  fixedCharges: FixedSummary[];
  /** The segments as priced (with their quantities) and the fees (base fees, fixed charges): what forecasts re-price. */
  segments: PricedSegment[];
  fees: Fee[];
  /** Every event acknowledged before this instant is counted. */
  asOf: Date;
}

/** What a statement is computed from: everything read from the database, nothing else. */
export interface StatementInputs {
  customer: string;
  period: Period;
  subscriptions: SubscriptionSpan[];
  plans: ReadonlyMap<string, PlanPrices>;
  meters: ReadonlyMap<string, Meter>;
  /** Totals per meter of the customer over an interval that statementIntervals asked for. */
  totals: (interval: Period) => ReadonlyMap<string, Totals> | undefined;
  /** Quantities per combination of `groupBy` of a meter over an interval that groupedReads asked for. */
  groups?: (interval: Period, meter: string, groupBy: readonly string[]) => GroupQuantity[] | undefined;
  /** planPeriod of these subscriptions and plans, when the caller made it already (once per subscription shape). */
  planned?: ReturnType<typeof planPeriod>;
}

export const groupedReadKey = (r: GroupedRead) => `${intervalKey(r.interval)}|${r.meter}|${r.groupBy.join(",")}`;

/**
 * The grouped reads a statement needs: each segment priced by a version with group_by, and the whole period by the
 * group_by of the meter's last such segment (the summary's groups).
 */
export function groupedReads(
  period: Period,
  subscriptions: SubscriptionSpan[],
  plans: ReadonlyMap<string, PlanPrices>,
): GroupedRead[] {
  const reads = new Map<string, GroupedRead>();
  const last = new Map<string, string[]>();
  for (const s of planPeriod(period, subscriptions, plans).segments) {
    const groupBy = s.version.groupBy;
    if (!groupBy?.length) continue;
    const r = { interval: { start: s.start, end: s.end }, meter: s.meter, groupBy: [...groupBy] };
    reads.set(groupedReadKey(r), r);
    last.set(s.meter, [...groupBy]);
  }
  for (const [meter, groupBy] of last) {
    const r = { interval: period, meter, groupBy };
    reads.set(groupedReadKey(r), r);
  }
  return [...reads.values()];
}

/** The intervals whose totals a statement needs: the period and each segment (usually just the period). */
export function statementIntervals(
  period: Period,
  subscriptions: SubscriptionSpan[],
  plans: ReadonlyMap<string, PlanPrices>,
): Period[] {
  const intervals = new Map<string, Period>([[intervalKey(period), period]]);
  for (const s of planPeriod(period, subscriptions, plans).segments)
    intervals.set(intervalKey(s), { start: s.start, end: s.end });
  return [...intervals.values()];
}

/**
 * Prices a statement from its inputs (pure): the same code for the invoice, the summary, simulations, forecasts.
 * `totalOnly` leaves line descriptions empty, the lines unsorted and the meters' summary out: a simulation needs
 * only the invoice's total, of thousands of customers.
 */
export function priceStatement(i: StatementInputs, asOf: Date, opts: { totalOnly?: boolean } = {}): Statement {
  const currency = i.subscriptions.map((s) => i.plans.get(s.plan)?.currency).find((c) => c !== undefined) ?? null;
  const { segments, fees } = i.planned ?? planPeriod(i.period, i.subscriptions, i.plans);
  const quantity = (interval: Period, meter: string): Dec => {
    const t = i.totals(interval)?.get(meter);
    const m = i.meters.get(meter);
    return t && m ? new Dec(quantityOf(t, m.aggregation)) : new Dec(0);
  };
  const priced: PricedSegment[] = segments.map((s) => {
    const groupBy = s.version.groupBy;
    const groups = groupBy?.length ? (i.groups?.(s, s.meter, groupBy) ?? []) : undefined;
    return { ...s, quantity: quantity(s, s.meter), ...(groups ? { groups } : {}) };
  });
  const invoice = priceInvoice(currency ?? "USD", priced, fees, labels(i.meters), opts);
  const meters = opts.totalOnly ? [] : meterSummaries(i, priced, invoice, quantity);
  return {
    customer: i.customer,
    period: i.period,
    currency,
    invoice: { ...invoice, currency: currency ?? invoice.currency },
    meters,
    fixedCharges: opts.totalOnly ? [] : summarizeFixed(invoice),
    segments: priced,
    fees,
    asOf,
  };
}

export async function buildStatement(db: Queryable, customer: string, period: Period, now: Date): Promise<Statement> {
  // What does not depend on the subscriptions is read with them (readAll: together through the pool, one after the
  // other in a transaction): the rollup state, once for the period (every interval read lies in it), and the meters.
  // Then one totals read per distinct interval (usually just the period) for every meter of the customer at once,
  // and one per grouped price, also together.
  const [subscriptions, state, meterList] = await readAll(db, [
    () => subscriptionsBetween(db, customer, period.start, period.end),
    () => readState(db, period.start, period.end),
    () => listMeters(db),
  ]);
  const plans = await loadPlanPrices(
    db,
    subscriptions.map((s) => s.plan),
  );
  const meters = new Map(meterList.map((m) => [m.key, m]));
  const intervals = statementIntervals(period, subscriptions, plans);
  const reads = groupedReads(period, subscriptions, plans);
  const [totals, groups] = await readAll(db, [
    () =>
      readAll(
        db,
        intervals.map((iv) => () => rangeTotals(db, { from: iv.start, to: iv.end, customer, state })),
      ),
    () =>
      readAll(
        db,
        reads.map((r) => () => readGroups(db, r, meters, customer, state)),
      ),
  ]);
  const totalsOf = new Map(
    intervals.map((iv, i) => [intervalKey(iv), new Map((totals[i] ?? []).map((t) => [t.meter, t]))]),
  );
  const grouped = new Map(reads.map((r, i) => [groupedReadKey(r), groups[i] ?? []]));
  return priceStatement(
    {
      customer,
      period,
      subscriptions,
      plans,
      meters,
      totals: (interval) => totalsOf.get(intervalKey(interval)),
      groups: (interval, meter, groupBy) => grouped.get(groupedReadKey({ interval, meter, groupBy: [...groupBy] })),
    },
    now,
  );
}

/** The summary of each meter: its period quantity (and groups), and its lines' amounts. */
function meterSummaries(
  i: StatementInputs,
  priced: PricedSegment[],
  invoice: Invoice,
  quantity: (interval: Period, meter: string) => Dec,
) {
  const periodGroups = new Map<string, GroupQuantity[]>();
  for (const s of priced) {
    const groupBy = s.version.groupBy;
    if (groupBy?.length) periodGroups.set(s.meter, i.groups?.(i.period, s.meter, groupBy) ?? []);
  }
  const periodQuantities = new Map(
    [...(i.totals(i.period)?.keys() ?? [])].map((meter) => [meter, quantity(i.period, meter)]),
  );
  return summarize(invoice, priced, periodQuantities, periodGroups);
}

export const intervalKey = (p: Period) => `${p.start.getTime()}/${p.end.getTime()}`;

/** Line labels of a set of meters, made once per set (a simulation prices thousands of statements with one). */
const labelCache = new WeakMap<ReadonlyMap<string, Meter>, Map<string, MeterLabel>>();
function labels(meters: ReadonlyMap<string, Meter>): Map<string, MeterLabel> {
  let found = labelCache.get(meters);
  if (!found) {
    found = new Map([...meters].map(([k, m]) => [k, { name: m.name, unit: m.unit }]));
    labelCache.set(meters, found);
  }
  return found;
}
