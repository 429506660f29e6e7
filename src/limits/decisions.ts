// Entitlement decisions from memory: every (customer, meter) state of the last evaluation, polled from the
// database every second — so a decision made by any process is enforced by all within about a second — and,
// for pairs without a limit, their quantity read once and kept for a second. Each state carries the customer's
// billing period it was evaluated in, so whether it still counts (and when a block resets) needs no query.
import { LRUCache } from "lru-cache";
import type { BillingCalendar, BillingPeriod } from "../billing/calendar.js";
import type { Clock } from "../clock.js";
import type { Db } from "../db/types.js";
import type { Logger } from "../logger.js";
import { Dec, ZERO } from "../pricing/money.js";
import type { LimitState, LimitUnit } from "./rules.js";
import { type PairState, statesSince } from "./states.js";

export interface Entitlement {
  allowed: boolean;
  /** Why it is not allowed: a reached hard limit, or (credit_only customers) no credits left for the meter. */
  code: "limit_reached" | "credits_exhausted" | null;
  /** credit_only customers: what the grants covering the meter have left. */
  credits: Dec | null;
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

const POLL_MS = 1_000;
/** Rows updated this long before the previous poll are read again: a transaction commits after its updated_at. */
const POLL_OVERLAP_MS = 10_000;
const UNLIMITED_CACHE_MS = 1_000;
const UNLIMITED_CACHE_MAX = 50_000;

export const pairKey = (customer: string, meter: string) => `${customer}\u0000${meter}`;

/** Whether a state was evaluated in the billing period running at `now` (a state of an ended period no longer counts). */
export const current = (s: { periodStart: Date; periodEnd: Date }, now: Date): boolean =>
  s.periodStart <= now && now < s.periodEnd;

function unlimited(quantity: Dec, period: { start: Date; end: Date }, asOf: Date): Entitlement {
  return {
    allowed: true,
    code: null,
    credits: null,
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

interface DecisionSources {
  /** The pair's quantity in the period, read from the rollups (for pairs without a limit). */
  quantity(customer: string, meter: string, period: { start: Date; end: Date }): Promise<Dec>;
  /** The customer's billing calendar (for pairs without a limit: which period their quantity is of). */
  calendar(customer: string): Promise<BillingCalendar>;
  /** A limited pair was asked about in a period it was not evaluated in yet. */
  stale(customer: string): void;
}

export class Decisions {
  readonly #states = new Map<string, PairState>();
  readonly #unlimited = new LRUCache<string, { quantity: Dec; period: BillingPeriod; asOf: Date }>({
    max: UNLIMITED_CACHE_MAX,
    ttl: UNLIMITED_CACHE_MS,
  });
  /** Calendars of customers asked about pairs without a limit: kept as briefly as their quantities. */
  readonly #calendars = new LRUCache<string, BillingCalendar>({ max: UNLIMITED_CACHE_MAX, ttl: UNLIMITED_CACHE_MS });
  #polledUntil: Date | null = null;
  /** Counts apply() calls; per pair, the count at its last apply (a poll that began before it must not undo it). */
  #applies = 0;
  readonly #appliedAt = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly sources: DecisionSources,
  ) {}

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
  }

  async poll(): Promise<void> {
    const since = this.#polledUntil ? new Date(this.#polledUntil.getTime() - POLL_OVERLAP_MS) : null;
    const started = this.#applies;
    const { states, readAt } = await statesSince(this.db, since);
    for (const s of states) this.#remember(s, started);
    this.#polledUntil = readAt;
  }

  /** A polled state, unless this process applied a newer one while the poll was reading (its rows may predate it). */
  #remember(s: PairState, pollStarted: number): void {
    const key = pairKey(s.customer, s.meter);
    const known = this.#states.get(key);
    if (known && known.asOf > s.asOf) return;
    if ((this.#appliedAt.get(key) ?? -1) >= pollStarted) return;
    this.#states.set(key, s);
  }

  /** States this process just evaluated: they replace what it knew. */
  apply(states: PairState[]): void {
    this.#applies += 1;
    for (const s of states) {
      this.#appliedAt.set(pairKey(s.customer, s.meter), this.#applies);
      this.#states.set(pairKey(s.customer, s.meter), s);
      this.#unlimited.delete(pairKey(s.customer, s.meter));
      // An evaluation follows every subscription change: its customer's cycle may have changed.
      this.#calendars.delete(s.customer);
    }
  }

  state(customer: string, meter: string): PairState | undefined {
    return this.#states.get(pairKey(customer, meter));
  }

  /** Customers with a state evaluated in their billing period running at `now`. */
  customersEvaluatedAt(now: Date): Set<string> {
    const out = new Set<string>();
    for (const s of this.#states.values()) if (current(s, now)) out.add(s.customer);
    return out;
  }

  /** credit_only customers whose credit states were evaluated before `t`. */
  creditCustomersEvaluatedBefore(t: Date): Set<string> {
    const out = new Set<string>();
    for (const s of this.#states.values()) if (s.credits && s.asOf < t) out.add(s.customer);
    return out;
  }

  /**
   * The decision for (customer, meter) now: from the in-memory state when the pair is limited and evaluated in
   * its current period; otherwise allowed, with the quantity of the customer's period read (and cached for a second).
   */
  async entitlement(customer: string, meter: string): Promise<Entitlement> {
    const known = this.cachedEntitlement(customer, meter);
    if (known) return known;
    const now = this.clock.now();
    // A limited pair from an earlier period: the new period starts unblocked; evaluate it for the next ask.
    const s = this.state(customer, meter);
    if (s?.unit || s?.credits) this.sources.stale(customer);
    const period = (await this.#calendar(customer)).periodContaining(now);
    const quantity = await this.sources.quantity(customer, meter, period);
    this.#unlimited.set(pairKey(customer, meter), { quantity, period, asOf: now });
    return unlimited(quantity, period, now);
  }

  async #calendar(customer: string): Promise<BillingCalendar> {
    const known = this.#calendars.get(customer);
    if (known) return known;
    const calendar = await this.sources.calendar(customer);
    this.#calendars.set(customer, calendar);
    return calendar;
  }

  /**
   * The decision from memory alone, when there is one: the pair is limited (or its credits watched) and evaluated
   * in the period running now, or unlimited and its quantity was read within the last second in the period running
   * now. Otherwise undefined.
   */
  cachedEntitlement(customer: string, meter: string): Entitlement | undefined {
    const now = this.clock.now();
    const s = this.state(customer, meter);
    if ((s?.unit || s?.credits) && current(s, now)) {
      const value = s.unit === "amount" ? (s.amount ?? ZERO) : s.quantity;
      const remaining = s.hard ? Dec.max(s.hard.minus(value), ZERO) : null;
      const code = s.state === "blocked" ? "limit_reached" : s.credits === "exhausted" ? "credits_exhausted" : null;
      return {
        allowed: code === null,
        code,
        credits: s.credits ? s.creditBalance : null,
        quantity: s.quantity,
        unit: s.unit,
        amount: s.amount,
        currency: s.currency,
        soft: s.soft,
        hard: s.hard,
        remaining: s.state === "blocked" ? ZERO : remaining,
        state: code === null ? s.state : "blocked",
        period: { start: s.periodStart, end: s.periodEnd },
        asOf: s.asOf,
      };
    }
    if (s?.unit || s?.credits) return undefined;
    const cached = this.#unlimited.get(pairKey(customer, meter));
    return cached && cached.period.start <= now && now < cached.period.end
      ? unlimited(cached.quantity, cached.period, cached.asOf)
      : undefined;
  }
}
