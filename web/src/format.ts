// How figures read on the page (pure, no DOM): amounts with their currency, counts with their noun, forecast
// methods in words, and which days of "this period" have begun. Amounts stay the API's decimal strings.
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
