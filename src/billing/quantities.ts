// Quantities of fixed charges on subscriptions (seats, licences): each from an instant, set for the subscription or
// inherited at its start from the one before it (PRODUCT.md "Fixed charges"; docs/subscriptions.md "Quantities over
// time").
import type { Queryable } from "../db/types.js";
import { unprocessable } from "../errors.js";
import type { Dec } from "../pricing/money.js";
import type { QuantityChange } from "../pricing/proration.js";

/**
 * A quantity of a subscription: set for it (with the change, or by PUT …/quantities/{charge}), or `inherited` at its
 * start from the subscription it follows — which a quantity change earlier on carries through to.
 */
export interface StoredQuantity extends QuantityChange {
  inherited: boolean;
}

export async function insertQuantity(tx: Queryable, subscription: string, q: StoredQuantity): Promise<void> {
  await tx.query(
    `INSERT INTO subscription_quantities (subscription_id, charge, effective_at, quantity, inherited)
     VALUES ($1::bigint, $2, $3, $4, $5)
     ON CONFLICT (subscription_id, charge, effective_at)
     DO UPDATE SET quantity = EXCLUDED.quantity, inherited = EXCLUDED.inherited`,
    [subscription, q.charge, q.at, q.quantity.toFixed(), q.inherited],
  );
}

/** The fixed charges a plan has (in any version). */
export async function chargesOf(db: Queryable, plan: string): Promise<Set<string>> {
  const { rows } = await db.query<{ charge: string }>(
    "SELECT DISTINCT charge FROM fixed_charge_versions WHERE plan_key = $1",
    [plan],
  );
  return new Set(rows.map((r) => r.charge));
}

/**
 * The quantities a new subscription starts with: those asked for (each a charge of the plan, else 422
 * unknown_charge; set), else those of the subscription it replaces in effect at `start` (inherited) and after — or,
 * when it replaces one starting at the same instant (`again`), that one's, as they were.
 */
export async function quantitiesFor(
  tx: Queryable,
  plan: string,
  start: Date,
  asked: ReadonlyMap<string, Dec> | undefined,
  replaced: { quantities: readonly StoredQuantity[] } | null,
  again: boolean,
): Promise<StoredQuantity[]> {
  if (!asked) {
    const carried = new Map<string, StoredQuantity>();
    const later: StoredQuantity[] = [];
    for (const q of replaced?.quantities ?? []) {
      if (q.at <= start) carried.set(q.charge, { ...q, at: start, inherited: again ? q.inherited : true });
      else later.push(q);
    }
    return [...carried.values(), ...later];
  }
  const charges = await chargesOf(tx, plan);
  const unknown = [...asked.keys()].filter((k) => !charges.has(k));
  if (unknown.length > 0) {
    throw unprocessable(
      "unknown_charge",
      `plan ${plan} has no fixed charge ${unknown.map((k) => `"${k}"`).join(", ")}`,
      unknown.map((k) => ({ field: `quantities.${k}`, message: `not a fixed charge of plan ${plan}` })),
    );
  }
  return [...asked].map(([charge, quantity]) => ({ charge, at: start, quantity, inherited: false }));
}
