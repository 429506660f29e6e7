// The operator's overview: every customer's current-period spend against the last period's, limit state, run
// rate and a linear forecast — for 1,000 customers in a few queries (customers, subscriptions, limits, one
// rollup read per distinct interval), priced by the invoice's own code so each spend equals the summary's total.
// Customers with credit grants cost one ledger read each (credits/invoice.ts), so their spend is after credits.
import type { Statement } from "../billing/statement.js";
import { listMeters } from "../catalog/meters.js";
import { creditedStatement } from "../credits/invoice.js";
import type { CreditLedgers } from "../credits/ledger.js";
import type { Queryable } from "../db/types.js";
import { evaluate, type LimitState, type LimitUnit } from "../limits/rules.js";
import { effectiveLimitsOfAll } from "../limits/store.js";
import { type Dec, dec, formatDecimal, formatMoney, sum, ZERO } from "../pricing/money.js";
import { addBuckets, periodOf } from "../rollups/buckets.js";
import { plansOf, statementsOfAll, subscriptionsOfAll } from "./statements.js";

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
  forecast: string;
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
  period: { start: Date; end: Date };
  previous_period: { start: Date; end: Date };
  method: "linear";
  customers: OverviewCustomer[];
  totals: { currency: string; customers: number; spend: string; previous_spend: string; forecast: string }[];
  states: Record<CustomerState, number>;
  as_of: Date;
}

interface CustomerRow {
  id: string;
  name: string | null;
}

/** Usage lines scale with time; base fees do not (they are in the statement once, whole). */
function usageAndFees(st: Statement): { usage: Dec; fees: Dec } {
  const fees = sum(st.invoice.lines.filter((l) => l.kind === "base_fee").map((l) => l.amount));
  return { usage: st.invoice.total.minus(fees), fees };
}

