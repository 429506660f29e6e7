// Limits (scope admin), webhook endpoints (admin), alerts and entitlement decisions (scope read).
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import { planKey } from "../../billing/schemas.js";
import { calendarOf } from "../../billing/subscriptions.js";
import { customerId, meterKey, type PeriodSelector, periodSelector } from "../../catalog/schemas.js";
import { notFound, unprocessable } from "../../errors.js";
import { type AlertPeriodFilter, listAlerts } from "../../limits/alerts.js";
import { limitBody } from "../../limits/schemas.js";
import type { Entitlement } from "../../limits/service.js";
import { customersOnPlan, deleteLimit, putLimit, type StoredLimit } from "../../limits/store.js";
import { type Dec, formatDecimal, formatMoney } from "../../pricing/money.js";
import { createEndpoint } from "../../webhooks/outbox.js";
import { privateTarget } from "../../webhooks/privateNetwork.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { Reply, RouteTable } from "../routeTable.js";

const limitSchema = z
  .object({
    meter: z.string(),
    soft: z.string().nullable(),
    hard: z.string().nullable(),
    unit: z.string(),
    forecast: z.boolean(),
    updated_at: z.string(),
  })
  .meta({ id: "Limit" });

const toJson = (l: StoredLimit) => ({
  meter: l.meter,
  soft: l.soft ? formatDecimal(l.soft) : null,
  hard: l.hard ? formatDecimal(l.hard) : null,
  unit: l.unit,
  forecast: l.forecast,
  updated_at: isoTime(l.updatedAt),
});

const entitlementSchema = z
  .object({
    allowed: z.boolean(),
    quantity: z.string(),
    unit: z.enum(["quantity", "amount"]).optional(),
    amount: z.string().optional(),
    currency: z.string().optional(),
    soft: z.string().optional(),
    hard: z.string().optional(),
    remaining: z.string().optional(),
    credits: z
      .string()
      .optional()
      .meta({ description: "credit_only customers: what the grants covering this meter have left" }),
    state: z.enum(["ok", "soft", "blocked"]),
    resets_at: z.string(),
    as_of: z.string().meta({ description: "When the usage behind this decision was read" }),
  })
  .meta({ id: "Entitlement" });

const alertSchema = z
  .object({
    customer: z.string(),
    meter: z.string().nullable().meta({ description: "null for credit alerts (the customer's balance)" }),
    level: z.enum(["soft", "hard", "forecast", "credits_low", "credits_exhausted"]),
    threshold: z.string(),
    unit: z.string(),
    value: z.string(),
    period: z.string().meta({
      description: "YYYY-MM: the month the alert's billing period starts in (in the time zone of the customer's cycle)",
    }),
    period_start: z.string().meta({ description: "The customer's billing period the alert belongs to: its start" }),
    period_end: z
      .string()
      .meta({ description: "The end (exclusive) of the customer's billing period the alert belongs to" }),
    triggered_at: z.string(),
  })
  .meta({ id: "Alert" });

/**
 * `?period=` of the alerts list: with a customer, its billing period (as summaries select it); without one, a month
 * means alerts whose period starts in that UTC month, an instant alerts whose period contains it.
 */
async function alertPeriod(
  ctx: AppContext,
  customer: string | null,
  selector: PeriodSelector | undefined,
): Promise<AlertPeriodFilter | null> {
  if (!selector) return null;
  if (customer) {
    const calendar = await calendarOf(ctx.db, customer);
    return { period: calendar.select(selector, ctx.clock.now()), calendar };
  }
  if ("at" in selector) return { at: selector.at };
  const [year, month] = selector.month.split("-").map(Number) as [number, number];
  return { startsFrom: new Date(Date.UTC(year, month - 1, 1)), startsBefore: new Date(Date.UTC(year, month, 1)) };
}

/** IETF draft RateLimit headers: the hard limit as quota, the period as window, the rest of it as reset time. */
function rateLimitHeaders(meter: string, e: Entitlement, resetSeconds: number): Record<string, string> {
  if (!e.hard) return {};
  const whole = (d: Dec) => d.floor().toFixed();
  const window = Math.round((e.period.end.getTime() - e.period.start.getTime()) / 1000);
  const name = `"${meter}"`;
  return {
    "RateLimit-Policy": `${name};q=${whole(e.hard)};w=${window}`,
    RateLimit: `${name};r=${whole(e.remaining ?? e.hard)};t=${resetSeconds}`,
  };
}

/** Credits can arrive at any time (a new grant unblocks within seconds): clients are told to ask again after this. */
const CREDITS_RETRY_AFTER_SECONDS = 60;

