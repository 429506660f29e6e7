// What the operator's overview is computed from, read in a number of queries that does not grow with the customers:
// customers and their billing calendars (one query each), subscriptions, limits, final invoices, grants, one rollup
// read per distinct interval of each distinct period (customers grouped by identical periods: most share UTC
// months) and four weeks of history for everyone reduced in the database, one statement per distinct period end.
import { BillingCalendar } from "../billing/calendar.js";
import type { Statement } from "../billing/statement.js";
import { intervalKey } from "../billing/statement.js";
import { loadStatementBatches, plansOf, type StatementBatches } from "../billing/statementBatch.js";
import { calendarsOf, subscriptionsOfAll } from "../billing/subscriptions.js";
import { listMeters, type Meter } from "../catalog/meters.js";
import { creditedStatement } from "../credits/invoice.js";
import type { CreditLedgers } from "../credits/ledger.js";
import { readAll } from "../db/reads.js";
import type { Queryable } from "../db/types.js";
import { type Histories, readHistories } from "../forecast/history.js";
import type { LimitState, LimitUnit } from "../limits/rules.js";
import { effectiveLimitsOfAll } from "../limits/store.js";
import { type Dec, dec, ZERO } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";

export interface OverviewDeps {
  db: Queryable;
  now: Date;
  /** The limit state evaluated earlier in the period (a block lasts until the period ends or the limit rises). */
  previousState(
    customer: string,
    meter: string,
  ): { periodStart: Date; state: LimitState; blockedAtHard: Dec | null; unit: LimitUnit | null } | undefined;
  /** Prepaid credits: each customer's ledger, for the customers with grants. */
  credits: CreditLedgers;
}

/** A customer's current and previous period, and the time zone of its cycle now (to label them). */
export interface CustomerPeriods {
  current: Period;
  previous: Period;
  timeZone: string;
}

/** Everything the overview's rows are computed from. */
export interface OverviewInputs {
  now: Date;
  /** The periods of the default cycle (UTC calendar months), or of the one customer the overview is of. */
  period: Period;
  previous: Period;
  periods: Map<string, CustomerPeriods>;
  customers: { id: string; name: string | null }[];
  subscriptions: Map<string, { plan: string; start: Date; end: Date | null }[]>;
  meters: Map<string, Meter>;
  limits: Awaited<ReturnType<typeof effectiveLimitsOfAll>>;
  exhausted: Set<string>;
  /** Last period's final invoice totals. */
  finals: Map<string, Dec>;
  histories: Histories;
  batch: StatementBatches;
  current: Map<string, Statement>;
  last: Map<string, Statement>;
  /** Customers with grants: their totals after credits, and the credits applied this period. */
  credited: Map<string, { now: Dec; previous: Dec; credits: Dec }>;
}

export async function readOverview(deps: OverviewDeps, only: string | undefined): Promise<OverviewInputs> {
  const { db, now } = deps;
  const [{ rows: customers }, calendars] = await readAll(db, [
    () =>
      db.query<{ id: string; name: string | null }>(
        "SELECT id, name FROM customers WHERE $1::text IS NULL OR id = $1 ORDER BY id",
        [only ?? null],
      ),
    () => calendarsOf(db, only ? [only] : undefined),
  ]);
  const periods = periodsOf(
    customers.map((c) => c.id),
    calendars,
    now,
  );
  const fallback = periodsOf(["-"], new Map(), now).get("-") as CustomerPeriods;
  const { current: period, previous } = (only ? periods.get(only) : undefined) ?? fallback;
  // The longest read, and independent of the others: under way while they run (a server answers them in parallel).
  const periodEnds = new Map<string, Date>();
  for (const [id, p] of periods)
    if (p.current.end.getTime() !== period.end.getTime()) periodEnds.set(id, p.current.end);
  const historiesP = readHistories(db, { customer: only, now, periodEnd: period.end, periodEnds });
  historiesP.catch(() => undefined); // awaited below; a failure elsewhere first must not leave it unhandled
  const restrict = only ? [only] : undefined;
  let from = previous.start;
  let to = period.end;
  for (const p of periods.values()) {
    if (p.previous.start < from) from = p.previous.start;
    if (p.current.end > to) to = p.current.end;
  }
  const subscriptions = await subscriptionsOfAll(db, from, to, restrict);
  const plans = await plansOf(db, subscriptions);
  const meters = new Map((await listMeters(db)).map((m) => [m.key, m]));
  // Independent reads, together (a server database answers them in parallel).
  const [limits, exhausted, finals, withGrants] = await Promise.all([
    effectiveLimitsOfAll(db, now, restrict),
    exhaustedCustomers(db, only),
    // Last period as invoiced where its invoice is final (frozen: later corrections go on this period's invoice).
    finalTotals(db, periods, only),
    customersWithGrants(db, only),
  ]);
  const subsOf = (ids: string[]) => new Map(ids.map((id) => [id, subscriptions.get(id) ?? []]));
  const periodMap = (pick: (p: CustomerPeriods) => Period) => new Map([...periods].map(([id, p]) => [id, pick(p)]));
  const ids = customers.map((c) => c.id);
  const [batch, lastBatch] = await Promise.all([
    loadStatementBatches(db, {
      periods: periodMap((p) => p.current),
      subscriptions: subsOf(ids),
      planSets: [plans],
      meters,
    }),
    // Last period is priced only for customers whose invoice for it is not final yet.
    loadStatementBatches(db, {
      periods: periodMap((p) => p.previous),
      subscriptions: subsOf(ids.filter((id) => !finals.has(id))),
      planSets: [plans],
      meters,
    }),
  ]);
  // Meter summaries only for customers with limits (their states); everyone else needs just the totals.
  const current = new Map(ids.map((id) => [id, batch.price(id, plans, now, { totalOnly: !limits.has(id) })]));
  const last = new Map(lastBatch.customers.map((id) => [id, lastBatch.price(id, plans, now, { totalOnly: true })]));
  const credited = await creditedFigures(deps, withGrants, periods, { current, last, finals });
  const histories = await historiesP;
  const read = { now, period, previous, periods, customers, subscriptions, meters, limits, exhausted, finals };
  return { ...read, histories, batch, current, last, credited };
}

