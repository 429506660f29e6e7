// Price simulations (scope admin) and period-end forecasts (scope read).
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import { planKey, priceVersionBody } from "../../billing/schemas.js";
import { getCustomer } from "../../catalog/customers.js";
import { customerId, periodMonth } from "../../catalog/schemas.js";
import { type FieldError, notFound, unprocessable } from "../../errors.js";
import { forecastCustomer } from "../../forecast/forecast.js";
import type { PriceVersion } from "../../pricing/models.js";
import { type Dec, formatDecimal, formatMoney } from "../../pricing/money.js";
import { checkPriceVersion } from "../../pricing/versions.js";
import { simulate } from "../../simulate/simulation.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const MAX_SIMULATED_CUSTOMERS = 100_000;

const simulationBody = z
  .strictObject({
    plan: planKey,
    period: periodMonth.meta({
      description:
        "YYYY-MM: each customer's own billing period that starts in that month (read in its cycle's time zone; for " +
        "UTC calendar months, the month itself)",
      example: "2026-11",
    }),
    prices: z
      .array(priceVersionBody.omit({ effective_from: true }))
      .min(1)
      .max(100)
      .meta({ description: "Replacement price specs, at most one per meter, taken as in effect for the whole period" }),
    customers: z
      .array(customerId)
      .min(1)
      .max(MAX_SIMULATED_CUSTOMERS)
      .optional()
      .meta({ description: "Only these customers of the plan (default: every customer of the plan in the period)" }),
  })
  .meta({ id: "SimulationInput" });

const amounts = z.object({ current: z.string(), simulated: z.string(), difference: z.string() });
const simulationSchema = z
  .object({
    plan: z.string(),
    period: z.string(),
    currency: z.string(),
    customers: z.array(
      amounts.extend({
        customer: z.string(),
        period: z
          .object({ start: z.string(), end: z.string() })
          .meta({ description: "the customer's billing period that starts in the month: what was priced" }),
        current_from: z.enum(["final_invoice", "usage"]).meta({
          description: "final_invoice: `current` is the period's final invoice before credits, as frozen",
        }),
      }),
    ),
    totals: amounts,
    not_on_plan: z.array(z.string()).meta({ description: "Customers asked for that had no subscription to the plan" }),
    no_period: z.array(z.string()).meta({
      description:
        "Customers of the plan with no billing period starting in that month (a yearly or 3-monthly cycle): skipped",
    }),
    as_of: z.string(),
  })
  .meta({ id: "Simulation" });

const forecastSchema = z
  .object({
    customer: z.string(),
    period: z.object({ start: z.string(), end: z.string() }),
    as_of: z.string(),
    method: z.enum(["run_rate_7d", "hour_of_week", "current_value"]),
    currency: z.string().nullable(),
    meters: z.array(
      z.object({
        meter: z.string(),
        method: z.enum(["run_rate_7d", "hour_of_week", "current_value"]),
        quantity_to_date: z.string(),
        forecast_quantity: z.string(),
        amount_to_date: z.string(),
        forecast_amount: z.string(),
      }),
    ),
    total_to_date: z.string(),
    forecast_total: z.string(),
  })
  .meta({ id: "Forecast" });

/** Every replacement price checked by the price-version rules, with field paths into the body. */
function checkedPrices(prices: z.infer<typeof simulationBody>["prices"]): PriceVersion[] {
  const problems: (FieldError & { code: string })[] = [];
  const versions: PriceVersion[] = [];
  const seen = new Map<string, number>();
  prices.forEach((p, i) => {
    const earlier = seen.get(p.meter);
    if (earlier !== undefined) {
      problems.push({
        field: `prices[${i}].meter`,
        message: `meter ${p.meter} is priced twice (prices[${earlier}])`,
        code: "duplicate_meter",
      });
    }
    seen.set(p.meter, i);
    const checked = checkPriceVersion({ ...p, effective_from: new Date(0) });
    if (checked.ok) versions.push(checked.version);
    else
      for (const q of checked.problems)
        problems.push({ field: `prices[${i}].${q.field}`, message: q.message, code: q.code });
  });
  if (problems.length > 0) {
    throw unprocessable(
      problems[0]?.code ?? "invalid_price",
      `the replacement prices are invalid: ${problems.map((p) => `${p.field} ${p.message}`).join("; ")}`,
      problems.map((p) => ({ field: p.field, message: `${p.message} (${p.code})` })),
    );
  }
  return versions;
}

