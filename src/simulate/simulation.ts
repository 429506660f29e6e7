// Price simulation on real usage: what every customer of a plan paid in a period, and what they would have paid
// had some meters been priced by other specs for the whole period. The period is a month: for each customer, its own
// billing period that starts in that month (its cycle's; for UTC calendar months the month itself). Customers
// without one (a yearly cycle, most months) are left out and named. Both totals come from the same statement
// pricing as the invoice (billing/statement.ts), and the inputs of all customers are read in one pass by the batch
// loader (billing/statementBatch.ts) — their calendars and subscriptions in one query each, usage totals in one
// rollup read per distinct interval of each distinct period for all its customers at once.
import { BillingCalendar } from "../billing/calendar.js";
import { loadPlanPrices } from "../billing/plans.js";
import { loadStatementBatches } from "../billing/statementBatch.js";
import { calendarsOf, type Subscription, subscriptionsOfPlanCustomers } from "../billing/subscriptions.js";
import { listMeters, type Meter } from "../catalog/meters.js";
import type { Db } from "../db/types.js";
import { notFound, unprocessable } from "../errors.js";
import { billedBeforeCredits, type StoredFigure } from "../invoices/rules.js";
import { finalFiguresOf } from "../invoices/store.js";
import type { PriceVersion } from "../pricing/models.js";
import { type Dec, sum } from "../pricing/money.js";
import type { Period, PlanPrices } from "../pricing/segments.js";

interface SimulationRequest {
  plan: string;
  /** "YYYY-MM": each customer's period that starts in that month. */
  month: string;
  /** Replacement prices, one per meter, in effect for the whole period. */
  prices: PriceVersion[];
  customers?: string[] | undefined;
}

interface SimulatedCustomer {
  customer: string;
  /** The customer's own period that starts in the month. */
  period: Period;
  /** What the customer's invoice of the period comes to before credits: its final invoice, once it has one. */
  current: Dec;
  currentFrom: "final_invoice" | "usage";
  simulated: Dec;
}

interface Simulation {
  plan: string;
  currency: string;
  month: string;
  customers: SimulatedCustomer[];
  /** Customers of the plan in the month with no billing period starting in it: not simulated. */
  noPeriod: string[];
  totals: { current: Dec; simulated: Dec };
  asOf: Date;
}

/** The plan with the given meters' versions replaced by one version each, in effect from the beginning. */
function withReplacements(plan: PlanPrices, prices: PriceVersion[]): PlanPrices {
  const replaced = new Set(prices.map((p) => p.meter));
  return {
    ...plan,
    versions: [
      ...plan.versions.filter((v) => !replaced.has(v.meter)),
      ...prices.map((p) => ({ ...p, effectiveFrom: new Date(0) })),
    ],
  };
}

export async function simulate(db: Db, req: SimulationRequest, now: Date): Promise<Simulation> {
  const { plan, meters } = await checkedRequest(db, req);
  const { periods, subscriptions, noPeriod } = await customersOfPlan(db, req);
  const plans = await loadPlanPrices(
    db,
    [...subscriptions.values()].flat().map((s) => s.plan),
  );
  const simulatedPlans = new Map(plans);
  simulatedPlans.set(req.plan, withReplacements(plan, req.prices));
  const batch = await loadStatementBatches(db, { periods, subscriptions, planSets: [plans, simulatedPlans], meters });
  // A finalized period's current total is its final invoice as frozen (late usage is carried to a later draft).
  const finals = await finalsOf(db, periods);
  const total = (customer: string, p: ReadonlyMap<string, PlanPrices>) =>
    batch.price(customer, p, now, { totalOnly: true }).invoice.total;
  const out = [...subscriptions.keys()].sort().map((customer): SimulatedCustomer => {
    const final = finals.get(customer);
    return {
      customer,
      period: periods.get(customer) as Period,
      current: final ? billedBeforeCredits(final) : total(customer, plans),
      currentFrom: final ? "final_invoice" : "usage",
      simulated: total(customer, simulatedPlans),
    };
  });
  return {
    plan: req.plan,
    currency: plan.currency,
    month: req.month,
    customers: out,
    noPeriod,
    totals: { current: sum(out.map((c) => c.current)), simulated: sum(out.map((c) => c.simulated)) },
    asOf: now,
  };
}

