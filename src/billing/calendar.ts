// A customer's billing calendar (pure): the periods that its subscriptions' billing cycles make, one after the
// other. A subscription keeps the cycle in effect unless it sets its own; where the cycle changes, the period in
// progress ends early at the change and the new cycle starts there (PRODUCT.md "Billing cycles").
import type { PeriodSelector } from "../catalog/schemas.js";
import { notFound } from "../errors.js";
import {
  type BillingCycle,
  calendarMonths,
  periodContaining,
  periodStartingInMonth,
  defaultCycle as utcMonthsFrom,
} from "../periods/cycle.js";

/** A billing period [start, end) of one customer. */
export interface BillingPeriod {
  start: Date;
  end: Date;
}

/** From `start` on, the customer's periods follow `cycle` (until the next span). */
export interface CycleSpan {
  start: Date;
  cycle: BillingCycle;
}

/** UTC calendar months: the cycle of a customer without subscriptions, and the default of every subscription. */
export const CALENDAR_MONTHS: BillingCycle = calendarMonths("UTC");

/** Two cycles make the same boundaries: same step and zone, and one's anchor is a boundary of the other. */
export function sameCycle(a: BillingCycle, b: BillingCycle): boolean {
  if (a.interval !== b.interval || a.intervalCount !== b.intervalCount || a.timeZone !== b.timeZone) return false;
  return periodContaining(a, b.anchor).start.getTime() === b.anchor.getTime();
}

/** The default cycle of a subscription starting at `start`: calendar months (UTC). */
export const defaultCycle = (start: Date): BillingCycle => utcMonthsFrom(start);

export class BillingCalendar {
  /** Spans in start order, neighbours always of different cycles. */
  private readonly spans: CycleSpan[];

  /** `spans` in any order; neighbours with the same cycle are one span. No spans: UTC calendar months. */
  constructor(spans: readonly CycleSpan[]) {
    const sorted = [...spans].sort((x, y) => x.start.getTime() - y.start.getTime());
    this.spans = [];
    for (const s of sorted) {
      const last = this.spans.at(-1);
      if (!last || !sameCycle(last.cycle, s.cycle)) this.spans.push(s);
    }
    this.calendarMonths = this.spans.every((s) => sameCycle(s.cycle, CALENDAR_MONTHS));
  }

  /** Whether every period is a UTC calendar month (the common case, which batch reads take a shortcut for). */
  readonly calendarMonths: boolean;

  /** The cycle in effect at t (before the first span: the first span's, extended backwards). */
  cycleAt(t: Date): BillingCycle {
    return this.spans[this.spanIndex(t)]?.cycle ?? CALENDAR_MONTHS;
  }

  /** The period with start ≤ t < end. */
  periodContaining(t: Date): BillingPeriod {
    const i = this.spanIndex(t);
    const span = this.spans[i];
    if (!span) return bounds(periodContaining(CALENDAR_MONTHS, t));
    const p = periodContaining(span.cycle, t);
    const next = this.spans[i + 1];
    const start = i > 0 && span.start > p.start ? span.start : p.start;
    const end = next && next.start < p.end ? next.start : p.end;
    return { start, end };
  }

  /** The period after `p`. */
  next(p: BillingPeriod): BillingPeriod {
    return this.periodContaining(p.end);
  }

  /** The period before `p`. */
  previous(p: BillingPeriod): BillingPeriod {
    return this.periodContaining(new Date(p.start.getTime() - 1));
  }

  /** The periods from the one containing `from` to the one containing `to`, both included. */
  periodsBetween(from: Date, to: Date): BillingPeriod[] {
    const out: BillingPeriod[] = [];
    for (let p = this.periodContaining(from); p.start <= to; p = this.next(p)) out.push(p);
    return out;
  }

  /**
   * The first period that starts in the calendar month "YYYY-MM", the month read in the time zone of the cycle in
   * effect at its start (a UTC month for UTC cycles); null when none does (a yearly cycle, most months).
   */
  periodStartingIn(month: string): BillingPeriod | null {
    const utc = periodStartingInMonth(CALENDAR_MONTHS, month);
    if (!utc) return null;
    const zone = this.cycleAt(utc.start).timeZone;
    const local = zone === "UTC" ? utc : periodStartingInMonth(calendarMonths(zone), month);
    if (!local) return null;
    const around = this.periodContaining(local.start);
    const first = around.start.getTime() === local.start.getTime() ? around : this.next(around);
    return first.start < local.end ? first : null;
  }

  /** The period a `?period=` names, or the one in progress at `now`; 404 when no period starts in the month. */
  select(selector: PeriodSelector | undefined, now: Date): BillingPeriod {
    if (!selector) return this.periodContaining(now);
    if ("at" in selector) return this.periodContaining(selector.at);
    const found = this.periodStartingIn(selector.month);
    if (!found) throw notFound(`no billing period starts in ${selector.month}`);
    return found;
  }

  private spanIndex(t: Date): number {
    let i = 0;
    while (i + 1 < this.spans.length && (this.spans[i + 1] as CycleSpan).start <= t) i++;
    return i;
  }
}

const bounds = (p: BillingPeriod): BillingPeriod => ({ start: p.start, end: p.end });
