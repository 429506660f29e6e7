// Limits at run time: evaluates customers (on schedule, right after ingest when close to a threshold, and when a
// limit or subscription changes), records alerts once and queues their webhooks in the same transaction, and
// keeps every (customer, meter) state in memory — polled from the database every second, so a decision made
// by any process is enforced by all within about a second — for entitlement decisions that cost no query.
import { createHash } from "node:crypto";
import { buildStatement } from "../billing/statement.js";
import { getMeter } from "../catalog/meters.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/types.js";
import type { CommittedBatch, PairDelta } from "../ingest/service.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { Dec, dec, ZERO } from "../pricing/money.js";
import { periodOf } from "../rollups/buckets.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";
import { evaluate, isNear, type LimitState, type LimitUnit } from "./rules.js";
import { effectiveLimits, limitedCustomers } from "./store.js";
import { enqueueEvent } from "./webhooks.js";

export interface PairState {
  customer: string;
  meter: string;
  periodStart: Date;
  unit: LimitUnit | null;
  soft: Dec | null;
  hard: Dec | null;
  quantity: Dec;
  amount: Dec | null;
  currency: string | null;
  state: LimitState;
  blockedAtHard: Dec | null;
  asOf: Date;
}

export interface Entitlement {
  allowed: boolean;
  quantity: Dec;
  unit: LimitUnit | null;
  amount: Dec | null;
  currency: string | null;
  soft: Dec | null;
  hard: Dec | null;
  remaining: Dec | null;
  state: LimitState;
  period: { start: Date; end: Date };
  asOf: Date;
}

export interface EvaluationSummary {
  customers: number;
  limits: number;
  alerts: number;
  blocked: number;
  webhooks_queued: number;
}

interface StateRow {
  customer_id: string;
  meter: string;
  period_start: Date;
  unit: LimitUnit | null;
  soft: string | null;
  hard: string | null;
  quantity: string;
  amount: string | null;
  currency: string | null;
  state: LimitState;
  blocked_at_hard: string | null;
  as_of: Date;
}

const POLL_MS = 1_000;
/** Rows updated this long before the previous poll are read again: a transaction commits after its updated_at. */
const POLL_OVERLAP_MS = 10_000;
const UNLIMITED_CACHE_MS = 1_000;
const UNLIMITED_CACHE_MAX = 50_000;
/** Batches remembered per pair since its last evaluation (older ones are merged, never dropped). */
const LOCAL_DELTAS_MAX = 32;

interface LocalDelta extends PairDelta {
  /** When the batch was committed (epoch ms). */
  at: number;
}
/** The scheduled evaluation looks at every limited customer this often, and only at active ones in between. */
const FULL_PASS_MS = 10 * 60_000;
/** Events received this long before the previous run began are looked at again (commit comes after receipt). */
const RECEIVED_OVERLAP_MS = 60_000;

const pairKey = (customer: string, meter: string) => `${customer}\u0000${meter}`;
const decOrNull = (v: string | null) => (v === null ? null : dec(v));

function fromRow(r: StateRow): PairState {
  return {
    customer: r.customer_id,
    meter: r.meter,
    periodStart: r.period_start,
    unit: r.unit,
    soft: decOrNull(r.soft),
    hard: decOrNull(r.hard),
    quantity: dec(r.quantity),
    amount: decOrNull(r.amount),
    currency: r.currency,
    state: r.state,
    blockedAtHard: decOrNull(r.blocked_at_hard),
    asOf: r.as_of,
  };
}

function unlimited(quantity: Dec, period: { start: Date; end: Date }, asOf: Date): Entitlement {
  return {
    allowed: true,
    quantity,
    unit: null,
    amount: null,
    currency: null,
    soft: null,
    hard: null,
    remaining: null,
    state: "ok",
    period,
    asOf,
  };
}

export function alertEventId(alertId: string): string {
  return `evt_${createHash("sha256").update(`tally-alert:${alertId}`).digest("base64url").slice(0, 24)}`;
}

