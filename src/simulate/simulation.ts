// Price simulation on real usage: what every customer of a plan paid in a period, and what they would have paid
// had some meters been priced by other specs for the whole period. Both totals come from the same statement
// pricing as the invoice (billing/statement.ts); the inputs of all customers are read in one pass — their
// subscriptions in one query, usage totals in one rollup read per distinct interval for all customers at once.

import { type GroupedRead, readGroupsByCustomer } from "../billing/groups.js";
import { loadPlanPrices } from "../billing/plans.js";
import { groupedReadKey, groupedReads, intervalKey, priceStatement, statementIntervals } from "../billing/statement.js";
import { type Subscription, subscriptionsOfPlanCustomers } from "../billing/subscriptions.js";
import { listMeters } from "../catalog/meters.js";
import type { Db } from "../db/types.js";
import { notFound, unprocessable } from "../errors.js";
import { finalFiguresOf } from "../invoices/store.js";
import type { GroupQuantity } from "../pricing/invoice.js";
import type { PriceVersion } from "../pricing/models.js";
import { Dec, sum } from "../pricing/money.js";
import { type Period, type PlanPrices, planPeriod } from "../pricing/segments.js";
import { rangeTotals, type Totals } from "../rollups/totals.js";

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

  // Which customers need which intervals: usually every customer just the period, read once for all of them.
  const needs = new Map<string, { interval: Period; customers: Set<string> }>();
  // Most customers share their subscriptions' shape (same plan since before the period): plan each shape once.
  type Planned = ReturnType<typeof planPeriod>;
  const shapes = new Map<
    string,
    { intervals: Period[]; grouped: GroupedRead[]; current: Planned; simulated: Planned }
  >();
  const shapeOf = (subs: Subscription[]) => {
    const shape = subs.map((s) => `${s.plan}@${s.start.getTime()}-${s.end?.getTime() ?? ""}`).join(",");
    let found = shapes.get(shape);
    if (!found) {
      const all = new Map<string, Period>();
      const grouped = new Map<string, GroupedRead>();
      for (const p of [plans, simulatedPlans]) {
        for (const interval of statementIntervals(req.period, subs, p)) all.set(intervalKey(interval), interval);
        for (const r of groupedReads(req.period, subs, p)) grouped.set(groupedReadKey(r), r);
      }
      found = {
        intervals: [...all.values()],
        grouped: [...grouped.values()],
        current: planPeriod(req.period, subs, plans),
        simulated: planPeriod(req.period, subs, simulatedPlans),
      };
      shapes.set(shape, found);
    }
    return found;
  };
  const intervalsOf = (subs: Subscription[]) => shapeOf(subs).intervals;
  const groupNeeds = new Map<string, { read: GroupedRead; customers: Set<string> }>();
  for (const [customer, subs] of subscriptions) {
    for (const r of shapeOf(subs).grouped) {
      const k = groupedReadKey(r);
      const need = groupNeeds.get(k) ?? { read: r, customers: new Set<string>() };
      need.customers.add(customer);
      groupNeeds.set(k, need);
    }
  }
  const groups = new Map<string, Map<string, GroupQuantity[]>>(); // grouped read → customer → groups
  for (const [k, { read, customers }] of groupNeeds) {
    const only = customers.size === 1 ? [...customers][0] : undefined;
    groups.set(k, await readGroupsByCustomer(db, read, meters, only));
  }
  for (const [customer, subs] of subscriptions) {
    for (const interval of intervalsOf(subs)) {
      const k = intervalKey(interval);
      const need = needs.get(k) ?? { interval, customers: new Set<string>() };
      need.customers.add(customer);
      needs.set(k, need);
    }
  }
  const totals = new Map<string, Map<string, Map<string, Totals>>>(); // interval → customer → meter → totals
  for (const [k, { interval, customers }] of needs) {
    const only = customers.size === 1 ? [...customers][0] : undefined;
    const rows = await rangeTotals(db, { from: interval.start, to: interval.end, customer: only });
    const byCustomer = new Map<string, Map<string, Totals>>();
    for (const t of rows) {
      const m = byCustomer.get(t.customer) ?? new Map<string, Totals>();
      m.set(t.meter, t);
      byCustomer.set(t.customer, m);
    }
    totals.set(k, byCustomer);
  }

  // A finalized period's current total is its final invoice as frozen (late usage is carried to a later draft).
  const finals = await finalFiguresOf(db, req.period.start, req.customers);
  const out: SimulatedCustomer[] = [];
  for (const [customer, subs] of [...subscriptions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const inputs = {
      customer,
      period: req.period,
      subscriptions: subs,
      meters,
      totals: (interval: Period) => totals.get(intervalKey(interval))?.get(customer),
      groups: (interval: Period, meter: string, groupBy: readonly string[]) =>
        groups.get(groupedReadKey({ interval, meter, groupBy: [...groupBy] }))?.get(customer) ?? [],
    };
    const shape = shapeOf(subs);
    const price = (p: ReadonlyMap<string, PlanPrices>, planned: Planned) =>
      priceStatement({ ...inputs, plans: p, planned }, now, { totalOnly: true }).invoice.total;
    const final = finals.get(customer);
    out.push({
      customer,
      current: final
        ? sum(final.filter((f) => f.meter !== null).map((f) => new Dec(f.amount)))
        : price(plans, shape.current),
      currentFrom: final ? "final_invoice" : "usage",
      simulated: price(simulatedPlans, shape.simulated),
    });
  }
  return {
    plan: req.plan,
    currency: plan.currency,
    period: req.period,
    customers: out,
    totals: { current: sum(out.map((c) => c.current)), simulated: sum(out.map((c) => c.simulated)) },
    asOf: now,
  };
}
