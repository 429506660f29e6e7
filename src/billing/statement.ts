// A customer's statement for a billing period: the one code path behind the summary, the invoice preview and
// money limits, so they can never disagree. Subscriptions and price versions split the period into segments
// (pricing/segments), each segment's quantity is the meter's aggregation over exactly that segment (rollups
// for whole hours, raw events for partial ones), and the pure pricing module turns them into lines.
import { listMeters, type Meter } from "../catalog/meters.js";
import type { Queryable } from "../db/types.js";
import { type Invoice, type MeterSummary, type PricedSegment, priceInvoice, summarize } from "../pricing/invoice.js";
import { Dec } from "../pricing/money.js";
import { type Period, planPeriod } from "../pricing/segments.js";
import { quantityOf, rangeTotals, type Totals } from "../rollups/totals.js";
import { groupQuantities } from "./groups.js";
import { loadPlanPrices } from "./plans.js";
import { subscriptionsBetween } from "./subscriptions.js";

export interface Statement {
  customer: string;
  period: Period;
  /** null when no subscription covers any part of the period. */
  currency: string | null;
  invoice: Invoice;
  meters: MeterSummary[];
  /** Every event acknowledged before this instant is counted. */
  asOf: Date;
}

export async function buildStatement(db: Queryable, customer: string, period: Period, now: Date): Promise<Statement> {
  const asOf = now;
  const subscriptions = await subscriptionsBetween(db, customer, period.start, period.end);
  const plans = await loadPlanPrices(
    db,
    subscriptions.map((s) => s.plan),
  );
  const currency = subscriptions.map((s) => plans.get(s.plan)?.currency).find((c) => c !== undefined) ?? null;
  const { segments, baseFees } = planPeriod(period, subscriptions, plans);

  // One totals read per distinct interval (usually just the period), for every meter of the customer at once.
  const intervals = new Map<string, Period>([[key(period), period]]);
  for (const s of segments) intervals.set(key(s), { start: s.start, end: s.end });
  const totalsOf = new Map<string, Map<string, Totals>>();
  for (const [k, interval] of intervals) {
    const totals = await rangeTotals(db, { from: interval.start, to: interval.end, customer });
    totalsOf.set(k, new Map(totals.map((t) => [t.meter, t])));
  }
  const meters = new Map((await listMeters(db)).map((m) => [m.key, m]));
  const quantity = (interval: Period, meter: string): Dec => {
    const t = totalsOf.get(key(interval))?.get(meter);
    const m = meters.get(meter);
    return t && m ? new Dec(quantityOf(t, m.aggregation)) : new Dec(0);
  };

  const priced: PricedSegment[] = segments.map((s) => ({ ...s, quantity: quantity(s, s.meter) }));
  const periodGroups = await groupQuantities(db, customer, period, priced, meters);
  const invoice = priceInvoice(currency ?? "USD", priced, baseFees, labels(meters));
  const periodQuantities = new Map(
    [...(totalsOf.get(key(period))?.keys() ?? [])].map((meter) => [meter, quantity(period, meter)]),
  );
  return {
    customer,
    period,
    currency,
    invoice: { ...invoice, currency: currency ?? invoice.currency },
    meters: summarize(invoice, priced, periodQuantities, periodGroups),
    asOf,
  };
}

const key = (p: Period) => `${p.start.toISOString()}/${p.end.toISOString()}`;

function labels(meters: Map<string, Meter>) {
  return new Map([...meters].map(([k, m]) => [k, { name: m.name, unit: m.unit }]));
}
