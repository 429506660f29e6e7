// Statements of many customers for one period, from a handful of queries: subscriptions of all of them in one,
// usage totals in one rollup read per distinct interval (usually just the period) for all customers at once, and
// grouped quantities likewise — then the same pure pricing as the invoice (billing/statement.ts), so every total
// here equals the customer's own summary to the cent. The simulation (simulate/simulation.ts) reads the same way.
import { type GroupedRead, readGroupsByCustomer } from "../billing/groups.js";
import { loadPlanPrices } from "../billing/plans.js";
import {
  groupedReadKey,
  groupedReads,
  intervalKey,
  priceStatement,
  type Statement,
  statementIntervals,
} from "../billing/statement.js";
import type { Meter } from "../catalog/meters.js";
import type { Queryable } from "../db/types.js";
import type { GroupQuantity } from "../pricing/invoice.js";
import type { Period, PlanPrices, SubscriptionSpan } from "../pricing/segments.js";
import { rangeTotals, type Totals } from "../rollups/totals.js";

/** Every subscription overlapping [from, to) of every customer (or of `customers`), oldest first. One query. */
export async function subscriptionsOfAll(
  db: Queryable,
  from: Date,
  to: Date,
  customers?: string[],
): Promise<Map<string, SubscriptionSpan[]>> {
  const { rows } = await db.query<{ customer_id: string; plan_key: string; start_at: Date; end_at: Date | null }>(
    `SELECT customer_id, plan_key, start_at, end_at FROM subscriptions
     WHERE start_at < $2 AND (end_at IS NULL OR end_at > $1) AND ($3::text[] IS NULL OR customer_id = ANY($3::text[]))
     ORDER BY customer_id, start_at`,
    [from, to, customers ?? null],
  );
  const out = new Map<string, SubscriptionSpan[]>();
  for (const r of rows) {
    const list = out.get(r.customer_id) ?? [];
    list.push({ plan: r.plan_key, start: r.start_at, end: r.end_at });
    out.set(r.customer_id, list);
  }
  return out;
}

/** Plan prices of every plan any of the subscriptions names. */
export function plansOf(
  db: Queryable,
  subscriptions: ReadonlyMap<string, SubscriptionSpan[]>,
): Promise<Map<string, PlanPrices>> {
  return loadPlanPrices(db, [...new Set([...subscriptions.values()].flat().map((s) => s.plan))]);
}

const inPeriod = (subs: SubscriptionSpan[], p: Period) =>
  subs.filter((s) => s.start < p.end && (s.end === null || s.end > p.start));

export interface StatementSources {
  subscriptions: ReadonlyMap<string, SubscriptionSpan[]>;
  plans: ReadonlyMap<string, PlanPrices>;
  meters: ReadonlyMap<string, Meter>;
}

/**
 * The statement of each of `customers` for `period`. `only` narrows the reads to one customer (a bound key):
 * the rollup reads then filter by customer instead of reading everybody's. `full`: the customers whose meter
 * summaries are needed; the others' statements have only the invoice total and lines (no descriptions).
 */
export async function statementsOfAll(
  db: Queryable,
  period: Period,
  customers: string[],
  src: StatementSources,
  now: Date,
  opts: { only?: string | undefined; full?: (customer: string) => boolean } = {},
): Promise<Map<string, Statement>> {
  const only = opts.only;
  if (customers.length === 0) return new Map();
  const subsOf = new Map(customers.map((c) => [c, inPeriod(src.subscriptions.get(c) ?? [], period)]));
  const intervals = new Map<string, Period>([[intervalKey(period), period]]);
  const grouped = new Map<string, GroupedRead>();
  const shapes = new Set<string>();
  for (const subs of subsOf.values()) {
    // Most customers share a shape (same plan since before the period): plan each shape once.
    const shape = subs.map((s) => `${s.plan}@${s.start.getTime()}-${s.end?.getTime() ?? ""}`).join(",");
    if (shapes.has(shape)) continue;
    shapes.add(shape);
    for (const i of statementIntervals(period, subs, src.plans)) intervals.set(intervalKey(i), i);
    for (const r of groupedReads(period, subs, src.plans)) grouped.set(groupedReadKey(r), r);
  }
  const totals = new Map<string, Map<string, Map<string, Totals>>>(); // interval → customer → meter → totals
  for (const [k, interval] of intervals) {
    const byCustomer = new Map<string, Map<string, Totals>>();
    for (const t of await rangeTotals(db, { from: interval.start, to: interval.end, customer: only })) {
      const m = byCustomer.get(t.customer) ?? new Map<string, Totals>();
      m.set(t.meter, t);
      byCustomer.set(t.customer, m);
    }
    totals.set(k, byCustomer);
  }
  const groups = new Map<string, Map<string, GroupQuantity[]>>(); // grouped read → customer → groups
  for (const [k, read] of grouped) groups.set(k, await readGroupsByCustomer(db, read, src.meters, only));

  const out = new Map<string, Statement>();
  for (const customer of customers) {
    const statement = priceStatement(
      {
        customer,
        period,
        subscriptions: subsOf.get(customer) ?? [],
        plans: src.plans,
        meters: src.meters,
        totals: (interval) => totals.get(intervalKey(interval))?.get(customer),
        groups: (interval, meter, groupBy) =>
          groups.get(groupedReadKey({ interval, meter, groupBy: [...groupBy] }))?.get(customer) ?? [],
      },
      now,
      { totalOnly: !(opts.full?.(customer) ?? false) },
    );
    out.set(customer, statement);
  }
  return out;
}
