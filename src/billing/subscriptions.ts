// Customers' subscriptions: at most one in effect at any instant. Setting a new one ends the one in effect at
// its start and drops any that would only have started after it, in one transaction holding the customer row.
import { jsonRows } from "../db/jsonRows.js";
import type { Db, Queryable } from "../db/types.js";
import { notFound, unprocessable } from "../errors.js";
import { type BillingCycle, calendarMonths, type Interval, periodContaining, validateCycle } from "../periods/cycle.js";
import { Dec } from "../pricing/money.js";
import type { ProrationMode } from "../pricing/proration.js";
import type { SubscriptionSpan } from "../pricing/segments.js";
import { BillingCalendar, defaultCycle } from "./calendar.js";
import { insertQuantity, quantitiesFor, type StoredQuantity } from "./quantities.js";

export interface Subscription extends SubscriptionSpan {
  id: string;
  cycle: BillingCycle;
  proration: ProrationMode;
  endProration: ProrationMode;
  trialEnd: Date | null;
  quantities: StoredQuantity[];
  /** Asked for at a period end: shown as `scheduled` until it starts. */
  scheduled: boolean;
}

/** What a request says of the cycle; what it leaves out takes its default (PRODUCT.md "Billing cycles"). */
interface CycleInput {
  interval?: Interval;
  intervalCount?: number;
  anchor?: Date;
  timeZone?: string;
}

export interface Row {
  id: string;
  plan_key: string;
  start_at: Date;
  end_at: Date | null;
  billing_interval: Interval;
  billing_interval_count: number;
  billing_anchor: Date;
  billing_time_zone: string;
  proration: ProrationMode;
  end_proration: ProrationMode;
  trial_end: Date | null;
  scheduled: boolean;
  /** [[charge, epoch ms, quantity, inherited], ...] or null. */
  quantities: [string, number, string, boolean][] | null;
}

const BASE_COLUMNS = `s.id::text AS id, s.plan_key, s.start_at, s.end_at, s.billing_interval, s.billing_interval_count,
  s.billing_anchor, s.billing_time_zone, s.proration, s.end_proration, s.trial_end, s.scheduled`;

/** The columns of a subscription row without its quantities (a billing calendar needs only the cycles). */
const CYCLE_COLUMNS = `${BASE_COLUMNS}, NULL::json AS quantities`;

/** The columns of a subscription row (of `subscriptions s`), with its quantities. */
export const COLUMNS = `${BASE_COLUMNS},
  (SELECT json_agg(json_build_array(q.charge, extract(epoch FROM q.effective_at) * 1000, q.quantity::text, q.inherited)
                   ORDER BY q.effective_at)
   FROM subscription_quantities q WHERE q.subscription_id = s.id) AS quantities`;

export const fromRow = (r: Row): Subscription => ({
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
  proration: r.proration,
  endProration: r.end_proration,
  trialEnd: r.trial_end,
  scheduled: r.scheduled,
  quantities: (r.quantities ?? []).map(([charge, at, quantity, inherited]) => ({
    charge,
    at: new Date(Number(at)),
    quantity: new Dec(quantity),
    inherited: inherited === true,
  })),
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
  const { rows } = await db.query<Row>(`SELECT ${CYCLE_COLUMNS} FROM subscriptions s WHERE customer_id = $1`, [
    customer,
  ]);
  return new BillingCalendar(rows.map(fromRow));
}

/** Billing calendars of many customers (all subscribed ones when `customers` is undefined). One query. */
export async function calendarsOf(db: Queryable, customers?: readonly string[]): Promise<Map<string, BillingCalendar>> {
  const { rows } = await db.query<Row & { customer_id: string }>(
    `SELECT customer_id, ${CYCLE_COLUMNS} FROM subscriptions s WHERE $1::text[] IS NULL OR customer_id = ANY($1::text[])`,
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
    `SELECT ${COLUMNS} FROM subscriptions s
     WHERE customer_id = $1 AND start_at < $3 AND (end_at IS NULL OR end_at > $2)
     ORDER BY start_at`,
    [customer, from, to],
  );
  return rows.map(fromRow);
}

export async function subscriptionAt(db: Queryable, customer: string, at: Date): Promise<Subscription | null> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM subscriptions s
     WHERE customer_id = $1 AND start_at <= $2 AND (end_at IS NULL OR end_at > $2)`,
    [customer, at],
  );
  return rows[0] ? fromRow(rows[0]) : null;
}

/** How a subscription starts, besides its plan and start (PUT /v1/customers/{id}/subscription). */
interface SubscriptionOptions {
  billing?: CycleInput | undefined;
  proration?: ProrationMode | undefined;
  /**
   * Fees start here; usage before it is priced 0. Default: the trial of the subscription it replaces, if later (of
   * the one starting at the same instant, when the change is asked for again).
   */
  trialEnd?: Date | undefined;
  /** Quantities of fixed charges from `start`. Default: those of the subscription it replaces (as for trialEnd). */
  quantities?: ReadonlyMap<string, Dec> | undefined;
  /** A change asked for at the period end (shown as `scheduled` until then). */
  scheduled?: boolean | undefined;
}

/** Locks the customer's row for a change of its subscriptions; 404 when there is no such customer. */
export async function lockCustomer(tx: Queryable, customer: string): Promise<void> {
  const found = await tx.query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", [customer]);
  if (found.rows.length === 0) throw notFound(`no customer ${customer}`);
}

/** One subscription by id, with its quantities. */
export async function subscriptionById(db: Queryable, id: string): Promise<Subscription> {
  const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM subscriptions s WHERE s.id = $1::bigint`, [id]);
  if (!rows[0]) throw notFound(`no subscription ${id}`);
  return fromRow(rows[0]);
}

