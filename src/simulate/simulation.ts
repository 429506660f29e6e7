// Price simulation on real usage: what every customer of a plan paid in a period, and what they would have paid
// had some meters been priced by other specs for the whole period. Both totals come from the same statement
// pricing as the invoice (billing/statement.ts), and the inputs of all customers are read in one pass by the batch
// loader (billing/statementBatch.ts) — their subscriptions in one query, usage totals in one rollup read per
// distinct interval for all customers at once.
import { loadPlanPrices } from "../billing/plans.js";
import { loadStatementBatch } from "../billing/statementBatch.js";
import { subscriptionsOfPlanCustomers } from "../billing/subscriptions.js";
import { listMeters, type Meter } from "../catalog/meters.js";
import type { Db } from "../db/types.js";
import { notFound, unprocessable } from "../errors.js";
import { finalFiguresOf } from "../invoices/store.js";
import type { PriceVersion } from "../pricing/models.js";
import { Dec, sum } from "../pricing/money.js";
import type { Period, PlanPrices } from "../pricing/segments.js";

export interface SimulationRequest {
  plan: string;
  period: Period;
  /** Replacement prices, one per meter, in effect for the whole period. */
  prices: PriceVersion[];
  customers?: string[] | undefined;
}

export interface SimulatedCustomer {
  customer: string;
  /** What the customer's invoice of the period comes to before credits: its final invoice, once it has one. */
  current: Dec;
  currentFrom: "final_invoice" | "usage";
  simulated: Dec;
}

export interface Simulation {
  plan: string;
  currency: string;
  period: Period;
  customers: SimulatedCustomer[];
  totals: { current: Dec; simulated: Dec };
  asOf: Date;
}

/** The plan with the given meters' versions replaced by one version each, in effect from the beginning. */
export function withReplacements(plan: PlanPrices, prices: PriceVersion[]): PlanPrices {
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
  const subscriptions = await subscriptionsOfPlanCustomers(
    db,
    req.plan,
    req.period.start,
    req.period.end,
    req.customers,
  );
  const plans = await loadPlanPrices(
    db,
    [...subscriptions.values()].flat().map((s) => s.plan),
  );
  const simulatedPlans = new Map(plans);
  simulatedPlans.set(req.plan, withReplacements(plan, req.prices));
  const batch = await loadStatementBatch(db, {
    period: req.period,
    subscriptions,
    planSets: [plans, simulatedPlans],
    meters,
  });
  // A finalized period's current total is its final invoice as frozen (late usage is carried to a later draft).
  const finals = await finalFiguresOf(db, req.period.start, req.customers);
  const total = (customer: string, p: ReadonlyMap<string, PlanPrices>) =>
    batch.price(customer, p, now, { totalOnly: true }).invoice.total;
  const out = [...subscriptions.keys()].sort().map((customer): SimulatedCustomer => {
    const final = finals.get(customer);
    return {
      customer,
      current: final
        ? sum(final.filter((f) => f.meter !== null).map((f) => new Dec(f.amount)))
        : total(customer, plans),
      currentFrom: final ? "final_invoice" : "usage",
      simulated: total(customer, simulatedPlans),
    };
  });
  return {
    plan: req.plan,
    currency: plan.currency,
    period: req.period,
    customers: out,
    totals: { current: sum(out.map((c) => c.current)), simulated: sum(out.map((c) => c.simulated)) },
    asOf: now,
  };
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
