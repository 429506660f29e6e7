// Stripe (scope admin): the reconciliation report, and resetting refused sends so the next sync retries them.
import { z } from "zod";
import { customerId, meterKey, periodMonth } from "../../catalog/schemas.js";
import { parsePeriod, periodOf } from "../../rollups/buckets.js";
import { creditItemsOf } from "../../stripe/credits.js";
import { withInvoiceItems } from "../../stripe/invoiceItems.js";
import { reconcile } from "../../stripe/reconciliation.js";
import { resetErrors } from "../../stripe/work.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const row = z
  .object({
    customer: z.string(),
    meter: z.string(),
    quantity: z.string().meta({ description: "Tally's period quantity (the meter's aggregation over the month)" }),
    sent: z.string().meta({ description: "What the ledger says Stripe received for the period, in meter units" }),
    difference: z.string().meta({ description: "quantity − sent (positive: Stripe is missing usage)" }),
    status: z.enum(["in_sync", "pending", "error", "unmapped"]),
    stripe_customer_id: z.string().nullable(),
    stripe_event_name: z.string().nullable(),
    stripe_scale: z.string(),
    expected_units: z.string().meta({ description: "stripe_scale × quantity" }),
    sent_units: z.string().meta({ description: "Whole units Stripe received" }),
    pending_buckets: z.number().int(),
    error_buckets: z.number().int(),
    stale_buckets: z.number().int().meta({ description: "Buckets older than Stripe's 35-day window, never sent" }),
    errors: z.array(z.object({ bucket: z.string(), code: z.string(), message: z.string() })),
    note: z.string().optional(),
    invoice_items: z
      .object({
        invoice: z.object({ id: z.string(), number: z.string(), quantity: z.string() }),
        carried_quantity: z.string(),
        carried_amount: z.string(),
        items: z.object({
          sent: z.number().int(),
          pending: z.number().int(),
          failed: z.number().int(),
          errors: z.array(z.string()),
        }),
      })
      .optional()
      .meta({
        description:
          "When the period's invoice is final: its frozen quantity, what was carried since as adjustments, and their " +
          "Stripe invoice items; difference is then quantity − sent − carried_quantity",
      }),
    unit: z.literal("amount").optional().meta({
      description:
        "Meters with stripe_value amount: quantity and sent are priced usage amounts (currency), units are minor units",
    }),
    currency: z.string().nullable().optional(),
  })
  .meta({ id: "ReconciliationRow" });

export function stripeRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/stripe/reconciliation",
    summary: "Tally's period totals against what the ledger says Stripe received, per customer and meter",
    tags: ["setup"],
    scopes: ["admin"],
    query: z.object({
      period: periodMonth.optional().meta({ description: "UTC calendar month, YYYY-MM; default: the current one" }),
    }),
    responses: {
      200: {
        description: "one row per customer and meter with usage or ledger rows in the period",
        schema: z.object({
          period: z.object({ start: z.string(), end: z.string() }),
          as_of: z.string(),
          data: z.array(row),
          credits: z
            .array(
              z.object({
                customer: z.string(),
                grant: z.string(),
                amount: z.string().meta({ description: "Credits applied to the period (the item is its negative)" }),
                currency: z.string(),
                status: z.enum(["pending", "sent", "error"]),
                stripe_invoice_item: z.string().nullable(),
                error: z.string().nullable(),
              }),
            )
            .meta({ description: "Prepaid credits of the period, as negative invoice items in Stripe" }),
        }),
      },
    },
    handle: async ({ query }) => {
      const now = ctx.clock.now();
      const period = query.period ? (parsePeriod(query.period) as { start: Date; end: Date }) : periodOf(now);
      // A period whose invoice is final: later differences reached Stripe as invoice items, not meter events.
      const data = await withInvoiceItems(ctx.db, period, await reconcile(ctx.db, period, now));
      const credits = await creditItemsOf(ctx.db, period);
      return {
        status: 200,
        body: {
          period: { start: isoTime(period.start), end: isoTime(period.end) },
          as_of: isoTime(now),
          data,
          credits,
        },
      };
    },
  });

  t.add({
    method: "post",
    path: "/v1/stripe/errors/reset",
    summary: "Clear sends Stripe refused (all, or one customer's and/or meter's) so the next sync tries them again",
    tags: ["setup"],
    scopes: ["admin"],
    body: z.strictObject({ customer: customerId.optional(), meter: meterKey.optional() }).meta({ id: "StripeReset" }),
    responses: {
      200: { description: "how many ledger rows were reset", schema: z.object({ reset: z.number().int() }) },
    },
    handle: async ({ body }) => ({ status: 200, body: { reset: await resetErrors(ctx.db, body) } }),
  });
}
