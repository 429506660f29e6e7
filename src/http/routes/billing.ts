// Plans, price versions and subscriptions (scope admin); customer summaries and invoice previews (scope read).
import { z } from "zod";
import { assertCustomerVisible } from "../../auth/keys.js";
import { fixedChargeVersions, type StoredFixedCharge } from "../../billing/fixedCharges.js";
import {
  addPriceVersion,
  getPlan,
  listPlans,
  planVersions,
  type StoredVersion,
  upsertPlan,
} from "../../billing/plans.js";
import * as s from "../../billing/schemas.js";
import type { Statement } from "../../billing/statement.js";
import { calendarOf } from "../../billing/subscriptions.js";
import { getCustomer } from "../../catalog/customers.js";
import { customerId, type PeriodSelector } from "../../catalog/schemas.js";
import { creditedStatement, type StatementCredits } from "../../credits/invoice.js";
import { notFound, unprocessable } from "../../errors.js";
import { creditLines, creditTotals, statementMoney } from "../../invoices/document.js";
import type { PriceOverride, Tier } from "../../pricing/models.js";
import { Dec, formatDecimal } from "../../pricing/money.js";
import { checkPriceVersion } from "../../pricing/versions.js";
import type { AppContext } from "../context.js";
import { isoTime } from "../format.js";
import type { RouteTable } from "../routeTable.js";

const tierJson = (t: Tier) => ({
  up_to: t.upTo === null ? null : formatDecimal(t.upTo),
  unit_price: formatDecimal(t.unitPrice),
  flat_price: formatDecimal(t.flatPrice),
});

function versionJson(v: StoredVersion) {
  const tiers = v.tiers?.map(tierJson);
  return {
    plan: v.plan,
    meter: v.meter,
    effective_from: isoTime(v.effectiveFrom),
    model: v.model,
    ...(v.unitPrice ? { unit_price: formatDecimal(v.unitPrice) } : {}),
    ...(tiers ? { tiers } : {}),
    ...(v.packageSize ? { package_size: formatDecimal(v.packageSize) } : {}),
    ...(v.packagePrice ? { package_price: formatDecimal(v.packagePrice) } : {}),
    base_fee: v.baseFee ? formatDecimal(v.baseFee) : null,
    ...(v.groupBy ? { group_by: v.groupBy } : {}),
    ...(v.overrides ? { overrides: v.overrides.map(overrideJson) } : {}),
    created_at: isoTime(v.createdAt),
  };
}

export const fixedChargeJson = (f: StoredFixedCharge) => ({
  plan: f.plan,
  key: f.key,
  name: f.name,
  unit_price: formatDecimal(f.unitPrice),
  effective_from: isoTime(f.effectiveFrom),
  created_at: isoTime(f.createdAt),
});

function overrideJson(o: PriceOverride) {
  return {
    match: o.match,
    model: o.spec.model,
    ...(o.spec.unitPrice ? { unit_price: formatDecimal(o.spec.unitPrice) } : {}),
    ...(o.spec.tiers ? { tiers: o.spec.tiers.map(tierJson) } : {}),
    ...(o.spec.packageSize ? { package_size: formatDecimal(o.spec.packageSize) } : {}),
    ...(o.spec.packagePrice ? { package_price: formatDecimal(o.spec.packagePrice) } : {}),
  };
}

async function planJson(ctx: AppContext, key: string) {
  const plan = await getPlan(ctx.db, key);
  if (!plan) return undefined;
  const byMeter = new Map<string, ReturnType<typeof versionJson>[]>();
  for (const v of await planVersions(ctx.db, [key]))
    byMeter.set(v.meter, [...(byMeter.get(v.meter) ?? []), versionJson(v)]);
  const byCharge = new Map<string, ReturnType<typeof fixedChargeJson>[]>();
  for (const f of await fixedChargeVersions(ctx.db, [key]))
    byCharge.set(f.key, [...(byCharge.get(f.key) ?? []), fixedChargeJson(f)]);
  return {
    key: plan.key,
    name: plan.name,
    currency: plan.currency,
    prices: [...byMeter].map(([meter, versions]) => ({ meter, versions })),
    fixed_charges: [...byCharge].map(([charge, versions]) => ({ charge, versions })),
    created_at: isoTime(plan.createdAt),
    updated_at: isoTime(plan.updatedAt),
  };
}

