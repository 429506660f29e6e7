// Reconciliation: per customer and meter, Tally's period total beside what the ledger says Stripe received for the
// period (whole units ÷ stripe_scale), the difference, and a status; pairs without a Stripe mapping are listed too.

import { buildStatement } from "../billing/statement.js";
import type { Aggregation } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import { Dec, formatDecimal, formatMoney, minorUnits, sum } from "../pricing/money.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";
import { firstSendable } from "./rules.js";
import { HAS_WORK, sendable, sendableParams } from "./work.js";

export type ReconciliationStatus = "in_sync" | "pending" | "error" | "unmapped";

export interface ReconciliationRow {
  customer: string;
  meter: string;
  /** Tally's period quantity (the meter's aggregation over the month). */
  quantity: string;
  /** What Stripe received for the period, in meter units. */
  sent: string;
  /** quantity − sent: positive when Stripe is missing usage. */
  difference: string;
  status: ReconciliationStatus;
  stripe_customer_id: string | null;
  stripe_event_name: string | null;
  stripe_scale: string;
  /** scale × quantity, and the whole units Stripe received. */
  expected_units: string;
  sent_units: string;
  /** Buckets of the period still to deliver, refused by Stripe (with its messages), and too old to send. */
  pending_buckets: number;
  error_buckets: number;
  stale_buckets: number;
  errors: { bucket: string; code: string; message: string }[];
  note?: string;
  /** Amount meters (stripe_value "amount"): the comparison is of priced amounts, in this currency. */
  unit?: "amount";
  currency?: string | null;
}

interface LedgerAgg {
  customer_id: string;
  meter: string;
  sent_units: string;
  pending: number;
  errors: number;
  stale: number;
  error_list: string | null;
}

/**
 * Per customer (one statement each): a meter's usage amount over the period as the invoice shows it (base fees
 * left out: they are not sent), and the scale from minor units (10^digits of the currency).
 */
function periodAmounts(db: Queryable, period: { start: Date; end: Date }, now: Date) {
  const statements = new Map<string, ReturnType<typeof buildStatement>>();
  return async (customer: string, meter: string) => {
    let st = statements.get(customer);
    if (!st) {
      st = buildStatement(db, customer, period, now < period.end ? now : period.end);
      statements.set(customer, st);
    }
    const { invoice, currency } = await st;
    const lines = invoice.lines.filter((l) => l.meter === meter && l.kind === "usage");
    return {
      amount: sum(lines.map((l) => l.amount)),
      currency,
      scale: new Dec(10).pow(currency ? minorUnits(currency) : 2),
    };
  };
}

/** Decimal places of `sent` when the scale does not divide the units exactly (a scale such as 3). */
const SENT_DECIMALS = 18;

interface MeterRow {
  key: string;
  aggregation: Aggregation;
  stripe_event_name: string | null;
  stripe_scale: string;
  stripe_value: "quantity" | "amount";
}

const keyOf = (c: string, m: string) => `${c}\u0000${m}`;

/** What the ledger holds for each (customer, meter) of the period, by keyOf. */
async function ledgerOfPeriod(db: Queryable, period: { start: Date }, now: Date): Promise<Map<string, LedgerAgg>> {
  const { rows } = await db.query<LedgerAgg>(
    `SELECT l.customer_id, l.meter, sum(l.sent_units)::text AS sent_units,
            count(*) FILTER (WHERE ${HAS_WORK} AND l.error_message IS NULL AND ${sendable(2)})::int AS pending,
            count(*) FILTER (WHERE l.error_message IS NOT NULL)::int AS errors,
            count(*) FILTER (WHERE ${HAS_WORK} AND l.error_message IS NULL AND NOT ${sendable(2)})::int AS stale,
            (json_agg(json_build_object('bucket', l.bucket, 'code', l.error_code, 'message', l.error_message)
                      ORDER BY l.bucket) FILTER (WHERE l.error_message IS NOT NULL))::text AS error_list
     FROM stripe_ledger l
     JOIN stripe_pairs p ON p.customer_id = l.customer_id AND p.meter = l.meter AND p.kind = l.kind
     WHERE l.period = $1
     GROUP BY l.customer_id, l.meter`,
    [period.start, ...sendableParams(now)],
  );
  return new Map(rows.map((l) => [keyOf(l.customer_id, l.meter), l]));
}

