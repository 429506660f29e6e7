// Shapes of plans, price versions, subscriptions, summaries and invoices as they cross the HTTP edge.
import { z } from "zod";
import {
  customerId,
  decimalInput as decimal,
  dimensionKey,
  meterKey,
  periodInstant,
  periodSelector,
  rfc3339,
} from "../catalog/schemas.js";
import { MODELS } from "../pricing/models.js";
import { CURRENCIES } from "../pricing/money.js";

export const planKey = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, "must be 1–64 characters of letters, digits, '_', '.', ':' or '-'")
  .meta({ description: "Plan key", example: "pro" });

export const planBody = z
  .strictObject({
    name: z.string().min(1).max(200),
    currency: z
      .string()
      .transform((c) => c.toUpperCase())
      .pipe(z.enum(CURRENCIES as [string, ...string[]], { message: `must be one of ${CURRENCIES.join(", ")}` })),
  })
  .meta({ id: "PlanInput" });

const tier = z.strictObject({
  up_to: decimal("up_to").nullable(),
  unit_price: decimal("unit_price"),
  flat_price: decimal("flat_price").optional(),
});

const override = z
  .strictObject({
    match: z.record(dimensionKey, z.string().nullable()).meta({
      description: "Values of group_by dimensions (null: the property is absent)",
      example: { model: "gpt-4o" },
    }),
    model: z.enum(MODELS as [string, ...string[]]).transform((m) => m as (typeof MODELS)[number]),
    unit_price: decimal("unit_price").optional(),
    tiers: z.array(tier).optional(),
    package_size: decimal("package_size").optional(),
    package_price: decimal("package_price").optional(),
  })
  .meta({ id: "PriceOverrideInput" });

export const priceVersionBody = z
  .strictObject({
    meter: meterKey,
    effective_from: rfc3339.meta({
      description: "Inclusive; the version in effect at t has the greatest effective_from ≤ t",
    }),
    model: z.enum(MODELS as [string, ...string[]]).transform((m) => m as (typeof MODELS)[number]),
    unit_price: decimal("unit_price").optional(),
    tiers: z
      .array(tier)
      .optional()
      .meta({ description: "graduated and volume: ascending tiers, up_to inclusive, the last up_to null (no bound)" }),
    package_size: decimal("package_size").optional(),
    package_price: decimal("package_price").optional(),
    base_fee: decimal("base_fee").optional().meta({ description: "Charged once per billing period" }),
    group_by: z
      .array(dimensionKey)
      .max(4)
      .optional()
      .meta({
        description:
          "Dimensions of the meter each combination of which is priced on its own (own quantity, tiers, lines)",
        example: ["model"],
      }),
    overrides: z.array(override).optional().meta({
      description: "Per-dimension prices: the first whose match fits a group prices it, else the version's own spec",
    }),
  })
  .meta({ id: "PriceVersionInput" });

const tierSchema = z.object({ up_to: z.string().nullable(), unit_price: z.string(), flat_price: z.string() });

export const priceVersionSchema = z
  .object({
    plan: z.string(),
    meter: z.string(),
    effective_from: z.string(),
    model: z.string(),
    unit_price: z.string().optional(),
    tiers: z.array(tierSchema).optional(),
    package_size: z.string().optional(),
    package_price: z.string().optional(),
    base_fee: z.string().nullable(),
    group_by: z.array(z.string()).optional(),
    overrides: z
      .array(
        z.object({
          match: z.record(z.string(), z.string().nullable()),
          model: z.string(),
          unit_price: z.string().optional(),
          tiers: z.array(tierSchema).optional(),
          package_size: z.string().optional(),
          package_price: z.string().optional(),
        }),
      )
      .optional(),
    created_at: z.string(),
  })
  .meta({ id: "PriceVersion" });

export const fixedChargeSchema = z
  .object({
    plan: z.string(),
    key: z.string(),
    name: z.string(),
    unit_price: z.string(),
    effective_from: z.string(),
    created_at: z.string(),
  })
  .meta({ id: "FixedChargeVersion" });

