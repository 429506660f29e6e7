// Shapes of credit grants and balances as they cross the HTTP edge.
import { z } from "zod";
import { decimalInput, meterKey, rfc3339 } from "../catalog/schemas.js";

export const grantBody = z
  .strictObject({
    amount: decimalInput("amount")
      .refine((s) => !s.startsWith("-"), "must be positive")
      .meta({ description: "In the plan's currency, at most its minor unit's decimals", example: "50.00" }),
    priority: z.number().int().min(0).max(100).optional().meta({ description: "0–100, default 50; lower burns first" }),
    effective_at: rfc3339.optional().meta({
      description: "Default now; the grant pays the charges of every hour overlapping [effective_at, expires_at)",
    }),
    expires_at: rfc3339
      .nullable()
      .optional()
      .meta({ description: "What is left after the last covered hour is forfeited" }),
    meters: z
      .array(meterKey)
      .min(1)
      .max(100)
      .nullable()
      .optional()
      .meta({ description: "The meters it pays for; default every priced meter" }),
    description: z.string().max(500).nullable().optional(),
  })
  .meta({ id: "CreditGrantInput" });

export const idempotencyKey = z.string().min(1).max(255);

export const grantSchema = z
  .object({
    id: z.string(),
    customer: z.string(),
    amount: z.string(),
    remaining: z.string(),
    applied: z.string().meta({ description: "Credits it paid (draws less give-backs)" }),
    forfeited: z.string().meta({ description: "What was left when it expired or was voided" }),
    currency: z.string(),
    priority: z.number().int(),
    effective_at: z.string(),
    expires_at: z.string().nullable(),
    meters: z.array(z.string()).nullable(),
    description: z.string().nullable(),
    voided_at: z.string().nullable(),
    status: z.enum(["pending", "active", "expired", "voided"]),
    created_at: z.string(),
  })
  .meta({ id: "CreditGrant" });

export const creditsSchema = z
  .object({
    customer: z.string(),
    currency: z.string().nullable(),
    balance: z.string().meta({ description: "What the active grants have left (in `currency`)" }),
    credit_mode: z.enum(["credit_then_invoice", "credit_only"]),
    grants: z.array(grantSchema),
    as_of: z.string().meta({ description: "Every event acknowledged before this instant is counted" }),
  })
  .meta({ id: "Credits" });