/** The status of a row (and why, where it needs saying). */
function statusOf(
  mapping: { stripeCustomerId: string | null; eventName: string | null },
  l: LedgerAgg | undefined,
  apart: boolean,
  closed: boolean,
): { status: ReconciliationStatus; note?: string } {
  if (!mapping.stripeCustomerId || !mapping.eventName) {
    const note = !mapping.stripeCustomerId
      ? "the customer has no stripe_customer_id"
      : "the meter has no stripe_event_name";
    return { status: "unmapped", note };
  }
  if ((l?.errors ?? 0) > 0 || (l?.stale ?? 0) > 0) {
    return (l?.stale ?? 0) > 0
      ? { status: "error", note: "usage older than Stripe's 35-day window was never sent" }
      : { status: "error" };
  }
  if ((l?.pending ?? 0) > 0) return { status: "pending" };
  if (!apart) return { status: "in_sync" };
  // Nothing queued, yet Stripe is a unit or more away: not yet synced (marks, the current hour), or too late.
  return closed
    ? { status: "error", note: "the period is older than Stripe's 35-day window; the difference can no longer be sent" }
    : { status: "pending" };
}

export async function reconcile(
  db: Queryable,
  period: { start: Date; end: Date },
  now: Date,
): Promise<ReconciliationRow[]> {
  const totals = await rangeTotals(db, { from: period.start, to: period.end });
  const ledgerOf = await ledgerOfPeriod(db, period, now);
  const meters = await db.query<MeterRow>(
    "SELECT key, aggregation, stripe_event_name, stripe_scale::text AS stripe_scale, stripe_value FROM meters",
    [],
  );
  const meterOf = new Map(meters.rows.map((m) => [m.key, m]));
  const keys = new Map<string, { customer: string; meter: string }>();
  for (const t of totals) keys.set(keyOf(t.customer, t.meter), { customer: t.customer, meter: t.meter });
  for (const l of ledgerOf.values())
    keys.set(keyOf(l.customer_id, l.meter), { customer: l.customer_id, meter: l.meter });
  const customerIds = [...new Set([...keys.values()].map((k) => k.customer))];
  const customers = await db.query<{ id: string; stripe_customer_id: string | null }>(
    "SELECT id, stripe_customer_id FROM customers WHERE id = ANY($1::text[])",
    [customerIds],
  );
  const stripeIdOf = new Map(customers.rows.map((c) => [c.id, c.stripe_customer_id]));
  const totalOf = new Map(totals.map((t) => [keyOf(t.customer, t.meter), t]));
  // A month whose last sendable second is out of Stripe's window can no longer be corrected.
  const closed = period.start < firstSendable(now).period;

  const amountOf = periodAmounts(db, period, now);
  const out: ReconciliationRow[] = [];
  for (const [k, { customer, meter }] of [...keys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const m = meterOf.get(meter);
    if (!m) continue;
    const t = totalOf.get(k);
    const l = ledgerOf.get(k);
    // Amount meters compare Tally's priced usage amount with what Stripe received in minor units.
    const priced = m.stripe_value === "amount" ? await amountOf(customer, meter) : undefined;
    const quantity = priced ? priced.amount : new Dec(t ? quantityOf(t, m.aggregation) : "0");
    const scale = priced ? priced.scale : new Dec(m.stripe_scale);
    const currency = priced?.currency;
    const fmt = (d: Dec) => (currency ? formatMoney(d, currency) : formatDecimal(d));
    const sentUnits = new Dec(l?.sent_units ?? "0");
    const sent = sentUnits.div(scale).toDecimalPlaces(SENT_DECIMALS);
    const expected = quantity.times(scale);
    const stripeCustomerId = stripeIdOf.get(customer) ?? null;
    const errors = (
      l?.error_list ? (JSON.parse(l.error_list) as { bucket: string; code: string; message: string }[]) : []
    )
      .slice(0, 5)
      .map((e) => ({ ...e, bucket: new Date(e.bucket).toISOString() }));
    const apart = expected.minus(sentUnits).abs().gte(1);
    const { status, note } = statusOf({ stripeCustomerId, eventName: m.stripe_event_name }, l, apart, closed);
    out.push({
      customer,
      meter,
      quantity: fmt(quantity),
      sent: fmt(sent),
      difference: fmt(quantity.minus(sent)),
      status,
      stripe_customer_id: stripeCustomerId,
      stripe_event_name: m.stripe_event_name,
      stripe_scale: formatDecimal(scale),
      expected_units: formatDecimal(expected),
      sent_units: formatDecimal(sentUnits),
      pending_buckets: l?.pending ?? 0,
      error_buckets: l?.errors ?? 0,
      stale_buckets: l?.stale ?? 0,
      errors,
      ...(note ? { note } : {}),
      ...(priced ? { unit: "amount" as const, currency: priced.currency } : {}),
    });
  }
  return out;
}
