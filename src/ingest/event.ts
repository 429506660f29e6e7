// What a usage event is, and the pure rules that decide whether one is valid (no I/O here).
import { z } from "zod";
import { customerId, meterKey, STORABLE_TEXT_MESSAGE, storableText } from "../catalog/schemas.js";

const MAX_PROPERTIES = 16;
const MAX_PROPERTY_KEY = 64;
const MAX_PROPERTY_VALUE = 1024;
/** A unique_count meter's values are ids: kept short, so every row of usage_distinct fits its index. */
export const MAX_UNIQUE_VALUE = 256;
const MAX_SIGNIFICANT_DIGITS = 18;
const MAX_DECIMAL_PLACES = 9;
/** A JSON number with more significant digits than this may not be what the client wrote (binary floating point). */
const MAX_JSON_NUMBER_DIGITS = 15;

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-](\d{2}):(\d{2}))$/;

/** The shape of one event as clients send it; the same schema documents the API. */
export const eventInput = z
  .strictObject({
    id: z
      .string()
      .min(1, "must be 1 to 128 characters")
      .max(128, "must be 1 to 128 characters")
      .refine(storableText, STORABLE_TEXT_MESSAGE)
      .meta({ description: "Idempotency key: (customer, id) is counted once within the dedupe window" }),
    customer: customerId,
    meter: meterKey,
    value: z.union([z.string(), z.number()]).optional().meta({
      description:
        "Decimal number or decimal string (default 1): up to 18 significant digits and 9 decimal places; negative only on sum meters",
      example: "1.5",
    }),
    timestamp: z
      .string()
      .optional()
      .meta({ description: "RFC 3339 with offset (default: when Tally received it)", example: "2026-11-01T12:00:00Z" }),
    properties: z
      .record(z.string(), z.string())
      .optional()
      .meta({
        description: `Flat object of string values, at most ${MAX_PROPERTIES} keys; kept for audit and export. A unique_count meter's unique_property is required and may be a number (stored as its decimal text)`,
      }),
  })
  .meta({ id: "Event" });

export type EventInput = z.infer<typeof eventInput>;

type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const fail = (message: string): Parsed<never> => ({ ok: false, message });

/** A decimal string in plain notation, canonical (no leading zeros, no trailing fractional zeros, no "-0"). */
function canonical(negative: boolean, intPart: string, fracPart: string): string {
  const int = intPart.replace(/^0+(?=\d)/, "") || "0";
  const frac = fracPart.replace(/0+$/, "");
  const body = frac ? `${int}.${frac}` : int;
  return negative && body !== "0" ? `-${body}` : body;
}

/** Significant digits of a canonical decimal: "1000" → 4, "0.0015" → 2, "0" → 1. */
function significantDigits(canonicalValue: string): number {
  return Math.max(canonicalValue.replace("-", "").replace(".", "").replace(/^0+/, "").length, 1);
}

/** Expands a JavaScript number into plain decimal digits (no exponent). */
function plainNumber(n: number): string {
  const s = String(n);
  if (!/e/i.test(s)) return s;
  const [mantissa = "", exp = "0"] = s.toLowerCase().split("e");
  const negative = mantissa.startsWith("-");
  const [int = "", frac = ""] = mantissa.replace("-", "").split(".");
  const digits = int + frac;
  const point = int.length + Number(exp);
  const body =
    point <= 0
      ? `0.${"0".repeat(-point)}${digits}`
      : point >= digits.length
        ? digits + "0".repeat(point - digits.length)
        : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return negative ? `-${body}` : body;
}

/**
 * The value of an event as an exact decimal string. JSON numbers are accepted when they are exactly what the
 * client wrote (at most 15 significant digits); longer values must come as strings.
 */
export function parseValue(input: unknown): Parsed<string> {
  if (input === undefined) return { ok: true, value: "1" };
  let text: string;
  if (typeof input === "number") {
    if (!Number.isFinite(input)) return fail("must be a finite number");
    text = plainNumber(input);
  } else if (typeof input === "string") {
    text = input;
  } else {
    return fail("must be a decimal number or a decimal string");
  }
  const m = /^(-)?(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return fail(`"${text.slice(0, 40)}" is not a decimal number (digits, optional '-' and '.', no exponent)`);
  const [, sign, intPart = "", fracPart = ""] = m;
  const fracTrimmed = fracPart.replace(/0+$/, "");
  if (fracTrimmed.length > MAX_DECIMAL_PLACES) return fail(`has more than ${MAX_DECIMAL_PLACES} decimal places`);
  const value = canonical(sign === "-", intPart, fracPart);
  const digits = significantDigits(value);
  if (digits > MAX_SIGNIFICANT_DIGITS) return fail(`has more than ${MAX_SIGNIFICANT_DIGITS} significant digits`);
  if (typeof input === "number" && digits > MAX_JSON_NUMBER_DIGITS) {
    return fail(
      `a JSON number with more than ${MAX_JSON_NUMBER_DIGITS} significant digits is not exact; send the value as a decimal string`,
    );
  }
  return { ok: true, value };
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * An RFC 3339 timestamp with an offset, checked for calendar validity. Returns the text to store (PostgreSQL
 * parses it, keeping microseconds) and the instant in milliseconds for window checks.
 */
export function parseTimestamp(input: string): Parsed<{ text: string; ms: number }> {
  const m = RFC3339.exec(input);
  if (!m) return fail("must be an RFC 3339 timestamp with an offset, e.g. 2026-11-01T12:00:00Z");
  const [, y, mo, d, h, mi, s, , , oh, om] = m.map((v) => v ?? "");
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const maxDay = month === 2 && !leap ? 28 : (DAYS_IN_MONTH[month - 1] ?? 0);
  if (month < 1 || month > 12 || day < 1 || day > maxDay) return fail("is not a calendar date");
  if (Number(h) > 23 || Number(mi) > 59 || Number(s) > 59) return fail("is not a valid time of day");
  if (oh && (Number(oh) > 23 || Number(om) > 59)) return fail("has an invalid offset");
  const ms = Date.parse(input.toUpperCase());
  if (Number.isNaN(ms)) return fail("is not a valid timestamp");
  return { ok: true, value: { text: input.toUpperCase(), ms } };
}

export function checkProperties(props: Record<string, string>): string | undefined {
  const keys = Object.keys(props);
  if (keys.length > MAX_PROPERTIES) return `has ${keys.length} keys; at most ${MAX_PROPERTIES} are allowed`;
  for (const k of keys) {
    if (k.length === 0 || k.length > MAX_PROPERTY_KEY)
      return `key "${k.slice(0, 20)}" must be 1 to ${MAX_PROPERTY_KEY} characters`;
    const value = props[k] ?? "";
    if (value.length > MAX_PROPERTY_VALUE) return `value of "${k}" is longer than ${MAX_PROPERTY_VALUE} characters`;
    // The database would refuse these (NUL) or change them (lone surrogates) after validation said yes.
    if (!storableText(k)) return `a key ${STORABLE_TEXT_MESSAGE}`;
    if (!storableText(value)) return `value of "${k.slice(0, 20)}" ${STORABLE_TEXT_MESSAGE}`;
  }
  return undefined;
}
