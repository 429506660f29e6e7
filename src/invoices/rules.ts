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

/**
 * What a figure of an invoice holds: a meter's usage lines, a meter's base fees, one fixed charge's lines, or the
 * rest of the total (credits, a total floored at 0). Corrections are carried per figure, so an adjustment says what
 * it corrects (and Stripe, by default, is sent the usage ones only: its own subscription prices carry the fees).
 */
export type FigureKind = "usage" | "base_fee" | "fixed" | "other";

/** One part of an invoice: a meter's usage or base fees, a fixed charge, or the rest of the total. */
export interface Figure {
  kind: FigureKind;
  /** The meter of a usage or base-fee figure; null otherwise. */
  meter: string | null;
  /** The charge of a fixed figure; null otherwise. */
  charge: string | null;
  /** The period quantity of a usage figure; 0 for the others. */
  quantity: Dec;
  amount: Dec;
  /** The figure has lines on the invoice (it is priced). */
  billed: boolean;
}

/** A priced line as figures read it. */
interface FigureLine {
  kind: "usage" | "base_fee" | "fixed";
  meter: string | null;
  charge?: string | undefined;
  amount: Dec;
}

/**
 * An invoice's own figures: per meter its period quantity and the sum of its usage lines, per meter the sum of its
 * base-fee lines, per fixed charge the sum of its lines, and the rest of the total (`other`).
 */
export function figuresOf(
  meters: readonly { meter: string; quantity: Dec }[],
  lines: readonly FigureLine[],
  total: Dec,
): Figure[] {
  const out = new Map<string, Figure>();
  const add = (f: Omit<Figure, "billed" | "amount">, amount: Dec, billed: boolean) => {
    const found = out.get(figureKey(f));
    if (found) Object.assign(found, { amount: found.amount.plus(amount), billed: found.billed || billed });
    else out.set(figureKey(f), { ...f, amount, billed });
  };
  for (const m of meters) add({ kind: "usage", meter: m.meter, charge: null, quantity: m.quantity }, ZERO, false);
  for (const l of lines) {
    const fixed = l.kind === "fixed";
    const f = { kind: l.kind, meter: fixed ? null : l.meter, charge: fixed ? (l.charge ?? "") : null, quantity: ZERO };
    add(f, l.amount, true);
  }
  const rest = total.minus([...out.values()].reduce((a, f) => a.plus(f.amount), ZERO));
  add({ kind: "other", meter: null, charge: null, quantity: ZERO }, rest, !rest.isZero());
  return [...out.values()].sort((a, b) => byKey(figureKey(a), figureKey(b)));
}

/** Figures of invoices frozen before figures had kinds: a meter's base fees in its figure, fixed charges in the rest. */
export function legacyFigures(figures: readonly Figure[]): Figure[] {
  const out = new Map<string, Figure>();
  for (const f of figures) {
    const kind: FigureKind = f.meter === null ? "other" : "usage";
    const legacy: Figure = {
      kind,
      meter: f.meter,
      charge: null,
      quantity: f.quantity,
      amount: f.amount,
      billed: f.billed,
    };
    const found = out.get(figureKey(legacy));
    if (!found) out.set(figureKey(legacy), legacy);
    else
      Object.assign(found, {
        quantity: found.quantity.plus(f.quantity),
        amount: found.amount.plus(f.amount),
        billed: found.billed || f.billed,
      });
  }
  return [...out.values()].sort((a, b) => byKey(figureKey(a), figureKey(b)));
}

/** Code-point order (not the locale's, which skips punctuation). */
const byKey = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** One key per figure: the rest first, then meters' usage and base fees, then fixed charges. */
const figureKey = (f: { kind: FigureKind; meter: string | null; charge?: string | null }): string =>
  f.kind === "other" ? "" : f.kind === "fixed" ? `~~fixed|${f.charge ?? ""}` : `~${f.meter ?? ""}|${f.kind}`;

/** Figures as they are stored beside a final invoice (decimal strings; without kind: frozen before kinds). */
export interface StoredFigure {
  kind?: FigureKind;
  meter: string | null;
  charge?: string | null;
  quantity: string;
  amount: string;
  billed: boolean;
}

export const storeFigures = (figures: readonly Figure[]): StoredFigure[] =>
  figures.map((f) => ({
    kind: f.kind,
    meter: f.meter,
    ...(f.charge !== null ? { charge: f.charge } : {}),
    quantity: f.quantity.toFixed(),
    amount: f.amount.toFixed(),
    billed: f.billed,
  }));

/** Stored figures; `legacy` when they were frozen before figures had kinds (see legacyFigures). */
export function loadFigures(stored: readonly StoredFigure[]): { figures: Figure[]; legacy: boolean } {
  const legacy = stored.some((f) => f.kind === undefined);
  const figures = stored.map(
    (f): Figure => ({
      kind: f.kind ?? (f.meter === null ? "other" : "usage"),
      meter: f.meter,
      charge: f.charge ?? null,
      quantity: new Dec(f.quantity),
      amount: new Dec(f.amount),
      billed: f.billed,
    }),
  );
  return { figures, legacy };
}

/** What a final invoice billed before credits: every figure but the rest of the total. */
export const billedBeforeCredits = (stored: readonly StoredFigure[]): Dec =>
  loadFigures(stored)
    .figures.filter((f) => f.kind !== "other")
    .reduce((a, f) => a.plus(f.amount), ZERO);

export interface Difference {
  kind: FigureKind;
  meter: string | null;
  charge: string | null;
  /** What to carry now: now − (frozen + carried before). */
  quantity: Dec;
  amount: Dec;
  /** The invoice's figure as of now, which this carry brings the billed total to. */
  asOfQuantity: Dec;
  asOfAmount: Dec;
}

/** What earlier adjustments carried from a final invoice, per figure. */
export interface CarriedFigure {
  kind: FigureKind;
  meter: string | null;
  charge: string | null;
  quantity: Dec;
  amount: Dec;
}

/**
 * What is still to carry for a final invoice: per figure, its value now minus what was frozen and what earlier
 * adjustments already carried. A quantity change of a meter that is priced neither now nor then carries nothing
 * (usage of a meter outside the plan bills nothing).
 */
export function differences(
  now: readonly Figure[],
  frozen: readonly Figure[],
  carried: readonly CarriedFigure[],
): Difference[] {
  const keys = new Map<string, { kind: FigureKind; meter: string | null; charge: string | null }>();
  for (const f of [...now, ...frozen, ...carried]) keys.set(figureKey(f), f);
  const out: Difference[] = [];
  for (const [key, { kind, meter, charge }] of [...keys].sort(([a], [b]) => byKey(a, b))) {
    const n = now.find((f) => figureKey(f) === key);
    const was = frozen.find((f) => figureKey(f) === key);
    const before = carried
      .filter((c) => figureKey(c) === key)
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
      out.push({ kind, meter, charge, quantity, amount, asOfQuantity: nowQuantity, asOfAmount: nowAmount });
    }
  }
  return out;
}
