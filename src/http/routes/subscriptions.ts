// Subscriptions and their changes (scope admin): plan changes now, at an instant or at the period end (scheduled),
// cancellations, quantities of fixed charges, and the plans' fixed charges.
import { z } from "zod";
import { cancelScheduled, cancelSubscription, scheduledChange, setQuantity } from "../../billing/changes.js";
import { addFixedCharge } from "../../billing/fixedCharges.js";
import * as s from "../../billing/schemas.js";
import { calendarOf, type Subscription, setSubscription, subscriptionAt } from "../../billing/subscriptions.js";
import { customerId } from "../../catalog/schemas.js";
import type { BillingCycle } from "../../periods/cycle.js";
import { Dec, formatDecimal } from "../../pricing/money.js";
import { quantitiesAt } from "../../pricing/proration.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";
import { fixedChargeJson } from "./billing.js";

const spanJson = (x: { plan: string; start: Date; end: Date | null }) => ({
  plan: x.plan,
  start: isoTime(x.start),
  end: x.end ? isoTime(x.end) : null,
});

const billingCycleJson = (c: BillingCycle) => ({
  interval: c.interval,
  interval_count: c.intervalCount,
  anchor: isoTime(c.anchor),
  time_zone: c.timeZone,
});

/** The quantities of a subscription in effect now (or at its start, when it starts later). */
export const quantitiesJson = (sub: Subscription, now: Date) =>
  Object.fromEntries(
    [...quantitiesAt(sub.quantities, sub.start > now ? sub.start : now)].map(([k, q]) => [k, formatDecimal(q)]),
  );

/** A subscription as the API answers it: with its cycle, trial, quantities, the period in progress and what is scheduled. */
async function subscriptionJson(ctx: AppContext, customer: string, sub: Subscription, previous?: Subscription | null) {
  const now = ctx.clock.now();
  const [calendar, scheduled] = await Promise.all([
    calendarOf(ctx.db, customer),
    scheduledChange(ctx.db, customer, now),
  ]);
  const current = calendar.periodContaining(now);
  return {
    customer,
    ...spanJson(sub),
    billing: billingCycleJson(sub.cycle),
    proration: sub.proration,
    end_proration: sub.endProration,
    trial_end: sub.trialEnd ? isoTime(sub.trialEnd) : null,
    quantities: quantitiesJson(sub, now),
    current_period: { start: isoTime(current.start), end: isoTime(current.end) },
    scheduled: scheduled ? { plan: scheduled.plan, start: isoTime(scheduled.start) } : null,
    ...(previous !== undefined ? { previous: previous ? spanJson(previous) : null } : {}),
  };
}

/** `now`, `period_end` (the end of the customer's period in progress) or an instant. */
async function instantOf(ctx: AppContext, customer: string, at: "now" | "period_end" | Date): Promise<Date> {
  const now = ctx.clock.now();
  if (at === "now") return now;
  if (at === "period_end") return (await calendarOf(ctx.db, customer)).periodContaining(now).end;
  return at;
}

export function subscriptionRoutes(t: RouteTable, ctx: AppContext): void {
  changeRoutes(t, ctx);
  quantityRoutes(t, ctx);
}

