// Validates one raw event against its schema, the meters and the accepted time window (pure: no I/O).
import type { Aggregation } from "../catalog/schemas.js";
import type { FieldError } from "../errors.js";
import { fieldPath } from "../errors.js";
import { checkProperties, eventInput, parseTimestamp, parseValue } from "./event.js";

/** A valid event, ready to be written. Times and values stay text: PostgreSQL parses them exactly. */
export interface ValidEvent {
  customer: string;
  id: string;
  meter: string;
  value: string;
  ts: string;
  tsMs: number;
  properties: string | null;
  /** The id of the event's combination of dimension values (0: none), set by dimensions/resolver before COPY. */
  dimensionSet?: number;
}

export interface ValidationContext {
  aggregationOf(meter: string): Aggregation | undefined;
  /** Receive time of the batch: the default timestamp and the reference of the window. */
  nowMs: number;
  maxAgeMs: number;
  maxFutureMs: number;
}

/** "malformed" errors make the batch a 400; if every error is "invalid" (well-formed but refused), a 422. */
export type ErrorKind = "malformed" | "invalid";

export type Verdict = { ok: true; event: ValidEvent } | { ok: false; errors: (FieldError & { kind: ErrorKind })[] };

export function validateEvent(raw: unknown, index: number, ctx: ValidationContext): Verdict {
  const at = (field: string) => `events[${index}]${field ? `.${field}` : ""}`;
  const errors: (FieldError & { kind: ErrorKind })[] = [];
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

  let ts = new Date(ctx.nowMs).toISOString();
  let tsMs = ctx.nowMs;
  if (e.timestamp !== undefined) {
    const t = parseTimestamp(e.timestamp);
    if (!t.ok) errors.push({ index, field: at("timestamp"), message: t.message, kind: "malformed" });
    else {
      ts = t.value.text;
      tsMs = t.value.ms;
      if (tsMs < ctx.nowMs - ctx.maxAgeMs) {
        const days = Math.round(ctx.maxAgeMs / 86_400_000);
        errors.push({
          index,
          field: at("timestamp"),
          message: `is more than ${days} days in the past`,
          kind: "invalid",
        });
      } else if (tsMs > ctx.nowMs + ctx.maxFutureMs) {
        const seconds = Math.round(ctx.maxFutureMs / 1000);
        errors.push({
          index,
          field: at("timestamp"),
          message: `is more than ${seconds} seconds in the future`,
          kind: "invalid",
        });
      }
    }
  }

  let properties: string | null = null;
  if (e.properties !== undefined) {
    const problem = checkProperties(e.properties);
    if (problem) errors.push({ index, field: at("properties"), message: problem, kind: "malformed" });
    else if (Object.keys(e.properties).length > 0) properties = JSON.stringify(e.properties);
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
    },
  };
}
