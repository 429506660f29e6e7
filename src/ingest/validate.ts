// Validates one raw event against its schema, the meters and the accepted time window (pure: no I/O).
import type { Aggregation } from "../catalog/schemas.js";
import type { FieldError } from "../errors.js";
import { fieldPath } from "../errors.js";
import { checkProperties, eventInput, MAX_UNIQUE_VALUE, parseTimestamp, parseValue } from "./event.js";

/** A valid event, ready to be written. Times and values stay text: PostgreSQL parses them exactly. */
export interface ValidEvent {
  customer: string;
  id: string;
  meter: string;
  value: string;
  ts: string;
  tsMs: number;
  properties: string | null;
  /** The same properties as an object (null: none), so that resolving dimension values does not parse them again. */
  propertyValues?: Readonly<Record<string, string>> | null;
  /** The id of the event's combination of dimension values (0: none), set by dimensions/resolver before COPY. */
  dimensionSet?: number;
  /** A unique_count meter's event: the value of its unique property, set by ingest/distinct.ts before the write. */
  distinctValue?: string;
}

export interface ValidationContext {
  aggregationOf(meter: string): Aggregation | undefined;
  /** A unique_count meter's unique property (asked only for such meters). */
  uniquePropertyOf?(meter: string): string | undefined;
  /** Receive time of the batch: the default timestamp and the reference of the window. */
  nowMs: number;
  maxAgeMs: number;
  maxFutureMs: number;
}

/** "malformed" errors make the batch a 400; if every error is "invalid" (well-formed but refused), a 422. */
export type ErrorKind = "malformed" | "invalid";

type Verdict = { ok: true; event: ValidEvent } | { ok: false; errors: (FieldError & { kind: ErrorKind })[] };

export function validateEvent(input: unknown, index: number, ctx: ValidationContext): Verdict {
  const at = (field: string) => `events[${index}]${field ? `.${field}` : ""}`;
  const errors: (FieldError & { kind: ErrorKind })[] = [];
  const unique = uniqueText(input, ctx);
  const raw = unique.raw;
  if (unique.problem) errors.push({ index, field: at(`properties.${unique.property}`), ...unique.problem });
  const parsed = eventInput.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = issue.code === "unrecognized_keys" ? at(issue.keys.join(",")) : fieldPath(at(""), issue.path);
      const message = issue.code === "unrecognized_keys" ? "unknown field" : issue.message;
      errors.push({ index, field, message, kind: "malformed" });
    }
    return { ok: false, errors };
  }
  const e = parsed.data;
  if (unique.property && !unique.problem) {
    const problem = checkUnique(e.properties?.[unique.property], e.meter, unique.property);
    if (problem) errors.push({ index, field: at(`properties.${unique.property}`), message: problem, kind: "invalid" });
  }

  const aggregation = ctx.aggregationOf(e.meter);
  if (!aggregation) errors.push({ index, field: at("meter"), message: `unknown meter "${e.meter}"`, kind: "invalid" });

  const value = parseValue(e.value);
  if (!value.ok) errors.push({ index, field: at("value"), message: value.message, kind: "malformed" });
  else if (value.value.startsWith("-") && aggregation && aggregation !== "sum") {
    errors.push({
      index,
      field: at("value"),
      message: `negative values are corrections and only allowed on sum meters ("${e.meter}" is ${aggregation})`,
      kind: "invalid",
    });
  }

  const { ts, tsMs } = checkTimestamp(e.timestamp, ctx, index, errors);

  let properties: string | null = null;
  let propertyValues: Record<string, string> | null = null;
  if (e.properties !== undefined) {
    const problem = checkProperties(e.properties);
    if (problem) errors.push({ index, field: at("properties"), message: problem, kind: "malformed" });
    else if (Object.keys(e.properties).length > 0) {
      properties = JSON.stringify(e.properties);
      propertyValues = e.properties;
    }
  }

  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    event: {
      customer: e.customer,
      id: e.id,
      meter: e.meter,
      value: value.ok ? value.value : "1",
      ts,
      tsMs,
      properties,
      propertyValues,
    },
  };
}

/**
 * A unique_count meter's event with its unique property as text: a JSON number becomes its exact decimal text (a
 * copy of the event then; the value rules of parseValue apply), so that 42 and "42" are one user.
 */
