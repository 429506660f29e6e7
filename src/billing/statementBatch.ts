// Statements of many customers for one period from a handful of queries — the dashboard's overview and price
// simulations read this way: usage totals in one rollup read per distinct interval (usually just the period) for all
// the customers at once, grouped quantities likewise, then the invoice's own pure pricing (priceStatement), so every
// total equals the customer's own summary to the cent. Subscriptions come in one query (subscriptionsOfAll or
// subscriptionsOfPlanCustomers, in subscriptions.ts). Customers on different billing cycles have different periods:
// loadStatementBatches groups them by identical period, so each distinct period is read once (most share UTC months).
import type { Meter } from "../catalog/meters.js";
import { readAll } from "../db/reads.js";
import type { Queryable } from "../db/types.js";
import type { GroupQuantity } from "../pricing/invoice.js";
import { Dec, ZERO } from "../pricing/money.js";
import { type Period, type PlanPrices, planPeriod, type SubscriptionSpan } from "../pricing/segments.js";
import { quantityOf, rangeTotals, type Totals } from "../rollups/totals.js";
import { type GroupedRead, readGroupsByCustomer } from "./groups.js";
import { loadPlanPrices } from "./plans.js";
import {
  groupedReadKey,
  groupedReads,
  intervalKey,
  priceStatement,
  type Statement,
  type StatementInputs,
  statementIntervals,
} from "./statement.js";

/** Plan prices of every plan any of the subscriptions names. */
export function plansOf(
  db: Queryable,
  subscriptions: ReadonlyMap<string, SubscriptionSpan[]>,
): Promise<Map<string, PlanPrices>> {
  return loadPlanPrices(db, [...new Set([...subscriptions.values()].flat().map((s) => s.plan))]);
}

interface BatchRequest {
  period: Period;
  /** The customers to price, each with its subscriptions (those outside the period are left out here). */
  subscriptions: ReadonlyMap<string, SubscriptionSpan[]>;
  /** Every set of plans the statements will be priced by (a simulation: as they are, and with its replacements). */
  planSets: ReadonlyMap<string, PlanPrices>[];
  meters: ReadonlyMap<string, Meter>;
}

/** What the statements of a batch are priced from, read once. */
interface StatementBatch {
  period: Period;
  customers: string[];
  /** The customer's statement priced by `plans` (one of the request's plan sets). */
  price(customer: string, plans: ReadonlyMap<string, PlanPrices>, now: Date, opts?: { totalOnly?: boolean }): Statement;
  /** The customer's quantity of each meter it used in the period, to date (the summary's meter quantities). */
  periodQuantities(customer: string): Map<string, Dec>;
}

type Planned = ReturnType<typeof planPeriod>;

/** Subscriptions of one customer in the period, as a key: customers on the same plan since before share it. */
const shapeKey = (subs: SubscriptionSpan[]) =>
  subs
    .map((s) => {
      const base = `${s.plan}@${s.start.getTime()}-${s.end?.getTime() ?? ""}`;
      const changes = s.proration === "none" || s.endProration === "none" || s.trialEnd || s.quantities?.length;
      return changes ? `${base}${JSON.stringify([s.proration, s.endProration, s.trialEnd, s.quantities])}` : base;
    })
    .join(",");

/** Reads what the statements of every customer of `req.subscriptions` for `req.period` need, in one pass. */
async function loadStatementBatch(db: Queryable, req: BatchRequest): Promise<StatementBatch> {
  const { period, meters } = req;
  const subsOf = new Map<string, SubscriptionSpan[]>();
  for (const [customer, subs] of req.subscriptions) {
    subsOf.set(
      customer,
      subs.filter((s) => s.start < period.end && (s.end === null || s.end > period.start)),
    );
  }
  const needs = readsNeeded(req, subsOf);
  const totals = new Map<string, Map<string, Map<string, Totals>>>(); // interval → customer → meter → totals
  for (const [k, { interval, customers }] of needs.intervals) {
    const byCustomer = new Map<string, Map<string, Totals>>();
    for (const t of await rangeTotals(db, { from: interval.start, to: interval.end, customer: onlyOne(customers) })) {
      const m = byCustomer.get(t.customer) ?? new Map<string, Totals>();
      m.set(t.meter, t);
      byCustomer.set(t.customer, m);
    }
    totals.set(k, byCustomer);
  }
  const groups = new Map<string, Map<string, GroupQuantity[]>>(); // grouped read → customer → groups
  for (const [k, { read, customers }] of needs.grouped) {
    groups.set(k, await readGroupsByCustomer(db, read, meters, onlyOne(customers)));
  }
  const planned = new Map<ReadonlyMap<string, PlanPrices>, Map<string, Planned>>(); // plan set → shape → planned
  const plannedOf = (subs: SubscriptionSpan[], plans: ReadonlyMap<string, PlanPrices>) => {
    const byShape = planned.get(plans) ?? new Map<string, Planned>();
    planned.set(plans, byShape);
    const key = shapeKey(subs);
    let found = byShape.get(key);
    if (!found) {
      found = planPeriod(period, subs, plans);
      byShape.set(key, found);
    }
    return found;
  };
  const inputsOf = (customer: string, plans: ReadonlyMap<string, PlanPrices>): StatementInputs => {
    const subs = subsOf.get(customer) ?? [];
    return {
      customer,
      period,
      subscriptions: subs,
      plans,
      meters,
      planned: plannedOf(subs, plans),
      totals: (interval) => totals.get(intervalKey(interval))?.get(customer),
      groups: (interval, meter, groupBy) =>
        groups.get(groupedReadKey({ interval, meter, groupBy: [...groupBy] }))?.get(customer) ?? [],
    };
  };
  return {
    period,
    customers: [...subsOf.keys()],
    price: (customer, plans, now, opts = {}) => priceStatement(inputsOf(customer, plans), now, opts),
    periodQuantities(customer) {
      const out = new Map<string, Dec>();
      for (const [meter, t] of totals.get(intervalKey(period))?.get(customer) ?? []) {
        const m = meters.get(meter);
        out.set(meter, m ? new Dec(quantityOf(t, m.aggregation)) : ZERO);
      }
      return out;
    },
  };
}

