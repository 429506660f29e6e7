// Customers: registered explicitly by an operator, or implicitly by their first event.
import type { Queryable } from "../db/types.js";

export interface Customer {
  id: string;
  name: string | null;
  email: string | null;
  stripeCustomerId: string | null;
  /** Prepaid credits: "credit_only" blocks a meter when the credits covering it run out. */
  creditMode: "credit_then_invoice" | "credit_only";
  /** A credits_low alert is recorded when the balance falls below this amount (plan currency). */
  creditAlertBelow: string | null;
  createdAt: Date;
  updatedAt: Date;
}

interface CustomerInput {
  name?: string | null | undefined;
  email?: string | null | undefined;
  stripe_customer_id?: string | null | undefined;
  credit_mode?: "credit_then_invoice" | "credit_only" | undefined;
  credit_alert_below?: string | null | undefined;
}

interface CustomerRow {
  id: string;
  name: string | null;
  email: string | null;
  stripe_customer_id: string | null;
  credit_mode: "credit_then_invoice" | "credit_only";
  credit_alert_below: string | null;
  created_at: Date;
  updated_at: Date;
  created?: boolean;
}

const COLUMNS =
  "id, name, email, stripe_customer_id, credit_mode, credit_alert_below::text AS credit_alert_below, created_at, updated_at";

const fromRow = (r: CustomerRow): Customer => ({
  id: r.id,
  name: r.name,
  email: r.email,
  stripeCustomerId: r.stripe_customer_id,
  creditMode: r.credit_mode,
  creditAlertBelow: r.credit_alert_below,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** Creates or updates a customer; fields left out of `input` keep their value, null clears them. */
export async function upsertCustomer(
  db: Queryable,
  id: string,
  input: CustomerInput,
): Promise<{ customer: Customer; created: boolean }> {
  const has = (k: keyof CustomerInput) => k in input && input[k] !== undefined;
  const { rows } = await db.query<CustomerRow>(
    `INSERT INTO customers (id, name, email, stripe_customer_id, credit_mode, credit_alert_below)
     VALUES ($1, $2, $3, $4, COALESCE($8, 'credit_then_invoice'), $9)
     ON CONFLICT (id) DO UPDATE SET
       name = CASE WHEN $5 THEN EXCLUDED.name ELSE customers.name END,
       email = CASE WHEN $6 THEN EXCLUDED.email ELSE customers.email END,
       stripe_customer_id = CASE WHEN $7 THEN EXCLUDED.stripe_customer_id ELSE customers.stripe_customer_id END,
       credit_mode = CASE WHEN $8::text IS NOT NULL THEN EXCLUDED.credit_mode ELSE customers.credit_mode END,
       credit_alert_below =
         CASE WHEN $10 THEN EXCLUDED.credit_alert_below ELSE customers.credit_alert_below END,
       updated_at = now()
     RETURNING ${COLUMNS}, (xmax = 0) AS created`,
    [
      id,
      input.name ?? null,
      input.email ?? null,
      input.stripe_customer_id ?? null,
      has("name"),
      has("email"),
      has("stripe_customer_id"),
      input.credit_mode ?? null,
      input.credit_alert_below ?? null,
      has("credit_alert_below"),
    ],
  );
  const row = rows[0] as CustomerRow;
  return { customer: fromRow(row), created: Boolean(row.created) };
}

export async function getCustomer(db: Queryable, id: string): Promise<Customer | undefined> {
  const { rows } = await db.query<CustomerRow>(`SELECT ${COLUMNS} FROM customers WHERE id = $1`, [id]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}