function uniqueText(
  raw: unknown,
  ctx: ValidationContext,
): { raw: unknown; property?: string; problem?: { message: string; kind: ErrorKind } } {
  const r = raw as { meter?: unknown; properties?: unknown } | null;
  if (typeof r?.meter !== "string" || ctx.aggregationOf(r.meter) !== "unique_count") return { raw };
  const property = ctx.uniquePropertyOf?.(r.meter);
  if (!property) return { raw };
  const props = r.properties;
  if (!isPlainObject(props) || typeof props[property] !== "number") return { raw, property };
  const value = parseValue(props[property]);
  // Refused: reported once, here (the copy's placeholder keeps the schema from reporting it again).
  const text = value.ok ? value.value : "";
  const copy = { raw: { ...r, properties: { ...props, [property]: text } }, property };
  return value.ok ? copy : { ...copy, problem: { message: value.message, kind: "malformed" } };
}

/** Why a unique_count event's value of its unique property is refused, if it is. */
function checkUnique(value: string | undefined, meter: string, property: string): string | undefined {
  if (value === undefined) return `is required: meter "${meter}" counts the distinct values of "${property}"`;
  if (value.length > MAX_UNIQUE_VALUE) return `must be at most ${MAX_UNIQUE_VALUE} characters (it is counted as an id)`;
  return undefined;
}

/** The event's time (default: now), or errors when it is malformed or outside the accepted window. */
function checkTimestamp(
  text: string | undefined,
  ctx: ValidationContext,
  index: number,
  errors: (FieldError & { kind: ErrorKind })[],
): { ts: string; tsMs: number } {
  const field = `events[${index}].timestamp`;
  let ts = new Date(ctx.nowMs).toISOString();
  let tsMs = ctx.nowMs;
  if (text !== undefined) {
    const t = parseTimestamp(text);
    if (!t.ok) errors.push({ index, field, message: t.message, kind: "malformed" });
    else {
      ts = t.value.text;
      tsMs = t.value.ms;
      if (tsMs < ctx.nowMs - ctx.maxAgeMs) {
        const days = Math.round(ctx.maxAgeMs / 86_400_000);
        errors.push({
          index,
          field,
          message: `is more than ${days} days in the past`,
          kind: "invalid",
        });
      } else if (tsMs > ctx.nowMs + ctx.maxFutureMs) {
        const seconds = Math.round(ctx.maxFutureMs / 1000);
        errors.push({
          index,
          field,
          message: `is more than ${seconds} seconds in the future`,
          kind: "invalid",
        });
      }
    }
  }
  return { ts, tsMs };
}

// The fast path. Almost every event is a plain object of a few short strings: checking that directly costs a
// fraction of the schema's generic walk. It only ever says "valid, and here is exactly what validateEvent would
// have returned" or "not sure" — then validateEvent decides, so every refusal and its message come from one place.
const EVENT_FIELDS = new Set(["id", "customer", "meter", "value", "timestamp", "properties"]);
/** NUL or any surrogate (paired ones are valid, but rare: the full rules count their code points). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what it looks for
const NUL_OR_SURROGATE = /[\u0000\ud800-\udfff]/;
/** The same, plus control characters (\p{Cc}), which customer ids may not hold. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
const NOT_PLAIN_CUSTOMER = /[\u0000-\u001f\u007f-\u009f\ud800-\udfff]/;
const METER_KEY = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
/** A canonical integer of at most 18 digits: already what parseValue would return. */
const PLAIN_INTEGER = /^(?:0|-?[1-9]\d{0,17})$/;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;

const digit = (s: string, i: number) => s.charCodeAt(i) - 48;
const twoDigits = (s: string, i: number) => {
  const a = digit(s, i);
  const b = digit(s, i + 1);
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
};

/**
 * "2026-11-01T12:00:00Z", with an optional fraction of 1–9 digits and Z or ±HH:MM, in upper case (so the text is
 * stored as given): its instant in ms, as Date.parse gives it (the fraction truncated to ms). Anything else,
 * including every invalid date, gives undefined and is left to parseTimestamp.
 */