/** A read needed by one customer only is narrowed to that customer; one needed by more reads everybody's. */
const onlyOne = (customers: Set<string>) => (customers.size === 1 ? [...customers][0] : undefined);

/** The distinct intervals and grouped reads the statements need, each with the customers that need it. */
function readsNeeded(req: BatchRequest, subsOf: ReadonlyMap<string, SubscriptionSpan[]>) {
  const intervals = new Map<string, { interval: Period; customers: Set<string> }>();
  const grouped = new Map<string, { read: GroupedRead; customers: Set<string> }>();
  // Most customers share a shape (same plan since before the period): plan each shape once.
  const shapes = new Map<string, { intervals: Period[]; grouped: GroupedRead[] }>();
  for (const [customer, subs] of subsOf) {
    const key = shapeKey(subs);
    let shape = shapes.get(key);
    if (!shape) {
      const all = new Map<string, Period>([[intervalKey(req.period), req.period]]);
      const reads = new Map<string, GroupedRead>();
      for (const plans of req.planSets) {
        for (const i of statementIntervals(req.period, subs, plans)) all.set(intervalKey(i), i);
        for (const r of groupedReads(req.period, subs, plans)) reads.set(groupedReadKey(r), r);
      }
      shape = { intervals: [...all.values()], grouped: [...reads.values()] };
      shapes.set(key, shape);
    }
    for (const interval of shape.intervals) {
      const k = intervalKey(interval);
      const need = intervals.get(k) ?? { interval, customers: new Set<string>() };
      need.customers.add(customer);
      intervals.set(k, need);
    }
    for (const read of shape.grouped) {
      const k = groupedReadKey(read);
      const need = grouped.get(k) ?? { read, customers: new Set<string>() };
      need.customers.add(customer);
      grouped.set(k, need);
    }
  }
  return { intervals, grouped };
}

/** Statements of customers whose periods differ: each customer priced for its own period. */
export interface StatementBatches {
  customers: string[];
  /** The customer's period (the one it was loaded for). */
  periodOf(customer: string): Period;
  price(customer: string, plans: ReadonlyMap<string, PlanPrices>, now: Date, opts?: { totalOnly?: boolean }): Statement;
  periodQuantities(customer: string): Map<string, Dec>;
}

/**
 * Like loadStatementBatch, for customers each with its own period (`periods`): customers with identical periods are
 * loaded together, one batch — one rollup read per distinct interval — per distinct period.
 */
export async function loadStatementBatches(
  db: Queryable,
  req: Omit<BatchRequest, "period"> & { periods: ReadonlyMap<string, Period> },
): Promise<StatementBatches> {
  const groups = new Map<string, { period: Period; subscriptions: Map<string, SubscriptionSpan[]> }>();
  for (const [customer, subs] of req.subscriptions) {
    const period = req.periods.get(customer);
    if (!period) continue;
    const k = intervalKey(period);
    const group = groups.get(k) ?? { period, subscriptions: new Map<string, SubscriptionSpan[]>() };
    group.subscriptions.set(customer, subs);
    groups.set(k, group);
  }
  const loaded = await readAll(
    db,
    [...groups.values()].map(
      (g) => () => loadStatementBatch(db, { ...req, period: g.period, subscriptions: g.subscriptions }),
    ),
  );
  const batchOf = new Map<string, StatementBatch>();
  for (const b of loaded) for (const c of b.customers) batchOf.set(c, b);
  const of = (customer: string) => {
    const b = batchOf.get(customer);
    if (!b) throw new Error(`no statement batch has customer ${customer}`);
    return b;
  };
  return {
    customers: [...batchOf.keys()],
    periodOf: (customer) => of(customer).period,
    price: (customer, plans, now, opts) => of(customer).price(customer, plans, now, opts),
    periodQuantities: (customer) => of(customer).periodQuantities(customer),
  };
}
