// Shapes of the setup objects (customers, meters) as they cross the HTTP edge.
import { z } from "zod";

const codePoints = (s: string) => [...s].length;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Text the database keeps exactly: no NUL (PostgreSQL text cannot hold it) and no lone surrogate (it has no UTF-8
 * form and would be stored as U+FFFD, so two different ids would become one).
 */
export const storableText = (s: string): boolean => !s.includes("\u0000") && !LONE_SURROGATE.test(s);
export const STORABLE_TEXT_MESSAGE = "must not contain NUL characters or unpaired surrogates";

/**
 * Every string in a request's path parameters, query or JSON body — keys included, at any depth — that the database
 * could not keep exactly, with where it is. The route table refuses these before any route schema runs, so no text
 * field can reach the database with one, whatever its own schema says. Iterative, and each node points at its parent
 * rather than copying its path: a body nested 100 000 deep costs neither the stack nor quadratic time.
 */
export function unstorableText(value: unknown): { path: PropertyKey[]; message: string }[] {
  interface Node {
    value: unknown;
    key: PropertyKey | undefined;
    parent: Node | undefined;
  }
  const pathOf = (node: Node | undefined): PropertyKey[] => {
    const path: PropertyKey[] = [];
    for (let n = node; n?.key !== undefined; n = n.parent) path.push(n.key);
    path.reverse();
    return path.length > 16 ? [...path.slice(0, 16), "…"] : path;
  };
  const found: { path: PropertyKey[]; message: string }[] = [];
  const pending: Node[] = [{ value, key: undefined, parent: undefined }];
  while (pending.length > 0) {
    const node = pending.pop() as Node;
    const v = node.value;
    if (typeof v === "string") {
      if (!storableText(v)) found.push({ path: pathOf(node), message: STORABLE_TEXT_MESSAGE });
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) pending.push({ value: v[i], key: i, parent: node });
    } else if (v !== null && typeof v === "object") {
      const entries = Object.entries(v);
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, inner] = entries[i] as [string, unknown];
        if (storableText(k)) pending.push({ value: inner, key: k, parent: node });
        else found.push({ path: pathOf(node), message: `a key ${STORABLE_TEXT_MESSAGE}` });
      }
    }
  }
  return found;
}

// Nothing was metered before 1970, and the month after 9999-12 has no four-digit year.
const MIN_PERIOD_YEAR = 1970;
const MAX_PERIOD_YEAR = 9998;

/** A billing period: a UTC calendar month as YYYY-MM. */
export const periodMonth = z
  .string()
  .refine((s) => {
    const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(s);
    return m !== null && Number(m[1]) >= MIN_PERIOD_YEAR && Number(m[1]) <= MAX_PERIOD_YEAR;
  }, `must be a month as YYYY-MM, from ${MIN_PERIOD_YEAR}-01 to ${MAX_PERIOD_YEAR}-12`)
  .meta({ description: "UTC calendar month, YYYY-MM", example: "2026-11" });

/**
 * Which billing period of a customer: "YYYY-MM" (the period that starts in that calendar month) or an RFC 3339
 * instant (the period that contains it).
 */
export type PeriodSelector = { month: string } | { at: Date };

/** 1–128 printable characters: ids from other systems (e-mail addresses, UUIDs, ...) must work. */
export const customerId = z
  .string()
  .refine((s) => codePoints(s) >= 1 && codePoints(s) <= 128, "must be 1 to 128 characters")
  .refine((s) => !/\p{Cc}/u.test(s), "must not contain control characters")
  .refine(storableText, STORABLE_TEXT_MESSAGE)
  .meta({ description: "Customer id: 1–128 printable characters (URL-encode it in paths)", example: "cus_42" });

export const meterKey = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, "must be 1–64 characters of letters, digits, '_', '.', ':' or '-'")
  .meta({ description: "Meter key", example: "api_calls" });

export const aggregation = z.enum(["sum", "count", "max", "last", "min", "avg", "unique_count"]).meta({
  description:
    "How a range's usage is figured: sum, count, max, last (the latest event's value), min, avg (sum ÷ count, 9 decimal places) or unique_count (distinct values of unique_property)",
});
export type Aggregation = z.infer<typeof aggregation>;

/** A decimal given as a string (preferred) or a JSON number of at most 15 significant digits; no exponent. */
export const decimalInput = (what: string) =>
  z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const text = typeof v === "number" ? String(v) : v.trim();
      const digits = text.replace(/^-/, "").replace(".", "").replace(/^0+/, "").length;
      if (!/^-?\d{1,18}(\.\d{1,18})?$/.test(text)) {
        ctx.addIssue({ code: "custom", message: `${what} must be a decimal string such as "0.001" (no exponent)` });
        return z.NEVER;
      }
      if (typeof v === "number" && digits > 15) {
        ctx.addIssue({ code: "custom", message: "a JSON number with more than 15 digits is not exact; send a string" });
        return z.NEVER;
      }
      return text;
    })
    .meta({ description: `${what} as a decimal string`, example: "0.001" });