export class LimitsService {
  readonly #states = new Map<string, PairState>();
  readonly #unlimited = new Map<string, { quantity: Dec; asOf: Date; expires: number }>();
  readonly #local = new Map<string, LocalDelta[]>();
  readonly #running = new Map<string, Promise<void>>();
  readonly #again = new Set<string>();
  #polledUntil: Date | null = null;
  #lastFullPass: number | undefined;
  #lastRunStart: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  readonly #evaluations;
  readonly #alerts;
  #onAlert: () => void = () => {};

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly log: Logger,
    metrics: Metrics,
  ) {
    this.#evaluations = metrics.counter("tally_limit_evaluations_total", "Customer limit evaluations by trigger", [
      "trigger",
    ]);
    this.#alerts = metrics.counter("tally_alerts_total", "Alerts recorded by level", ["level"]);
  }

  /** Called after an evaluation queued webhooks (to deliver them at once rather than on schedule). */
  onAlert(fn: () => void): void {
    this.#onAlert = fn;
  }

  /** Loads every state and polls for changes made by any process. */
  async start(): Promise<void> {
    await this.poll();
    this.#timer = setInterval(() => {
      this.#polling ??= this.poll()
        .catch((err: Error) => this.log.warn({ err: { message: err.message } }, "limit state poll failed"))
        .finally(() => {
          this.#polling = undefined;
        });
    }, POLL_MS);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#polling;
    await this.idle();
  }

  /** Resolves when no evaluation is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running.values()]);
  }

  async poll(): Promise<void> {
    const since = this.#polledUntil ? new Date(this.#polledUntil.getTime() - POLL_OVERLAP_MS) : null;
    const { rows } = await this.db.query<StateRow & { polled_at: Date }>(
      `SELECT customer_id, meter, period_start, unit, soft::text AS soft, hard::text AS hard, quantity::text AS quantity,
              amount::text AS amount, currency, state, blocked_at_hard::text AS blocked_at_hard, as_of,
              clock_timestamp() AS polled_at
       FROM limit_states WHERE $1::timestamptz IS NULL OR updated_at > $1`,
      [since],
    );
    for (const r of rows) this.#remember(fromRow(r));
    this.#polledUntil = rows[0]?.polled_at ?? (await this.#dbNow());
  }

  async #dbNow(): Promise<Date> {
    const { rows } = await this.db.query<{ now: Date }>("SELECT clock_timestamp() AS now", []);
    return (rows[0] as { now: Date }).now;
  }

  #remember(s: PairState): void {
    const key = pairKey(s.customer, s.meter);
    const known = this.#states.get(key);
    if (known && known.asOf > s.asOf) return;
    this.#states.set(key, s);
  }

  state(customer: string, meter: string): PairState | undefined {
    return this.#states.get(pairKey(customer, meter));
  }

  /**
   * The decision for (customer, meter) now: from the in-memory state when the pair is limited and evaluated in
   * this period; otherwise allowed, with the quantity read (and cached for a second).
   */
  async entitlement(customer: string, meter: string): Promise<Entitlement> {
    const known = this.cachedEntitlement(customer, meter);
    if (known) return known;
    const now = this.clock.now();
    const period = periodOf(now);
    // A limited pair from an earlier period: the new period starts unblocked; evaluate it for the next ask.
    if (this.state(customer, meter)?.unit) this.schedule(customer, "period");
    const quantity = await this.#periodQuantity(customer, meter, period);
    if (this.#unlimited.size >= UNLIMITED_CACHE_MAX) this.#unlimited.clear();
    this.#unlimited.set(pairKey(customer, meter), { quantity, asOf: now, expires: Date.now() + UNLIMITED_CACHE_MS });
    return unlimited(quantity, period, now);
  }

  /**
   * The decision from memory alone, when there is one: the pair is limited and evaluated in this period, or
   * unlimited and its quantity was read within the last second. Otherwise undefined.
   */
  cachedEntitlement(customer: string, meter: string): Entitlement | undefined {
    const period = periodOf(this.clock.now());
    const s = this.state(customer, meter);
    if (s?.unit && s.periodStart.getTime() === period.start.getTime()) {
      const value = s.unit === "amount" ? (s.amount ?? ZERO) : s.quantity;
      const remaining = s.hard ? Dec.max(s.hard.minus(value), ZERO) : null;
      return {
        allowed: s.state !== "blocked",
        quantity: s.quantity,
        unit: s.unit,
        amount: s.amount,
        currency: s.currency,
        soft: s.soft,
        hard: s.hard,
        remaining: s.state === "blocked" ? ZERO : remaining,
        state: s.state,
        period,
        asOf: s.asOf,
      };
    }
    if (s?.unit) return undefined;
    const cached = this.#unlimited.get(pairKey(customer, meter));
    return cached && cached.expires > Date.now() ? unlimited(cached.quantity, period, cached.asOf) : undefined;
  }

  async #periodQuantity(customer: string, meter: string, period: { start: Date; end: Date }): Promise<Dec> {
    const m = await getMeter(this.db, meter);
    const [totals] = await rangeTotals(this.db, { from: period.start, to: period.end, customer, meter });
    return totals && m ? dec(quantityOf(totals, m.aggregation)) : ZERO;
  }

  /** Right after a commit: evaluate the customers whose limited meters are (or may now be) near a threshold. */
  afterIngest(batch: CommittedBatch): void {
    const now = this.clock.now();
    const period = periodOf(now);
    for (const [customer, meters] of batch.pairs) {
      let due = false;
      for (const [meter, delta] of meters) {
        const s = this.state(customer, meter);
        if (!s?.unit || s.state === "blocked") continue;
        const since = this.#sinceState(pairKey(customer, meter), s.asOf, now, delta);
        // An evaluation in flight may have read the totals before this batch committed: evaluate once more.
        if (this.#running.has(customer) || s.periodStart.getTime() !== period.start.getTime()) due = true;
        else if (this.#mayBeNear(s, since)) due = true;
      }
      if (due) this.schedule(customer, "ingest");
    }
  }

  /**
   * What this process ingested for a pair since its state was read (as_of), this batch included: the last
   * known figures plus all of it, not just the latest batch, so many small batches add up to "near".
   */
  #sinceState(key: string, asOf: Date, now: Date, delta: PairDelta): PairDelta {
    const kept = (this.#local.get(key) ?? []).filter((d) => d.at >= asOf.getTime());
    kept.push({ at: now.getTime(), ...delta });
    // Bounded: merge the oldest entries (their sum still counts; only their times blur, towards "newer").
    while (kept.length > LOCAL_DELTAS_MAX) {
      const [a, b] = kept.splice(0, 2) as [LocalDelta, LocalDelta];
      kept.unshift({ at: b.at, count: a.count + b.count, sum: a.sum + b.sum, max: Math.max(a.max, b.max) });
    }
    this.#local.set(key, kept);
    if (this.#local.size > UNLIMITED_CACHE_MAX) this.#local.clear();
    return kept.reduce(
      (acc, d) => ({ count: acc.count + d.count, sum: acc.sum + d.sum, max: Math.max(acc.max, d.max) }),
      { count: 0, sum: 0, max: Number.NEGATIVE_INFINITY },
    );
  }

  /** An estimate of where ingest took the value (only to decide whether to evaluate; evaluation is exact). */
  #mayBeNear(s: PairState, delta: PairDelta): boolean {
    const limit = { soft: s.soft, hard: s.hard, unit: s.unit as LimitUnit };
    const q = s.quantity.toNumber();
    const grown = Math.max(q + delta.sum, q + delta.count, delta.max);
    if (s.unit === "quantity") return isNear(dec(grown), limit) || isNear(s.quantity, limit);
    const amount = s.amount?.toNumber() ?? 0;
    const estimate = q > 0 ? (amount * grown) / q : grown > 0 ? Number.MAX_SAFE_INTEGER : amount;
    return isNear(dec(Number.isFinite(estimate) ? estimate : Number.MAX_SAFE_INTEGER), limit);
  }

  /** Evaluates a customer soon, once even if asked many times while an evaluation runs. */
  schedule(customer: string, trigger: string): void {
    if (this.#running.has(customer)) {
      this.#again.add(customer);
      return;
    }
    const run = (async () => {
      try {
        do {
          this.#again.delete(customer);
          await this.evaluateCustomer(customer, trigger);
        } while (this.#again.has(customer));
      } catch (err) {
        this.log.error({ customer, trigger, err: { message: (err as Error).message } }, "limit evaluation failed");
      } finally {
        this.#running.delete(customer);
      }
    })();
    this.#running.set(customer, run);
  }

  /** Evaluates every limited meter of one customer for the current period. */
  async evaluateCustomer(customer: string, trigger = "manual"): Promise<EvaluationSummary> {
    this.#evaluations.inc({ trigger });
    const now = this.clock.now();
    const period = periodOf(now);
    const limits = await effectiveLimits(this.db, customer, now);
    const known = await this.db.query<{ meter: string }>(
      "SELECT meter FROM limit_states WHERE customer_id = $1 AND unit IS NOT NULL",
      [customer],
    );
    const summary: EvaluationSummary = { customers: 1, limits: limits.size, alerts: 0, blocked: 0, webhooks_queued: 0 };
    if (limits.size === 0 && known.rows.length === 0) return summary;
    const statement = limits.size > 0 ? await buildStatement(this.db, customer, period, now) : undefined;
    const byMeter = new Map(statement?.meters.map((m) => [m.meter, m]) ?? []);
    const meters = new Set([...limits.keys(), ...known.rows.map((r) => r.meter)]);
    const changed: PairState[] = [];
    let alerted = false;
    await this.db.transaction(async (tx) => {
      for (const meter of meters) {
        const limit = limits.get(meter);
        const m = byMeter.get(meter);
        const quantity = m?.quantity ?? ZERO;
        const amount = statement?.currency ? (m?.amount ?? ZERO) : null;
        const prevRows = await tx.query<StateRow>(
          `SELECT customer_id, meter, period_start, unit, soft::text AS soft, hard::text AS hard, quantity::text AS quantity,
                  amount::text AS amount, currency, state, blocked_at_hard::text AS blocked_at_hard, as_of
           FROM limit_states WHERE customer_id = $1 AND meter = $2 FOR UPDATE`,
          [customer, meter],
        );
        const prevRow = prevRows.rows[0];
        const prev =
          prevRow && prevRow.period_start.getTime() === period.start.getTime() ? fromRow(prevRow) : undefined;
        if (prev && prev.asOf > now) continue; // a newer evaluation already ran
        const value = limit?.unit === "amount" ? (amount ?? ZERO) : quantity;
        const result = evaluate(value, limit, prev);
        for (const r of result.reached) {
          const { rows } = await tx.query<{ id: string; triggered_at: Date }>(
            `INSERT INTO alerts (customer_id, meter, period_start, level, threshold, unit, value, triggered_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (customer_id, meter, period_start, level, threshold, unit) DO NOTHING
             RETURNING id::text, triggered_at`,
            [customer, meter, period.start, r.level, r.threshold.toFixed(), limit?.unit, value.toFixed(), now],
          );
          const alert = rows[0];
          if (!alert) continue;
          summary.alerts += 1;
          this.#alerts.inc({ level: r.level });
          const eventId = alertEventId(alert.id);
          const body = JSON.stringify({
            id: eventId,
            type: r.level === "hard" ? "limit.hard_reached" : "limit.soft_reached",
            created_at: now.toISOString(),
            data: {
              customer,
              meter,
              level: r.level,
              threshold: r.threshold.toFixed(),
              unit: limit?.unit,
              value: value.toFixed(),
              currency: limit?.unit === "amount" ? statement?.currency : undefined,
              period: { start: period.start.toISOString(), end: period.end.toISOString() },
              state: result.state,
              triggered_at: alert.triggered_at.toISOString(),
            },
          });
          summary.webhooks_queued += await enqueueEvent(tx, eventId, body, now);
          alerted = true;
        }
        if (result.state === "blocked") summary.blocked += 1;
        const next: PairState = {
          customer,
          meter,
          periodStart: period.start,
          unit: limit?.unit ?? null,
          soft: limit?.soft ?? null,
          hard: limit?.hard ?? null,
          quantity,
          amount,
          currency: statement?.currency ?? null,
          state: result.state,
          blockedAtHard: result.blockedAtHard,
          asOf: now,
        };
        await tx.query(
          `INSERT INTO limit_states (customer_id, meter, period_start, unit, soft, hard, quantity, amount, currency, state,
                                     blocked_at_hard, as_of, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, clock_timestamp())
           ON CONFLICT (customer_id, meter) DO UPDATE SET
             period_start = EXCLUDED.period_start, unit = EXCLUDED.unit, soft = EXCLUDED.soft, hard = EXCLUDED.hard,
             quantity = EXCLUDED.quantity, amount = EXCLUDED.amount, currency = EXCLUDED.currency,
             state = EXCLUDED.state, blocked_at_hard = EXCLUDED.blocked_at_hard, as_of = EXCLUDED.as_of,
             updated_at = clock_timestamp()`,
          [
            customer,
            meter,
            period.start,
            next.unit,
            next.soft?.toFixed() ?? null,
            next.hard?.toFixed() ?? null,
            quantity.toFixed(),
            amount?.toFixed() ?? null,
            next.currency,
            next.state,
            next.blockedAtHard?.toFixed() ?? null,
            now,
          ],
        );
        changed.push(next);
      }
    });
    for (const s of changed) {
      this.#states.set(pairKey(s.customer, s.meter), s);
      this.#unlimited.delete(pairKey(s.customer, s.meter));
    }
    if (alerted) this.#onAlert();
    return summary;
  }

  /**
   * The limit of each limited meter in a statement, with the state its values put it in (the summary's `limit`):
   * computed from the statement itself, so the summary and the decision agree.
   */
  async limitsFor(
    customer: string,
    period: { start: Date; end: Date },
    values: Map<string, { quantity: Dec; amount: Dec | null }>,
  ): Promise<Map<string, { soft: Dec | null; hard: Dec | null; unit: LimitUnit; state: LimitState }>> {
    const at = new Date(Math.min(this.clock.now().getTime(), period.end.getTime() - 1));
    const out = new Map<string, { soft: Dec | null; hard: Dec | null; unit: LimitUnit; state: LimitState }>();
    for (const [meter, limit] of await effectiveLimits(this.db, customer, at)) {
      const v = values.get(meter);
      const value = limit.unit === "amount" ? (v?.amount ?? ZERO) : (v?.quantity ?? ZERO);
      const s = this.state(customer, meter);
      const prev = s && s.periodStart.getTime() === period.start.getTime() ? s : undefined;
      out.set(meter, {
        soft: limit.soft,
        hard: limit.hard,
        unit: limit.unit,
        state: evaluate(value, limit, prev).state,
      });
    }
    return out;
  }

  /**
   * The evaluate-limits job. Every FULL_PASS_MS (and on a process's first run) it evaluates every customer with a
   * limit in effect (or a state left by a removed one); in between only those with events received since the
   * previous run began (found through event_keys' received_at index), those whose state is from an earlier
   * period, and those never evaluated — the others' figures cannot have moved. Changes of limits and
   * subscriptions evaluate their customers at once, and ingest near a threshold does too.
   */
  async evaluateAll(): Promise<EvaluationSummary & { pass: "full" | "incremental"; skipped: number }> {
    const now = this.clock.now();
    const full = this.#lastFullPass === undefined || now.getTime() - this.#lastFullPass >= FULL_PASS_MS;
    const limited = await limitedCustomers(this.db, now);
    let due = limited;
    if (!full && this.#lastRunStart !== undefined) {
      const since = new Date(this.#lastRunStart - RECEIVED_OVERLAP_MS);
      const { rows } = await this.db.query<{ customer_id: string }>(
        "SELECT DISTINCT customer_id FROM event_keys WHERE received_at >= $1",
        [since],
      );
      const active = new Set(rows.map((r) => r.customer_id));
      const period = periodOf(now).start.getTime();
      const current = new Set<string>();
      for (const s of this.#states.values()) if (s.periodStart.getTime() === period) current.add(s.customer);
      due = limited.filter((c) => active.has(c) || !current.has(c));
    }
    this.#lastRunStart = now.getTime();
    if (full) this.#lastFullPass = now.getTime();
    const total = { customers: 0, limits: 0, alerts: 0, blocked: 0, webhooks_queued: 0 };
    for (const customer of due) {
      const s = await this.evaluateCustomer(customer, "schedule");
      total.customers += 1;
      total.limits += s.limits;
      total.alerts += s.alerts;
      total.blocked += s.blocked;
      total.webhooks_queued += s.webhooks_queued;
    }
    return { ...total, pass: full ? "full" : "incremental", skipped: limited.length - due.length };
  }
}
