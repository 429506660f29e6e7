// Exact decimal arithmetic for quantities and money, and currencies with their minor units. Never JS numbers.
import { Decimal } from "decimal.js";

/**
 * A decimal type wide enough to be exact for everything Tally multiplies: quantities of up to 18 significant
 * digits (and sums of many of them) times unit prices with up to 12 decimal places need well under 100 digits.
 */
export const Dec = Decimal.clone({ precision: 100, rounding: Decimal.ROUND_HALF_UP, toExpNeg: -100, toExpPos: 100 });
export type Dec = Decimal;

export const ZERO = new Dec(0);

/** The currencies Tally bills in (ISO 4217 codes). */
export const CURRENCIES = [
  ...["AED", "AUD", "BHD", "BRL", "CAD", "CHF", "CLP", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "ILS", "INR"],
  ...["ISK", "JOD", "JPY", "KRW", "KWD", "MXN", "NOK", "NZD", "OMR", "PLN", "RON", "SEK", "SGD", "TND", "TRY", "USD"],
  "VND",
  "ZAR",
];

/** Where CLDR's display digits (what Intl reports) differ from the ISO 4217 minor unit that billing uses. */
const ISO_MINOR_UNITS: Readonly<Record<string, number>> = { HUF: 2 };

const minorUnitCache = new Map<string, number>();

/** Decimal places of the currency's minor unit (ISO 4217): from Intl, pinned by test/pricing-units.test.ts. */
export function minorUnits(currency: string): number {
  let n = minorUnitCache.get(currency);
  if (n === undefined) {
    if (!CURRENCIES.includes(currency)) throw new Error(`unknown currency ${currency}`);
    n =
      ISO_MINOR_UNITS[currency] ??
      new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits ??
      2;
    minorUnitCache.set(currency, n);
  }
  return n;
}

/** Rounds an amount half-up (ties away from zero) to the currency's minor unit. */
export function roundMoney(amount: Dec, currency: string): Dec {
  return amount.toDecimalPlaces(minorUnits(currency), Decimal.ROUND_HALF_UP);
}

/** An amount as it travels in JSON: "12.30", "264.00", "1500" (JPY). */
export function formatMoney(amount: Dec, currency: string): string {
  return roundMoney(amount, currency).toFixed(minorUnits(currency));
}

/** A quantity or price as a plain decimal string without exponent or trailing zeros: "1500", "0.000125". */
export function formatDecimal(d: Dec): string {
  const s = d.toFixed();
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s === "-0" ? "0" : s;
}

export const dec = (v: string | number | Dec): Dec => new Dec(v);

export const sum = (values: Iterable<Dec>): Dec => {
  let total = ZERO;
  for (const v of values) total = total.plus(v);
  return total;
};