/** An RFC 3339 time with an offset, as a Date. */
export const rfc3339 = z
  .string()
  .refine(
    (s) =>
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(s) && !Number.isNaN(Date.parse(s)),
    { message: "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z" },
  )
  .transform((s) => new Date(s));

/** An instant that billing periods are computed around (a subscription start, an anchor): within the period years. */
export const periodInstant = rfc3339.refine(
  (d) => d.getUTCFullYear() >= MIN_PERIOD_YEAR && d.getUTCFullYear() <= MAX_PERIOD_YEAR,
  `must be from ${MIN_PERIOD_YEAR} to ${MAX_PERIOD_YEAR}`,
);

/** `?period=`: a month (YYYY-MM) or an instant (RFC 3339). */
export const periodSelector = z
  .union([periodMonth, periodInstant])
  .transform((v): PeriodSelector => (typeof v === "string" ? { month: v } : { at: v }))
  .meta({
    description:
      "YYYY-MM: the customer's billing period that starts in that month (in the cycle's time zone); an RFC 3339 instant: the period that contains it. Default: the current period",
    example: "2026-11",
  });

/** A dimension: the key of an event property (as events' property keys: 1–64 characters). */
export const dimensionKey = z
  .string()
  .min(1)
  .max(64)
  .refine(storableText, STORABLE_TEXT_MESSAGE)
  .meta({ description: "An event property key", example: "model" });

const MAX_DIMENSIONS = 4;

export const stripeValue = z.enum(["quantity", "amount"]);
export type StripeValue = z.infer<typeof stripeValue>;

export const meterBody = z
  .strictObject({
    name: z.string().min(1).max(200),
    unit: z.string().min(1).max(50),
    aggregation,
    stripe_event_name: z.string().min(1).max(100).nullable().optional(),
    stripe_scale: decimalInput("stripe_scale")
      .refine((s) => /^\d{1,15}(\.\d{1,9})?$/.test(s) && Number(s) > 0, "must be a positive decimal number")
      .optional(),
    dimensions: z
      .array(dimensionKey)
      .max(MAX_DIMENSIONS)
      .refine((d) => new Set(d).size === d.length, "must not repeat a key")
      .optional()
      .meta({
        description:
          "Up to 4 event property keys that usage is kept by (default: none; left out: unchanged). Fixed once the meter has events.",
        example: ["model", "token_type"],
      }),
    stripe_value: stripeValue.optional().meta({
      description:
        "What the Stripe sync sends: the meter's quantity, or its priced amount in the currency's minor units (default quantity; left out: unchanged)",
    }),
    unique_property: dimensionKey.nullable().optional().meta({
      description:
        "unique_count only (and required there): the event property whose distinct values are counted (string or number values). Fixed once the meter has events.",
      example: "user_id",
    }),
  })
  .meta({ id: "MeterInput" });

export const meter = z
  .object({
    key: meterKey,
    name: z.string(),
    unit: z.string(),
    aggregation,
    stripe_event_name: z.string().nullable(),
    stripe_scale: z.string(),
    dimensions: z.array(z.string()),
    stripe_value: stripeValue,
    unique_property: z.string().nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: "Meter" });

export const customerBody = z
  .strictObject({
    name: z.string().max(200).nullable().optional(),
    email: z.email().max(320).nullable().optional(),
    stripe_customer_id: z.string().min(1).max(255).nullable().optional(),
    credit_mode: z.enum(["credit_then_invoice", "credit_only"]).optional().meta({
      description: "credit_only: a meter is blocked (429 credits_exhausted) when the credits covering it run out",
    }),
    credit_alert_below: decimalInput("credit_alert_below")
      .refine((s) => !s.startsWith("-"), "must not be negative")
      .nullable()
      .optional()
      .meta({
        description: "Record a credits_low alert (and send credits.low) when the balance falls below this amount",
      }),
  })
  .meta({ id: "CustomerInput" });

const scheduledChange = z
  .object({ plan: z.string(), start: z.string() })
  .nullable()
  .meta({ description: "A plan change scheduled for the period end, until it starts" });

export const customer = z
  .object({
    id: customerId,
    name: z.string().nullable(),
    email: z.string().nullable(),
    stripe_customer_id: z.string().nullable(),
    credit_mode: z.enum(["credit_then_invoice", "credit_only"]),
    credit_alert_below: z.string().nullable(),
    subscription: z
      .object({
        plan: z.string(),
        start: z.string(),
        end: z.string().nullable(),
        trial_end: z.string().nullable(),
        quantities: z.record(z.string(), z.string()),
        scheduled: scheduledChange,
      })
      .nullable()
      .meta({ description: "The subscription in effect now, if any" }),
    scheduled: scheduledChange,
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: "Customer" });