/**
 * Subscribes the customer to `plan` from `start`, on the billing cycle asked for (else the one in effect). One
 * invoice holds one currency, so a plan in another currency may only start on a period boundary while another
 * plan is in effect. The subscription it replaces ends at `start`, its fees treated as `proration` says.
 */
export async function setSubscription(
  db: Db,
  customer: string,
  plan: string,
  start: Date,
  opts: SubscriptionOptions = {},
): Promise<{ subscription: Subscription; ended: Subscription | null; dropped: number }> {
  return db.transaction(async (tx) => {
    await lockCustomer(tx, customer);
    const plans = await tx.query<{ currency: string }>("SELECT currency FROM plans WHERE key = $1", [plan]);
    const currency = plans.rows[0]?.currency;
    if (!currency) {
      throw unprocessable("unknown_plan", `unknown plan "${plan}"`, [{ field: "plan", message: "no such plan" }]);
    }
    const { rows: kept } = await tx.query<Row>(
      `SELECT ${COLUMNS} FROM subscriptions s WHERE customer_id = $1 AND start_at < $2 ORDER BY start_at`,
      [customer, start],
    );
    const earlier = kept.map(fromRow);
    const cycle = cycleFor(opts.billing, start, earlier.at(-1)?.cycle);
    const period = new BillingCalendar([...earlier, { start, cycle }]).periodContaining(start);
    await checkCurrency(tx, customer, plan, currency, start, period);
    const last = earlier.at(-1);
    const replaced = last && (last.end === null || last.end >= start) ? last : null;
    // A change asked for again at the start of one already there (a scheduled change, say) replaces that one: what
    // it leaves out comes from it, not from the plan before.
    const { rows: same } = await tx.query<Row>(
      `SELECT ${COLUMNS} FROM subscriptions s WHERE customer_id = $1 AND start_at = $2`,
      [customer, start],
    );
    const again = same[0] ? fromRow(same[0]) : null;
    const source = again ?? replaced;
    const quantities = await quantitiesFor(tx, plan, start, opts.quantities, source, again !== null);
    const trialEnd = opts.trialEnd ?? (source?.trialEnd && source.trialEnd > start ? source.trialEnd : null);
    if (trialEnd && trialEnd <= start) {
      throw unprocessable("invalid_trial_end", "trial_end must be after the subscription's start", [
        { field: "trial_end", message: "must be after start" },
      ]);
    }
    const proration = opts.proration ?? "prorate";
    const dropped = await tx.query<{
      start_at: Date;
      scheduled: boolean;
      replaced_end_at: Date | null;
      replaced_end_proration: ProrationMode | null;
    }>(
      `DELETE FROM subscriptions WHERE customer_id = $1 AND start_at >= $2
       RETURNING start_at, scheduled, replaced_end_at, replaced_end_proration`,
      [customer, start],
    );
    // A change scheduled at the end of the one replaced, and dropped now: that end was the schedule's, not its own.
    const undone = dropped.rows.find((d) => d.scheduled && d.start_at.getTime() === replaced?.end?.getTime());
    const replacedEnd = undone ? undone.replaced_end_at : (replaced?.end ?? null);
    const replacedEndProration = undone ? undone.replaced_end_proration : replaced?.end ? replaced.endProration : null;
    const ended = await tx.query<{ id: string }>(
      `UPDATE subscriptions SET end_at = $2, end_proration = $3
       WHERE customer_id = $1 AND start_at < $2 AND (end_at IS NULL OR end_at >= $2) RETURNING id::text`,
      [customer, start, proration],
    );
    const { rows } = await tx.query<{ id: string }>(
      `INSERT INTO subscriptions (customer_id, plan_key, start_at, billing_interval, billing_interval_count,
                                  billing_anchor, billing_time_zone, proration, trial_end, scheduled, replaced_end_at,
                                  replaced_end_proration)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id::text`,
      [
        ...[customer, plan, start, cycle.interval, cycle.intervalCount, cycle.anchor, cycle.timeZone, proration],
        ...[trialEnd, opts.scheduled ?? false, replacedEnd, replacedEndProration],
      ],
    );
    const id = (rows[0] as { id: string }).id;
    for (const q of quantities) await insertQuantity(tx, id, q);
    const endedId = ended.rows[0]?.id;
    return {
      subscription: await subscriptionById(tx, id),
      ended: endedId ? await subscriptionById(tx, endedId) : null,
      dropped: dropped.rowCount,
    };
  });
}

