// Customers' subscriptions: at most one in effect at any instant. Setting a new one ends the one in effect at
// its start and drops any that would only have started after it, in one transaction holding the customer row.
import { jsonRows } from "../db/jsonRows.js";
import type { Db, Queryable } from "../db/types.js";
import { notFound, unprocessable } from "../errors.js";
import { type BillingCycle, calendarMonths, type Interval, periodContaining, validateCycle } from "../periods/cycle.js";
import type { SubscriptionSpan } from "../pricing/segments.js";
import { BillingCalendar, defaultCycle } from "./calendar.js";

export interface Subscription extends SubscriptionSpan {
  id: string;
  cycle: BillingCycle;
}

/** What a request says of the cycle; what it leaves out takes its default (PRODUCT.md "Billing cycles"). */
interface CycleInput {
  interval?: Interval;
  intervalCount?: number;
  anchor?: Date;
  timeZone?: string;
}

interface Row {
  id: string;
  plan_key: string;
  start_at: Date;
  end_at: Date | null;
  billing_interval: Interval;
  billing_interval_count: number;
  billing_anchor: Date;
  billing_time_zone: string;
}

const COLUMNS = `id::text, plan_key, start_at, end_at, billing_interval, billing_interval_count, billing_anchor,
  billing_time_zone`;

const fromRow = (r: Row): Subscription => ({
  id: r.id,
  plan: r.plan_key,
  start: r.start_at,
  end: r.end_at,
  cycle: {
    interval: r.billing_interval,
    intervalCount: r.billing_interval_count,
    anchor: r.billing_anchor,
    timeZone: r.billing_time_zone,
  },
});

/**
 * The cycle of a subscription starting at `start`: the one asked for (its anchor by default the start of the local
 * calendar month that contains `start`), else the cycle in effect (a plan change keeps the customer's cycle), else
 * UTC calendar months. Refused with 422 when a boundary could fall off a whole UTC hour.
 */
function cycleFor(input: CycleInput | undefined, start: Date, inEffect: BillingCycle | undefined): BillingCycle {
  if (!input) return inEffect ?? defaultCycle(start);
  const timeZone = input.timeZone ?? "UTC";
  const cycle: BillingCycle = {
    interval: input.interval ?? "month",
    intervalCount: input.intervalCount ?? 1,
    anchor: input.anchor ?? (timeZone === "UTC" ? defaultCycle(start).anchor : localMonthStart(timeZone, start)),
    timeZone,
  };
  validateCycle(cycle);
  return cycle;
}

/** The first instant of the local calendar month containing t (refused like any boundary when off the hour). */
const localMonthStart = (timeZone: string, t: Date): Date => periodContaining(calendarMonths(timeZone), t).start;

/** The customer's billing calendar: the cycles of all its subscriptions. One indexed query. */
export async function calendarOf(db: Queryable, customer: string): Promise<BillingCalendar> {
  const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM subscriptions WHERE customer_id = $1`, [customer]);
  return new BillingCalendar(rows.map(fromRow));
}

/** Billing calendars of many customers (all subscribed ones when `customers` is undefined). One query. */
export async function calendarsOf(db: Queryable, customers?: readonly string[]): Promise<Map<string, BillingCalendar>> {
  const { rows } = await db.query<Row & { customer_id: string }>(
    `SELECT customer_id, ${COLUMNS} FROM subscriptions WHERE $1::text[] IS NULL OR customer_id = ANY($1::text[])`,
    [customers ?? null],
  );
  const spans = new Map<string, Subscription[]>();
  for (const r of rows) spans.set(r.customer_id, [...(spans.get(r.customer_id) ?? []), fromRow(r)]);
  const out = new Map<string, BillingCalendar>();
  for (const c of customers ?? spans.keys()) out.set(c, new BillingCalendar(spans.get(c) ?? []));
  return out;
}

/** Subscriptions overlapping [from, to), oldest first. */
export async function subscriptionsBetween(
  db: Queryable,
  customer: string,
  from: Date,
  to: Date,
): Promise<Subscription[]> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM subscriptions
     WHERE customer_id = $1 AND start_at < $3 AND (end_at IS NULL OR end_at > $2)
     ORDER BY start_at`,
    [customer, from, to],
  );
  return rows.map(fromRow);
}