export async function dashboardOverview(deps: OverviewDeps, only?: string): Promise<Overview> {
  const { db, now } = deps;
  const period = periodOf(now);
  const previous = { start: addBuckets(period.start, "month", -1), end: period.start };
  const { rows: customerRows } = await db.query<CustomerRow>(
    "SELECT id, name FROM customers WHERE $1::text IS NULL OR id = $1 ORDER BY id",
    [only ?? null],
  );
  const ids = customerRows.map((c) => c.id);
  const restrict = only ? [only] : undefined;
  const subscriptions = await subscriptionsOfAll(db, previous.start, period.end, restrict);
  const src = {
    subscriptions,
    plans: await plansOf(db, subscriptions),
    meters: new Map((await listMeters(db)).map((m) => [m.key, m])),
  };
  const at = new Date(Math.min(now.getTime(), period.end.getTime() - 1));
  // Independent reads, together (a server database answers them in parallel).
  const [limits, exhausted, finals, withGrants] = await Promise.all([
    effectiveLimitsOfAll(db, at, restrict),
    exhaustedCustomers(db, only),
    // Last period as invoiced where its invoice is final (frozen: later corrections go on this period's invoice).
    finalTotals(db, previous.start, only),
    customersWithGrants(db, only),
  ]);
  // Meter summaries only for customers with limits (their states); everyone else needs just the totals.
  const [current, last] = await Promise.all([
    statementsOfAll(db, period, ids, src, now, { only, full: (c) => limits.has(c) }),
    // Last period is priced only for customers whose invoice for it is not final yet.
    statementsOfAll(
      db,
      previous,
      ids.filter((id) => !finals.has(id)),
      src,
      now,
      { only },
    ),
  ]);
  // Customers with grants: their statements with credits, read through their ledgers (one snapshot each).
  const credited = new Map<string, { now: Dec; previous: Dec; credits: Dec }>();
  for (const id of withGrants) {
    if (!current.has(id)) continue;
    const cur = await creditedStatement(deps.credits, id, period, now);
    const prev = finals.has(id) ? undefined : await creditedStatement(deps.credits, id, previous, now);
    current.set(id, cur.statement);
    if (prev) last.set(id, prev.statement);
    credited.set(id, {
      now: cur.credits?.total ?? cur.statement.invoice.total,
      previous: finals.get(id) ?? prev?.credits?.total ?? prev?.statement.invoice.total ?? ZERO,
      credits: cur.credits?.credits ?? ZERO,
    });
  }

  const elapsedMs = Math.max(now.getTime() - period.start.getTime(), 3_600_000);
  const periodMs = period.end.getTime() - period.start.getTime();
  // Rounded factors: multiplying by a 100-digit quotient would cost more than 1,000 customers' pricing.
  const scale = dec(periodMs).div(elapsedMs).toDecimalPlaces(12);
  const perDay = dec(86_400_000).div(elapsedMs).toDecimalPlaces(12);

  const states: Record<CustomerState, number> = { ok: 0, soft: 0, blocked: 0, credits_exhausted: 0 };
  const totals = new Map<string, { customers: number; spend: Dec; previous: Dec; forecast: Dec }>();
  const spendOf = new Map<string, Dec>();
  const customers = customerRows.map((c): OverviewCustomer => {
    const st = current.get(c.id) as Statement;
    const prevSt = last.get(c.id);
    const currency = st.currency ?? prevSt?.currency ?? null;
    const fmt = (d: Dec) => (currency ? formatMoney(d, currency) : formatDecimal(d));
    const { usage, fees } = usageAndFees(st);
    const credit = credited.get(c.id);
    const spend = credit?.now ?? st.invoice.total;
    spendOf.set(c.id, spend);
    // Forecast of the charges before credits (what the period will cost), linear in time for usage.
    const forecast = usage.times(scale).plus(fees);
    const previousSpend = finals.get(c.id) ?? credit?.previous ?? prevSt?.invoice.total ?? ZERO;
    const soft: string[] = [];
    const blocked: string[] = [];
    for (const [meter, limit] of limits.get(c.id) ?? []) {
      const m = st.meters.find((x) => x.meter === meter);
      const value = limit.unit === "amount" ? (m?.amount ?? ZERO) : (m?.quantity ?? ZERO);
      const p = deps.previousState(c.id, meter);
      const prev = p && p.periodStart.getTime() === period.start.getTime() ? p : undefined;
      const state = evaluate(value, limit, prev).state;
      if (state === "blocked") blocked.push(meter);
      else if (state === "soft") soft.push(meter);
    }
    // As the entitlement decides: a hard limit first, then exhausted credits (credit_only customers).
    const state: CustomerState = blocked.length
      ? "blocked"
      : exhausted.has(c.id)
        ? "credits_exhausted"
        : soft.length
          ? "soft"
          : "ok";
    states[state] += 1;
    if (currency) {
      const t = totals.get(currency) ?? { customers: 0, spend: ZERO, previous: ZERO, forecast: ZERO };
      totals.set(currency, {
        customers: t.customers + 1,
        spend: t.spend.plus(spend),
        previous: t.previous.plus(previousSpend),
        forecast: t.forecast.plus(forecast),
      });
    }
    return {
      id: c.id,
      name: c.name,
      plan: subscriptionAtNow(subscriptions.get(c.id), now),
      currency,
      spend: fmt(spend),
      credits: credit ? fmt(credit.credits) : null,
      previous_spend: fmt(previousSpend),
      forecast: fmt(forecast),
      growth: fmt(forecast.minus(previousSpend)),
      // A ratio for ranking and a percentage, not money: binary floating point is precise enough, and a 100-digit
      // decimal division per customer would cost more than the rest of the row.
      growth_ratio: previousSpend.isZero() ? null : (forecast.toNumber() / previousSpend.toNumber() - 1).toFixed(4),
      run_rate_per_day: fmt(usage.times(perDay)),
      state,
      soft_meters: soft.sort(),
      blocked_meters: blocked.sort(),
    };
  });
  // Highest spend first; ties by id, so the order is stable between refreshes.
  const by = (c: OverviewCustomer) => spendOf.get(c.id) ?? ZERO;
  customers.sort((a, b) => by(b).cmp(by(a)) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return {
    period,
    previous_period: previous,
    method: "linear",
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
