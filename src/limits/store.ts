// Limits in the database: per customer, or a plan's default for every customer on it.
import type { Queryable } from "../db/types.js";
import { notFound, unprocessable } from "../http/problem.js";
import { Dec } from "../pricing/money.js";
import type { Limit, LimitUnit } from "./rules.js";

interface LimitRow {
  meter: string;
  soft: string | null;
  hard: string | null;
  unit: LimitUnit;
  updated_at: Date;
}

export interface StoredLimit extends Limit {
  meter: string;
  updatedAt: Date;
}

const fromRow = (r: LimitRow): StoredLimit => ({
  meter: r.meter,
  soft: r.soft === null ? null : new Dec(r.soft),
  hard: r.hard === null ? null : new Dec(r.hard),
  unit: r.unit,
  updatedAt: r.updated_at,
});

const COLUMNS = "meter, soft::text AS soft, hard::text AS hard, unit, updated_at";

export interface LimitInput {
  soft?: string | null | undefined;
  hard?: string | null | undefined;
  unit: LimitUnit;
}

async function requireMeter(db: Queryable, meter: string): Promise<void> {
  const { rows } = await db.query("SELECT 1 FROM meters WHERE key = $1", [meter]);
  if (rows.length === 0) {
    throw unprocessable("unknown_meter", `unknown meter "${meter}"`, [{ field: "meter", message: "no such meter" }]);
  }
}

export async function putCustomerLimit(
  db: Queryable,
  customer: string,
  meter: string,
  input: LimitInput,
): Promise<StoredLimit> {
  const found = await db.query("SELECT 1 FROM customers WHERE id = $1", [customer]);
  if (found.rows.length === 0) throw notFound(`no customer ${customer}`);
  await requireMeter(db, meter);
  const { rows } = await db.query<LimitRow>(
    `INSERT INTO customer_limits (customer_id, meter, soft, hard, unit) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (customer_id, meter) DO UPDATE
       SET soft = EXCLUDED.soft, hard = EXCLUDED.hard, unit = EXCLUDED.unit, updated_at = now()
     RETURNING ${COLUMNS}`,
    [customer, meter, input.soft ?? null, input.hard ?? null, input.unit],
  );
  return fromRow(rows[0] as LimitRow);
}

export async function deleteCustomerLimit(db: Queryable, customer: string, meter: string): Promise<void> {
  const { rowCount } = await db.query("DELETE FROM customer_limits WHERE customer_id = $1 AND meter = $2", [
    customer,
    meter,
  ]);
  if (rowCount === 0) throw notFound(`customer ${customer} has no limit on ${meter}`);
}

export async function putPlanLimit(
  db: Queryable,
  plan: string,
  meter: string,
  input: LimitInput,
): Promise<StoredLimit> {
  const found = await db.query("SELECT 1 FROM plans WHERE key = $1", [plan]);
  if (found.rows.length === 0) throw notFound(`no plan ${plan}`);
  await requireMeter(db, meter);
  const { rows } = await db.query<LimitRow>(
    `INSERT INTO plan_limits (plan_key, meter, soft, hard, unit) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (plan_key, meter) DO UPDATE
       SET soft = EXCLUDED.soft, hard = EXCLUDED.hard, unit = EXCLUDED.unit, updated_at = now()
     RETURNING ${COLUMNS}`,
    [plan, meter, input.soft ?? null, input.hard ?? null, input.unit],
  );
  return fromRow(rows[0] as LimitRow);
}

export async function deletePlanLimit(db: Queryable, plan: string, meter: string): Promise<void> {
  const { rowCount } = await db.query("DELETE FROM plan_limits WHERE plan_key = $1 AND meter = $2", [plan, meter]);
  if (rowCount === 0) throw notFound(`plan ${plan} has no limit on ${meter}`);
}

/** The limits in effect for a customer at `at`: its own, else its current plan's, per meter. */
export async function effectiveLimits(db: Queryable, customer: string, at: Date): Promise<Map<string, StoredLimit>> {
  const { rows } = await db.query<LimitRow & { own: boolean }>(
    `SELECT ${COLUMNS}, true AS own FROM customer_limits WHERE customer_id = $1
     UNION ALL
     SELECT l.meter, l.soft::text, l.hard::text, l.unit, l.updated_at, false
     FROM subscriptions s JOIN plan_limits l ON l.plan_key = s.plan_key
     WHERE s.customer_id = $1 AND s.start_at <= $2 AND (s.end_at IS NULL OR s.end_at > $2)`,
    [customer, at],
  );
  const out = new Map<string, StoredLimit>();
  for (const r of rows) if (r.own || !out.has(r.meter)) out.set(r.meter, fromRow(r));
  return out;
}

/** Every customer with a limit in effect at `at` (own or through the plan it is on). */
export async function limitedCustomers(db: Queryable, at: Date): Promise<string[]> {
  const { rows } = await db.query<{ customer_id: string }>(
    `SELECT customer_id FROM customer_limits
     UNION
     SELECT s.customer_id FROM subscriptions s JOIN plan_limits l ON l.plan_key = s.plan_key
     WHERE s.start_at <= $1 AND (s.end_at IS NULL OR s.end_at > $1)
     UNION
     SELECT customer_id FROM limit_states WHERE unit IS NOT NULL
     ORDER BY 1`,
    [at],
  );
  return rows.map((r) => r.customer_id);
}

/** Customers currently on a plan (to re-evaluate when the plan's limits change). */
export async function customersOnPlan(db: Queryable, plan: string, at: Date): Promise<string[]> {
  const { rows } = await db.query<{ customer_id: string }>(
    `SELECT DISTINCT customer_id FROM subscriptions
     WHERE plan_key = $1 AND start_at <= $2 AND (end_at IS NULL OR end_at > $2) ORDER BY 1`,
    [plan, at],
  );
  return rows.map((r) => r.customer_id);
}
