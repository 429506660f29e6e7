// One (customer, meter) of an evaluation, inside its transaction: the state its values put it in for the customer's
// billing period, the alerts it reached (recorded once, each webhook queued with it), and the state saved.
import { createHash } from "node:crypto";
import type { BillingPeriod } from "../billing/calendar.js";
import type { Queryable } from "../db/types.js";
import { type Dec, ZERO } from "../pricing/money.js";
import { enqueueEvent } from "../webhooks/outbox.js";
import { limitReachedEvent } from "./events.js";
import { evaluate } from "./rules.js";
import { lockState, type PairState, recordAlert, saveState } from "./states.js";
import type { StoredLimit } from "./store.js";

export function alertEventId(alertId: string): string {
  return `evt_${createHash("sha256").update(`tally-alert:${alertId}`).digest("base64url").slice(0, 24)}`;
}

interface PairInput {
  customer: string;
  meter: string;
  /** The customer's period running at `now`. */
  period: BillingPeriod;
  now: Date;
  limit: StoredLimit | undefined;
  quantity: Dec;
  /** null when the customer has no priced plan (no currency). */
  amount: Dec | null;
  currency: string | null;
  /** credit_only customers: what the grants covering the meter have left. */
  covering: Dec | undefined;
}

interface PairOutcome {
  state: PairState;
  /** Levels of the alerts newly recorded. */
  alerts: ("soft" | "hard")[];
  webhooks: number;
}

/**
 * Evaluates the pair, holding its state row until the transaction ends; undefined when a newer evaluation already
 * saved it. A state of an earlier period does not count: the period starts unblocked.
 */
export async function evaluatePair(tx: Queryable, i: PairInput): Promise<PairOutcome | undefined> {
  const { customer, meter, period, now, limit } = i;
  const stored = await lockState(tx, customer, meter);
  const prev = stored && stored.periodStart.getTime() === period.start.getTime() ? stored : undefined;
  if (prev && prev.asOf > now) return undefined;
  const value = limit?.unit === "amount" ? (i.amount ?? ZERO) : i.quantity;
  const result = evaluate(value, limit, prev);
  const alerts: PairOutcome["alerts"] = [];
  let webhooks = 0;
  for (const r of result.reached) {
    const alert = await recordAlert(tx, {
      customer,
      meter,
      period,
      level: r.level,
      threshold: r.threshold,
      unit: limit?.unit,
      value,
      at: now,
    });
    if (!alert) continue;
    alerts.push(r.level);
    const eventId = alertEventId(alert.id);
    const body = limitReachedEvent(eventId, now, {
      customer,
      meter,
      level: r.level,
      threshold: r.threshold,
      unit: limit?.unit,
      value,
      currency: limit?.unit === "amount" ? i.currency : null,
      period,
      state: result.state,
      triggeredAt: alert.triggeredAt,
    });
    webhooks += await enqueueEvent(tx, eventId, body, now);
  }
  const state: PairState = {
    customer,
    meter,
    periodStart: period.start,
    periodEnd: period.end,
    unit: limit?.unit ?? null,
    soft: limit?.soft ?? null,
    hard: limit?.hard ?? null,
    quantity: i.quantity,
    amount: i.amount,
    currency: i.currency,
    state: result.state,
    blockedAtHard: result.blockedAtHard,
    credits: i.covering === undefined ? null : i.covering.lte(0) ? "exhausted" : "ok",
    creditBalance: i.covering ?? null,
    asOf: now,
  };
  await saveState(tx, state);
  return { state, alerts, webhooks };
}