function changeRoutes(t: RouteTable, ctx: AppContext): void {
  const customerPath = z.object({ id: customerId });
  t.add({
    method: "put",
    path: "/v1/customers/{id}/subscription",
    summary:
      "Subscribe a customer to a plan from `start` or `at` (now, or period_end: scheduled); the previous subscription ends there, its fees prorated by hours unless `proration` is none",
    tags: ["setup"],
    scopes: ["admin"],
    params: customerPath,
    body: s.subscriptionBody,
    responses: {
      200: { description: "the subscription", schema: s.subscriptionSchema },
      404: { description: "no such customer" },
      422: {
        description:
          "unknown plan, a change of currency inside a billing period, period_not_hour_aligned, unknown_time_zone, unknown_charge",
      },
    },
    handle: async ({ params, body }) => {
      const start = body.start ?? (await instantOf(ctx, params.id, body.at ?? "now"));
      const b = body.billing;
      const billing = b && {
        interval: b.interval,
        intervalCount: b.interval_count,
        anchor: b.anchor,
        timeZone: b.time_zone,
      };
      const quantities = body.quantities && new Map(Object.entries(body.quantities).map(([k, v]) => [k, new Dec(v)]));
      const { subscription, ended } = await setSubscription(ctx.db, params.id, body.plan, start, {
        billing,
        proration: body.proration,
        trialEnd: body.trial_end,
        quantities,
        scheduled: body.at === "period_end",
      });
      // The plan's default limits (and prices, for money limits) may have changed for this customer.
      ctx.limits.schedule(params.id, "subscription-change");
      return { status: 200, body: await subscriptionJson(ctx, params.id, subscription, ended) };
    },
  });

  t.add({
    method: "delete",
    path: "/v1/customers/{id}/subscription/scheduled",
    summary: "Cancel the change scheduled for the period end; the subscription in effect runs on",
    tags: ["setup"],
    scopes: ["admin"],
    params: customerPath,
    responses: { 204: { description: "canceled" }, 404: { description: "nothing is scheduled" } },
    handle: async ({ params }) => {
      await cancelScheduled(ctx.db, params.id, ctx.clock.now());
      return { status: 204 };
    },
  });

  t.add({
    method: "post",
    path: "/v1/customers/{id}/subscription/cancel",
    summary: "End the subscription now, at an instant or at the period end; usage after the end is not billed",
    tags: ["setup"],
    scopes: ["admin"],
    params: customerPath,
    body: s.cancelBody,
    responses: {
      200: { description: "the subscription with its end", schema: s.subscriptionSchema },
      404: { description: "no such customer, or no subscription in effect then" },
    },
    handle: async ({ params, body }) => {
      const end = await instantOf(ctx, params.id, body.at);
      const sub = await cancelSubscription(ctx.db, params.id, end, body.proration ?? "prorate");
      ctx.limits.schedule(params.id, "subscription-change");
      return { status: 200, body: await subscriptionJson(ctx, params.id, sub) };
    },
  });
}

function quantityRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "put",
    path: "/v1/customers/{id}/subscription/quantities/{charge}",
    summary: "Set the quantity of a fixed charge from `effective_at` (default now); prorated by hours",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ id: customerId, charge: s.chargeKey }),
    body: s.quantityBody,
    responses: {
      200: { description: "the subscription", schema: s.subscriptionSchema },
      404: { description: "no such customer, or no subscription in effect then" },
      422: { description: "unknown_charge: the plan has no such fixed charge" },
    },
    handle: async ({ params, body }) => {
      const now = ctx.clock.now();
      const at = body.effective_at ?? now;
      const changed = await setQuantity(ctx.db, params.id, params.charge, new Dec(body.quantity), at);
      const sub = (await subscriptionAt(ctx.db, params.id, now)) ?? changed;
      return { status: 200, body: await subscriptionJson(ctx, params.id, sub) };
    },
  });

  t.add({
    method: "post",
    path: "/v1/plans/{key}/fixed-charges",
    summary: "Add a version of a fixed charge (seats, licences): a unit price per period from effective_from",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ key: s.planKey }),
    body: s.fixedChargeBody,
    responses: {
      201: { description: "the version", schema: s.fixedChargeSchema },
      404: { description: "no such plan" },
      409: { description: "a version of that charge with that effective_from exists" },
    },
    handle: async ({ params, body }) => {
      const stored = await addFixedCharge(ctx.db, params.key, {
        key: body.key,
        name: body.name,
        unitPrice: new Dec(body.unit_price),
        effectiveFrom: body.effective_from,
      });
      return { status: 201, body: fixedChargeJson(stored) };
    },
  });
}
