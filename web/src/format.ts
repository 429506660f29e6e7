// How figures read on the page (pure, no DOM): amounts with their currency, counts with their noun, forecast
// methods in words, a customer's billing period as its own calendar reads it ("17 Nov – 17 Dec 2026"), and which
// days of "this period" have begun. Amounts stay the API's decimal strings.
import type { ForecastMethod } from "./types.js";

export const money = (amount: string, currency: string | null | undefined) =>
  currency ? `${amount} ${currency}` : amount;

/** An amount that is a change: "+12.30 USD", "-4.00 USD", "0.00 USD". */
export function signedMoney(amount: string, currency: string | null | undefined): string {
  const sign = amount.startsWith("-") || /^[0.]+$/.test(amount) ? "" : "+";
  return money(`${sign}${amount}`, currency);
}

/** "1 customer", "2 customers", "0 customers". */
export const plural = (n: number, noun: string, nouns = `${noun}s`) => `${n} ${n === 1 ? noun : nouns}`;

/** A ratio (forecast ÷ last period − 1) as a percentage; null (nothing last period) reads "new". */
export function percent(ratio: string | null): string {
  if (ratio === null) return "new";
  const p = Number(ratio) * 100; // a ratio, not money: rounding for display is fine
  return `${p > 0 ? "+" : ""}${p.toFixed(1)}%`;
}

const METHODS: Record<ForecastMethod, string> = {
  run_rate_7d: "run rate of the last 7 days",
  hour_of_week: "hour-of-week average of the last weeks",
  current_value: "current value",
};

export const methodLabel = (m: ForecastMethod) => METHODS[m] ?? m;

const DAY = 86_400_000;

/**
 * The end of the days of the period that have begun by `asOf` (a day boundary, at most the period's end): a chart
 * of this period draws those, and leaves the days still to come empty rather than drawing them as zero.
 */
export function elapsedEnd(period: { start: string; end: string }, asOf: string): Date {
  const end = Date.parse(period.end);
  const dayAfter = Math.floor(Date.parse(asOf) / DAY) * DAY + DAY;
  return new Date(Math.max(Date.parse(period.start), Math.min(end, dayAfter)));
}

/** One formatter per time zone (making one costs far more than formatting with it). */
const formatters = new Map<string, Intl.DateTimeFormat>();
function dateIn(timeZone: string, t: string): { day: string; month: string; year: string } {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-GB", { timeZone, day: "numeric", month: "short", year: "numeric" });
    formatters.set(timeZone, f);
  }
  const parts = Object.fromEntries(f.formatToParts(new Date(t)).map((p) => [p.type, p.value]));
  return { day: parts.day ?? "", month: parts.month ?? "", year: parts.year ?? "" };
}

/**
 * A billing period [start, end) by its customer's calendar, in the cycle's time zone: "17 Nov – 17 Dec 2026" (a
 * period runs to the day its next one starts, as Stripe labels it); the year on both sides when they differ.
 */
export function periodLabel(period: { start: string; end: string }, timeZone = "UTC"): string {
  const a = dateIn(timeZone, period.start);
  const b = dateIn(timeZone, period.end);
  return `${a.day} ${a.month}${a.year === b.year ? "" : ` ${a.year}`} – ${b.day} ${b.month} ${b.year}`;
}

/** An instant's date in a time zone: "17 Dec 2026". */
export function dayLabel(t: string, timeZone = "UTC"): string {
  const d = dateIn(timeZone, t);
  return `${d.day} ${d.month} ${d.year}`;
}

/** The period's exact bounds, for a tooltip: "2026-11-17T09:00:00Z to 2026-12-17T09:00:00Z". */
export const periodBounds = (period: { start: string; end: string }) => `${period.start} to ${period.end}`;