export function insightRoutes(t: RouteTable, ctx: AppContext): void {
  simulationRoute(t, ctx);
  forecastRoute(t, ctx);
}

function simulationRoute(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/simulations",
    summary: "What the plan's customers would have paid in a period under other prices (real usage, rollups only)",
    tags: ["reading"],
    scopes: ["admin"],
    body: simulationBody,
    responses: {
      200: { description: "current and simulated totals per customer and overall", schema: simulationSchema },
      404: { description: "no such plan" },
      422: { description: "an invalid replacement price (field paths into prices[]), or an unknown meter" },
    },
    handle: async ({ body }) => {
      const prices = checkedPrices(body.prices);
      // Lag-tolerant: the read replica when there is one close enough behind.
      const { sim, asOf } = await ctx.reads.run(async (r) => {
        const sim = await simulate(
          r.db,
          { plan: body.plan, month: body.period, prices, customers: body.customers },
          ctx.clock.now(),
        );
        return { sim, asOf: r.asOf(sim.asOf) };
      });
      const money = (d: Dec) => formatMoney(d, sim.currency);
      const row = (current: Dec, simulated: Dec) => ({
        current: money(current),
        simulated: money(simulated),
        difference: money(simulated.minus(current)),
      });
      const found = new Set([...sim.customers.map((c) => c.customer), ...sim.noPeriod]);
      return {
        status: 200,
        body: {
          plan: sim.plan,
          period: body.period,
          currency: sim.currency,
          customers: sim.customers.map((c) => ({
            customer: c.customer,
            period: { start: isoTime(c.period.start), end: isoTime(c.period.end) },
            ...row(c.current, c.simulated),
            current_from: c.currentFrom,
          })),
          totals: row(sim.totals.current, sim.totals.simulated),
          not_on_plan: (body.customers ?? []).filter((c) => !found.has(c)),
          no_period: sim.noPeriod,
          as_of: isoTime(asOf),
        },
      };
    },
  });
}

function forecastRoute(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/customers/{id}/forecast",
    summary:
      "Quantities and amounts to date and projected at the end of the customer's current period (its own billing cycle's), per meter",
    tags: ["reading"],
    scopes: ["read"],
    params: z.object({ id: customerId }),
    responses: {
      200: { description: "the forecast", schema: forecastSchema },
      404: { description: "no such customer (or not visible to this key)" },
    },
    handle: async ({ params, auth }) => {
      assertCustomerVisible(auth, params.id);
      if (!(await getCustomer(ctx.db, params.id))) throw notFound(`no customer ${params.id}`);
      const { f, asOf } = await ctx.reads.run(async (r) => {
        const f = await forecastCustomer(r.db, params.id, ctx.clock.now());
        return { f, asOf: r.asOf(f.asOf) };
      });
      const money = (d: Dec) => (f.currency ? formatMoney(d, f.currency) : formatDecimal(d));
      return {
        status: 200,
        body: {
          customer: f.customer,
          period: { start: isoTime(f.period.start), end: isoTime(f.period.end) },
          as_of: isoTime(asOf),
          method: f.method,
          currency: f.currency,
          meters: f.meters.map((m) => ({
            meter: m.meter,
            method: m.method,
            quantity_to_date: formatDecimal(m.quantityToDate),
            forecast_quantity: formatDecimal(m.forecastQuantity),
            amount_to_date: money(m.amountToDate),
            forecast_amount: money(m.forecastAmount),
          })),
          total_to_date: money(f.totalToDate),
          forecast_total: money(f.forecastTotal),
        },
      };
    },
  });
}
