// Plans and their price versions in the database. Versions are append-only: a price changes by adding a
// version with a later effective_from, so every past invoice can be computed again exactly.
import { readAll } from "../db/reads.js";
import type { Queryable } from "../db/types.js";
import { conflict, notFound, unprocessable } from "../errors.js";
import type { Model, PriceOverride, PriceVersion, Tier } from "../pricing/models.js";
import { Dec } from "../pricing/money.js";
import type { PlanPrices } from "../pricing/segments.js";
import { fixedChargeVersions } from "./fixedCharges.js";

interface Plan {
  key: string;
  name: string;
  currency: string;
  createdAt: Date;
  updatedAt: Date;
}

interface PlanRow {
  key: string;
  name: string;
  currency: string;
  created_at: Date;
  updated_at: Date;
  created?: boolean;
}

interface VersionRow {
  plan_key: string;
  meter: string;
  effective_from: Date;
  model: Model;
  unit_price: string | null;
  tiers: { up_to: string | null; unit_price: string; flat_price: string }[] | null;
  package_size: string | null;
  package_price: string | null;
  base_fee: string | null;
  group_by: string[] | null;
  overrides: OverrideJson[] | null;
  created_at: Date;
}

type TierJson = { up_to: string | null; unit_price: string; flat_price: string };

/** An override as stored (decimals as strings). */
interface OverrideJson {
  match: Record<string, string | null>;
  model: Model;
  unit_price?: string;
  tiers?: TierJson[];
  package_size?: string;
  package_price?: string;
}

export interface StoredVersion extends PriceVersion {
  plan: string;
  createdAt: Date;
}

const planFromRow = (r: PlanRow): Plan => ({
  key: r.key,
  name: r.name,
  currency: r.currency,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const decOrNull = (v: string | null) => (v === null ? null : new Dec(v));

const tiersFromJson = (tiers: TierJson[] | null | undefined) =>
  tiers?.map((t) => ({
    upTo: decOrNull(t.up_to),
    unitPrice: new Dec(t.unit_price),
    flatPrice: new Dec(t.flat_price),
  })) ?? null;

const tiersToJson = (tiers: Tier[] | null | undefined) =>
  tiers?.map((t) => ({
    up_to: t.upTo === null ? null : t.upTo.toFixed(),
    unit_price: t.unitPrice.toFixed(),
    flat_price: t.flatPrice.toFixed(),
  })) ?? null;

const versionFromRow = (r: VersionRow): StoredVersion => ({
  plan: r.plan_key,
  meter: r.meter,
  effectiveFrom: r.effective_from,
  model: r.model,
  unitPrice: decOrNull(r.unit_price),
  tiers: tiersFromJson(r.tiers),
  packageSize: decOrNull(r.package_size),
  packagePrice: decOrNull(r.package_price),
  baseFee: decOrNull(r.base_fee),
  ...(r.group_by ? { groupBy: r.group_by } : {}),
  ...(r.overrides
    ? {
        overrides: r.overrides.map((o) => ({
          match: o.match,
          spec: {
            model: o.model,
            unitPrice: decOrNull(o.unit_price ?? null),
            tiers: tiersFromJson(o.tiers),
            packageSize: decOrNull(o.package_size ?? null),
            packagePrice: decOrNull(o.package_price ?? null),
          },
        })),
      }
    : {}),
  createdAt: r.created_at,
});

function overridesToJson(overrides: PriceOverride[] | null | undefined): OverrideJson[] | null {
  if (!overrides) return null;
  return overrides.map(({ match, spec }) => ({
    match,
    model: spec.model,
    ...(spec.unitPrice ? { unit_price: spec.unitPrice.toFixed() } : {}),
    ...(spec.tiers ? { tiers: tiersToJson(spec.tiers) as TierJson[] } : {}),
    ...(spec.packageSize ? { package_size: spec.packageSize.toFixed() } : {}),
    ...(spec.packagePrice ? { package_price: spec.packagePrice.toFixed() } : {}),
  }));
}

const VERSION_COLUMNS = `plan_key, meter, effective_from, model, unit_price::text AS unit_price, tiers,
  package_size::text AS package_size, package_price::text AS package_price, base_fee::text AS base_fee, group_by,
  overrides, created_at`;

export async function upsertPlan(
  db: Queryable,
  key: string,
  input: { name: string; currency: string },
): Promise<{ plan: Plan; created: boolean }> {
  const existing = await getPlan(db, key);
  if (existing && existing.currency !== input.currency) {
    const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM price_versions WHERE plan_key = $1", [
      key,
    ]);
    if (Number(rows[0]?.n) > 0) {
      throw conflict(
        "currency_locked",
        `plan ${key} has prices in ${existing.currency}; its currency cannot change (create a new plan instead)`,
      );
    }
  }
  const { rows } = await db.query<PlanRow>(
    `INSERT INTO plans (key, name, currency) VALUES ($1, $2, $3)
     ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, currency = EXCLUDED.currency, updated_at = now()
     RETURNING key, name, currency, created_at, updated_at, (xmax = 0) AS created`,
    [key, input.name, input.currency],
  );
  const row = rows[0] as PlanRow;
  return { plan: planFromRow(row), created: Boolean(row.created) };
}