/** The answer to an entitlement question, shared by the route and the fast path (src/http/fastPath.ts). */
export function entitlementReply(customer: string, meter: string, e: Entitlement, now: Date): Reply {
  const resetSeconds = Math.max(1, Math.ceil((e.period.end.getTime() - now.getTime()) / 1000));
  const money = (d: Dec) => (e.currency ? formatMoney(d, e.currency) : formatDecimal(d));
  const body = {
    allowed: e.allowed,
    quantity: formatDecimal(e.quantity),
    ...(e.unit ? { unit: e.unit } : {}),
    ...(e.amount ? { amount: e.currency ? formatMoney(e.amount, e.currency) : formatDecimal(e.amount) } : {}),
    ...(e.currency ? { currency: e.currency } : {}),
    ...(e.soft ? { soft: formatDecimal(e.soft) } : {}),
    ...(e.hard ? { hard: formatDecimal(e.hard) } : {}),
    ...(e.remaining ? { remaining: formatDecimal(e.remaining) } : {}),
    ...(e.credits ? { credits: money(e.credits) } : {}),
    state: e.state,
    resets_at: isoTime(e.period.end),
    as_of: isoTime(e.asOf),
  };
  const headers = rateLimitHeaders(meter, e, resetSeconds);
  if (e.allowed) return { status: 200, headers, body };
  if (e.code === "credits_exhausted") {
    return {
      status: 429,
      headers: {
        ...headers,
        "Retry-After": String(CREDITS_RETRY_AFTER_SECONDS),
        "Content-Type": "application/problem+json",
      },
      body: {
        type: "urn:tally:problem:credits_exhausted",
        title: "Too Many Requests",
        status: 429,
        detail: `customer ${customer} has no prepaid credits left for ${meter}; a new credit grant unblocks it`,
        code: "credits_exhausted",
        ...body,
        customer,
        meter,
      },
    };
  }
  return {
    status: 429,
    headers: { ...headers, "Retry-After": String(resetSeconds), "Content-Type": "application/problem+json" },
    body: {
      type: "urn:tally:problem:limit_reached",
      title: "Too Many Requests",
      status: 429,
      detail: `customer ${customer} reached the hard limit on ${meter} (${formatDecimal(e.hard as Dec)} ${e.unit}); it resets at ${isoTime(e.period.end)}`,
      code: "limit_reached",
      ...body,
      customer,
      meter,
    },
  };
}

const limitPath = z.object({ id: customerId, meter: meterKey });
const planLimitPath = z.object({ key: planKey, meter: meterKey });

export function limitRoutes(t: RouteTable, ctx: AppContext): void {
  customerLimitRoutes(t, ctx);
  planLimitRoutes(t, ctx);
  webhookRoutes(t, ctx);
  alertRoutes(t, ctx);
  entitlementRoutes(t, ctx);
}

function customerLimitRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "put",
    path: "/v1/customers/{id}/limits/{meter}",
    summary: "Set a customer's limit on a meter (overrides the plan's default); evaluated at once",
    tags: ["setup"],
    scopes: ["admin"],
    params: limitPath,
    body: limitBody,
    responses: {
      200: { description: "the limit", schema: limitSchema },
      404: { description: "no such customer" },
      422: { description: "unknown meter, no threshold, soft above hard" },
    },
    handle: async ({ params, body }) => {
      const limit = await putLimit(ctx.db, "customer", params.id, params.meter, body);
      await ctx.limits.evaluateCustomer(params.id, "limit-change");
      return { status: 200, body: toJson(limit) };
    },
  });

  t.add({
    method: "delete",
    path: "/v1/customers/{id}/limits/{meter}",
    summary: "Remove a customer's limit (the plan's default applies again, if any); unblocks at once",
    tags: ["setup"],
    scopes: ["admin"],
    params: limitPath,
    responses: { 204: { description: "removed" }, 404: { description: "no such limit" } },
    handle: async ({ params }) => {
      await deleteLimit(ctx.db, "customer", params.id, params.meter);
      await ctx.limits.evaluateCustomer(params.id, "limit-change");
      return { status: 204 };
    },
  });
}

