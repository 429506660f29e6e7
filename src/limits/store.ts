// Limits in the database: per customer, or a plan's default for every customer on it.
import type { Queryable } from "../db/types.js";
import { notFound, unprocessable } from "../errors.js";
import { Dec } from "../pricing/money.js";
import { type Limit, type LimitUnit, limitProblem } from "./rules.js";

const decOrNull = (v: string | null | undefined) => (v === null || v === undefined ? null : new Dec(v));

interface LimitRow {
  meter: string;
  soft: string | null;
  hard: string | null;
  unit: LimitUnit;
  forecast: boolean;
  updated_at: Date;
}

export interface StoredLimit extends Limit {
  meter: string;
  /** Alert too when the period-end forecast crosses a threshold. */
  forecast: boolean;
  updatedAt: Date;
}

const fromRow = (r: LimitRow): StoredLimit => ({
  meter: r.meter,
  soft: r.soft === null ? null : new Dec(r.soft),
  hard: r.hard === null ? null : new Dec(r.hard),
  unit: r.unit,
  forecast: r.forecast,
  updatedAt: r.updated_at,
});

const COLUMNS = "meter, soft::text AS soft, hard::text AS hard, unit, forecast, updated_at";

interface LimitInput {
  soft?: string | null | undefined;
  hard?: string | null | undefined;
  unit: LimitUnit;
  forecast?: boolean | undefined;
}

async function requireMeter(db: Queryable, meter: string): Promise<void> {
  const { rows } = await db.query("SELECT 1 FROM meters WHERE key = $1", [meter]);
  if (rows.length === 0) {
    throw unprocessable("unknown_meter", `unknown meter "${meter}"`, [{ field: "meter", message: "no such meter" }]);
  }
}

/** Who a limit belongs to: a customer (its own) or a plan (the default for every customer on it). */
const OWNERS = {
  customer: { table: "customer_limits", column: "customer_id", parent: "customers", parentKey: "id" },
  plan: { table: "plan_limits", column: "plan_key", parent: "plans", parentKey: "key" },
} as const;
type LimitOwner = keyof typeof OWNERS;

/** Sets the owner's limit on a meter; 404 for an unknown owner, 422 for an unknown meter or thresholds that clash. */
export async function putLimit(
  db: Queryable,
  owner: LimitOwner,
  id: string,
  meter: string,
  input: LimitInput,
): Promise<StoredLimit> {
  const problem = limitProblem(decOrNull(input.soft), decOrNull(input.hard));
  if (problem) throw unprocessable(problem.code, problem.detail, [{ field: problem.field, message: problem.detail }]);
  const o = OWNERS[owner];
  const found = await db.query(`SELECT 1 FROM ${o.parent} WHERE ${o.parentKey} = $1`, [id]);
  if (found.rows.length === 0) throw notFound(`no ${owner} ${id}`);
  await requireMeter(db, meter);
  const { rows } = await db.query<LimitRow>(
    `INSERT INTO ${o.table} (${o.column}, meter, soft, hard, unit, forecast) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (${o.column}, meter) DO UPDATE
       SET soft = EXCLUDED.soft, hard = EXCLUDED.hard, unit = EXCLUDED.unit, forecast = EXCLUDED.forecast,
           updated_at = now()
     RETURNING ${COLUMNS}`,
    [id, meter, input.soft ?? null, input.hard ?? null, input.unit, input.forecast ?? false],
  );
  return fromRow(rows[0] as LimitRow);
}

export async function deleteLimit(db: Queryable, owner: LimitOwner, id: string, meter: string): Promise<void> {
  const o = OWNERS[owner];
  const { rowCount } = await db.query(`DELETE FROM ${o.table} WHERE ${o.column} = $1 AND meter = $2`, [id, meter]);
  if (rowCount === 0) throw notFound(`${owner} ${id} has no limit on ${meter}`);
}

/** The limits in effect for a customer at `at`: its own, else its current plan's, per meter. */
export async function effectiveLimits(db: Queryable, customer: string, at: Date): Promise<Map<string, StoredLimit>> {
  const { rows } = await db.query<LimitRow & { own: boolean }>(
    `SELECT ${COLUMNS}, true AS own FROM customer_limits WHERE customer_id = $1
     UNION ALL
     SELECT l.meter, l.soft::text, l.hard::text, l.unit, l.forecast, l.updated_at, false
     FROM subscriptions s JOIN plan_limits l ON l.plan_key = s.plan_key
     WHERE s.customer_id = $1 AND s.start_at <= $2 AND (s.end_at IS NULL OR s.end_at > $2)`,
    [customer, at],
  );
  const out = new Map<string, StoredLimit>();
  for (const r of rows) if (r.own || !out.has(r.meter)) out.set(r.meter, fromRow(r));
  return out;
}

/**
 * Every customer with a limit in effect at `at` (own or through the plan it is on), or whose credits are watched
 * (credit_only, or an alert threshold), or with a state left by either.
 */
export async function limitedCustomers(db: Queryable, at: Date): Promise<string[]> {
  const { rows } = await db.query<{ customer_id: string }>(
    `SELECT customer_id FROM customer_limits
     UNION
     SELECT s.customer_id FROM subscriptions s JOIN plan_limits l ON l.plan_key = s.plan_key
     WHERE s.start_at <= $1 AND (s.end_at IS NULL OR s.end_at > $1)
     UNION
     SELECT customer_id FROM limit_states WHERE unit IS NOT NULL OR credits IS NOT NULL
     UNION
     SELECT id FROM customers WHERE credit_mode = 'credit_only' OR credit_alert_below IS NOT NULL
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

/** The limits in effect at `at` for every customer at once (as effectiveLimits, one query): customer → meter → limit. */
export async function effectiveLimitsOfAll(
  db: Queryable,
  at: Date,
  customers?: string[],
): Promise<Map<string, Map<string, StoredLimit>>> {
  const { rows } = await db.query<LimitRow & { own: boolean; customer_id: string }>(
    `SELECT customer_id, ${COLUMNS}, true AS own FROM customer_limits
     WHERE $2::text[] IS NULL OR customer_id = ANY($2::text[])
     UNION ALL
     SELECT s.customer_id, l.meter, l.soft::text, l.hard::text, l.unit, l.forecast, l.updated_at, false
     FROM subscriptions s JOIN plan_limits l ON l.plan_key = s.plan_key
     WHERE s.start_at <= $1 AND (s.end_at IS NULL OR s.end_at > $1)
       AND ($2::text[] IS NULL OR s.customer_id = ANY($2::text[]))`,
    [at, customers ?? null],
  );
  const out = new Map<string, Map<string, StoredLimit>>();
  for (const r of rows) {
    const mine = out.get(r.customer_id) ?? new Map<string, StoredLimit>();
    if (r.own || !mine.has(r.meter)) mine.set(r.meter, fromRow(r));
    out.set(r.customer_id, mine);
  }
  return out;
}
