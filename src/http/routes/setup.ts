// Setup endpoints (scope admin): meters, customers and API keys.
import { z } from "zod";
import { SCOPES } from "../../auth/types.js";
import { type Customer, getCustomer, upsertCustomer } from "../../catalog/customers.js";
import { listMeters, type Meter, upsertMeter } from "../../catalog/meters.js";
import * as s from "../../catalog/schemas.js";
import { notFound, unprocessable } from "../../errors.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const meterJson = (m: Meter) => ({
  key: m.key,
  name: m.name,
  unit: m.unit,
  aggregation: m.aggregation,
  stripe_event_name: m.stripeEventName,
  stripe_scale: m.stripeScale,
  dimensions: m.dimensions,
  stripe_value: m.stripeValue,
  unique_property: m.uniqueProperty,
  created_at: isoTime(m.createdAt),
  updated_at: isoTime(m.updatedAt),
});

type SubscriptionJson = Awaited<ReturnType<AppContext["subscriptionOf"]>>;

const customerJson = (c: Customer, { subscription, scheduled }: SubscriptionJson) => ({
  id: c.id,
  name: c.name,
  email: c.email,
  stripe_customer_id: c.stripeCustomerId,
  credit_mode: c.creditMode,
  credit_alert_below: c.creditAlertBelow,
  subscription,
  scheduled,
  created_at: isoTime(c.createdAt),
  updated_at: isoTime(c.updatedAt),
});

const apiKeyBody = z
  .strictObject({
    scopes: z.array(z.enum(SCOPES)).min(1).max(3),
    customer: s.customerId.nullable().optional(),
  })
  .meta({ id: "ApiKeyInput" });

export function setupRoutes(t: RouteTable, ctx: AppContext): void {
  meterRoutes(t, ctx);
  customerRoutes(t, ctx);
  apiKeyRoutes(t, ctx);
}

function meterRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "put",
    path: "/v1/meters/{key}",
    summary: "Create or update a meter",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ key: s.meterKey }),
    body: s.meterBody,
    responses: {
      200: { description: "updated", schema: s.meter },
      201: { description: "created", schema: s.meter },
      409: {
        description:
          "meter_in_use: the dimensions of a meter with events cannot change, nor whether (and what) it counts distinct values of",
      },
      422: { description: "invalid_unique_property: unique_property is required by unique_count, and only there" },
    },
    handle: async ({ params, body }) => {
      const { meter, created } = await upsertMeter(ctx.db, params.key, body);
      ctx.meters.invalidate();
      return { status: created ? 201 : 200, body: meterJson(meter) };
    },
  });

  t.add({
    method: "get",
    path: "/v1/meters",
    summary: "List meters",
    tags: ["setup"],
    scopes: ["admin"],
    responses: { 200: { description: "all meters", schema: z.object({ data: z.array(s.meter) }) } },
    handle: async () => ({ status: 200, body: { data: (await listMeters(ctx.db)).map(meterJson) } }),
  });
}

function customerRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "put",
    path: "/v1/customers/{id}",
    summary: "Create or update a customer (fields left out keep their value; null clears)",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ id: s.customerId }),
    body: s.customerBody,
    responses: {
      200: { description: "updated", schema: s.customer },
      201: { description: "created", schema: s.customer },
    },
    handle: async ({ params, body }) => {
      const { customer, created } = await upsertCustomer(ctx.db, params.id, body);
      // A new credit mode or alert threshold is enforced at once (credit_only without credits blocks).
      if (body.credit_mode !== undefined || body.credit_alert_below !== undefined) {
        await ctx.limits.evaluateCustomer(customer.id, "credit-change");
      }
      return { status: created ? 201 : 200, body: customerJson(customer, await ctx.subscriptionOf(customer.id)) };
    },
  });

  t.add({
    method: "get",
    path: "/v1/customers/{id}",
    summary: "Get a customer with its current subscription",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ id: s.customerId }),
    responses: { 200: { description: "the customer", schema: s.customer }, 404: { description: "no such customer" } },
    handle: async ({ params }) => {
      const customer = await getCustomer(ctx.db, params.id);
      if (!customer) throw notFound(`no customer ${params.id}`);
      return { status: 200, body: customerJson(customer, await ctx.subscriptionOf(customer.id)) };
    },
  });
}

function apiKeyRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/api-keys",
    summary: "Create an API key (the key is shown once)",
    tags: ["setup"],
    scopes: ["admin"],
    body: apiKeyBody,
    responses: {
      201: {
        description: "created",
        schema: z.object({
          id: z.string(),
          key: z.string(),
          scopes: z.array(z.string()),
          customer: z.string().nullable(),
        }),
      },
      422: { description: "an admin key cannot be bound to a customer" },
    },
    handle: async ({ body }) => {
      const scopes = [...new Set(body.scopes)];
      const customer = body.customer ?? null;
      if (customer && scopes.includes("admin")) {
        throw unprocessable("admin_key_bound", "an admin key sees everything and cannot be bound to a customer", [
          { field: "customer", message: "not allowed with the admin scope" },
        ]);
      }
      const { id, key } = await ctx.keys.create(scopes, customer);
      return { status: 201, body: { id, key, scopes, customer } };
    },
  });

  t.add({
    method: "delete",
    path: "/v1/api-keys/{id}",
    summary: "Revoke an API key",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ id: z.string().min(1).max(100) }),
    responses: { 204: { description: "revoked" }, 404: { description: "no such key" } },
    handle: async ({ params }) => {
      await ctx.keys.revoke(params.id);
      return { status: 204 };
    },
  });
}