export function fastTimestampMs(s: string): number | undefined {
  const n = s.length;
  if (n < 20 || n > 35) return undefined;
  if (s[4] !== "-" || s[7] !== "-" || s[10] !== "T" || s[13] !== ":" || s[16] !== ":") return undefined;
  const century = twoDigits(s, 0);
  const yy = twoDigits(s, 2);
  const month = twoDigits(s, 5);
  const day = twoDigits(s, 8);
  const hour = twoDigits(s, 11);
  const minute = twoDigits(s, 14);
  const second = twoDigits(s, 17);
  if (century < 10 || yy < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23) return undefined;
  if (minute < 0 || minute > 59 || second < 0 || second > 59) return undefined;
  const year = century * 100 + yy;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  if (day > (month === 2 && !leap ? 28 : (DAYS_IN_MONTH[month - 1] as number))) return undefined;
  let i = 19;
  let ms = 0;
  if (s[i] === ".") {
    const start = ++i;
    while (i < n && i - start < 9) {
      const d = digit(s, i);
      if (d < 0 || d > 9) break;
      if (i - start < 3) ms = ms * 10 + d;
      i++;
    }
    if (i === start) return undefined;
    for (let k = Math.min(i - start, 3); k < 3; k++) ms *= 10;
  }
  let offsetMin = 0;
  if (s[i] === "Z" && i === n - 1) offsetMin = 0;
  else if ((s[i] === "+" || s[i] === "-") && i === n - 6 && s[i + 3] === ":") {
    const oh = twoDigits(s, i + 1);
    const om = twoDigits(s, i + 4);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return undefined;
    offsetMin = (s[i] === "-" ? -1 : 1) * (oh * 60 + om);
  } else return undefined;
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000;
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Validates the events of one batch (one context): the fast path first, validateEvent when it is not sure. */
export class EventChecker {
  readonly #defaultTs: string;

  constructor(private readonly ctx: ValidationContext) {
    this.#defaultTs = new Date(ctx.nowMs).toISOString();
  }

  check(raw: unknown, index: number): Verdict {
    const event = this.fast(raw);
    return event ? { ok: true, event } : validateEvent(raw, index, this.ctx);
  }

  /** The fast path alone: the event as validateEvent would return it, or undefined when it is not sure. */
  fast(raw: unknown): ValidEvent | undefined {
    if (!isPlainObject(raw)) return undefined;
    for (const field in raw) if (!EVENT_FIELDS.has(field)) return undefined;
    const { id, customer, meter, value, timestamp, properties } = raw;
    if (typeof id !== "string" || id.length < 1 || id.length > 128 || NUL_OR_SURROGATE.test(id)) return undefined;
    if (typeof customer !== "string" || customer.length < 1 || customer.length > 128) return undefined;
    if (NOT_PLAIN_CUSTOMER.test(customer)) return undefined;
    if (typeof meter !== "string" || !METER_KEY.test(meter)) return undefined;
    const aggregation = this.ctx.aggregationOf(meter);
    if (!aggregation) return undefined;

    let v: string;
    if (value === undefined) v = "1";
    else if (typeof value === "string" && PLAIN_INTEGER.test(value)) v = value;
    else if (typeof value === "number" && Number.isSafeInteger(value) && Math.abs(value) < 1e15) v = String(value);
    else {
      const parsed = parseValue(value);
      if (!parsed.ok) return undefined;
      v = parsed.value;
    }
    if (v.startsWith("-") && aggregation !== "sum") return undefined;

    let ts = this.#defaultTs;
    let tsMs = this.ctx.nowMs;
    if (timestamp !== undefined) {
      if (typeof timestamp !== "string") return undefined;
      const ms = fastTimestampMs(timestamp);
      if (ms === undefined) return undefined;
      if (ms < this.ctx.nowMs - this.ctx.maxAgeMs || ms > this.ctx.nowMs + this.ctx.maxFutureMs) return undefined;
      ts = timestamp;
      tsMs = ms;
    }

    let props: string | null = null;
    let values: Record<string, string> | null = null;
    const unique = aggregation === "unique_count" ? this.ctx.uniquePropertyOf?.(meter) : undefined;
    if (properties !== undefined) {
      if (!isPlainObject(properties)) return undefined;
      let count = 0;
      let given = properties;
      for (const key in properties) {
        const text = properties[key];
        if (key === "__proto__") return undefined;
        if (typeof text !== "string") {
          // A unique_count meter's id may be a number: its decimal text, in a copy.
          if (key !== unique || typeof text !== "number") return undefined;
          const parsed = parseValue(text);
          if (!parsed.ok) return undefined;
          given = { ...properties, [key]: parsed.value };
        }
        count++;
      }
      if (count > 0) {
        if (checkProperties(given as Record<string, string>) !== undefined) return undefined;
        props = JSON.stringify(given);
        values = given as Record<string, string>;
      }
    }
    if (unique !== undefined && checkUnique(values?.[unique], meter, unique) !== undefined) return undefined;
    return { customer, id, meter, value: v, ts, tsMs, properties: props, propertyValues: values };
  }
}
