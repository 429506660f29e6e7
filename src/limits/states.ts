// Limit states and alerts in the database: the last evaluation of every (customer, meter), which every process
// polls to decide entitlements from memory, and the alerts recorded once per threshold and period.
import type { Queryable } from "../db/types.js";
import { type Dec, dec } from "../pricing/money.js";
import type { LimitState, LimitUnit } from "./rules.js";

export interface PairState {
  customer: string;
  meter: string;
  /** The customer's billing period [periodStart, periodEnd) the state was evaluated in. */
  periodStart: Date;
  periodEnd: Date;
  unit: LimitUnit | null;
  soft: Dec | null;
  hard: Dec | null;
  quantity: Dec;
  amount: Dec | null;
  currency: string | null;
  state: LimitState;
  blockedAtHard: Dec | null;
  /** credit_only customers: "exhausted" blocks the meter (429 credits_exhausted); null for everyone else. */
  credits: "ok" | "exhausted" | null;
  /** credit_only customers: what the grants covering the meter have left (in `currency`). */
  creditBalance: Dec | null;
  asOf: Date;
}

interface StateRow {
  customer_id: string;
  meter: string;
  period_start: Date;
  period_end: Date;
  unit: LimitUnit | null;
  soft: string | null;
  hard: string | null;
  quantity: string;
  amount: string | null;
  currency: string | null;
  state: LimitState;
  blocked_at_hard: string | null;
  credits: "ok" | "exhausted" | null;
  credit_balance: string | null;
  as_of: Date;
}

const STATE_COLUMNS = `customer_id, meter, period_start, period_end, unit, soft::text AS soft, hard::text AS hard,
  quantity::text AS quantity, amount::text AS amount, currency, state, blocked_at_hard::text AS blocked_at_hard,
  credits, credit_balance::text AS credit_balance, as_of`;

const decOrNull = (v: string | null) => (v === null ? null : dec(v));

function fromRow(r: StateRow): PairState {
  return {
    customer: r.customer_id,
    meter: r.meter,
    periodStart: r.period_start,
    periodEnd: r.period_end,
    unit: r.unit,
    soft: decOrNull(r.soft),
    hard: decOrNull(r.hard),
    quantity: dec(r.quantity),
    amount: decOrNull(r.amount),
    currency: r.currency,
    state: r.state,
    blockedAtHard: decOrNull(r.blocked_at_hard),
    credits: r.credits,
    creditBalance: decOrNull(r.credit_balance),
    asOf: r.as_of,
  };
}

/** States updated after `since` (all when null), and the database's clock when they were read. */
export async function statesSince(db: Queryable, since: Date | null): Promise<{ states: PairState[]; readAt: Date }> {
  const { rows } = await db.query<StateRow & { polled_at: Date }>(
    `SELECT ${STATE_COLUMNS}, clock_timestamp() AS polled_at
     FROM limit_states WHERE $1::timestamptz IS NULL OR updated_at > $1`,
    [since],
  );
  if (rows[0]) return { states: rows.map(fromRow), readAt: rows[0].polled_at };
  const now = await db.query<{ now: Date }>("SELECT clock_timestamp() AS now", []);
  return { states: [], readAt: (now.rows[0] as { now: Date }).now };
}

/** The meters of a customer that have a limited or credit state (a limit may have been removed since). */
export async function limitedMetersOf(db: Queryable, customer: string): Promise<string[]> {
  const { rows } = await db.query<{ meter: string }>(
    "SELECT meter FROM limit_states WHERE customer_id = $1 AND (unit IS NOT NULL OR credits IS NOT NULL)",
    [customer],
  );
  return rows.map((r) => r.meter);
}

/** The pair's state, locked until the transaction ends (evaluations of one pair run one at a time). */
export async function lockState(tx: Queryable, customer: string, meter: string): Promise<PairState | undefined> {
  const { rows } = await tx.query<StateRow>(
    `SELECT ${STATE_COLUMNS} FROM limit_states WHERE customer_id = $1 AND meter = $2 FOR UPDATE`,
    [customer, meter],
  );
  return rows[0] ? fromRow(rows[0]) : undefined;
}

export async function saveState(tx: Queryable, s: PairState): Promise<void> {
  await tx.query(
    `INSERT INTO limit_states (customer_id, meter, period_start, unit, soft, hard, quantity, amount, currency, state,
                               blocked_at_hard, as_of, credits, credit_balance, period_end, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, clock_timestamp())
     ON CONFLICT (customer_id, meter) DO UPDATE SET
       period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, unit = EXCLUDED.unit, soft = EXCLUDED.soft, hard = EXCLUDED.hard,
       quantity = EXCLUDED.quantity, amount = EXCLUDED.amount, currency = EXCLUDED.currency,
       state = EXCLUDED.state, blocked_at_hard = EXCLUDED.blocked_at_hard, as_of = EXCLUDED.as_of,
       credits = EXCLUDED.credits, credit_balance = EXCLUDED.credit_balance, updated_at = clock_timestamp()`,
    [
      s.customer,
      s.meter,
      s.periodStart,
      s.unit,
      s.soft?.toFixed() ?? null,
      s.hard?.toFixed() ?? null,
      s.quantity.toFixed(),
      s.amount?.toFixed() ?? null,
      s.currency,
      s.state,
      s.blockedAtHard?.toFixed() ?? null,
      s.asOf,
      s.credits,
      s.creditBalance?.toFixed() ?? null,
      s.periodEnd,
    ],
  );
}

interface AlertInput {
  customer: string;
  meter: string;
  period: { start: Date; end: Date };
  level: string;
  threshold: Dec;
  unit: string | undefined;
  value: Dec;
  at: Date;
}

/**
 * Records an alert once per (customer, meter, period, level, threshold, unit) — the period being the customer's
 * billing period, named by its start; undefined when it already was.
 */
export async function recordAlert(
  tx: Queryable,
  a: AlertInput,
): Promise<{ id: string; triggeredAt: Date } | undefined> {
  const { rows } = await tx.query<{ id: string; triggered_at: Date }>(
    `INSERT INTO alerts (customer_id, meter, period_start, period_end, level, threshold, unit, value, triggered_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
     ON CONFLICT (customer_id, meter, period_start, level, threshold, unit) DO NOTHING
     RETURNING id::text, triggered_at`,
    [
      a.customer,
      a.meter,
      a.period.start,
      a.period.end,
      a.level,
      a.threshold.toFixed(),
      a.unit,
      a.value.toFixed(),
      a.at,
    ],
  );
  const r = rows[0];
  return r ? { id: r.id, triggeredAt: r.triggered_at } : undefined;
}

/** Customers with events received since `since` (through usage_events' received_at BRIN). */
export async function customersWithEventsSince(db: Queryable, since: Date): Promise<Set<string>> {
  const { rows } = await db.query<{ customer_id: string }>(
    "SELECT DISTINCT customer_id FROM usage_events WHERE received_at >= $1",
    [since],
  );
  return new Set(rows.map((r) => r.customer_id));
}
