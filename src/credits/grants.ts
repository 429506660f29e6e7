// Credit grants in the database, and each customer's credit settings. A grant is written once (an
// Idempotency-Key makes a retried request answer the same grant) and changes only when it is voided.
import { createHash, randomBytes } from "node:crypto";
import { subscriptionAt } from "../billing/subscriptions.js";
import type { Db, Queryable } from "../db/types.js";
import { conflict, notFound, unprocessable } from "../errors.js";
import { Dec, minorUnits } from "../pricing/money.js";

export type CreditMode = "credit_then_invoice" | "credit_only";

export interface StoredGrant {
  id: string;
  customer: string;
  currency: string;
  amount: Dec;
  priority: number;
  effectiveAt: Date;
  expiresAt: Date | null;
  meters: string[] | null;
  description: string | null;
  voidedAt: Date | null;
  createdAt: Date;
}

interface GrantInput {
  amount: string;
  priority?: number | undefined;
  effective_at?: Date | undefined;
  expires_at?: Date | null | undefined;
  meters?: string[] | null | undefined;
  description?: string | null | undefined;
}

interface GrantRow {
  id: string;
  customer_id: string;
  currency: string;
  amount: string;
  priority: number;
  effective_at: Date;
  expires_at: Date | null;
  meters: string[] | null;
  description: string | null;
  voided_at: Date | null;
  created_at: Date;
  request_hash?: string | null;
}

const COLUMNS = `id, customer_id, currency, amount::text AS amount, priority, effective_at, expires_at, meters,
  description, voided_at, created_at`;

const fromRow = (r: GrantRow): StoredGrant => ({
  id: r.id,
  customer: r.customer_id,
  currency: r.currency,
  amount: new Dec(r.amount),
  priority: r.priority,
  effectiveAt: r.effective_at,
  expiresAt: r.expires_at,
  meters: r.meters,
  description: r.description,
  voidedAt: r.voided_at,
  createdAt: r.created_at,
});

/** Every grant of a customer (voided and expired ones too), oldest first. */
export async function listGrants(db: Queryable, customer: string): Promise<StoredGrant[]> {
  const { rows } = await db.query<GrantRow>(
    `SELECT ${COLUMNS} FROM credit_grants WHERE customer_id = $1 ORDER BY created_at, id`,
    [customer],
  );
  return rows.map(fromRow);
}

function invalid(code: string, field: string, message: string) {
  return unprocessable(code, `${field} ${message}`, [{ field, message }]);
}

/** The grant an earlier request with the same idempotency key created; 409 when its body was different. */
async function replayOf(
  tx: Queryable,
  customer: string,
  idempotencyKey: string,
  requestHash: string,
): Promise<StoredGrant | undefined> {
  const { rows } = await tx.query<GrantRow>(
    `SELECT ${COLUMNS}, request_hash FROM credit_grants WHERE customer_id = $1 AND idempotency_key = $2`,
    [customer, idempotencyKey],
  );
  const earlier = rows[0];
  if (!earlier) return undefined;
  if (earlier.request_hash !== requestHash) {
    throw conflict(
      "idempotency_key_reused",
      `Idempotency-Key ${idempotencyKey} was used for a different grant (${earlier.id}); use a new key`,
    );
  }
  return fromRow(earlier);
}

/** The grant's currency (its plan's), amount and meters, each checked (422 naming the field). */
async function checkedGrant(tx: Queryable, planKey: string, input: GrantInput, effectiveAt: Date) {
  const plan = await tx.query<{ currency: string }>("SELECT currency FROM plans WHERE key = $1", [planKey]);
  const currency = (plan.rows[0] as { currency: string }).currency;
  const amount = new Dec(input.amount);
  if (amount.lte(0)) throw invalid("invalid_amount", "amount", "must be greater than zero");
  if (amount.decimalPlaces() > minorUnits(currency)) {
    throw invalid("amount_precision", "amount", `has more decimals than ${currency} has (${minorUnits(currency)})`);
  }
  if (input.expires_at && input.expires_at <= effectiveAt) {
    throw invalid("expiry_before_effective", "expires_at", "must be after effective_at");
  }
  const meters = input.meters ? [...new Set(input.meters)].sort() : null;
  if (meters) {
    const known = await tx.query<{ key: string }>("SELECT key FROM meters WHERE key = ANY($1::text[])", [meters]);
    const missing = meters.filter((m) => !known.rows.some((r) => r.key === m));
    if (missing.length > 0) throw invalid("unknown_meter", "meters", `names unknown meters: ${missing.join(", ")}`);
  }
  return { currency, amount, meters };
}