export async function getPlan(db: Queryable, key: string): Promise<Plan | undefined> {
  const { rows } = await db.query<PlanRow>(
    "SELECT key, name, currency, created_at, updated_at FROM plans WHERE key = $1",
    [key],
  );
  return rows[0] ? planFromRow(rows[0]) : undefined;
}

export async function listPlans(db: Queryable): Promise<Plan[]> {
  const { rows } = await db.query<PlanRow>(
    "SELECT key, name, currency, created_at, updated_at FROM plans ORDER BY key",
  );
  return rows.map(planFromRow);
}

export async function planVersions(db: Queryable, keys: string[]): Promise<StoredVersion[]> {
  if (keys.length === 0) return [];
  const { rows } = await db.query<VersionRow>(
    `SELECT ${VERSION_COLUMNS} FROM price_versions WHERE plan_key = ANY($1::text[]) ORDER BY plan_key, meter, effective_from`,
    [keys],
  );
  return rows.map(versionFromRow);
}

/** Plans with every version of their prices, for pricing a period. */
export async function loadPlanPrices(db: Queryable, keys: string[]): Promise<Map<string, PlanPrices>> {
  const unique = [...new Set(keys)];
  const plans = new Map<string, PlanPrices>();
  if (unique.length === 0) return plans;
  const [{ rows }, versions, fixed] = await readAll(db, [
    () =>
      db.query<PlanRow>("SELECT key, name, currency, created_at, updated_at FROM plans WHERE key = ANY($1::text[])", [
        unique,
      ]),
    () => planVersions(db, unique),
    () => fixedChargeVersions(db, unique),
  ]);
  for (const r of rows) {
    plans.set(r.key, { key: r.key, name: r.name, currency: r.currency, versions: [], fixedCharges: [] });
  }
  for (const v of versions) plans.get(v.plan)?.versions.push(v);
  for (const f of fixed) plans.get(f.plan)?.fixedCharges?.push(f);
  return plans;
}

/** Adds a version; 404 unknown plan, 422 unknown meter, 409 a version with that effective_from exists. */
export async function addPriceVersion(db: Queryable, plan: string, v: PriceVersion): Promise<StoredVersion> {
  if (!(await getPlan(db, plan))) throw notFound(`no plan ${plan}`);
  const meter = await db.query<{ dimensions: string[] }>("SELECT dimensions FROM meters WHERE key = $1", [v.meter]);
  const dimensions = meter.rows[0]?.dimensions;
  if (!dimensions) {
    throw unprocessable("unknown_meter", `unknown meter "${v.meter}"`, [{ field: "meter", message: "no such meter" }]);
  }
  const ungrouped = (v.groupBy ?? []).flatMap((k, i) => (dimensions.includes(k) ? [] : [{ k, i }]));
  if (ungrouped.length > 0) {
    throw unprocessable(
      "unknown_dimension",
      `group_by names ${ungrouped.map((u) => `"${u.k}"`).join(", ")}, not a dimension of meter ${v.meter} (${dimensions.join(", ") || "it has none"})`,
      ungrouped.map((u) => ({ field: `group_by[${u.i}]`, message: `not a dimension of meter ${v.meter}` })),
    );
  }
  const tiers = tiersToJson(v.tiers);
  const overrides = overridesToJson(v.overrides);
  const { rows } = await db.query<VersionRow>(
    `INSERT INTO price_versions (plan_key, meter, effective_from, model, unit_price, tiers, package_size, package_price,
                                 base_fee, group_by, overrides)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (plan_key, meter, effective_from) DO NOTHING
     RETURNING ${VERSION_COLUMNS}`,
    [
      plan,
      v.meter,
      v.effectiveFrom,
      v.model,
      v.unitPrice?.toFixed() ?? null,
      tiers === null ? null : JSON.stringify(tiers),
      v.packageSize?.toFixed() ?? null,
      v.packagePrice?.toFixed() ?? null,
      v.baseFee?.toFixed() ?? null,
      v.groupBy ?? null,
      overrides === null ? null : JSON.stringify(overrides),
    ],
  );
  const row = rows[0];
  if (!row) {
    throw conflict(
      "version_exists",
      `plan ${plan} already has a ${v.meter} price version effective from ${v.effectiveFrom.toISOString()}; versions are never changed — add one with another effective_from`,
    );
  }
  return versionFromRow(row);
}
