// Portal tokens (scope admin) and the dashboard's read endpoints (scope read): the operator's overview of every
// customer in one call, and what a customer view needs to label its charts. Pages themselves: http/dashboardPages.ts.
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import {
  mintPortalToken,
  PORTAL_TTL_DEFAULT_SECONDS,
  PORTAL_TTL_MAX_SECONDS,
  revokePortalToken,
} from "../../auth/portalTokens.js";
import { getCustomer } from "../../catalog/customers.js";
import { customerId } from "../../catalog/schemas.js";
import { customerView } from "../../dashboard/customerView.js";
import { dashboardOverview } from "../../dashboard/overview.js";
import { notFound, unprocessable } from "../../errors.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const span = z.object({ start: z.string(), end: z.string() });
const zonedSpan = span.extend({
  time_zone: z
    .string()
    .meta({ description: "the IANA time zone of the customer's billing cycle, to label the period" }),
});
const state = z.enum(["ok", "soft", "blocked", "credits_exhausted"]);
const forecastMethod = z.enum(["run_rate_7d", "hour_of_week", "current_value"]);

const overviewSchema = z
  .object({
    bound_customer: z.string().nullable().meta({ description: "the customer the key or portal token is bound to" }),
    period: span.meta({
      description:
        "the current UTC calendar month (the default billing cycle); of one customer (`customer`, a bound key): its " +
        "own current period. Each customer row carries its own period",
    }),
    previous_period: span,
    method: z.literal("customer_forecast").meta({
      description:
        "each forecast is the customer's GET /v1/customers/{id}/forecast forecast_total (before credits), made by the " +
        "same code at the same instant; forecast_method names its projection",
    }),
    stripe_sync: z.boolean().meta({ description: "whether Tally sends usage to Stripe (STRIPE_SECRET_KEY is set)" }),
    customers: z.array(
      z.object({
        id: z.string(),
        name: z.string().nullable(),
        plan: z.string().nullable(),
        currency: z.string().nullable(),
        period: zonedSpan.meta({ description: "the customer's current period, by its own billing cycle" }),
        previous_period: span.meta({ description: "the customer's period before it" }),
        spend: z.string().meta({ description: "current period to date, after credits: the summary's total" }),
        credits: z.string().nullable().meta({ description: "credits applied this period; null without grants" }),
        previous_spend: z.string().meta({ description: "last period: its final invoice's total, else as recomputed" }),
        forecast: z.string().meta({ description: "the period's projected total, before credits" }),
        forecast_method: forecastMethod,
        growth: z.string().meta({ description: "forecast − previous_spend" }),
        growth_ratio: z.string().nullable().meta({ description: "forecast ÷ previous_spend − 1; null when 0" }),
        run_rate_per_day: z
          .string()
          .meta({ description: "usage charges to date (after base fees, before credits) ÷ days elapsed" }),
        state,
        soft_meters: z.array(z.string()),
        blocked_meters: z.array(z.string()),
      }),
    ),
    totals: z.array(
      z.object({
        currency: z.string(),
        customers: z.number().int(),
        spend: z.string(),
        previous_spend: z.string(),
        forecast: z.string(),
      }),
    ),
    states: z.record(state, z.number().int()),
    as_of: z.string(),
  })
  .meta({ id: "DashboardOverview" });

const customerViewSchema = z
  .object({
    customer: z.object({ id: z.string(), name: z.string().nullable() }),
    plan: z.object({ key: z.string(), currency: z.string(), since: z.string() }).nullable(),
    period: zonedSpan.meta({ description: "the customer's current period, by its own billing cycle" }),
    timeline: z
      .array(
        z.object({
          plan: z.string(),
          start: z.string(),
          end: z.string().nullable(),
          trial_end: z.string().nullable(),
          scheduled: z.boolean(),
        }),
      )
      .meta({ description: "The plans of the current period and after (a change scheduled for its end included)" }),
    meters: z.array(
      z.object({
        key: z.string(),
        name: z.string(),
        unit: z.string(),
        aggregation: z.string(),
        dimensions: z.array(z.string()),
      }),
    ),
    as_of: z.string(),
  })
  .meta({ id: "DashboardCustomer" });

const portalTokenBody = z
  .strictObject({
    ttl_seconds: z
      .number()
      .optional()
      .meta({
        description: `lifetime in seconds, 1 to ${PORTAL_TTL_MAX_SECONDS} (default ${PORTAL_TTL_DEFAULT_SECONDS})`,
      }),
  })
  .meta({ id: "PortalTokenInput" });

const spanJson = (p: { start: Date; end: Date }) => ({ start: isoTime(p.start), end: isoTime(p.end) });

export function dashboardRoutes(t: RouteTable, ctx: AppContext): void {
  portalTokenRoute(t, ctx);
  overviewRoute(t, ctx);
  customerViewRoute(t, ctx);
}

