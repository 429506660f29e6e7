// The operator's overview: every customer's current-period spend against the last period's, limit state, run
// rate and forecast — each over the customer's own billing period (its cycle's), for thousands of customers in a
// number of queries that does not grow with them (overviewInputs.ts), priced by the invoice's own code so each spend
// equals the summary's total, and forecast by the customer forecast's own code (forecast/forecast.ts) so each
// forecast equals GET /v1/customers/{id}/forecast's. Customers with credit grants cost one ledger read each
// (credits/invoice.ts), so their spend is after credits.
import type { Statement } from "../billing/statement.js";
import { forecastOf } from "../forecast/forecast.js";
import type { ForecastMethod } from "../forecast/project.js";
import { evaluate, type LimitState } from "../limits/rules.js";
import { type Dec, dec, formatDecimal, formatMoney, sum, ZERO } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import { type OverviewDeps, type OverviewInputs, readOverview } from "./overviewInputs.js";

/** A customer's worst limit state, or credits_exhausted (a credit_only customer with no covering balance). */
type CustomerState = LimitState | "credits_exhausted";

interface OverviewCustomer {
  id: string;
  name: string | null;
  plan: string | null;
  currency: string | null;
  /** The customer's current period (its own billing cycle's), and the time zone of that cycle. */
  period: Period & { time_zone: string };
  previous_period: Period;
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

interface Overview {
  /** UTC calendar months' current and previous period (the default cycle), or the one customer's. */
  period: Period;
  previous_period: Period;
  method: "customer_forecast";
  customers: OverviewCustomer[];
  totals: { currency: string; customers: number; spend: string; previous_spend: string; forecast: string }[];
  states: Record<CustomerState, number>;
  as_of: Date;
}

export async function dashboardOverview(deps: OverviewDeps, only?: string): Promise<Overview> {
  const inputs = await readOverview(deps, only);
  const { period, now } = inputs;
  // Days elapsed of each distinct period, once: a rounded factor (multiplying by a 100-digit quotient would cost more
  // than 1,000 customers' pricing).
  const perDayOf = new Map<Period, Dec>();
  const perDay = (p: Period) => {
    let found = perDayOf.get(p);
    if (!found) {
      found = dec(86_400_000)
        .div(Math.max(now.getTime() - p.start.getTime(), 3_600_000))
        .toDecimalPlaces(12);
      perDayOf.set(p, found);
    }
    return found;
  };
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

/** One customer's row: its figures as JSON, and the decimals the totals and the ranking add up. */
function customerFigures(inputs: OverviewInputs, id: string, deps: OverviewDeps, perDay: (p: Period) => Dec) {
  const st = inputs.current.get(id) as Statement;
  const periods = inputs.periods.get(id) ?? { current: inputs.period, previous: inputs.previous, timeZone: "UTC" };
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
  // Usage lines scale with time; base fees and fixed charges do not (they are in the statement once, whole).
  const usage = st.invoice.total.minus(sum(st.invoice.lines.filter((l) => l.kind !== "usage").map((l) => l.amount)));
  const { state, soft, blocked } = limitState(inputs, id, st, deps, periods.current);
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
      period: { ...periods.current, time_zone: periods.timeZone },
      previous_period: periods.previous,
      spend: fmt(spend),
      credits: credit ? fmt(credit.credits) : null,
      previous_spend: fmt(previousSpend),
      forecast: fmt(total),
      forecast_method: forecast.method,
      growth: fmt(total.minus(previousSpend)),
      // A ratio for ranking and a percentage, not money: binary floating point is precise enough, and a 100-digit
      // decimal division per customer would cost more than the rest of the row.
      growth_ratio: previousSpend.isZero() ? null : (total.toNumber() / previousSpend.toNumber() - 1).toFixed(4),
      run_rate_per_day: fmt(usage.times(perDay(periods.current))),
      state,
      soft_meters: soft,
      blocked_meters: blocked,
    },
  };
}

/** The customer's meters at their soft or hard limits, and its state as the entitlement decides it. */
function limitState(inputs: OverviewInputs, id: string, st: Statement, deps: OverviewDeps, period: Period) {
  const soft: string[] = [];
  const blocked: string[] = [];
  for (const [meter, limit] of inputs.limits.get(id) ?? []) {
    const m = st.meters.find((x) => x.meter === meter);
    const value = limit.unit === "amount" ? (m?.amount ?? ZERO) : (m?.quantity ?? ZERO);
    const p = deps.previousState(id, meter);
    const prev = p && p.periodStart.getTime() === period.start.getTime() ? p : undefined;
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

function subscriptionAtNow(subs: { plan: string; start: Date; end: Date | null }[] | undefined, now: Date) {
  return subs?.find((s) => s.start <= now && (s.end === null || s.end > now))?.plan ?? null;
}
