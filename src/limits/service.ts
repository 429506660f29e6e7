// Limits at run time: evaluates customers (on schedule, right after ingest when close to a threshold, and when a
// limit or subscription changes) and records alerts once, queueing their webhooks in the same transaction.
// Entitlement decisions come from memory (decisions.ts), which every evaluation updates.
import { LRUCache } from "lru-cache";
import type { BillingPeriod } from "../billing/calendar.js";
import { buildStatement } from "../billing/statement.js";
import { calendarOf } from "../billing/subscriptions.js";
import { getMeter } from "../catalog/meters.js";
import type { Clock } from "../clock.js";
import { creditView, pricedMetersAt, recordCrossings } from "../credits/evaluation.js";
import { creditSettings } from "../credits/grants.js";
import type { CreditLedgers } from "../credits/ledger.js";
import { type Db, lockId } from "../db/types.js";
import type { CommittedBatch, PairDelta } from "../ingest/service.js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { type Dec, dec, ZERO } from "../pricing/money.js";
import { alignDown } from "../rollups/buckets.js";
import { quantityOf, rangeTotals } from "../rollups/totals.js";
import { current, Decisions, type Entitlement, pairKey } from "./decisions.js";
import { evaluateForecastAlerts } from "./forecastAlerts.js";
import { alertEventId, evaluatePair } from "./pairs.js";
import { evaluate, type LimitState, type LimitUnit, mayBeNear, mayRunOut } from "./rules.js";
import { customersWithEventsSince, limitedMetersOf, type PairState } from "./states.js";
import { effectiveLimits, limitedCustomers } from "./store.js";

export type { Entitlement } from "./decisions.js";

interface EvaluationSummary {
  customers: number;
  limits: number;
  alerts: number;
  blocked: number;
  webhooks_queued: number;
}

const UNLIMITED_CACHE_MAX = 50_000;
/** Customers whose credits are watched: evaluated after ingest at most this often per process, and always within it. */
const CREDIT_EVALUATION_MS = 1_000;
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

