// Fixed charges of plans (seats, licences): effective-dated versions of a unit price per period, never changed once
// created (a new price is a new version, as for price versions).
import type { Queryable } from "../db/types.js";
import { conflict, notFound } from "../errors.js";
import { Dec } from "../pricing/money.js";
import type { FixedChargeVersion } from "../pricing/segments.js";

export interface StoredFixedCharge extends FixedChargeVersion {
  plan: string;
  createdAt: Date;
}

interface Row {
  plan_key: string;
  charge: string;
  name: string;
  unit_price: string;
  effective_from: Date;
  created_at: Date;
}

const COLUMNS = "plan_key, charge, name, unit_price::text AS unit_price, effective_from, created_at";

const fromRow = (r: Row): StoredFixedCharge => ({
  plan: r.plan_key,
  key: r.charge,
  name: r.name,
  unitPrice: new Dec(r.unit_price),
  effectiveFrom: r.effective_from,
  createdAt: r.created_at,
});

/** Every version of the fixed charges of `plans`, by plan, charge and effective_from. */
export async function fixedChargeVersions(db: Queryable, plans: readonly string[]): Promise<StoredFixedCharge[]> {
  if (plans.length === 0) return [];
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM fixed_charge_versions WHERE plan_key = ANY($1::text[])
     ORDER BY plan_key, charge, effective_from`,
    [plans],
  );
  return rows.map(fromRow);
}

/** Adds a version; 404 unknown plan, 409 a version of that charge with that effective_from exists. */
export async function addFixedCharge(
  db: Queryable,
  plan: string,
  v: Omit<FixedChargeVersion, "unitPrice"> & { unitPrice: Dec },
): Promise<StoredFixedCharge> {
  const found = await db.query("SELECT 1 FROM plans WHERE key = $1", [plan]);
  if (found.rows.length === 0) throw notFound(`no plan ${plan}`);
  const { rows } = await db.query<Row>(
    `INSERT INTO fixed_charge_versions (plan_key, charge, name, unit_price, effective_from)
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plan_key, charge, effective_from) DO NOTHING
     RETURNING ${COLUMNS}`,
    [plan, v.key, v.name, v.unitPrice.toFixed(), v.effectiveFrom],
  );
  if (!rows[0]) {
    throw conflict(
      "version_exists",
      `plan ${plan} already has a version of fixed charge ${v.key} effective from ${v.effectiveFrom.toISOString()}; versions are never changed — add one with another effective_from`,
    );
  }
  return fromRow(rows[0]);
}