export const planSchema = z
  .object({
    key: z.string(),
    name: z.string(),
    currency: z.string(),
    prices: z.array(z.object({ meter: z.string(), versions: z.array(priceVersionSchema) })),
    fixed_charges: z.array(z.object({ charge: z.string(), versions: z.array(fixedChargeSchema) })),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: "Plan" });

const billingCycleInput = z
  .strictObject({
    interval: z.enum(["day", "week", "month", "year"]).optional().meta({ description: "Default month" }),
    interval_count: z.number().int().min(1).optional().meta({ description: "Default 1" }),
    anchor: periodInstant.optional().meta({
      description:
        "Boundary of a period, on a whole UTC hour. Default: the start of the local calendar month of `start`",
    }),
    time_zone: z.string().min(1).max(64).optional().meta({ description: "IANA time zone; default UTC" }),
  })
  .meta({ id: "BillingCycleInput" });

const proration = z.enum(["prorate", "none"]).meta({
  description:
    "prorate (default): base fees and fixed charges by the hours each plan covers; none: the plan of the period start charges in full, a new plan from the next period",
});

export const chargeKey = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, "must be 1–64 characters of letters, digits, '_', '.', ':' or '-'")
  .meta({ description: "Fixed charge key", example: "seats" });

export const subscriptionBody = z
  .strictObject({
    plan: planKey,
    start: periodInstant.optional().meta({ description: "Default: now. The previous subscription ends here." }),
    at: z
      .enum(["now", "period_end"])
      .optional()
      .meta({ description: "Instead of start: now, or the end of the period in progress (a scheduled change)" }),
    billing: billingCycleInput.optional().meta({
      description: "The billing cycle; default: the cycle in effect (a plan change keeps it), else UTC calendar months",
    }),
    proration: proration.optional(),
    trial_end: periodInstant
      .optional()
      .meta({ description: "Base fees and fixed charges start here; usage before it is priced 0" }),
    quantities: z
      .record(chargeKey, decimal("quantity"))
      .optional()
      .meta({ description: "Quantities of the plan's fixed charges", example: { seats: "5" } }),
  })
  .refine((b) => !(b.at && b.start), { message: "give either at or start", path: ["at"] })
  .meta({ id: "SubscriptionInput" });

export const cancelBody = z
  .strictObject({
    at: z
      .union([z.enum(["now", "period_end"]), periodInstant])
      .meta({ description: "now, period_end (the end of the period in progress) or an instant" }),
    proration: proration.optional(),
  })
  .meta({ id: "CancelInput" });

export const quantityBody = z
  .strictObject({
    quantity: decimal("quantity"),
    effective_at: periodInstant.optional().meta({ description: "Default now" }),
  })
  .meta({ id: "QuantityInput" });

export const fixedChargeBody = z
  .strictObject({
    key: chargeKey,
    name: z.string().min(1).max(200),
    unit_price: decimal("unit_price").meta({ description: "Per unit and billing period" }),
    effective_from: rfc3339,
  })
  .meta({ id: "FixedChargeInput" });

const billingCycleSchema = z
  .object({
    interval: z.enum(["day", "week", "month", "year"]),
    interval_count: z.number().int(),
    anchor: z.string(),
    time_zone: z.string(),
  })
  .meta({ id: "BillingCycle" });

const periodBoundsSchema = z.object({ start: z.string(), end: z.string() }).meta({ id: "PeriodBounds" });

const scheduledSchema = z
  .object({ plan: z.string(), start: z.string() })
  .nullable()
  .meta({ description: "A change asked for at the period end, until it starts" });