export class LimitsService {
  readonly decisions: Decisions;
  readonly #local = new LRUCache<string, LocalDelta[]>({ max: UNLIMITED_CACHE_MAX });
  readonly #running = new Map<string, Promise<void>>();
  readonly #again = new Set<string>();
  #lastFullPass: number | undefined;
  #lastRunStart: number | undefined;
  readonly #evaluations;
  readonly #alerts;
  #onAlert: () => void = () => {};
  /** Customers whose credits are watched, as this process last evaluated them. */
  readonly #creditWatched = new Set<string>();
  readonly #creditEvaluatedAt = new LRUCache<string, number>({ max: UNLIMITED_CACHE_MAX });
  readonly #creditTimers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly log: Logger,
    metrics: Metrics,
    private readonly credits: CreditLedgers,
  ) {
    this.#evaluations = metrics.counter("tally_limit_evaluations_total", "Customer limit evaluations by trigger", [
      "trigger",
    ]);
    this.#alerts = metrics.counter("tally_alerts_total", "Alerts recorded by level", ["level"]);
    this.decisions = new Decisions(db, clock, log, {
      quantity: (customer, meter, period) => this.#periodQuantity(customer, meter, period),
      calendar: (customer) => calendarOf(this.db, customer),
      stale: (customer) => this.schedule(customer, "period"),
    });
  }

  /** Called after an evaluation queued webhooks (to deliver them at once rather than on schedule). */
  onAlert(fn: () => void): void {
    this.#onAlert = fn;
  }

  /** Loads every state and polls for changes made by any process. */
  start(): Promise<void> {
    return this.decisions.start();
  }

  async stop(): Promise<void> {
    for (const timer of this.#creditTimers.values()) clearTimeout(timer);
    this.#creditTimers.clear();
    await this.decisions.stop();
    await this.idle();
  }

  /** Resolves when no evaluation is running (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running.values()]);
  }

  poll(): Promise<void> {
    return this.decisions.poll();
  }

  state(customer: string, meter: string): PairState | undefined {
    return this.decisions.state(customer, meter);
  }

  entitlement(customer: string, meter: string): Promise<Entitlement> {
    return this.decisions.entitlement(customer, meter);
  }

  cachedEntitlement(customer: string, meter: string): Entitlement | undefined {
    return this.decisions.cachedEntitlement(customer, meter);
  }

  async #periodQuantity(customer: string, meter: string, period: { start: Date; end: Date }): Promise<Dec> {
    const m = await getMeter(this.db, meter);
    const [totals] = await rangeTotals(this.db, { from: period.start, to: period.end, customer, meter });
    return totals && m ? dec(quantityOf(totals, m.aggregation)) : ZERO;
  }

  /** Right after a commit: evaluate the customers whose limited meters are (or may now be) near a threshold. */
  afterIngest(batch: CommittedBatch): void {
    const now = this.clock.now();
    for (const [customer, meters] of batch.pairs) {
      let due = false;
      for (const [meter, delta] of meters) {
        const s = this.state(customer, meter);
        if (!s || ((!s.unit || s.state === "blocked") && s.credits !== "ok")) continue;
        const since = this.#sinceState(pairKey(customer, meter), s.asOf, now, delta);
        const q = s.quantity.toNumber();
        // An evaluation in flight may have read the totals before this batch committed: evaluate once more.
        if (this.#running.has(customer) || !current(s, now)) due = true;
        else if (s.unit && s.state !== "blocked" && mayBeNear(s, since)) due = true;
        else if (s.credits === "ok" && mayRunOut(s, Math.max(since.sum, since.count, since.max - q))) due = true;
      }
      if (due) this.schedule(customer, "ingest");
      else if (this.#creditWatched.has(customer) || [...meters.keys()].some((m) => this.state(customer, m)?.credits)) {
        this.#creditsSoon(customer);
      }
    }
  }

  /** Evaluates now if the last evaluation is a second old, else once a second after it (one timer per customer). */
  #creditsSoon(customer: string): void {
    const wait = (this.#creditEvaluatedAt.get(customer) ?? 0) + CREDIT_EVALUATION_MS - Date.now();
    if (wait <= 0) {
      this.schedule(customer, "credits");
      return;
    }
    if (this.#creditTimers.has(customer)) return;
    const timer = setTimeout(() => {
      this.#creditTimers.delete(customer);
      this.schedule(customer, "credits");
    }, wait);
    timer.unref();
    this.#creditTimers.set(customer, timer);
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
    return kept.reduce(
      (acc, d) => ({ count: acc.count + d.count, sum: acc.sum + d.sum, max: Math.max(acc.max, d.max) }),
      { count: 0, sum: 0, max: Number.NEGATIVE_INFINITY },
    );
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

  /**
   * Evaluates every limited meter of one customer for the current period, and its credits when they are watched.
   * Evaluations of one customer run one at a time across processes (a lock per customer), each reading after the
   * previous one committed, so its states and crossings never go back in time.
   */
  evaluateCustomer(customer: string, trigger = "manual"): Promise<EvaluationSummary> {
    return this.#evaluateCounted(customer, trigger).then((e) => e.summary);
  }

  #evaluateCounted(customer: string, trigger: string): Promise<{ summary: EvaluationSummary; period: BillingPeriod }> {
    this.#evaluations.inc({ trigger });
    this.#creditEvaluatedAt.set(customer, Date.now());
    return this.#evaluate(customer);
  }

  /**
   * One transaction (one connection): the customer's lock first, then every read and write; its calendar is read
   * under the lock too, so an evaluation that follows a subscription change sees the new cycle.
   */
  async #evaluate(customer: string): Promise<{ summary: EvaluationSummary; period: BillingPeriod }> {
    const changed: PairState[] = [];
    let alerted = false;
    const evaluated = await this.db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1::bigint)", [lockId(`evaluate:${customer}`)]);
      const now = this.clock.now();
      const period = (await calendarOf(tx, customer)).periodContaining(now);
      const limits = await effectiveLimits(tx, customer, now);
      const known = await limitedMetersOf(tx, customer);
      const settings = await creditSettings(tx, customer);
      const watched = settings && (settings.mode === "credit_only" || settings.alertBelow !== null) ? settings : null;
      const summary = { customers: 1, limits: limits.size, alerts: 0, blocked: 0, webhooks_queued: 0 };
      if (limits.size === 0 && known.length === 0 && !watched) return { summary, period };
      if (watched) this.#creditWatched.add(customer);
      else this.#creditWatched.delete(customer);
      const ledger = await this.credits.ledgerIn(tx, customer, now);
      const statement = await buildStatement(tx, customer, period, now);
      const credit = watched ? creditView(watched, ledger, await pricedMetersAt(tx, customer, now)) : undefined;
      const byMeter = new Map(statement.meters.map((m) => [m.meter, m]));
      const meters = new Set([...limits.keys(), ...known, ...(credit?.meters.keys() ?? [])]);
      if (credit) {
        const crossed = await recordCrossings(tx, customer, credit, now);
        summary.alerts += crossed.alerts;
        summary.webhooks_queued += crossed.webhooks;
        if (crossed.webhooks > 0) alerted = true;
      }
      for (const meter of meters) {
        const m = byMeter.get(meter);
        const covering = credit?.meters.get(meter);
        const outcome = await evaluatePair(tx, {
          customer,
          meter,
          period,
          now,
          limit: limits.get(meter),
          quantity: m?.quantity ?? ZERO,
          amount: statement.currency ? (m?.amount ?? ZERO) : null,
          currency: statement.currency ?? null,
          covering,
        });
        if (!outcome) continue; // a newer evaluation already ran
        for (const level of outcome.alerts) this.#alerts.inc({ level });
        summary.alerts += outcome.alerts.length;
        summary.webhooks_queued += outcome.webhooks;
        if (outcome.alerts.length > 0) alerted = true;
        if (outcome.state.state === "blocked" || covering?.lte(0)) summary.blocked += 1;
        changed.push(outcome.state);
      }
      return { summary, period };
    });
    this.decisions.apply(changed);
    if (alerted) this.#onAlert();
    return evaluated;
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
   * Forecast alerts of a customer's limits that ask for them (evaluated by the job, not after every ingest), to the
   * end of the period its evaluation just used.
   */
  async #forecastAlerts(
    customer: string,
    period: BillingPeriod,
    now: Date,
  ): Promise<{ alerts: number; webhooks: number }> {
    if (!(period.start <= now && now < period.end)) return { alerts: 0, webhooks: 0 }; // the next run has it
    const limits = [...(await effectiveLimits(this.db, customer, now)).values()];
    const result = await evaluateForecastAlerts(this.db, { customer, limits, period, now }, alertEventId);
    if (result.alerts > 0) this.#alerts.inc({ level: "forecast" }, result.alerts);
    if (result.webhooks > 0) this.#onAlert();
    return result;
  }

  /**
   * The evaluate-limits job. Every FULL_PASS_MS (and on a process's first run) it evaluates every customer with a
   * limit in effect (or a state left by a removed one); in between only those with events received since the
   * previous run began (found through usage_events' received_at BRIN), those whose state is from an earlier
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
      const active = await customersWithEventsSince(this.db, since);
      const current = this.decisions.customersEvaluatedAt(now);
      // Grants start and end covering on the hour: credit_only customers are evaluated again in every new hour.
      const hourly = this.decisions.creditCustomersEvaluatedBefore(alignDown(now, "hour"));
      due = limited.filter((c) => active.has(c) || !current.has(c) || hourly.has(c));
    }
    this.#lastRunStart = now.getTime();
    if (full) this.#lastFullPass = now.getTime();
    const total = { customers: 0, limits: 0, alerts: 0, blocked: 0, webhooks_queued: 0 };
    for (const customer of due) {
      const { summary: s, period } = await this.#evaluateCounted(customer, "schedule");
      const f = await this.#forecastAlerts(customer, period, now);
      s.alerts += f.alerts;
      s.webhooks_queued += f.webhooks;
      total.customers += 1;
      total.limits += s.limits;
      total.alerts += s.alerts;
      total.blocked += s.blocked;
      total.webhooks_queued += s.webhooks_queued;
    }
    return { ...total, pass: full ? "full" : "incremental", skipped: limited.length - due.length };
  }
}
