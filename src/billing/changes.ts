// Changes to a subscription in effect: cancellation (now, at an instant or at the period end), canceling a scheduled
// change, and quantities of fixed charges. Each is one transaction holding the customer row, as setSubscription.
// Nothing here runs later: a scheduled change or an end is a row whose time comes, and the pricing of each period
// reads the rows (PRODUCT.md "Billing cycles and subscription changes").
import type { Db, Queryable } from "../db/types.js";
import { notFound, unprocessable } from "../errors.js";
import type { Dec } from "../pricing/money.js";
import type { ProrationMode } from "../pricing/proration.js";
import { chargesOf, insertQuantity, type StoredQuantity } from "./quantities.js";
import { COLUMNS, fromRow, lockCustomer, type Row, type Subscription, subscriptionById } from "./subscriptions.js";

/**
 * Ends the subscription in effect just before `end` there (and drops any that would start at or after it, a
 * scheduled change included); its fees treat the end as `proration` says. 404 when no subscription runs then.
 */
export async function cancelSubscription(
  db: Db,
  customer: string,
  end: Date,
  proration: ProrationMode,
): Promise<Subscription> {
  return db.transaction(async (tx) => {
    await lockCustomer(tx, customer);
    const { rows } = await tx.query<{ id: string }>(
      `SELECT id::text FROM subscriptions WHERE customer_id = $1 AND start_at < $2 AND (end_at IS NULL OR end_at >= $2)`,
      [customer, end],
    );
    const id = rows[0]?.id;
    if (!id) throw notFound(`customer ${customer} has no subscription in effect at ${end.toISOString()}`);
    await tx.query("DELETE FROM subscriptions WHERE customer_id = $1 AND start_at >= $2", [customer, end]);
    await tx.query("UPDATE subscriptions SET end_at = $2, end_proration = $3 WHERE id = $1::bigint", [
      id,
      end,
      proration,
    ]);
    return subscriptionById(tx, id);
  });
}

/** The change scheduled after `now` (asked for at a period end), if any. */
export async function scheduledChange(db: Queryable, customer: string, now: Date): Promise<Subscription | null> {
  const { rows } = await db.query<Row>(
    `SELECT ${COLUMNS} FROM subscriptions s WHERE customer_id = $1 AND scheduled AND start_at > $2
     ORDER BY start_at LIMIT 1`,
    [customer, now],
  );
  return rows[0] ? fromRow(rows[0]) : null;
}

/**
 * Cancels the change scheduled after `now`: it is dropped and the subscription it would have ended runs on as it
 * did before. 404 when nothing is scheduled.
 */
export async function cancelScheduled(db: Db, customer: string, now: Date): Promise<void> {
  await db.transaction(async (tx) => {
    await lockCustomer(tx, customer);
    const { rows } = await tx.query<{
      id: string;
      start_at: Date;
      replaced_end_at: Date | null;
      replaced_end_proration: string | null;
    }>(
      `SELECT id::text, start_at, replaced_end_at, replaced_end_proration FROM subscriptions
       WHERE customer_id = $1 AND scheduled AND start_at > $2 ORDER BY start_at LIMIT 1`,
      [customer, now],
    );
    const found = rows[0];
    if (!found) throw notFound(`customer ${customer} has no scheduled change`);
    await tx.query("DELETE FROM subscriptions WHERE id = $1::bigint", [found.id]);
    await tx.query(
      `UPDATE subscriptions SET end_at = $3, end_proration = coalesce($4, 'prorate')
       WHERE customer_id = $1 AND end_at = $2`,
      [customer, found.start_at, found.replaced_end_at, found.replaced_end_at ? found.replaced_end_proration : null],
    );
  });
}

/**
 * Sets the quantity of a fixed charge from `at` on, on the subscription in effect then; its own later changes stay
 * (each applies from its instant). The subscriptions that follow it without a gap (a scheduled change) start with
 * the quantity in effect where they start, unless a quantity was set for them there (asked for with the change, or
 * by this call at their start): that one stays, and so does everything after it. 404 without a subscription at
 * `at`; 422 unknown_charge when its plan has no such charge.
 */
export async function setQuantity(
  db: Db,
  customer: string,
  charge: string,
  quantity: Dec,
  at: Date,
): Promise<Subscription> {
  return db.transaction(async (tx) => {
    await lockCustomer(tx, customer);
    const { rows } = await tx.query<Row>(
      `SELECT ${COLUMNS} FROM subscriptions s WHERE customer_id = $1 AND (end_at IS NULL OR end_at > $2)
       ORDER BY start_at`,
      [customer, at],
    );
    const subs = rows.map(fromRow);
    const current = subs.find((r) => r.start <= at);
    if (!current) throw notFound(`customer ${customer} has no subscription in effect at ${at.toISOString()}`);
    if (!(await chargesOf(tx, current.plan)).has(charge)) {
      throw unprocessable("unknown_charge", `plan ${current.plan} has no fixed charge "${charge}"`, [
        { field: "charge", message: `not a fixed charge of plan ${current.plan}` },
      ]);
    }
    const set = { charge, at, quantity, inherited: false };
    await insertQuantity(tx, current.id, set);
    let previous = { ...current, quantities: [...current.quantities.filter((q) => !sameChange(q, set)), set] };
    for (const next of subs.filter((r) => r.start > current.start)) {
      if (previous.end?.getTime() !== next.start.getTime()) break;
      const own = next.quantities.find((q) => q.charge === charge && q.at.getTime() === next.start.getTime());
      if (own && !own.inherited) break;
      const before = latestBefore(previous.quantities, charge, next.start);
      if (!before) break;
      const inherited = { charge, at: next.start, quantity: before.quantity, inherited: true };
      await insertQuantity(tx, next.id, inherited);
      previous = { ...next, quantities: [...next.quantities.filter((q) => !sameChange(q, inherited)), inherited] };
    }
    return subscriptionById(tx, current.id);
  });
}

/** The latest change of `charge` before `t`. */
const latestBefore = (qs: readonly StoredQuantity[], charge: string, t: Date) =>
  qs
    .filter((q) => q.charge === charge && q.at < t)
    .reduce<StoredQuantity | undefined>((a, q) => (!a || q.at > a.at ? q : a), undefined);

const sameChange = (a: StoredQuantity, b: StoredQuantity) => a.charge === b.charge && a.at.getTime() === b.at.getTime();