/** The customer's period asked for (a month or an instant), or the one in progress. */
async function periodParam(ctx: AppContext, customer: string, period: PeriodSelector | undefined) {
  return (await calendarOf(ctx.db, customer)).select(period, ctx.clock.now());
}

type LimitView = Map<string, { soft: Dec | null; hard: Dec | null; unit: string; state: string }>;

function summaryJson(st: Statement, limits: LimitView = new Map(), credits?: StatementCredits) {
  const fmt = statementMoney(st);
  const meters = [...st.meters];
  for (const meter of limits.keys()) {
    if (!meters.some((m) => m.meter === meter)) meters.push({ meter, quantity: new Dec(0), amount: new Dec(0) });
  }
  meters.sort((a, b) => a.meter.localeCompare(b.meter));
  return {
    customer: st.customer,
    period: { start: isoTime(st.period.start), end: isoTime(st.period.end) },
    currency: st.currency,
    meters: meters.map((m) => ({
      meter: m.meter,
      quantity: formatDecimal(m.quantity),
      amount: fmt(m.amount),
      ...(m.tier
        ? {
            tier: {
              index: m.tier.index,
              up_to: m.tier.upTo === null ? null : formatDecimal(m.tier.upTo),
              unit_price: formatDecimal(m.tier.unitPrice),
              flat_price: formatDecimal(m.tier.flatPrice),
              units_to_next_tier: m.tier.unitsToNextTier === null ? null : formatDecimal(m.tier.unitsToNextTier),
            },
          }
        : {}),
      ...(m.groups
        ? {
            groups: m.groups.map((g) => ({
              dimensions: g.dimensions,
              quantity: formatDecimal(g.quantity),
              amount: fmt(g.amount),
            })),
          }
        : {}),
      ...limitJson(limits.get(m.meter)),
    })),
    ...(st.fixedCharges.length > 0
      ? {
          fixed_charges: st.fixedCharges.map((f) => ({
            charge: f.charge,
            quantity: formatDecimal(f.quantity),
            amount: fmt(f.amount),
          })),
        }
      : {}),
    ...(credits ? { credit_lines: creditLines(st, credits) } : {}),
    ...creditTotals(st, credits),
    as_of: isoTime(st.asOf),
  };
}

function limitJson(l: { soft: Dec | null; hard: Dec | null; unit: string; state: string } | undefined) {
  if (!l) return {};
  const fmt = (d: Dec | null) => (d === null ? null : formatDecimal(d));
  return { limit: { soft: fmt(l.soft), hard: fmt(l.hard), unit: l.unit, state: l.state } };
}

export function billingRoutes(t: RouteTable, ctx: AppContext): void {
  planRoutes(t, ctx);
  priceRoutes(t, ctx);
  statementRoutes(t, ctx);
}

function planRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "put",
    path: "/v1/plans/{key}",
    summary: "Create or update a plan (its currency is fixed once it has prices)",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ key: s.planKey }),
    body: s.planBody,
    responses: {
      200: { description: "updated", schema: s.planSchema },
      201: { description: "created", schema: s.planSchema },
      409: { description: "the plan has prices in another currency" },
    },
    handle: async ({ params, body }) => {
      const { created } = await upsertPlan(ctx.db, params.key, body);
      return { status: created ? 201 : 200, body: await planJson(ctx, params.key) };
    },
  });

  t.add({
    method: "get",
    path: "/v1/plans",
    summary: "List plans",
    tags: ["setup"],
    scopes: ["admin"],
    responses: { 200: { description: "every plan", schema: z.object({ data: z.array(s.planSchema) }) } },
    handle: async () => {
      const plans = await listPlans(ctx.db);
      return { status: 200, body: { data: await Promise.all(plans.map((p) => planJson(ctx, p.key))) } };
    },
  });

  t.add({
    method: "get",
    path: "/v1/plans/{key}",
    summary: "Get a plan with every version of its prices",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ key: s.planKey }),
    responses: { 200: { description: "the plan", schema: s.planSchema }, 404: { description: "no such plan" } },
    handle: async ({ params }) => {
      const plan = await planJson(ctx, params.key);
      if (!plan) throw notFound(`no plan ${params.key}`);
      return { status: 200, body: plan };
    },
  });
}

