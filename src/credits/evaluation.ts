// Credits in the limit evaluation (src/limits/service.ts): what the ledger says each priced meter of a credit_only
// customer has left (zero blocks it: 429 credits_exhausted), and the customer's balance crossing its alert
// threshold or zero, recorded once per crossing with its webhook (credits.low, credits.exhausted) in the
// transaction that saves the states.
import { createHash } from "node:crypto";
import { planVersions } from "../billing/plans.js";
import { subscriptionAt } from "../billing/subscriptions.js";
import type { Queryable } from "../db/types.js";
import { type Dec, formatMoney, ZERO } from "../pricing/money.js";
import { enqueueEvent } from "../webhooks/outbox.js";
import type { CreditMode, CreditSettings } from "./grants.js";
import { balanceOf, type CreditLedger, meterBalance } from "./ledger.js";

interface CreditView {
  mode: CreditMode;
  alertBelow: Dec | null;
  currency: string | null;
  /** The balance of the active grants in `currency`; null when the customer never had a grant. */
  balance: Dec | null;
  /** credit_only customers: each meter priced by the current plan, with what the grants covering it have left. */
  meters: Map<string, Dec>;
}

/** The currency of the customer's current plan and the meters it prices now. */
export async function pricedMetersAt(
  db: Queryable,
  customer: string,
  at: Date,
): Promise<{ currency: string | null; meters: string[] }> {
  const subscription = await subscriptionAt(db, customer, at);
  if (!subscription) return { currency: null, meters: [] };
  const { rows } = await db.query<{ currency: string }>("SELECT currency FROM plans WHERE key = $1", [
    subscription.plan,
  ]);
  const versions = await planVersions(db, [subscription.plan]);
  const meters = [...new Set(versions.filter((v) => v.effectiveFrom <= at).map((v) => v.meter))].sort();
  return { currency: rows[0]?.currency ?? null, meters };
}

export function creditView(
  settings: CreditSettings,
  ledger: CreditLedger | undefined,
  priced: { currency: string | null; meters: string[] },
): CreditView {
  const currency = priced.currency;
  const meters = new Map<string, Dec>();
  if (settings.mode === "credit_only" && currency) {
    for (const meter of priced.meters) meters.set(meter, ledger ? meterBalance(ledger, meter, currency) : ZERO);
  }
  return {
    mode: settings.mode,
    alertBelow: settings.alertBelow,
    currency,
    balance: ledger && currency ? balanceOf(ledger, currency) : null,
    meters,
  };
}

const creditAlertEventId = (alertId: string): string =>
  `evt_${createHash("sha256").update(`tally-credit-alert:${alertId}`).digest("base64url").slice(0, 24)}`;

/**
 * Records the crossings since the customer's last evaluation: below credit_alert_below (credits_low, credits.low)
 * and down to zero (credits_exhausted, credits.exhausted), each once until the balance is back above. Call it inside
 * the transaction that saves the states.
 */
export async function recordCrossings(
  tx: Queryable,
  customer: string,
  view: CreditView,
  now: Date,
): Promise<{ alerts: number; webhooks: number }> {
  const out = { alerts: 0, webhooks: 0 };
  if (view.balance === null) return out;
  await tx.query(
    `INSERT INTO credit_states (customer_id, currency, balance, low, exhausted, as_of)
     VALUES ($1, $2, 0, false, false, $3) ON CONFLICT (customer_id) DO NOTHING`,
    [customer, view.currency, now],
  );
  const { rows } = await tx.query<{ low: boolean; exhausted: boolean }>(
    "SELECT low, exhausted FROM credit_states WHERE customer_id = $1 FOR UPDATE",
    [customer],
  );
  const prev = rows[0] ?? { low: false, exhausted: false };
  const low = view.alertBelow !== null && view.balance.lt(view.alertBelow);
  const exhausted = view.balance.lte(0);
  const crossed: { level: "credits_low" | "credits_exhausted"; type: string; threshold: Dec }[] = [];
  if (low && !prev.low) crossed.push({ level: "credits_low", type: "credits.low", threshold: view.alertBelow as Dec });
  if (exhausted && !prev.exhausted)
    crossed.push({ level: "credits_exhausted", type: "credits.exhausted", threshold: ZERO });
  const money = (d: Dec) => (view.currency ? formatMoney(d, view.currency) : d.toFixed());
  for (const c of crossed) {
    const inserted = await tx.query<{ id: string }>(
      `INSERT INTO credit_alerts (customer_id, level, threshold, balance, currency, triggered_at)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id::text`,
      [customer, c.level, c.threshold.toFixed(), view.balance.toFixed(), view.currency, now],
    );
    const id = creditAlertEventId((inserted.rows[0] as { id: string }).id);
    const body = JSON.stringify({
      id,
      type: c.type,
      created_at: now.toISOString(),
      data: {
        customer,
        level: c.level,
        balance: money(view.balance),
        threshold: money(c.threshold),
        currency: view.currency,
        credit_mode: view.mode,
        triggered_at: now.toISOString(),
      },
    });
    out.alerts += 1;
    out.webhooks += await enqueueEvent(tx, id, body, now);
  }
  await tx.query(
    `UPDATE credit_states SET currency = $2, balance = $3, low = $4, exhausted = $5, as_of = $6,
       updated_at = clock_timestamp() WHERE customer_id = $1`,
    [customer, view.currency, view.balance.toFixed(), low, exhausted, now],
  );
  return out;
}
