// Invoices (scope read): drafts computed when read, final ones exactly as they were frozen.
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import { BillingCalendar } from "../../billing/calendar.js";
import { calendarOf } from "../../billing/subscriptions.js";
import { getCustomer } from "../../catalog/customers.js";
import { notFound } from "../../errors.js";
import { invoiceId, invoiceSchema, invoicesQuery } from "../../invoices/schemas.js";
import type { AppContext } from "../context.js";
import type { RouteTable } from "../routeTable.js";

/**
 * `period=YYYY-MM`: of one customer, its period that starts in that month (read in its cycle's time zone), null when
 * none does; of every customer, the periods that start in that UTC calendar month.
 */
async function periodFilter(
  ctx: AppContext,
  month: string,
  customer: string | undefined,
): Promise<{ from: Date; to: Date } | null> {
  if (customer === undefined) {
    const utc = new BillingCalendar([]).periodStartingIn(month) as { start: Date; end: Date };
    return { from: utc.start, to: utc.end };
  }
  const p = (await calendarOf(ctx.db, customer)).periodStartingIn(month);
  return p && { from: p.start, to: p.end };
}

export function invoiceRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/invoices",
    summary: "List invoices (newest period first); a key bound to a customer sees only that customer's",
    tags: ["reading"],
    scopes: ["read"],
    query: invoicesQuery,
    responses: {
      200: { description: "the invoices", schema: z.object({ data: z.array(invoiceSchema) }) },
      404: { description: "no such customer (or not visible to this key)" },
    },
    handle: async ({ query, auth }) => {
      if (query.customer !== undefined) {
        assertCustomerVisible(auth, query.customer);
        if (!(await getCustomer(ctx.db, query.customer))) throw notFound(`no customer ${query.customer}`);
      }
      const customer = query.customer ?? auth?.customer ?? undefined;
      const periodStarts = query.period ? await periodFilter(ctx, query.period, customer) : undefined;
      if (periodStarts === null) return { status: 200, body: { data: [] } };
      const data = await ctx.invoices.list({ customer, status: query.status, periodStarts, limit: query.limit });
      return { status: 200, body: { data } };
    },
  });

  t.add({
    method: "get",
    path: "/v1/invoices/{id}",
    summary: "An invoice: a draft as it stands now, or a final one exactly as it was frozen",
    tags: ["reading"],
    scopes: ["read"],
    params: z.object({ id: invoiceId }),
    responses: {
      200: { description: "the invoice", schema: invoiceSchema },
      404: { description: "no such invoice (or not visible to this key)" },
    },
    handle: async ({ params, auth }) => {
      const invoice = await ctx.invoices.get(params.id, auth?.customer);
      if (!invoice) throw notFound(`no invoice ${params.id}`);
      return { status: 200, body: invoice };
    },
  });
}