/**
 * Each customer's current and previous period by its calendar (UTC calendar months without one). Equal periods are
 * one object, so customers sharing a period share its statement batch.
 */
function periodsOf(
  ids: readonly string[],
  calendars: ReadonlyMap<string, BillingCalendar>,
  now: Date,
): Map<string, CustomerPeriods> {
  const interned = new Map<string, Period>();
  const intern = (p: Period) => {
    const k = intervalKey(p);
    let found = interned.get(k);
    if (!found) {
      found = { start: p.start, end: p.end };
      interned.set(k, found);
    }
    return found;
  };
  const periodsBy = (calendar: BillingCalendar): CustomerPeriods => {
    const current = intern(calendar.periodContaining(now));
    return { current, previous: intern(calendar.previous(current)), timeZone: calendar.cycleAt(now).timeZone };
  };
  // Most customers are on UTC calendar months: their periods are worked out once.
  const months = periodsBy(new BillingCalendar([]));
  const out = new Map<string, CustomerPeriods>();
  for (const id of ids) {
    const calendar = calendars.get(id);
    out.set(id, !calendar || calendar.calendarMonths ? months : periodsBy(calendar));
  }
  return out;
}

/**
 * Customers with grants: their statements read through their ledgers (one snapshot each) replace the batch's, and
 * their totals after credits are kept.
 */
async function creditedFigures(
  deps: OverviewDeps,
  withGrants: string[],
  periods: ReadonlyMap<string, CustomerPeriods>,
  s: { current: Map<string, Statement>; last: Map<string, Statement>; finals: Map<string, Dec> },
): Promise<Map<string, { now: Dec; previous: Dec; credits: Dec }>> {
  const out = new Map<string, { now: Dec; previous: Dec; credits: Dec }>();
  for (const id of withGrants) {
    const p = periods.get(id);
    if (!s.current.has(id) || !p) continue;
    const cur = await creditedStatement(deps.credits, id, p.current, deps.now);
    const final = s.finals.get(id);
    const prev = final ? undefined : await creditedStatement(deps.credits, id, p.previous, deps.now);
    s.current.set(id, cur.statement);
    if (prev) s.last.set(id, prev.statement);
    out.set(id, {
      now: cur.credits?.total ?? cur.statement.invoice.total,
      previous: final ?? prev?.credits?.total ?? prev?.statement.invoice.total ?? ZERO,
      credits: cur.credits?.credits ?? ZERO,
    });
  }
  return out;
}

/** credit_only customers whose covering credits ran out, as the last limit evaluation found (entitlements: 429). */
async function exhaustedCustomers(db: Queryable, only: string | undefined): Promise<Set<string>> {
  const { rows } = await db.query<{ customer_id: string }>(
    "SELECT DISTINCT customer_id FROM limit_states WHERE credits = 'exhausted' AND ($1::text IS NULL OR customer_id = $1)",
    [only ?? null],
  );
  return new Set(rows.map((r) => r.customer_id));
}

/** Each customer's final invoice total of its previous period: one query for every distinct previous period. */
async function finalTotals(
  db: Queryable,
  periods: ReadonlyMap<string, CustomerPeriods>,
  only: string | undefined,
): Promise<Map<string, Dec>> {
  const starts = [...new Set([...periods.values()].map((p) => p.previous.start.toISOString()))];
  const { rows } = await db.query<{ customer_id: string; period_start: Date; total: string }>(
    `SELECT customer_id, period_start, total::text AS total FROM invoices
     WHERE status = 'final' AND period_start = ANY ($1::timestamptz[]) AND ($2::text IS NULL OR customer_id = $2)`,
    [starts, only ?? null],
  );
  const out = new Map<string, Dec>();
  for (const r of rows) {
    const previous = periods.get(r.customer_id)?.previous.start.getTime();
    if (previous === new Date(r.period_start).getTime()) out.set(r.customer_id, dec(r.total));
  }
  return out;
}

async function customersWithGrants(db: Queryable, only: string | undefined): Promise<string[]> {
  const { rows } = await db.query<{ customer_id: string }>(
    "SELECT DISTINCT customer_id FROM credit_grants WHERE $1::text IS NULL OR customer_id = $1",
    [only ?? null],
  );
  return rows.map((r) => r.customer_id);
}