function portalTokenRoute(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/customers/{id}/portal-tokens",
    summary: "Mint a short-lived read-only token bound to the customer, for the embeddable customer view",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ id: customerId }),
    body: portalTokenBody,
    responses: {
      201: {
        description: "the token (shown once; only its hash is stored) and its id, to revoke it",
        schema: z
          .object({
            id: z.string().meta({ description: "DELETE /v1/portal-tokens/{id} revokes the token", example: "pt_x8Yq" }),
            token: z.string(),
            expires_at: z.string(),
          })
          .meta({ id: "PortalToken" }),
      },
      404: { description: "no such customer" },
      422: { description: "ttl_seconds is not a whole number from 1 to 86400" },
    },
    handle: async ({ params, body }) => {
      const ttl = body.ttl_seconds ?? PORTAL_TTL_DEFAULT_SECONDS;
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > PORTAL_TTL_MAX_SECONDS) {
        const message = `must be a whole number of seconds from 1 to ${PORTAL_TTL_MAX_SECONDS}`;
        throw unprocessable("invalid_ttl", `ttl_seconds ${message}`, [{ field: "ttl_seconds", message }]);
      }
      if (!(await getCustomer(ctx.db, params.id))) throw notFound(`no customer ${params.id}`);
      const minted = await mintPortalToken(ctx.db, params.id, ttl, ctx.clock.now());
      return { status: 201, body: { id: minted.id, token: minted.token, expires_at: isoTime(minted.expiresAt) } };
    },
  });

  t.add({
    method: "delete",
    path: "/v1/portal-tokens/{id}",
    summary: "Revoke a portal token: from the next request on, in every process, it answers 401",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ id: z.string().min(1).max(100).meta({ description: "The id from the mint answer" }) }),
    responses: {
      204: { description: "revoked" },
      404: { description: "no such token (or it expired and was pruned)" },
    },
    handle: async ({ params }) => {
      if (!(await revokePortalToken(ctx.db, params.id))) throw notFound(`no portal token with id ${params.id}`);
      return { status: 204 };
    },
  });
}

function overviewRoute(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/dashboard/customers",
    summary:
      "Every customer's current-period spend, last period's, state, run rate and forecast (a bound key: its own)",
    tags: ["reading"],
    scopes: ["read"],
    query: z.object({ customer: customerId.optional().meta({ description: "only this customer" }) }),
    responses: {
      200: { description: "the overview, highest spend first", schema: overviewSchema },
      404: { description: "no such customer (or not visible to this key)" },
    },
    handle: async ({ auth, query }) => {
      if (query.customer) {
        assertCustomerVisible(auth, query.customer);
        if (!(await getCustomer(ctx.db, query.customer))) throw notFound(`no customer ${query.customer}`);
      }
      // Lag-tolerant: the read replica when there is one close enough behind (credits and states: the primary's).
      const { o, asOf } = await ctx.reads.run(async (r) => {
        const deps = { db: r.db, now: ctx.clock.now(), credits: ctx.credits };
        const previousState = (c: string, m: string) => ctx.limits.state(c, m);
        const o = await dashboardOverview({ ...deps, previousState }, query.customer ?? auth?.customer ?? undefined);
        return { o, asOf: r.asOf(o.as_of) };
      });
      return {
        status: 200,
        body: {
          bound_customer: auth?.customer ?? null,
          ...o,
          stripe_sync: ctx.config.STRIPE_SECRET_KEY !== undefined,
          customers: o.customers.map((c) => ({
            ...c,
            period: { ...spanJson(c.period), time_zone: c.period.time_zone },
            previous_period: spanJson(c.previous_period),
          })),
          period: spanJson(o.period),
          previous_period: spanJson(o.previous_period),
          as_of: isoTime(asOf),
        },
      };
    },
  });
}

function customerViewRoute(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/dashboard/customers/{id}",
    summary: "What the customer view shows besides usage and invoices: the customer, its plan and its meters",
    tags: ["reading"],
    scopes: ["read"],
    params: z.object({ id: customerId }),
    responses: {
      200: { description: "the customer view's labels", schema: customerViewSchema },
      404: { description: "no such customer (or not visible to this key)" },
    },
    handle: async ({ params, auth }) => {
      assertCustomerVisible(auth, params.id);
      const now = ctx.clock.now();
      const v = await customerView(ctx.db, params.id, now);
      if (!v) throw notFound(`no customer ${params.id}`);
      return {
        status: 200,
        body: {
          ...v,
          plan: v.plan ? { ...v.plan, since: isoTime(v.plan.since) } : null,
          period: { ...spanJson(v.period), time_zone: v.period.time_zone },
          timeline: v.timeline.map((x) => ({
            ...x,
            start: isoTime(x.start),
            end: x.end ? isoTime(x.end) : null,
            trial_end: x.trial_end ? isoTime(x.trial_end) : null,
          })),
          as_of: isoTime(now),
        },
      };
    },
  });
}