function priceRoutes(t: RouteTable, ctx: AppContext): void {
  t.add({
    method: "post",
    path: "/v1/plans/{key}/prices",
    summary: "Add a price version for a meter (versions are never changed: a new price is a new version)",
    tags: ["setup"],
    scopes: ["admin"],
    params: z.object({ key: s.planKey }),
    body: s.priceVersionBody,
    responses: {
      201: { description: "the version", schema: s.priceVersionSchema },
      404: { description: "no such plan" },
      409: { description: "a version with that effective_from exists" },
      422: {
        description:
          "invalid version (tiers not ascending, last up_to not null, negative price, missing field, unknown meter, overrides without group_by, match keys outside group_by, group_by not a dimension of the meter)",
      },
    },
    handle: async ({ params, body }) => {
      const checked = checkPriceVersion(body);
      if (!checked.ok) {
        throw unprocessable(
          checked.problems[0]?.code ?? "invalid_price",
          `the price version is invalid: ${checked.problems.map((p) => `${p.field} ${p.message}`).join("; ")}`,
          checked.problems.map((p) => ({ field: p.field, message: `${p.message} (${p.code})` })),
        );
      }
      const stored = await addPriceVersion(ctx.db, params.key, checked.version);
      return { status: 201, body: versionJson(stored) };
    },
  });
}

function statementRoutes(t: RouteTable, ctx: AppContext): void {
  const statementRoute = (kind: "summary" | "invoice") =>
    t.add({
      method: "get",
      path: `/v1/customers/{id}/${kind}`,
      summary:
        kind === "summary"
          ? "Current-period (or given period) quantities and amounts per meter, with tier positions"
          : "Invoice preview: one line per segment (per tier for graduated prices) and base fee",
      tags: ["reading"],
      scopes: ["read"],
      params: z.object({ id: customerId }),
      query: s.periodQuery,
      responses: {
        200: { description: kind, schema: kind === "summary" ? s.summarySchema : s.invoicePreviewSchema },
        404: { description: "no such customer (or not visible to this key)" },
      },
      handle: async ({ params, query, auth }) => {
        assertCustomerVisible(auth, params.id);
        if (!(await getCustomer(ctx.db, params.id))) throw notFound(`no customer ${params.id}`);
        const now = ctx.clock.now();
        const period = await periodParam(ctx, params.id, query.period);
        // A finalized period answers its final invoice, as frozen; drafts (with adjustments) are at /v1/invoices.
        const invoice = kind === "invoice" ? await ctx.invoices.finalOf(params.id, period) : undefined;
        if (invoice) return { status: 200, body: invoice };
        const { statement, credits } = await creditedStatement(ctx.credits, params.id, period, now);
        if (credits && !credits.consistent) {
          ctx.log.error({ customer: params.id, period: query.period }, "credit ledger and statement disagree");
        }
        if (kind === "invoice") return { status: 200, body: ctx.invoices.preview({ statement, credits }) };
        const values = new Map(
          statement.meters.map((m) => [
            m.meter,
            { quantity: m.quantity, amount: statement.currency ? m.amount : null },
          ]),
        );
        const limits = await ctx.limits.limitsFor(params.id, statement.period, values);
        return { status: 200, body: summaryJson(statement, limits, credits) };
      },
    });
  statementRoute("summary");
  statementRoute("invoice");
}
