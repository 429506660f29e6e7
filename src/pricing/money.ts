// Exact decimal arithmetic for quantities and money, and currencies with their minor units. Never JS numbers.
import { Decimal } from "decimal.js";

/**
 * A decimal type wide enough to be exact for everything Tally multiplies: quantities of up to 18 significant
 * digits (and sums of many of them) times unit prices with up to 12 decimal places need well under 100 digits.
 */
export const Dec = Decimal.clone({ precision: 100, rounding: Decimal.ROUND_HALF_UP, toExpNeg: -100, toExpPos: 100 });
export type Dec = Decimal;

export const ZERO = new Dec(0);

/** Decimal places of each currency's minor unit (ISO 4217). */
export const MINOR_UNITS: Readonly<Record<string, number>> = {
  USD: 2,
  EUR: 2,
  GBP: 2,
  CHF: 2,
  CAD: 2,
  AUD: 2,
  NZD: 2,
  SEK: 2,
  NOK: 2,
  DKK: 2,
  PLN: 2,
  CZK: 2,
  HUF: 2,
  RON: 2,
  INR: 2,
  BRL: 2,
  MXN: 2,
  SGD: 2,
  HKD: 2,
  CNY: 2,
  ZAR: 2,
  ILS: 2,
  AED: 2,
  TRY: 2,
  JPY: 0,
  KRW: 0,
  ISK: 0,
  CLP: 0,
  VND: 0,
  KWD: 3,
  BHD: 3,
  JOD: 3,
  OMR: 3,
  TND: 3,
};

export const CURRENCIES = Object.keys(MINOR_UNITS).sort();

export function minorUnits(currency: string): number {
  const n = MINOR_UNITS[currency];
  if (n === undefined) throw new Error(`unknown currency ${currency}`);
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