/**
 * Creates a grant in the currency of the customer's plan (the subscription in effect at effective_at, else now).
 * With an idempotency key, a retry answers the grant the first request created — the same body is required.
 */
export async function createGrant(
  db: Db,
  customer: string,
  input: GrantInput,
  idempotencyKey: string | null,
  now: Date,
  maxAgeDays: number,
): Promise<{ grant: StoredGrant; replayed: boolean }> {
  const effectiveAt = input.effective_at ?? now;
  const requestHash = createHash("sha256")
    .update(JSON.stringify({ ...input, effective_at: input.effective_at?.toISOString() ?? null }))
    .digest("hex");
  return db.transaction(async (tx) => {
    const found = await tx.query("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", [customer]);
    if (found.rows.length === 0) throw notFound(`no customer ${customer}`);
    const earlier = idempotencyKey === null ? undefined : await replayOf(tx, customer, idempotencyKey, requestHash);
    if (earlier) return { grant: earlier, replayed: true };
    // As for events: periods older than the event window are closed (their final invoices are no longer corrected),
    // so a grant cannot reach back into them.
    if (effectiveAt.getTime() < now.getTime() - maxAgeDays * 86_400_000) {
      throw invalid(
        "effective_at_too_old",
        "effective_at",
        `must be at most ${maxAgeDays} days ago (TALLY_EVENT_MAX_AGE_DAYS): older periods are closed`,
      );
    }
    const subscription =
      (await subscriptionAt(tx, customer, effectiveAt)) ??
      (effectiveAt.getTime() !== now.getTime() ? await subscriptionAt(tx, customer, now) : null);
    if (!subscription) {
      throw unprocessable(
        "no_subscription",
        `customer ${customer} has no subscription, so no currency to grant credits in; subscribe it to a plan first`,
      );
    }
    const { currency, amount, meters } = await checkedGrant(tx, subscription.plan, input, effectiveAt);
    // Ids sort by creation time (then at random): among equal grants, the one created first burns first.
    const id = `cg_${Date.now().toString(36).padStart(9, "0")}${randomBytes(8).toString("hex")}`;
    const { rows } = await tx.query<GrantRow>(
      `INSERT INTO credit_grants (id, customer_id, currency, amount, priority, effective_at, expires_at, meters,
                                  description, idempotency_key, request_hash, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
       RETURNING ${COLUMNS}`,
      [
        id,
        customer,
        currency,
        amount.toFixed(),
        input.priority ?? 50,
        effectiveAt,
        input.expires_at ?? null,
        meters,
        input.description ?? null,
        idempotencyKey,
        requestHash,
        now,
      ],
    );
    return { grant: fromRow(rows[0] as GrantRow), replayed: false };
  });
}

/** The currency of the plan the customer is subscribed to at `at`, or null. */
export async function currencyAt(db: Queryable, customer: string, at: Date): Promise<string | null> {
  const subscription = await subscriptionAt(db, customer, at);
  if (!subscription) return null;
  const { rows } = await db.query<{ currency: string }>("SELECT currency FROM plans WHERE key = $1", [
    subscription.plan,
  ]);
  return rows[0]?.currency ?? null;
}

/** Voids a grant at `now` (a grant voided before keeps its first voided_at); 404 when the customer has no such grant. */
export async function voidGrant(db: Queryable, customer: string, id: string, now: Date): Promise<StoredGrant> {
  const { rows } = await db.query<GrantRow>(
    `UPDATE credit_grants SET voided_at = COALESCE(voided_at, $3) WHERE customer_id = $1 AND id = $2
     RETURNING ${COLUMNS}`,
    [customer, id, now],
  );
  if (!rows[0]) throw notFound(`customer ${customer} has no credit grant ${id}`);
  return fromRow(rows[0]);
}

export interface CreditSettings {
  mode: CreditMode;
  alertBelow: Dec | null;
}

export async function creditSettings(db: Queryable, customer: string): Promise<CreditSettings | undefined> {
  const { rows } = await db.query<{ credit_mode: CreditMode; credit_alert_below: string | null }>(
    "SELECT credit_mode, credit_alert_below::text AS credit_alert_below FROM customers WHERE id = $1",
    [customer],
  );
  const r = rows[0];
  return r
    ? { mode: r.credit_mode, alertBelow: r.credit_alert_below ? new Dec(r.credit_alert_below) : null }
    : undefined;
}