function planLimitRoutes(t: RouteTable, ctx: AppContext): void {
  const evaluatePlan = async (plan: string) => {
    for (const customer of await customersOnPlan(ctx.db, plan, ctx.clock.now()))
      ctx.limits.schedule(customer, "limit-change");
  };

  t.add({
    method: "put",
    path: "/v1/plans/{key}/limits/{meter}",
    summary: "Set the default limit on a meter for every customer on the plan (a customer's own limit overrides it)",
    tags: ["setup"],
    scopes: ["admin"],
    params: planLimitPath,
    body: limitBody,
    responses: {
      200: { description: "the limit", schema: limitSchema },
      404: { description: "no such plan" },
      422: { description: "unknown meter, no threshold, soft above hard" },
    },
    handle: async ({ params, body }) => {
      const limit = await putLimit(ctx.db, "plan", params.key, params.meter, body);
      await evaluatePlan(params.key);
      return { status: 200, body: toJson(limit) };
    },
  });

  t.add({
    method: "delete",
    path: "/v1/plans/{key}/limits/{meter}",
    summary: "Remove a plan's default limit",
    tags: ["setup"],
    scopes: ["admin"],
    params: planLimitPath,
    responses: { 204: { description: "removed" }, 404: { description: "no such limit" } },
    handle: async ({ params }) => {
      await deleteLimit(ctx.db, "plan", params.key, params.meter);
      await evaluatePlan(params.key);
      return { status: 204 };
    },
  });
}

function webhookRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/webhook-endpoints",
    summary: "Register a receiver of alert webhooks (the signing secret is shown once)",
    tags: ["setup"],
    scopes: ["admin"],
    body: z
      .strictObject({
        url: z
          .url({ protocol: /^https?$/, message: "must be an http(s) URL" })
          .max(2048)
          .meta({ example: "https://billing.example.com/tally-webhooks" }),
      })
      .meta({ id: "WebhookEndpointInput" }),
    responses: {
      201: {
        description: "created; verify deliveries with the secret (Tally-Signature header)",
        schema: z.object({ id: z.string(), url: z.string(), secret: z.string(), created_at: z.string() }),
      },
      422: {
        description:
          "the URL points at a loopback, private or link-local address, or a name resolving to one (allowed by TALLY_WEBHOOK_ALLOW_PRIVATE=true)",
      },
    },
    handle: async ({ body }) => {
      const refusal = ctx.config.TALLY_WEBHOOK_ALLOW_PRIVATE
        ? undefined
        : await privateTarget(body.url, { unresolved: "allow" });
      if (refusal) {
        const message = `${refusal}; webhooks go to public addresses only (TALLY_WEBHOOK_ALLOW_PRIVATE=true allows others)`;
        throw unprocessable("private_address", `url: ${message}`, [{ field: "url", message }]);
      }
      const e = await createEndpoint(ctx.db, body.url);
      return { status: 201, body: { id: e.id, url: e.url, secret: e.secret, created_at: isoTime(e.createdAt) } };
    },
  });
}

function alertRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/alerts",
    summary: "Alerts recorded (one per customer, meter, period, level and threshold), newest first",
    tags: ["reading"],
    scopes: ["read"],
    query: z.object({
      customer: customerId.optional(),
      period: periodSelector.optional().meta({
        description:
          "With a customer: its billing period that starts in that month (YYYY-MM, in the cycle's time zone) or contains that instant. Without one: alerts whose period starts in that UTC month, or contains that instant",
        example: "2026-11",
      }),
    }),
    responses: {
      200: { description: "alerts", schema: z.object({ data: z.array(alertSchema) }) },
      404: { description: "no billing period of the customer starts in that month" },
    },
    handle: async ({ query, auth }) => {
      const customer = query.customer ?? auth?.customer ?? null;
      if (customer) assertCustomerVisible(auth, customer);
      const period = await alertPeriod(ctx, customer, query.period);
      const alerts = await listAlerts(ctx.db, { customer, period });
      return {
        status: 200,
        body: {
          data: alerts.map((a) => ({
            customer: a.customer,
            meter: a.meter,
            level: a.level,
            threshold: a.threshold,
            unit: a.unit,
            value: a.value,
            period: a.month,
            period_start: isoTime(a.period.start),
            period_end: isoTime(a.period.end),
            triggered_at: isoTime(a.triggeredAt),
          })),
        },
      };
    },
  });
}

function entitlementRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/entitlements/{customer}/{meter}",
    summary: "May this customer use this meter now? 200, or 429 with Retry-After when a hard limit is reached",
    tags: ["reading"],
    scopes: ["read"],
    params: z.object({ customer: customerId, meter: meterKey }),
    responses: {
      200: { description: "allowed", schema: entitlementSchema },
      404: { description: "unknown meter, or a customer not visible to this key" },
      429: { description: "blocked until resets_at (problem+json with allowed: false; Retry-After)" },
    },
    handle: async ({ params, auth }) => {
      assertCustomerVisible(auth, params.customer);
      if (!(await ctx.meters.lookup(params.meter))) throw notFound(`no meter ${params.meter}`);
      const e = await ctx.limits.entitlement(params.customer, params.meter);
      return entitlementReply(params.customer, params.meter, e, ctx.clock.now());
    },
  });
}
