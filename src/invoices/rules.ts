// Invoice rules (pure): when a period's invoices may be frozen, which periods have invoices, how numbers read,
// what a final invoice's figures are and what difference a later computation of it carries.
import { BillingCalendar } from "../billing/calendar.js";
import { Dec, ZERO } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";

const DAY_MS = 86_400_000;

/** A period's invoices are frozen once the period and the grace time after it are over. */
export const isFinalizable = (periodEnd: Date, now: Date, graceMs: number): boolean =>
  periodEnd.getTime() <= endedBy(now, graceMs).getTime();

/** The latest period end whose invoices may be frozen at `now`. */
export const endedBy = (now: Date, graceMs: number): Date => new Date(now.getTime() - graceMs);

/** Numbers run per year of finalization: "2026-000123" (more digits past 999,999). */
export function invoiceNumber(year: number, sequence: number): string {
  if (!Number.isSafeInteger(sequence) || sequence < 1) throw new Error(`invalid invoice sequence ${sequence}`);
  return `${year}-${String(sequence).padStart(6, "0")}`;
}

/** The numbering year of an invoice finalized at `at` (UTC). */
export const numberingYear = (at: Date): number => at.getUTCFullYear();

/** UTC calendar months: the calendar of a customer without subscriptions (and of most customers). */
const CALENDAR_MONTHS = new BillingCalendar([]);

/**
 * A customer's billing periods (UTC calendar months by default) from the one containing `from` to the one containing
 * `to`, both included.
 */
export function periodsBetween(from: Date, to: Date, calendar: BillingCalendar = CALENDAR_MONTHS): Period[] {
  return calendar.periodsBetween(from, to);
}

/**
 * The start of a customer's first period that gets invoices: the one in which late events are still accepted
 * (now − maxAgeDays), or, after a pause of the job, the one after the period containing the latest final invoice's
 * start (of any customer), whichever is earlier.
 */
export function draftHorizon(
  now: Date,
  maxAgeDays: number,
  latestFinal: Date | null,
  calendar: BillingCalendar = CALENDAR_MONTHS,
): Date {
  const window = calendar.periodContaining(new Date(now.getTime() - maxAgeDays * DAY_MS)).start;
  if (!latestFinal) return window;
  const next = calendar.next(calendar.periodContaining(latestFinal)).start;
  return next < window ? next : window;
}

/**
 * The periods that get drafts: the calendar's periods, less what final invoices of other bounds cover (frozen before
 * the customer's cycle changed). A period that is exactly a final invoice's stays: it has its invoice.
 */
export function draftPeriods(periods: readonly Period[], finals: readonly Period[]): Period[] {
  const out: Period[] = [];
  for (const p of periods) {
    const cuts = finals
      .filter((f) => f.start < p.end && f.end > p.start && !samePeriod(f, p))
      .sort((a, b) => a.start.getTime() - b.start.getTime());
    let from = p.start;
    for (const f of cuts) {
      if (f.start > from) out.push({ start: from, end: f.start });
      if (f.end > from) from = f.end;
    }
    if (from < p.end) out.push(from === p.start ? p : { start: from, end: p.end });
  }
  return out;
}

const samePeriod = (a: Period, b: Period): boolean =>
  a.start.getTime() === b.start.getTime() && a.end.getTime() === b.end.getTime();

/**
 * Final invoices whose period ends after this instant are still corrected: an event for their period can still be
 * accepted (events up to maxAgeDays old are). Older ones are closed.
 */
export const correctionHorizon = (now: Date, maxAgeDays: number): Date => new Date(now.getTime() - maxAgeDays * DAY_MS);

/** One meter's part of an invoice; `meter` null holds what belongs to no meter (credits, a total floored at 0). */
export interface Figure {
  meter: string | null;
  quantity: Dec;
  amount: Dec;
  /** The meter has lines on the invoice (it is priced). */
  billed: boolean;
}

/** An invoice's own figures: per meter its period quantity and the sum of its lines, plus the rest of the total. */
export function figuresOf(
  meters: readonly { meter: string; quantity: Dec; amount: Dec; billed: boolean }[],
  total: Dec,
): Figure[] {
  const out: Figure[] = meters.map((m) => ({ ...m }));
  const rest = total.minus(meters.reduce((a, m) => a.plus(m.amount), ZERO));
  out.push({ meter: null, quantity: ZERO, amount: rest, billed: !rest.isZero() });
  return out.sort((a, b) => keyOf(a.meter).localeCompare(keyOf(b.meter)));
}

const keyOf = (meter: string | null) => (meter === null ? "" : `~${meter}`);

/** Figures as they are stored beside a final invoice (decimal strings). */
export interface StoredFigure {
  meter: string | null;
  quantity: string;
  amount: string;
  billed: boolean;
}

export const storeFigures = (figures: readonly Figure[]): StoredFigure[] =>
  figures.map((f) => ({
    meter: f.meter,
    quantity: f.quantity.toFixed(),
    amount: f.amount.toFixed(),
    billed: f.billed,
  }));

export const loadFigures = (stored: readonly StoredFigure[]): Figure[] =>
  stored.map((f) => ({ meter: f.meter, quantity: new Dec(f.quantity), amount: new Dec(f.amount), billed: f.billed }));

export interface Difference {
  meter: string | null;
  /** What to carry now: now − (frozen + carried before). */
  quantity: Dec;
  amount: Dec;
  /** The invoice's figure as of now, which this carry brings the billed total to. */
  asOfQuantity: Dec;
  asOfAmount: Dec;
}

/**
 * What is still to carry for a final invoice: per meter, its figures now minus what was frozen and what earlier
 * adjustments already carried. A quantity change of a meter that is priced neither now nor then carries nothing
 * (usage of a meter outside the plan bills nothing).
 */
export function differences(
  now: readonly Figure[],
  frozen: readonly Figure[],
  carried: readonly { meter: string | null; quantity: Dec; amount: Dec }[],
): Difference[] {
  const keys = new Map<string, string | null>();
  for (const f of [...now, ...frozen, ...carried]) keys.set(keyOf(f.meter), f.meter);
  const out: Difference[] = [];
  for (const [key, meter] of [...keys].sort(([a], [b]) => a.localeCompare(b))) {
    const n = now.find((f) => keyOf(f.meter) === key);
    const was = frozen.find((f) => keyOf(f.meter) === key);
    const before = carried
      .filter((c) => keyOf(c.meter) === key)
      .reduce((a, c) => ({ quantity: a.quantity.plus(c.quantity), amount: a.amount.plus(c.amount) }), {
        quantity: ZERO,
        amount: ZERO,
      });
    const nowQuantity = n?.quantity ?? ZERO;
    const nowAmount = n?.amount ?? ZERO;
    const quantity = nowQuantity.minus(was?.quantity ?? ZERO).minus(before.quantity);
    const amount = nowAmount.minus(was?.amount ?? ZERO).minus(before.amount);
    const priced = (n?.billed ?? false) || (was?.billed ?? false) || !before.amount.isZero();
    if (!amount.isZero() || (!quantity.isZero() && priced)) {
      out.push({ meter, quantity, amount, asOfQuantity: nowQuantity, asOfAmount: nowAmount });
    }
  }
  return out;
}
