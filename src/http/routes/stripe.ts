// Stripe (scope admin): the reconciliation report, and resetting refused sends so the next sync retries them.
import { z } from "zod";
import { getCustomer } from "../../catalog/customers.js";
import { customerId, meterKey, periodSelector } from "../../catalog/schemas.js";
import { notFound } from "../../errors.js";
import { creditItemsOf } from "../../stripe/credits.js";
import { feeItemsOf } from "../../stripe/feeItems.js";
import { feeAdjustmentsOf, withInvoiceItems } from "../../stripe/invoiceItems.js";
import { reconcile, reconciliationScope } from "../../stripe/reconciliation.js";
import { resetErrors } from "../../stripe/work.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const row = z
  .object({
    customer: z.string(),
    meter: z.string(),
    period: z
      .object({ start: z.string(), end: z.string() })
      .meta({ description: "The customer's own billing period the row compares" }),
    quantity: z
      .string()
      .meta({ description: "Tally's period quantity (the meter's aggregation over the customer's period)" }),
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

const creditItems = z
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
  .meta({ description: "Prepaid credits of the customers' periods, as negative invoice items in Stripe" });

const feeItems = z
  .array(
    z.object({
      customer: z.string(),
      kind: z.string().meta({ description: "base_fee or fixed" }),
      description: z.string(),
      amount: z.string(),
      currency: z.string(),
      status: z.enum(["pending", "sent", "error"]),
      stripe_invoice_item: z.string().nullable(),
      error: z.string().nullable(),
      adjustment: z
        .string()
        .optional()
        .meta({ description: "A correction of a fee line carried since the invoice was final: the adjustment's id" }),
    }),
  )
  .meta({
    description:
      "TALLY_STRIPE_FEES=invoice_items: the final invoices' base-fee and fixed-charge lines, and the corrections of them carried since, as invoice items in Stripe",
  });

export function stripeRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/stripe/reconciliation",
    summary: "Tally's period totals against what the ledger says Stripe received, per customer and meter",
    tags: ["setup"],
    scopes: ["admin"],
    query: z.object({
      customer: customerId
        .optional()
        .meta({ description: "Only this customer, over its period that `period` selects" }),
      period: periodSelector.optional().meta({
        description:
          "YYYY-MM: each customer's billing period that starts in that month (in its cycle's time zone; customers " +
          "with none are left out); an RFC 3339 instant: each customer's period that contains it. Default: each " +
          "customer's current period. With `customer`, 404 when no period of it starts in the month",
      }),
    }),
    responses: {
      200: {
        description: "one row per customer and meter with usage or ledger rows in the customer's period",
        schema: z.object({
          period: z.object({ start: z.string(), end: z.string() }).meta({
            description:
              "With `customer`: its period. Across customers: the UTC calendar month `period` names (each row has its customer's own period)",
          }),
          as_of: z.string(),
          data: z.array(row),
          credits: creditItems,
          fees: feeItems,
        }),
      },
      404: { description: "no such customer, or no period of the customer starts in the month" },
    },
    handle: async ({ query }) => {
      const now = ctx.clock.now();
      if (query.customer !== undefined && !(await getCustomer(ctx.db, query.customer))) {
        throw notFound(`no customer ${query.customer}`);
      }
      const { period, customers } = await reconciliationScope(ctx.db, query.period, now, query.customer);
      // A period whose invoice is final: later differences reached Stripe as invoice items, not meter events.
      const rows = await withInvoiceItems(ctx.db, await reconcile(ctx.db, customers, now));
      const data = rows.map((r) => ({ ...r, period: { start: isoTime(r.period.start), end: isoTime(r.period.end) } }));
      const credits = await creditItemsOf(ctx.db, customers);
      // With fees as invoice items, the corrections of fee lines carried since are listed with them.
      const feesAsItems = ctx.config.TALLY_STRIPE_FEES === "invoice_items";
      const fees = [
        ...(await feeItemsOf(ctx.db, customers)),
        ...(feesAsItems ? await feeAdjustmentsOf(ctx.db, customers) : []),
      ];
      return {
        status: 200,
        body: {
          period: { start: isoTime(period.start), end: isoTime(period.end) },
          as_of: isoTime(now),
          data,
          credits,
          fees,
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
