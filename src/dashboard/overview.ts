// The operator's overview: every customer's current-period spend against the last period's, limit state, run
// rate and forecast — for 1,000 customers in a few queries (customers, subscriptions, limits, one rollup read per
// distinct interval, one reduced read of four weeks of hourly history), priced by the invoice's own code so each
// spend equals the summary's total, and forecast by the customer forecast's own code (forecast/forecast.ts) so each
// forecast equals GET /v1/customers/{id}/forecast's. Customers with credit grants cost one ledger read each
// (credits/invoice.ts), so their spend is after credits.
import type { Statement } from "../billing/statement.js";
import { loadStatementBatch, plansOf, type StatementBatch, subscriptionsOfAll } from "../billing/statementBatch.js";
import { listMeters, type Meter } from "../catalog/meters.js";
import { creditedStatement } from "../credits/invoice.js";
import type { CreditLedgers } from "../credits/ledger.js";
import type { Queryable } from "../db/types.js";
import { forecastOf } from "../forecast/forecast.js";
import { type Histories, readHistories } from "../forecast/history.js";
import type { ForecastMethod } from "../forecast/project.js";
import { evaluate, type LimitState, type LimitUnit } from "../limits/rules.js";
import { effectiveLimitsOfAll } from "../limits/store.js";
import { type Dec, dec, formatDecimal, formatMoney, sum, ZERO } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import { addBuckets, periodOf } from "../rollups/buckets.js";

/** A customer's worst limit state, or credits_exhausted (a credit_only customer with no covering balance). */
export type CustomerState = LimitState | "credits_exhausted";

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

export interface OverviewCustomer {
  id: string;
  name: string | null;
  plan: string | null;
  currency: string | null;
  /** After credits: the summary's total. */
  spend: string;
  /** Credits applied this period (null: the customer has no grant). */
  credits: string | null;
  previous_spend: string;
  /** The customer's forecast total (before credits), as GET /v1/customers/{id}/forecast answers it. */
  forecast: string;
  forecast_method: ForecastMethod;
  /** forecast − previous_spend: the projected change against last period. */
  growth: string;
  /** forecast ÷ previous_spend − 1, to 4 places; null when last period was 0. */
  growth_ratio: string | null;
  run_rate_per_day: string;
  state: CustomerState;
  soft_meters: string[];
  blocked_meters: string[];
}

export interface Overview {
  period: Period;
  previous_period: Period;
  method: "customer_forecast";
  customers: OverviewCustomer[];
  totals: { currency: string; customers: number; spend: string; previous_spend: string; forecast: string }[];
  states: Record<CustomerState, number>;
  as_of: Date;
}

/** Everything the overview's rows are computed from, read in a few queries. */
interface OverviewInputs {
  now: Date;
  period: Period;
  previous: Period;
  customers: { id: string; name: string | null }[];
  subscriptions: Map<string, { plan: string; start: Date; end: Date | null }[]>;
  meters: Map<string, Meter>;
  limits: Awaited<ReturnType<typeof effectiveLimitsOfAll>>;
  exhausted: Set<string>;
  /** Last period's final invoice totals. */
  finals: Map<string, Dec>;
  histories: Histories;
  batch: StatementBatch;
  current: Map<string, Statement>;
  last: Map<string, Statement>;
  /** Customers with grants: their totals after credits, and the credits applied this period. */
  credited: Map<string, { now: Dec; previous: Dec; credits: Dec }>;
}

