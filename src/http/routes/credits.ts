// Prepaid credits: grants (scope admin) and the balance (scope read), read from the ledger computed on read.
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import { getCustomer } from "../../catalog/customers.js";
import { customerId } from "../../catalog/schemas.js";
import { burnOrder, statusAt } from "../../credits/burndown.js";
import { createGrant, currencyAt, type StoredGrant, voidGrant } from "../../credits/grants.js";
import { asCreditGrant, balanceOf, type CreditLedger, fromMinor } from "../../credits/ledger.js";
import * as s from "../../credits/schemas.js";
import { badRequest, notFound } from "../../errors.js";
import { formatMoney } from "../../pricing/money.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

function grantJson(g: StoredGrant, ledger: CreditLedger | undefined, now: Date) {
  const b = ledger?.burn.grants.get(g.id);
  const money = (minor: bigint) => formatMoney(fromMinor(minor, g.currency), g.currency);
  return {
    id: g.id,
    customer: g.customer,
    amount: formatMoney(g.amount, g.currency),
    remaining: b ? money(b.remaining) : formatMoney(g.amount, g.currency),
    applied: money(b?.applied ?? 0n),
    forfeited: money(b?.forfeited ?? 0n),
    currency: g.currency,
    priority: g.priority,
    effective_at: isoTime(g.effectiveAt),
    expires_at: g.expiresAt ? isoTime(g.expiresAt) : null,
    meters: g.meters,
    description: g.description,
    voided_at: g.voidedAt ? isoTime(g.voidedAt) : null,
    status: b?.status ?? statusAt(asCreditGrant(g), now.getTime()),
    created_at: isoTime(g.createdAt),
  };
}

const path = z.object({ id: customerId });
const grantPath = z.object({ id: customerId, grant: z.string().min(1).max(100) });

/** The grant as the ledger sees it right after a change. */
async function afterChange(ctx: AppContext, customer: string, grant: StoredGrant) {
  await ctx.limits.evaluateCustomer(customer, "credit-change");
  const now = ctx.clock.now();
  const { ledger } = await ctx.credits.read(customer, now, async () => undefined);
  return grantJson(ledger?.grants.find((g) => g.id === grant.id) ?? grant, ledger, now);
}

export function creditRoutes(t: RouteTable, ctx: AppContext): void {
  grantRoutes(t, ctx);
  balanceRoutes(t, ctx);
}

function grantRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/customers/{id}/credit-grants",
    summary: "Grant prepaid credits in the plan's currency (Idempotency-Key: a retry answers the same grant)",
    tags: ["setup"],
    scopes: ["admin"],
    params: path,
    body: s.grantBody,
    responses: {
      201: { description: "the grant (also for a retry with the same Idempotency-Key)", schema: s.grantSchema },
      404: { description: "no such customer" },
      409: { description: "the Idempotency-Key was used for a different grant" },
      422: { description: "no subscription (no currency), too many decimals, expiry before effective, unknown meter" },
    },
    handle: async ({ params, body, req }) => {
      const raw = req.headers["idempotency-key"];
      const key = raw === undefined ? null : s.idempotencyKey.safeParse(raw);
      if (key && !key.success) {
        throw badRequest("invalid_idempotency_key", "Idempotency-Key must be 1–255 characters", [
          { field: "Idempotency-Key", message: "must be 1–255 characters" },
        ]);
      }
      const { grant } = await createGrant(
        ctx.db,
        params.id,
        body,
        key ? key.data : null,
        ctx.clock.now(),
        ctx.config.TALLY_EVENT_MAX_AGE_DAYS,
      );
      return { status: 201, body: await afterChange(ctx, params.id, grant) };
    },
  });

  t.add({
    method: "post",
    path: "/v1/customers/{id}/credit-grants/{grant}/void",
    summary: "Void a grant: it stops covering after the hour of voided_at, and what is left then is forfeited",
    tags: ["setup"],
    scopes: ["admin"],
    params: grantPath,
    responses: {
      200: { description: "the grant with voided_at", schema: s.grantSchema },
      404: { description: "no such customer or grant" },
    },
    handle: async ({ params }) => {
      const grant = await voidGrant(ctx.db, params.id, params.grant, ctx.clock.now());
      return { status: 200, body: await afterChange(ctx, params.id, grant) };
    },
  });
}

function balanceRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "get",
    path: "/v1/customers/{id}/credits",
    summary: "The credit balance and every grant (in burn order) with what it has left, applied and forfeited",
    tags: ["reading"],
    scopes: ["read"],
    params: path,
    responses: {
      200: { description: "the balance", schema: s.creditsSchema },
      404: { description: "no such customer (or not visible to this key)" },
    },
    handle: async ({ params, auth }) => {
      assertCustomerVisible(auth, params.id);
      const customer = await getCustomer(ctx.db, params.id);
      if (!customer) throw notFound(`no customer ${params.id}`);
      const now = ctx.clock.now();
      const { ledger, value: current } = await ctx.credits.read(params.id, now, (tx) => currencyAt(tx, params.id, now));
      const currency = current ?? ledger?.grants.at(-1)?.currency ?? null;
      const balance = ledger && currency ? balanceOf(ledger, currency) : undefined;
      return {
        status: 200,
        body: {
          customer: params.id,
          currency,
          balance: currency ? formatMoney(balance ?? fromMinor(0n, currency), currency) : "0",
          credit_mode: customer.creditMode,
          grants: [...(ledger?.grants ?? [])]
            .sort((a, b) => burnOrder(asCreditGrant(a), asCreditGrant(b)))
            .map((g) => grantJson(g, ledger, now)),
          as_of: isoTime(now),
        },
      };
    },
  });
}