export async function subscriptionAt(db: Queryable, customer: string, at: Date): Promise<Subscription | null> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM subscriptions
     WHERE customer_id = $1 AND start_at <= $2 AND (end_at IS NULL OR end_at > $2)`,
    [customer, at],
  );
  return rows[0] ? fromRow(rows[0]) : null;
}

/**
 * Subscribes the customer to `plan` from `start`, on the billing cycle asked for (else the one in effect). One
 * invoice holds one currency, so a plan in another currency may only start on a period boundary while another
 * plan is in effect.
 */
export async function setSubscription(
  db: Db,
  customer: string,
  plan: string,
  start: Date,
  billing?: CycleInput,
): Promise<{ subscription: Subscription; ended: Subscription | null; dropped: number }> {
  return db.transaction(async (tx) => {
    const found = await tx.query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", [customer]);
    if (found.rows.length === 0) throw notFound(`no customer ${customer}`);
    const plans = await tx.query<{ currency: string }>("SELECT currency FROM plans WHERE key = $1", [plan]);
    const currency = plans.rows[0]?.currency;
    if (!currency) {
      throw unprocessable("unknown_plan", `unknown plan "${plan}"`, [{ field: "plan", message: "no such plan" }]);
    }
    const { rows: kept } = await tx.query<Row>(
      `SELECT ${COLUMNS} FROM subscriptions WHERE customer_id = $1 AND start_at < $2 ORDER BY start_at`,
      [customer, start],
    );
    const earlier = kept.map(fromRow);
    const cycle = cycleFor(billing, start, earlier.at(-1)?.cycle);
    const period = new BillingCalendar([...earlier, { start, cycle }]).periodContaining(start);
    // A plan starting on the period's first instant shares no invoice with the plans before it.
    const others =
      start > period.start
        ? (
            await tx.query<{ plan_key: string; currency: string }>(
              `SELECT s.plan_key, p.currency FROM subscriptions s JOIN plans p ON p.key = s.plan_key
               WHERE s.customer_id = $1 AND s.start_at < $2 AND (s.end_at IS NULL OR s.end_at > $3)
                 AND p.currency <> $4`,
              [customer, start, period.start, currency],
            )
          ).rows
        : [];
    const clash = others[0];
    if (clash) {
      throw unprocessable(
        "currency_mismatch",
        `plan ${plan} bills in ${currency} but plan ${clash.plan_key} (${clash.currency}) is in effect earlier in the same period; one invoice holds one currency, so start the new plan on ${period.end.toISOString()}`,
        [{ field: "start", message: "must be the first instant of a billing period when the currency changes" }],
      );
    }
    const dropped = await tx.query("DELETE FROM subscriptions WHERE customer_id = $1 AND start_at >= $2", [
      customer,
      start,
    ]);
    const ended = await tx.query<Row>(
      `UPDATE subscriptions SET end_at = $2 WHERE customer_id = $1 AND start_at < $2 AND (end_at IS NULL OR end_at > $2)
       RETURNING ${COLUMNS}`,
      [customer, start],
    );
    const { rows } = await tx.query<Row>(
      `INSERT INTO subscriptions (customer_id, plan_key, start_at, billing_interval, billing_interval_count,
                                  billing_anchor, billing_time_zone)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
      [customer, plan, start, cycle.interval, cycle.intervalCount, cycle.anchor, cycle.timeZone],
    );
    return {
      subscription: fromRow(rows[0] as Row),
      ended: ended.rows[0] ? fromRow(ended.rows[0]) : null,
      dropped: dropped.rowCount,
    };
  });
}

/**
 * Every subscription overlapping [from, to) of the customers subscribed to `plan` at some point of it (all their
 * subscriptions, to other plans too: their invoices have them), optionally only of `customers`. One query.
 */
export async function subscriptionsOfPlanCustomers(
  db: Queryable,
  plan: string,
  from: Date,
  to: Date,
  customers?: string[],
): Promise<Map<string, Subscription[]>> {
  // Thousands of customers: one JSON text.
  const rows = await jsonRows<[string, string, string, number, number | null, Interval, number, number, string]>(db, {
    cells: `s.customer_id, s.id::text, s.plan_key, extract(epoch FROM s.start_at) * 1000,
      extract(epoch FROM s.end_at) * 1000, s.billing_interval, s.billing_interval_count,
      extract(epoch FROM s.billing_anchor) * 1000, s.billing_time_zone`,
    source: `subscriptions s
     WHERE s.start_at < $3 AND (s.end_at IS NULL OR s.end_at > $2)
       AND s.customer_id IN (SELECT customer_id FROM subscriptions
                             WHERE plan_key = $1 AND start_at < $3 AND (end_at IS NULL OR end_at > $2))
       AND ($4::text[] IS NULL OR s.customer_id = ANY($4::text[]))`,
    orderBy: "s.customer_id, s.start_at",
    params: [plan, from, to, customers ?? null],
  });
  const out = new Map<string, Subscription[]>();
  for (const [customer, id, planKey, start, end, interval, intervalCount, anchor, timeZone] of rows) {
    const list = out.get(customer) ?? [];
    const cycle = { interval, intervalCount, anchor: new Date(anchor), timeZone };
    list.push({ id, plan: planKey, start: new Date(start), end: end === null ? null : new Date(end), cycle });
    out.set(customer, list);
  }
  return out;
}
