// Reconciliation: per customer and meter, Tally's total over the customer's own billing period beside what the
// ledger says Stripe received for that period (whole units ÷ stripe_scale), the difference, and a status; pairs
// without a Stripe mapping are listed too. Customers are grouped by identical periods: each is read once.
import type { BillingPeriod } from "../billing/calendar.js";
import { buildStatement } from "../billing/statement.js";
import { calendarOf } from "../billing/subscriptions.js";
import type { Aggregation, PeriodSelector } from "../catalog/schemas.js";
import type { Queryable } from "../db/types.js";
import { Dec, formatDecimal, formatMoney, minorUnits, sum } from "../pricing/money.js";
import { quantityOf, rangeTotals, type Totals } from "../rollups/totals.js";
import { CustomerPeriods, groupByPeriod, readGroup, UTC_MONTHS } from "./periods.js";
import { lastSendableSecond, windowStart } from "./rules.js";
import { HAS_WORK, sendable, sendableParams } from "./work.js";

export type ReconciliationStatus = "in_sync" | "pending" | "error" | "unmapped";

/** A customer and the billing period of it that a reconciliation covers. */
interface CustomerPeriod {
  customer: string;
  period: BillingPeriod;
}

export interface ReconciliationRow {
  customer: string;
  meter: string;
  /** The customer's billing period the row compares. */
  period: BillingPeriod;
  /** Tally's period quantity (the meter's aggregation over the customer's period). */
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
 * Per customer (one statement each): a meter's usage amount over the customer's period as the invoice shows it (base
 * fees left out: they are not sent), and the scale from minor units (10^digits of the currency).
 */
function periodAmounts(db: Queryable, now: Date) {
  const statements = new Map<string, ReturnType<typeof buildStatement>>();
  return async (customer: string, period: BillingPeriod, meter: string) => {
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

/**
 * What a reconciliation covers. With a customer: its period the selector names (404 when no period of it starts in
 * the month). Across customers: each customer's period that starts in the month (read in its cycle's time zone;
 * customers with none, a yearly cycle, are left out), contains the instant, or is in progress; labelled with the UTC
 * month the selector names.
 */
export async function reconciliationScope(
  db: Queryable,
  selector: PeriodSelector | undefined,
  now: Date,
  customer?: string,
): Promise<{ period: BillingPeriod; customers: CustomerPeriod[] }> {
  if (customer !== undefined) {
    const period = (await calendarOf(db, customer)).select(selector, now);
    return { period, customers: [{ customer, period }] };
  }
  const { rows } = await db.query<{ id: string }>("SELECT id FROM customers", []);
  const periods = await CustomerPeriods.load(
    db,
    rows.map((r) => r.id),
  );
  const customers: CustomerPeriod[] = [];
  for (const c of periods.customers) {
    const calendar = periods.calendar(c);
    const period =
      selector && "month" in selector
        ? calendar.periodStartingIn(selector.month)
        : calendar.periodContaining(selector?.at ?? now);
    if (period) customers.push({ customer: c, period });
  }
  // Labelled with the UTC month the selector names.
  return { period: UTC_MONTHS.select(selector, now), customers };
}

/** What the ledger holds for each (customer, meter) of the customers' periods, by keyOf. */
async function ledgerOfPeriods(db: Queryable, scope: CustomerPeriod[], now: Date): Promise<Map<string, LedgerAgg>> {
  const { rows } = await db.query<LedgerAgg>(
    `SELECT l.customer_id, l.meter, sum(l.sent_units)::text AS sent_units,
            count(*) FILTER (WHERE ${HAS_WORK} AND l.error_message IS NULL AND ${sendable(3)})::int AS pending,
            count(*) FILTER (WHERE l.error_message IS NOT NULL)::int AS errors,
            count(*) FILTER (WHERE ${HAS_WORK} AND l.error_message IS NULL AND NOT ${sendable(3)})::int AS stale,
            (json_agg(json_build_object('bucket', l.bucket, 'code', l.error_code, 'message', l.error_message)
                      ORDER BY l.bucket) FILTER (WHERE l.error_message IS NOT NULL))::text AS error_list
     FROM unnest($1::text[], $2::timestamptz[]) AS t(c, p)
     JOIN stripe_ledger l ON l.customer_id = t.c AND l.period = t.p
     JOIN stripe_pairs p ON p.customer_id = l.customer_id AND p.meter = l.meter AND p.kind = l.kind
     GROUP BY l.customer_id, l.meter`,
    [scope.map((s) => s.customer), scope.map((s) => s.period.start), ...sendableParams(now)],
  );
  return new Map(rows.map((l) => [keyOf(l.customer_id, l.meter), l]));
}

/** Tally's totals of each customer over its own period: one read per distinct period (or per customer of a few). */
async function totalsOfPeriods(db: Queryable, scope: CustomerPeriod[]): Promise<Map<string, Totals>> {
  const out = new Map<string, Totals>();
  for (const group of groupByPeriod(scope)) {
    const { start: from, end: to } = group.period;
    // One customer asked for: only its usage is read.
    const read = (customer: string | undefined) =>
      rangeTotals(db, { from, to, customer: scope.length === 1 ? scope[0]?.customer : customer });
    for (const t of await readGroup(group, scope.length, read)) out.set(keyOf(t.customer, t.meter), t);
  }
  return out;
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

/** The reconciliation rows of these customers, each over its own period, ordered by customer and meter. */
export async function reconcile(db: Queryable, scope: CustomerPeriod[], now: Date): Promise<ReconciliationRow[]> {
  const totalOf = await totalsOfPeriods(db, scope);
  const ledgerOf = await ledgerOfPeriods(db, scope, now);
  const meters = await db.query<MeterRow>(
    "SELECT key, aggregation, stripe_event_name, stripe_scale::text AS stripe_scale, stripe_value FROM meters",
    [],
  );
  const meterOf = new Map(meters.rows.map((m) => [m.key, m]));
  const periodOf = new Map(scope.map((s) => [s.customer, s.period]));
  const keys = new Map<string, { customer: string; meter: string }>();
  for (const t of totalOf.values()) keys.set(keyOf(t.customer, t.meter), { customer: t.customer, meter: t.meter });
  for (const l of ledgerOf.values())
    keys.set(keyOf(l.customer_id, l.meter), { customer: l.customer_id, meter: l.meter });
  const customerIds = [...new Set([...keys.values()].map((k) => k.customer))];
  const customers = await db.query<{ id: string; stripe_customer_id: string | null }>(
    "SELECT id, stripe_customer_id FROM customers WHERE id = ANY($1::text[])",
    [customerIds],
  );
  const stripeIdOf = new Map(customers.rows.map((c) => [c.id, c.stripe_customer_id]));
  const amountOf = periodAmounts(db, now);
  const out: ReconciliationRow[] = [];
  for (const [k, { customer, meter }] of [...keys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const m = meterOf.get(meter);
    const period = periodOf.get(customer);
    if (!m || !period) continue;
    // Amount meters compare Tally's priced usage amount with what Stripe received in minor units.
    const priced = m.stripe_value === "amount" ? await amountOf(customer, period, meter) : undefined;
    out.push(
      rowOf({
        customer,
        period,
        meter: m,
        total: totalOf.get(k),
        ledger: ledgerOf.get(k),
        priced,
        stripeCustomerId: stripeIdOf.get(customer) ?? null,
        now,
      }),
    );
  }
  return out;
}

/** One row: Tally's figure, what Stripe received, and where the period stands. */
function rowOf(o: {
  customer: string;
  period: BillingPeriod;
  meter: MeterRow;
  total: Totals | undefined;
  ledger: LedgerAgg | undefined;
  priced: { amount: Dec; currency: string | null; scale: Dec } | undefined;
  stripeCustomerId: string | null;
  now: Date;
}): ReconciliationRow {
  const { meter: m, total: t, ledger: l, priced, stripeCustomerId } = o;
  const quantity = priced ? priced.amount : new Dec(t ? quantityOf(t, m.aggregation) : "0");
  const scale = priced ? priced.scale : new Dec(m.stripe_scale);
  const currency = priced?.currency;
  const fmt = (d: Dec) => (currency ? formatMoney(d, currency) : formatDecimal(d));
  const sentUnits = new Dec(l?.sent_units ?? "0");
  const sent = sentUnits.div(scale).toDecimalPlaces(SENT_DECIMALS);
  const expected = quantity.times(scale);
  const errors = (
    l?.error_list ? (JSON.parse(l.error_list) as { bucket: string; code: string; message: string }[]) : []
  )
    .slice(0, 5)
    .map((e) => ({ ...e, bucket: new Date(e.bucket).toISOString() }));
  const apart = expected.minus(sentUnits).abs().gte(1);
  // A period whose last sendable second is out of Stripe's window can no longer be corrected.
  const closed = lastSendableSecond("period", o.period.start, o.period.end) < windowStart(o.now);
  const { status, note } = statusOf({ stripeCustomerId, eventName: m.stripe_event_name }, l, apart, closed);
  return {
    customer: o.customer,
    meter: m.key,
    period: o.period,
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
  };
}