export const subscriptionSchema = z
  .object({
    customer: customerId,
    plan: z.string(),
    start: z.string(),
    end: z.string().nullable(),
    billing: billingCycleSchema,
    proration: proration,
    end_proration: proration,
    trial_end: z.string().nullable(),
    quantities: z.record(z.string(), z.string()).meta({ description: "Fixed charges' quantities in effect now" }),
    current_period: periodBoundsSchema.meta({ description: "The customer's billing period in progress" }),
    scheduled: scheduledSchema,
    previous: z
      .object({ plan: z.string(), start: z.string(), end: z.string().nullable() })
      .nullable()
      .optional()
      .meta({ description: "The subscription this one ended, if any" }),
  })
  .meta({ id: "Subscription" });

export const periodQuery = z.object({
  period: periodSelector.optional(),
});

const periodSchema = z.object({ start: z.string(), end: z.string() });

/** Customers with credit grants: one negative line per grant that paid part of the period's usage charges. */
const creditLineSchema = z
  .object({
    meter: z.null(),
    kind: z.literal("credit"),
    description: z.string(),
    amount: z.string().meta({ description: "Negative", example: "-5.00" }),
    grant: z.string(),
  })
  .meta({ id: "CreditLine" });

const creditTotals = {
  subtotal: z.string().optional().meta({ description: "Customers with credit grants: the lines before credits" }),
  credits: z.string().optional().meta({ description: "Customers with credit grants: the credits applied" }),
};

export const summarySchema = z
  .object({
    customer: z.string(),
    period: periodSchema,
    currency: z.string().nullable(),
    meters: z.array(
      z.object({
        meter: z.string(),
        quantity: z.string(),
        amount: z.string(),
        tier: z
          .object({
            index: z.number().int(),
            up_to: z.string().nullable(),
            unit_price: z.string(),
            flat_price: z.string(),
            units_to_next_tier: z.string().nullable(),
          })
          .optional()
          .meta({ description: "Tiered prices: the tier that prices the next unit in the current segment" }),
        groups: z
          .array(
            z.object({
              dimensions: z.record(z.string(), z.string().nullable()),
              quantity: z.string(),
              amount: z.string(),
            }),
          )
          .optional()
          .meta({ description: "Prices with group_by: the meter per combination of the grouped dimensions" }),
        limit: z
          .object({
            soft: z.string().nullable(),
            hard: z.string().nullable(),
            unit: z.string(),
            state: z.enum(["ok", "soft", "blocked"]),
          })
          .optional(),
      }),
    ),
    fixed_charges: z
      .array(z.object({ charge: z.string(), quantity: z.string(), amount: z.string() }))
      .optional()
      .meta({ description: "Fixed charges of the period: the latest quantity and the sum of the charge's lines" }),
    credit_lines: z.array(creditLineSchema).optional(),
    ...creditTotals,
    total: z.string().meta({ description: "subtotal − credits, never below zero" }),
    as_of: z.string(),
  })
  .meta({ id: "CustomerSummary" });

export const invoicePreviewSchema = z
  .object({
    customer: z.string(),
    period: periodSchema,
    currency: z.string().nullable(),
    lines: z.array(
      z.union([
        z.object({
          meter: z.string().nullable(),
          kind: z.enum(["usage", "base_fee", "fixed"]),
          plan: z.string(),
          charge: z.string().optional().meta({ description: "Fixed charges: the charge's key" }),
          description: z.string(),
          quantity: z.string(),
          amount: z.string(),
          segment: periodSchema,
          tier: z.number().int().optional(),
          unit_price: z.string().optional(),
          dimensions: z
            .record(z.string(), z.string().nullable())
            .optional()
            .meta({ description: "Prices with group_by: the group this line prices" }),
          proration: z
            .object({ start: z.string(), end: z.string(), hours: z.number().int(), period_hours: z.number().int() })
            .optional()
            .meta({ description: "Base fees and fixed charges billed for part of the period (by whole hours)" }),
          trial: z.literal(true).optional().meta({ description: "Usage before the trial's end, priced 0" }),
        }),
        creditLineSchema,
      ]),
    ),
    ...creditTotals,
    total: z.string().meta({ description: "subtotal − credits, never below zero" }),
    as_of: z.string(),
  })
  .meta({ id: "InvoicePreview" });
