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

export const aggregation = z.enum(["sum", "count", "max", "last"]);
export type Aggregation = z.infer<typeof aggregation>;

const decimalString = z.union([z.string(), z.number()]).transform((v) => String(v));

export const meterBody = z
  .strictObject({
    name: z.string().min(1).max(200),
    unit: z.string().min(1).max(50),
    aggregation,
    stripe_event_name: z.string().min(1).max(100).nullable().optional(),
    stripe_scale: decimalString
      .refine((s) => /^\d{1,15}(\.\d{1,9})?$/.test(s) && Number(s) > 0, "must be a positive decimal number")
      .optional(),
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
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: "Meter" });

export const customerBody = z
  .strictObject({
    name: z.string().max(200).nullable().optional(),
    email: z.email().max(320).nullable().optional(),
    stripe_customer_id: z.string().min(1).max(255).nullable().optional(),
  })
  .meta({ id: "CustomerInput" });

export const customer = z
  .object({
    id: customerId,
    name: z.string().nullable(),
    email: z.string().nullable(),
    stripe_customer_id: z.string().nullable(),
    subscription: z
      .object({ plan: z.string(), start: z.string(), end: z.string().nullable() })
      .nullable()
      .meta({ description: "The subscription in effect now, if any" }),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: "Customer" });