export async function dashboardOverview(deps: OverviewDeps, only?: string): Promise<Overview> {
  const inputs = await readOverview(deps, only);
  const { period, now } = inputs;
  const elapsedMs = Math.max(now.getTime() - period.start.getTime(), 3_600_000);
  // A rounded factor: multiplying by a 100-digit quotient would cost more than 1,000 customers' pricing.
  const perDay = dec(86_400_000).div(elapsedMs).toDecimalPlaces(12);
  const states: Record<CustomerState, number> = { ok: 0, soft: 0, blocked: 0, credits_exhausted: 0 };
  const totals = new Map<string, { customers: number; spend: Dec; previous: Dec; forecast: Dec }>();
  const spendOf = new Map<string, Dec>();
  const customers = inputs.customers.map((c): OverviewCustomer => {
    const row = customerFigures(inputs, c.id, deps, perDay);
    spendOf.set(c.id, row.spend);
    states[row.state] += 1;
    if (row.currency) {
      const t = totals.get(row.currency) ?? { customers: 0, spend: ZERO, previous: ZERO, forecast: ZERO };
      totals.set(row.currency, {
        customers: t.customers + 1,
        spend: t.spend.plus(row.spend),
        previous: t.previous.plus(row.previousSpend),
        forecast: t.forecast.plus(row.forecast),
      });
    }
    return { id: c.id, name: c.name, ...row.json };
  });
  // Highest spend first; ties by id, so the order is stable between refreshes.
  const by = (c: OverviewCustomer) => spendOf.get(c.id) ?? ZERO;
  customers.sort((a, b) => by(b).cmp(by(a)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    period,
    previous_period: inputs.previous,
    method: "customer_forecast",
    customers,
    totals: [...totals].map(([currency, t]) => ({
      currency,
      customers: t.customers,
      spend: formatMoney(t.spend, currency),
      previous_spend: formatMoney(t.previous, currency),
      forecast: formatMoney(t.forecast, currency),
    })),
    states,
    as_of: now,
  };
}

async function readOverview(deps: OverviewDeps, only: string | undefined): Promise<OverviewInputs> {
  const { db, now } = deps;
  const period = periodOf(now);
  const previous = { start: addBuckets(period.start, "month", -1), end: period.start };
  // The longest read, and independent of the others: under way while they run (a server answers them in parallel).
  const historiesP = readHistories(db, { customer: only, now, periodEnd: period.end });
  historiesP.catch(() => undefined); // awaited below; a failure elsewhere first must not leave it unhandled
  const { rows: customers } = await db.query<{ id: string; name: string | null }>(
    "SELECT id, name FROM customers WHERE $1::text IS NULL OR id = $1 ORDER BY id",
    [only ?? null],
  );
  const restrict = only ? [only] : undefined;
  const subscriptions = await subscriptionsOfAll(db, previous.start, period.end, restrict);
  const plans = await plansOf(db, subscriptions);
  const meters = new Map((await listMeters(db)).map((m) => [m.key, m]));
  const at = new Date(Math.min(now.getTime(), period.end.getTime() - 1));
  // Independent reads, together (a server database answers them in parallel).
  const [limits, exhausted, finals, withGrants] = await Promise.all([
    effectiveLimitsOfAll(db, at, restrict),
    exhaustedCustomers(db, only),
    // Last period as invoiced where its invoice is final (frozen: later corrections go on this period's invoice).
    finalTotals(db, previous.start, only),
    customersWithGrants(db, only),
  ]);
  const subsOf = (ids: string[]) => new Map(ids.map((id) => [id, subscriptions.get(id) ?? []]));
  const ids = customers.map((c) => c.id);
  const [batch, lastBatch] = await Promise.all([
    loadStatementBatch(db, { period, subscriptions: subsOf(ids), planSets: [plans], meters }),
    // Last period is priced only for customers whose invoice for it is not final yet.
    loadStatementBatch(db, {
      period: previous,
      subscriptions: subsOf(ids.filter((id) => !finals.has(id))),
      planSets: [plans],
      meters,
    }),
  ]);
  // Meter summaries only for customers with limits (their states); everyone else needs just the totals.
  const current = new Map(ids.map((id) => [id, batch.price(id, plans, now, { totalOnly: !limits.has(id) })]));
  const last = new Map(lastBatch.customers.map((id) => [id, lastBatch.price(id, plans, now, { totalOnly: true })]));
  const credited = await creditedFigures(deps, withGrants, { period, previous }, { current, last, finals });
  const histories = await historiesP;
  const read = { now, period, previous, customers, subscriptions, meters, limits, exhausted, finals, histories };
  return { ...read, batch, current, last, credited };
}

/**
 * Customers with grants: their statements read through their ledgers (one snapshot each) replace the batch's, and
 * their totals after credits are kept.
 */
async function creditedFigures(
  deps: OverviewDeps,
  withGrants: string[],
  periods: { period: Period; previous: Period },
  s: { current: Map<string, Statement>; last: Map<string, Statement>; finals: Map<string, Dec> },
): Promise<Map<string, { now: Dec; previous: Dec; credits: Dec }>> {
  const out = new Map<string, { now: Dec; previous: Dec; credits: Dec }>();
  for (const id of withGrants) {
    if (!s.current.has(id)) continue;
    const cur = await creditedStatement(deps.credits, id, periods.period, deps.now);
    const final = s.finals.get(id);
    const prev = final ? undefined : await creditedStatement(deps.credits, id, periods.previous, deps.now);
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

/** One customer's row: its figures as JSON, and the decimals the totals and the ranking add up. */
function customerFigures(inputs: OverviewInputs, id: string, deps: OverviewDeps, perDay: Dec) {
  const st = inputs.current.get(id) as Statement;
  const prevSt = inputs.last.get(id);
  const currency = st.currency ?? prevSt?.currency ?? null;
  const fmt = (d: Dec) => (currency ? formatMoney(d, currency) : formatDecimal(d));
  const credit = inputs.credited.get(id);
  const spend = credit?.now ?? st.invoice.total;
  const forecast = forecastOf({
    statement: st,
    toDate: inputs.batch.periodQuantities(id),
    meters: inputs.meters,
    history: inputs.histories.get(id) ?? new Map(),
    now: inputs.now,
  });
  const previousSpend = inputs.finals.get(id) ?? credit?.previous ?? prevSt?.invoice.total ?? ZERO;
  // Usage lines scale with time; base fees do not (they are in the statement once, whole).
  const usage = st.invoice.total.minus(sum(st.invoice.lines.filter((l) => l.kind === "base_fee").map((l) => l.amount)));
  const { state, soft, blocked } = limitState(inputs, id, st, deps);
  const total = forecast.forecastTotal;
  return {
    currency,
    spend,
    previousSpend,
    forecast: total,
    state,
    json: {
      plan: subscriptionAtNow(inputs.subscriptions.get(id), inputs.now),
      currency,
      spend: fmt(spend),
      credits: credit ? fmt(credit.credits) : null,
      previous_spend: fmt(previousSpend),
      forecast: fmt(total),
      forecast_method: forecast.method,
      growth: fmt(total.minus(previousSpend)),
      // A ratio for ranking and a percentage, not money: binary floating point is precise enough, and a 100-digit
      // decimal division per customer would cost more than the rest of the row.
      growth_ratio: previousSpend.isZero() ? null : (total.toNumber() / previousSpend.toNumber() - 1).toFixed(4),
      run_rate_per_day: fmt(usage.times(perDay)),
      state,
      soft_meters: soft,
      blocked_meters: blocked,
    },
  };
}

/** The customer's meters at their soft or hard limits, and its state as the entitlement decides it. */
function limitState(inputs: OverviewInputs, id: string, st: Statement, deps: OverviewDeps) {
  const soft: string[] = [];
  const blocked: string[] = [];
  for (const [meter, limit] of inputs.limits.get(id) ?? []) {
    const m = st.meters.find((x) => x.meter === meter);
    const value = limit.unit === "amount" ? (m?.amount ?? ZERO) : (m?.quantity ?? ZERO);
    const p = deps.previousState(id, meter);
    const prev = p && p.periodStart.getTime() === inputs.period.start.getTime() ? p : undefined;
    const state = evaluate(value, limit, prev).state;
    if (state === "blocked") blocked.push(meter);
    else if (state === "soft") soft.push(meter);
  }
  // A hard limit first, then exhausted credits (credit_only customers).
  const state: CustomerState = blocked.length
    ? "blocked"
    : inputs.exhausted.has(id)
      ? "credits_exhausted"
      : soft.length
        ? "soft"
        : "ok";
  return { state, soft: soft.sort(), blocked: blocked.sort() };
}

/** credit_only customers whose covering credits ran out, as the last limit evaluation found (entitlements: 429). */
async function exhaustedCustomers(db: Queryable, only: string | undefined): Promise<Set<string>> {
  const { rows } = await db.query<{ customer_id: string }>(
    "SELECT DISTINCT customer_id FROM limit_states WHERE credits = 'exhausted' AND ($1::text IS NULL OR customer_id = $1)",
    [only ?? null],
  );
  return new Set(rows.map((r) => r.customer_id));
}

async function finalTotals(db: Queryable, periodStart: Date, only: string | undefined): Promise<Map<string, Dec>> {
  const { rows } = await db.query<{ customer_id: string; total: string }>(
    `SELECT customer_id, total::text AS total FROM invoices
     WHERE status = 'final' AND period_start = $1 AND ($2::text IS NULL OR customer_id = $2)`,
    [periodStart, only ?? null],
  );
  return new Map(rows.map((r) => [r.customer_id, dec(r.total)]));
}

async function customersWithGrants(db: Queryable, only: string | undefined): Promise<string[]> {
  const { rows } = await db.query<{ customer_id: string }>(
    "SELECT DISTINCT customer_id FROM credit_grants WHERE $1::text IS NULL OR customer_id = $1",
    [only ?? null],
  );
  return rows.map((r) => r.customer_id);
}

function subscriptionAtNow(subs: { plan: string; start: Date; end: Date | null }[] | undefined, now: Date) {
  return subs?.find((s) => s.start <= now && (s.end === null || s.end > now))?.plan ?? null;
}
