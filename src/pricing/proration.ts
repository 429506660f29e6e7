// Proration (pure): what part of a billing period a base fee or a fixed charge is billed for, and its amount. A fee
// is prorated by the whole hours it covers out of the hours of the customer's own period (PRODUCT.md "Billing
// cycles and subscription changes"). A change at 10:40 counts from the hour it falls in (10:00), as a credit grant
// bought at 10:30 covers the hour from 10:00: the hours of consecutive pieces then add up to the hours covered.
import { type Dec, roundMoney } from "./money.js";

const HOUR_MS = 3_600_000;

export type ProrationMode = "prorate" | "none";

interface Interval {
  start: Date;
  end: Date;
}

/** A fee line's share of its period; absent when the line covers the whole period. */
export interface Proration {
  start: Date;
  end: Date;
  hours: number;
  periodHours: number;
}

/** Whole hours from the hour containing `start` to the hour containing `end`. */
export const wholeHours = (start: Date, end: Date): number =>
  Math.floor(end.getTime() / HOUR_MS) - Math.floor(start.getTime() / HOUR_MS);

/** The proration of a line covering `covered` of `period`; null when it covers all of it (no proration). */
export function prorationOf(covered: Interval, period: Interval): Proration | null {
  const periodHours = wholeHours(period.start, period.end);
  const hours = wholeHours(covered.start, covered.end);
  if (hours === periodHours) return null;
  return { start: covered.start, end: covered.end, hours, periodHours };
}

/** The amount of a fee of `full` per period for the part `proration` says, rounded half-up per line. */
export function proratedAmount(full: Dec, proration: Proration | null, currency: string): Dec {
  if (!proration) return roundMoney(full, currency);
  if (proration.periodHours <= 0) return roundMoney(full.times(0), currency);
  return roundMoney(full.times(proration.hours).dividedBy(proration.periodHours), currency);
}

/** One subscription's part of a period, as its fees see it. */
interface FeeSpan {
  /** Where the subscription starts and ends (end null: open-ended). */
  start: Date;
  end: Date | null;
  /** How the change into this subscription treats fees (default prorate). */
  proration?: ProrationMode | undefined;
  /** How its end (a cancellation, or the change to the next subscription) treats fees (default prorate). */
  endProration?: ProrationMode | undefined;
  /** Fees start here (a trial); before it the subscription charges no fee. */
  trialEnd?: Date | null | undefined;
  /** Another subscription ends where this one starts (a change of plan, not a first subscription). */
  follows: boolean;
}

/**
 * The part of `period` a subscription's fees are billed for, or null: none of it. Prorated, that is the part the
 * subscription covers (from its trial's end). With proration "none" (Stripe's meaning) the plan in effect at the
 * period start, or at the subscription start for a first subscription starting inside the period, charges its full
 * fee, and a plan changed to inside the period charges from the next period on.
 */
export function billedPart(period: Interval, span: FeeSpan): Interval | null {
  let start = span.start > period.start ? span.start : period.start;
  let end = span.end && span.end < period.end ? span.end : period.end;
  if (start >= end) return null;
  const startsInside = span.start > period.start;
  if (startsInside && span.proration === "none") {
    if (span.follows) return null;
    start = period.start;
  }
  if (span.end && span.end < period.end && span.endProration === "none") end = period.end;
  if (span.trialEnd && span.trialEnd > start) start = span.trialEnd < end ? span.trialEnd : end;
  return start < end ? { start, end } : null;
}

/** A change of a fixed charge's quantity (or its first quantity), effective from `at`. */
export interface QuantityChange {
  charge: string;
  at: Date;
  quantity: Dec;
}

/**
 * The quantity segments of one charge over `part`: [from, to) with the quantity in effect, cut where it changes.
 * Quantities set before `part` give its first quantity; segments without a quantity (or with 0) are left out.
 */
export function quantitySegments(
  part: Interval,
  changes: readonly QuantityChange[],
): { start: Date; end: Date; quantity: Dec }[] {
  const sorted = [...changes].sort((a, b) => a.at.getTime() - b.at.getTime());
  const out: { start: Date; end: Date; quantity: Dec }[] = [];
  let current: Dec | undefined;
  let from = part.start;
  const close = (to: Date) => {
    if (current && !current.isZero() && to > from) out.push({ start: from, end: to, quantity: current });
  };
  for (const c of sorted) {
    if (c.at <= part.start) {
      current = c.quantity;
      continue;
    }
    if (c.at >= part.end) break;
    if (current?.equals(c.quantity)) continue;
    close(c.at);
    from = c.at;
    current = c.quantity;
  }
  close(part.end);
  return out;
}

/** The quantity of each charge in effect at `t` (the latest change at or before it). */
export function quantitiesAt(changes: readonly QuantityChange[], t: Date): Map<string, Dec> {
  const out = new Map<string, { at: Date; quantity: Dec }>();
  for (const c of changes) {
    const found = out.get(c.charge);
    if (c.at <= t && (!found || c.at >= found.at)) out.set(c.charge, c);
  }
  return new Map([...out].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, v.quantity]));
}