/** 422 currency_mismatch when a plan in another currency is in effect earlier in the period that `start` is in. */
async function checkCurrency(
  tx: Queryable,
  customer: string,
  plan: string,
  currency: string,
  start: Date,
  period: { start: Date; end: Date },
): Promise<void> {
  // A plan starting on the period's first instant shares no invoice with the plans before it.
  if (start <= period.start) return;
  const { rows } = await tx.query<{ plan_key: string; currency: string }>(
    `SELECT s.plan_key, p.currency FROM subscriptions s JOIN plans p ON p.key = s.plan_key
     WHERE s.customer_id = $1 AND s.start_at < $2 AND (s.end_at IS NULL OR s.end_at > $3) AND p.currency <> $4`,
    [customer, start, period.start, currency],
  );
  const clash = rows[0];
  if (clash) {
    throw unprocessable(
      "currency_mismatch",
      `plan ${plan} bills in ${currency} but plan ${clash.plan_key} (${clash.currency}) is in effect earlier in the same period; one invoice holds one currency, so start the new plan on ${period.end.toISOString()}`,
      [{ field: "start", message: "must be the first instant of a billing period when the currency changes" }],
    );
  }
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
  const rows = await jsonRows<[string, JsonRow]>(db, {
    cells: `s.customer_id, ${JSON_ROW}`,
    source: `subscriptions s
     WHERE s.start_at < $3 AND (s.end_at IS NULL OR s.end_at > $2)
       AND s.customer_id IN (SELECT customer_id FROM subscriptions
                             WHERE plan_key = $1 AND start_at < $3 AND (end_at IS NULL OR end_at > $2))
       AND ($4::text[] IS NULL OR s.customer_id = ANY($4::text[]))`,
    orderBy: "s.customer_id, s.start_at",
    params: [plan, from, to, customers ?? null],
  });
  return byCustomer(rows);
}

/** A subscription row as jsonRows reads it (times in epoch ms). */
type JsonRow = Omit<Row, "start_at" | "end_at" | "billing_anchor" | "trial_end"> & {
  start_at: number;
  end_at: number | null;
  billing_anchor: number;
  trial_end: number | null;
};

const epoch = (column: string) => `'${column}', extract(epoch FROM s.${column}) * 1000`;

/** The JSON object of a subscription row `s` (with its quantities), for jsonRows. */
const JSON_ROW = `json_build_object('id', s.id::text, 'plan_key', s.plan_key, ${epoch("start_at")}, ${epoch("end_at")},
  'billing_interval', s.billing_interval, 'billing_interval_count', s.billing_interval_count, ${epoch("billing_anchor")},
  'billing_time_zone', s.billing_time_zone, 'proration', s.proration, 'end_proration', s.end_proration,
  ${epoch("trial_end")}, 'scheduled', s.scheduled,
  'quantities', (SELECT json_agg(json_build_array(q.charge, extract(epoch FROM q.effective_at) * 1000, q.quantity::text,
                                                   q.inherited)
                                 ORDER BY q.effective_at)
                 FROM subscription_quantities q WHERE q.subscription_id = s.id))`;

const date = (ms: number | null) => (ms === null ? null : new Date(Number(ms)));

/** Rows [customer, subscription] in customer order, as subscriptions by customer. */
function byCustomer(rows: [string, JsonRow][]): Map<string, Subscription[]> {
  const out = new Map<string, Subscription[]>();
  for (const [customer, r] of rows) {
    const list = out.get(customer) ?? [];
    const sub = fromRow({
      ...r,
      start_at: date(r.start_at) as Date,
      end_at: date(r.end_at),
      billing_anchor: date(r.billing_anchor) as Date,
      trial_end: date(r.trial_end),
    });
    list.push(sub);
    out.set(customer, list);
  }
  return out;
}

/** Every subscription overlapping [from, to) of every customer (or of `customers`), oldest first. One query. */
export async function subscriptionsOfAll(
  db: Queryable,
  from: Date,
  to: Date,
  customers?: string[],
): Promise<Map<string, Subscription[]>> {
  const rows = await jsonRows<[string, JsonRow]>(db, {
    cells: `s.customer_id, ${JSON_ROW}`,
    source: `subscriptions s
     WHERE s.start_at < $2 AND (s.end_at IS NULL OR s.end_at > $1) AND ($3::text[] IS NULL OR s.customer_id = ANY($3::text[]))`,
    orderBy: "s.customer_id, s.start_at",
    params: [from, to, customers ?? null],
  });
  return byCustomer(rows);
}