/** Zone offsets reach 14 hours: a local month lies within its UTC month widened by as much on each side. */
const ZONE_SLACK_MS = 14 * 3_600_000;

/**
 * The customers of the plan in their own period that starts in the month (each with that period and its
 * subscriptions), and those of the plan around the month that have no period starting in it. Two queries: the
 * calendars, then the subscriptions over every period found.
 */
async function customersOfPlan(db: Db, req: SimulationRequest) {
  const calendars = await calendarsOf(db, req.customers);
  const monthly = new BillingCalendar([]);
  const utcMonth = monthly.periodStartingIn(req.month) as Period;
  const around = {
    start: new Date(utcMonth.start.getTime() - ZONE_SLACK_MS),
    end: new Date(utcMonth.end.getTime() + ZONE_SLACK_MS),
  };
  const periodOf = new Map<string, Period | null>();
  let from = around.start;
  let to = around.end;
  for (const [customer, calendar] of calendars) {
    // Most customers are on UTC calendar months: their period is the month itself.
    const p = calendar.calendarMonths ? utcMonth : calendar.periodStartingIn(req.month);
    periodOf.set(customer, p);
    if (p && p.start < from) from = p.start;
    if (p && p.end > to) to = p.end;
  }
  const all = await subscriptionsOfPlanCustomers(db, req.plan, from, to, req.customers);
  const periods = new Map<string, Period>();
  const subscriptions = new Map<string, Subscription[]>();
  const noPeriod: string[] = [];
  const onPlanIn = (subs: Subscription[], p: Period) =>
    subs.some((s) => s.plan === req.plan && s.start < p.end && (s.end === null || s.end > p.start));
  for (const [customer, subs] of all) {
    const p = periodOf.has(customer) ? periodOf.get(customer) : utcMonth;
    if (!p) {
      if (onPlanIn(subs, around)) noPeriod.push(customer);
    } else if (onPlanIn(subs, p)) {
      periods.set(customer, p);
      subscriptions.set(customer, subs);
    }
  }
  return { periods, subscriptions, noPeriod: noPeriod.sort() };
}

/** Final invoices of the customers' periods: one read per distinct period start. */
async function finalsOf(db: Db, periods: ReadonlyMap<string, Period>): Promise<Map<string, StoredFigure[]>> {
  const byStart = new Map<number, string[]>();
  for (const [customer, p] of periods) {
    const list = byStart.get(p.start.getTime()) ?? [];
    list.push(customer);
    byStart.set(p.start.getTime(), list);
  }
  const out = new Map<string, StoredFigure[]>();
  for (const [start, customers] of byStart) {
    // Every customer of a shared period (usually all of them) is read without a list: the list would be as long.
    const found = await finalFiguresOf(db, new Date(start), byStart.size === 1 ? undefined : customers);
    for (const c of customers) {
      const f = found.get(c);
      if (f) out.set(c, f);
    }
  }
  return out;
}

/** The plan and the meters, once the request names a plan that exists and only meters that exist. */
async function checkedRequest(
  db: Db,
  req: SimulationRequest,
): Promise<{ plan: PlanPrices; meters: Map<string, Meter> }> {
  const plan = (await loadPlanPrices(db, [req.plan])).get(req.plan);
  if (!plan) throw notFound(`no plan ${req.plan}`);
  const meters = new Map((await listMeters(db)).map((m) => [m.key, m]));
  const unknown = req.prices.findIndex((p) => !meters.has(p.meter));
  if (unknown >= 0) {
    const meter = req.prices[unknown]?.meter;
    throw unprocessable("unknown_meter", `unknown meter "${meter}"`, [
      { field: `prices[${unknown}].meter`, message: "no such meter" },
    ]);
  }
  return { plan, meters };
}
