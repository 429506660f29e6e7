// What the customer view needs besides the public read endpoints: the customer's name, its plan now, its current
// billing period (its own cycle's, with the cycle's time zone to label it), and the meters it is billed or measured
// on (name, unit, aggregation, dimensions: how to label and group its charts).
// A portal token may read this, but not the operator's setup (every meter, plans, keys).
import { loadPlanPrices } from "../billing/plans.js";
import { calendarOf, subscriptionAt, subscriptionsBetween } from "../billing/subscriptions.js";
import { getCustomer } from "../catalog/customers.js";
import { listMeters } from "../catalog/meters.js";
import type { Queryable } from "../db/types.js";
import { rangeTotals } from "../rollups/totals.js";

interface CustomerView {
  customer: { id: string; name: string | null };
  plan: { key: string; currency: string; since: Date } | null;
  period: { start: Date; end: Date; time_zone: string };
  /** The plans of the current period and after, in order: the plan timeline, a scheduled change included. */
  timeline: { plan: string; start: Date; end: Date | null; trial_end: Date | null; scheduled: boolean }[];
  meters: { key: string; name: string; unit: string; aggregation: string; dimensions: string[] }[];
}

/** Months of history the view charts (its month chart shows 12). */
const HISTORY_MONTHS = 12;

export async function customerView(db: Queryable, id: string, now: Date): Promise<CustomerView | undefined> {
  const customer = await getCustomer(db, id);
  if (!customer) return undefined;
  const sub = await subscriptionAt(db, id, now);
  const plan = sub ? (await loadPlanPrices(db, [sub.plan])).get(sub.plan) : undefined;
  const calendar = await calendarOf(db, id);
  const period = calendar.periodContaining(now);
  const since = new Date(Date.UTC(period.start.getUTCFullYear(), period.start.getUTCMonth() - HISTORY_MONTHS + 1, 1));
  // Meters priced by the plan, and meters the customer used in the charted months (one rollup read).
  const used = new Set((await rangeTotals(db, { from: since, to: period.end, customer: id })).map((t) => t.meter));
  for (const v of plan?.versions ?? []) used.add(v.meter);
  const meters = (await listMeters(db))
    .filter((m) => used.has(m.key))
    .map((m) => ({ key: m.key, name: m.name, unit: m.unit, aggregation: m.aggregation, dimensions: m.dimensions }));
  const far = new Date(Date.UTC(9999, 0, 1));
  const timeline = (await subscriptionsBetween(db, id, period.start, far)).map((x) => ({
    plan: x.plan,
    start: x.start,
    end: x.end,
    trial_end: x.trialEnd,
    scheduled: x.scheduled && x.start > now,
  }));
  return {
    customer: { id: customer.id, name: customer.name },
    timeline,
    plan: sub && plan ? { key: sub.plan, currency: plan.currency, since: sub.start } : null,
    period: { ...period, time_zone: calendar.cycleAt(now).timeZone },
    meters,
  };
}
