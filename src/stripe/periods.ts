// Customers' own billing periods for the Stripe sync and its reports: their calendars loaded in one query per run,
// and customers grouped by identical period bounds, so each distinct period is read once (most customers share UTC
// months: one read, as before billing cycles).
import { BillingCalendar, type BillingPeriod } from "../billing/calendar.js";
import { calendarsOf } from "../billing/subscriptions.js";
import type { Queryable } from "../db/types.js";
import { windowStart } from "./rules.js";

/** Customers without subscriptions bill in UTC calendar months. */
export const UTC_MONTHS = new BillingCalendar([]);
/** A group this small (and a minority of the customers) is read customer by customer rather than all at once. */
const PER_CUSTOMER_MAX = 20;

/** One distinct period and the customers whose period it is. */
export interface PeriodGroup {
  period: BillingPeriod;
  customers: Set<string>;
}

const keyOf = (p: BillingPeriod) => `${p.start.getTime()}/${p.end.getTime()}`;

export class CustomerPeriods {
  /** The last period answered per customer: rows come in time order, so most lookups are this one. */
  private readonly recent = new Map<string, BillingPeriod>();

  constructor(private readonly calendars: Map<string, BillingCalendar>) {}

  /** The calendars of `customers` (all mapped to Stripe when undefined): one query each. */
  static async load(db: Queryable, customers?: readonly string[]): Promise<CustomerPeriods> {
    const ids =
      customers ??
      (await db.query<{ id: string }>("SELECT id FROM customers WHERE stripe_customer_id IS NOT NULL", [])).rows.map(
        (r) => r.id,
      );
    return new CustomerPeriods(await calendarsOf(db, ids));
  }

  get customers(): string[] {
    return [...this.calendars.keys()];
  }

  calendar(customer: string): BillingCalendar {
    return this.calendars.get(customer) ?? UTC_MONTHS;
  }

  periodOf(customer: string, t: Date): BillingPeriod {
    const last = this.recent.get(customer);
    if (last && last.start <= t && t < last.end) return last;
    const p = this.calendar(customer).periodContaining(t);
    this.recent.set(customer, p);
    return p;
  }

  /** The first instant the ledger tracks for the customer: the start of its period that holds Stripe's window start. */
  trackedFrom(customer: string, now: Date): Date {
    return this.periodOf(customer, windowStart(now)).start;
  }

  /** The earliest trackedFrom of all customers (UTC months' when there are none): where marks start to matter. */
  earliestTracked(now: Date): Date {
    let min = UTC_MONTHS.periodContaining(windowStart(now)).start;
    for (const c of this.calendars.keys()) {
      const t = this.trackedFrom(c, now);
      if (t < min) min = t;
    }
    return min;
  }

  /**
   * The distinct periods, of `customers`, that start before `to` from the one containing `from(customer)` on and
   * hold one of `hours` (sorted hour starts; every period when omitted), each with the customers it is the period of.
   */
  groups(
    customers: Iterable<string>,
    from: (customer: string) => Date,
    to: Date,
    hours?: readonly number[],
  ): PeriodGroup[] {
    const entries: { customer: string; period: BillingPeriod }[] = [];
    for (const customer of customers) {
      const calendar = this.calendar(customer);
      for (let p = calendar.periodContaining(from(customer)); p.start < to; p = calendar.next(p)) {
        if (!hours || holdsOne(hours, p)) entries.push({ customer, period: p });
      }
    }
    return groupByPeriod(entries);
  }

  /** A group's rows (see readGroup), among all the customers of these calendars. */
  readGroup<T extends { customer: string }>(
    group: PeriodGroup,
    read: (customer: string | undefined) => Promise<T[]>,
  ): Promise<T[]> {
    return readGroup(group, this.calendars.size, read);
  }
}

/** Customers grouped by identical period bounds, earliest period first. */
export function groupByPeriod(entries: Iterable<{ customer: string; period: BillingPeriod }>): PeriodGroup[] {
  const out = new Map<string, PeriodGroup>();
  for (const { customer, period } of entries) {
    const k = keyOf(period);
    const group = out.get(k) ?? { period, customers: new Set<string>() };
    group.customers.add(customer);
    out.set(k, group);
  }
  return [...out.values()].sort((a, b) => a.period.start.getTime() - b.period.start.getTime());
}

/**
 * Reads a group's rows: customer by customer when it is small and a minority of all `customers`, else one read of
 * all customers (`read(undefined)`) kept to the group.
 */
export async function readGroup<T extends { customer: string }>(
  group: PeriodGroup,
  customers: number,
  read: (customer: string | undefined) => Promise<T[]>,
): Promise<T[]> {
  const n = group.customers.size;
  if (n <= PER_CUSTOMER_MAX && n * 2 < customers) {
    const out: T[] = [];
    for (const c of group.customers) out.push(...(await read(c)));
    return out;
  }
  return (await read(undefined)).filter((r) => group.customers.has(r.customer));
}

/** Whether a sorted list of hour starts has one inside the period. */
function holdsOne(hours: readonly number[], p: BillingPeriod): boolean {
  let lo = 0;
  let hi = hours.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((hours[mid] as number) < p.start.getTime()) lo = mid + 1;
    else hi = mid;
  }
  return lo < hours.length && (hours[lo] as number) < p.end.getTime();
}

/** How a Stripe item names a period: "2026-11" for a UTC calendar month, else its bounds. */
export function periodLabel(p: BillingPeriod): string {
  const month = UTC_MONTHS.periodContaining(p.start);
  if (month.start.getTime() === p.start.getTime() && month.end.getTime() === p.end.getTime()) {
    return p.start.toISOString().slice(0, 7);
  }
  const short = (t: Date) => `${t.toISOString().slice(0, 16)}Z`;
  return `${short(p.start)} to ${short(p.end)}`;
}
