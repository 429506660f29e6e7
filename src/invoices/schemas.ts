// Shapes of invoices (drafts and final ones) and of their list query as they cross the HTTP edge.
import { z } from "zod";
import { invoicePreviewSchema } from "../billing/schemas.js";
import { customerId, periodMonth } from "../catalog/schemas.js";

export const invoiceId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be an invoice id such as in_9x...")
  .meta({ description: "Invoice id", example: "in_Qm2v0eZk3yS8bWq1" });

export const invoicesQuery = z.object({
  customer: customerId.optional(),
  status: z.enum(["draft", "final"]).optional(),
  period: periodMonth.optional().meta({
    description:
      "YYYY-MM: with a customer, its billing period that starts in that month (in the cycle's time zone); without one, every invoice whose period starts in that UTC calendar month",
  }),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(100)
    .meta({ description: "At most this many invoices, newest period first (default 100)" }),
});

const periodSchema = z.object({ start: z.string(), end: z.string() });

const adjustmentLine = z
  .object({
    meter: z.string().nullable().meta({ description: "null: credits and other changes that belong to no meter" }),
    kind: z.literal("adjustment"),
    corrects: z.enum(["usage", "base_fee", "fixed", "other"]).optional().meta({
      description:
        "What it corrects: the meter's usage, the meter's base fees, a fixed charge (`charge`), or credits and other changes (absent on invoices finalized before adjustments had kinds)",
    }),
    charge: z.string().optional().meta({ description: "The fixed charge it corrects (corrects: fixed)" }),
    description: z.string(),
    quantity: z.string().meta({ description: "The change of the period quantity (negative when it went down)" }),
    amount: z.string().meta({ description: "The change of the amount (negative when it went down)" }),
    adjusts: z.string().meta({ description: "The id of the final invoice this corrects" }),
    adjusts_number: z.string(),
    adjusts_period: periodSchema,
  })
  .meta({ id: "AdjustmentLine" });

export const invoiceSchema = invoicePreviewSchema
  .extend({
    id: z.string(),
    number: z.string().nullable().meta({ description: "Gapless per year, e.g. 2026-000123; null while draft" }),
    status: z.enum(["draft", "final"]),
    lines: z.array(z.union([invoicePreviewSchema.shape.lines.element, adjustmentLine])),
    adjustments: z.string().meta({ description: "The sum of the adjustment lines (included in total)" }),
    finalized_at: z.string().nullable(),
  })
  .loose()
  .meta({ id: "Invoice" });
