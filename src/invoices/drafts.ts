// Which drafts exist: every subscribed customer has one per period of its own billing calendar, from the draft
// horizon to the current period. Calendars come from one query for all customers, and customers with the same
// periods (most share UTC calendar months) are one group, so the statements stay two whatever the customer count.
// A customer whose cycle changed has drafts of its old periods: they are given the new bounds (the period in
// progress ends early at the change) before the missing ones are created.
import type { BillingCalendar } from "../billing/calendar.js";
import { calendarsOf } from "../billing/subscriptions.js";
import type { Queryable } from "../db/types.js";
import type { Period } from "../pricing/segments.js";
import {
  dropDraft,
  ensureDrafts,
  finalPeriodsOf,
  moveDraft,
  type PeriodGroup,
  type StaleDraft,
  staleDrafts,
} from "./draftRows.js";
import { draftHorizon, draftPeriods, periodsBetween } from "./rules.js";
import { invoiceOf, latestFinalPeriod } from "./store.js";

interface DraftPlan {
  groups: PeriodGroup[];
  calendars: Map<string, BillingCalendar>;
  /** Each customer's draft periods, oldest first. */
  periods: Map<string, readonly Period[]>;
}

/** Gives drafts of old bounds their customer's periods, then creates the missing drafts; returns how many. */
export async function ensureCustomerDrafts(
  q: Queryable,
  now: Date,
  maxAgeDays: number,
  customer?: string,
): Promise<number> {
  const plan = await draftPlan(q, now, maxAgeDays, customer);
  for (const d of await staleDrafts(q, plan.groups)) await reconcile(q, plan, d);
  return ensureDrafts(q, plan.groups);
}

async function draftPlan(q: Queryable, now: Date, maxAgeDays: number, customer?: string): Promise<DraftPlan> {
  const calendars = await calendarsOf(q, customer === undefined ? undefined : [customer]);
  const latestFinal = await latestFinalPeriod(q);
  const months = periodsBetween(draftHorizon(now, maxAgeDays, latestFinal), now);
  const own = new Map<string, Period[]>();
  for (const [c, calendar] of calendars) {
    if (calendar.calendarMonths) continue;
    own.set(c, periodsBetween(draftHorizon(now, maxAgeDays, latestFinal, calendar), now, calendar));
  }
  // A final invoice frozen before a customer's cycle changed keeps its bounds: the new periods leave it out.
  const earliest = [...own.values()].reduce((t, ps) => (ps[0] && ps[0].start < t ? ps[0].start : t), now);
  const finals = await finalPeriodsOf(q, [...own.keys()], earliest);
  const groups = new Map<string, { periods: readonly Period[]; customers: string[] }>();
  const periods = new Map<string, readonly Period[]>();
  for (const c of calendars.keys()) {
    const mine = own.get(c);
    const ps = mine ? draftPeriods(mine, finals.get(c) ?? []) : months;
    const key = ps.map((p) => `${p.start.getTime()}/${p.end.getTime()}`).join(",");
    const group = groups.get(key) ?? { periods: ps, customers: [] };
    groups.set(key, group);
    group.customers.push(c);
    periods.set(c, ps);
  }
  return { groups: [...groups.values()], calendars, periods };
}

/**
 * A draft whose bounds are not one of its customer's periods: the period with its start gets it (its end moves);
 * a draft that starts inside a new period (a cycle change dated back) moves to it, or goes when that period has its
 * draft already (unless adjustments were carried to it: they never move, so it takes that period's place if it can).
 */
async function reconcile(q: Queryable, plan: DraftPlan, d: StaleDraft): Promise<void> {
  const periods = plan.periods.get(d.customer) ?? [];
  const start = d.period.start.getTime();
  const same = periods.find((p) => p.start.getTime() === start);
  if (same) {
    await moveDraft(q, d.id, same);
    return;
  }
  const first = periods[0];
  if (!first || d.period.start < first.start) {
    // Older than the horizon (a draft still to finalize): only its end follows the calendar.
    const p = plan.calendars.get(d.customer)?.periodContaining(d.period.start);
    if (p && p.start.getTime() === start) await moveDraft(q, d.id, p);
    return;
  }
  for (const p of periods.filter((x) => x.end > d.period.start)) {
    if (await moveDraft(q, d.id, p)) return;
    const occupant = await invoiceOf(q, d.customer, p.start);
    if (occupant?.status !== "draft") continue;
    if (!d.adjusted) await dropDraft(q, d.id);
    else if (await dropDraft(q, occupant.id)) await moveDraft(q, d.id, p);
    return;
  }
}
