// The credit ledger of a customer, computed on read: its grants and the hourly usage charges of every period of its
// billing calendar since its first grant are replayed through the pure burn-down, in one database snapshot
// (REPEATABLE READ) together with whatever else the caller reads (the invoice's statement), so the balance, the
// invoice and the summary agree to the cent and nothing is stored that could drift: a late event, a new grant or a void is in the next
// read, in every process at once (docs/credits.md).
//
// Periods no event can reach any more (they ended more than TALLY_EVENT_MAX_AGE_DAYS ago) are priced once per
// process and kept, keyed by everything that prices them; periods still open to events are priced again when one of
// their meters' event counts moved (one totals read per open period tells), else kept too.
import { LRUCache } from "lru-cache";
import type { BillingCalendar } from "../billing/calendar.js";
import { calendarOf } from "../billing/subscriptions.js";
import { listMeters } from "../catalog/meters.js";
import type { Aggregation } from "../catalog/schemas.js";
import type { Db, Queryable } from "../db/types.js";
import { Dec, minorUnits } from "../pricing/money.js";
import type { Period } from "../pricing/segments.js";
import { rangeFigures } from "../rollups/totals.js";
import { type BurnDown, burnOrder, type CreditGrant, coveringBalance, Replay } from "./burndown.js";
import { type PeriodCharges, type PeriodPricing, periodCharges, periodPricings, SegmentPricer } from "./charges.js";
import { listGrants, type StoredGrant } from "./grants.js";

/** Margin past the event window before a period counts as closed to events (clocks of processes may differ). */
const FROZEN_MARGIN_MS = 3_600_000;
const FROZEN_CACHE_MAX_INCREMENTS = 2_000_000;
const CHECKPOINTS_MAX = 10_000;

export interface CreditLedger {
  customer: string;
  asOf: Date;
  grants: StoredGrant[];
  burn: BurnDown;
  /** The replayed periods by start (epoch ms). */
  periods: Map<number, PeriodCharges>;
}

export const toMinor = (amount: Dec, currency: string): bigint =>
  BigInt(amount.times(new Dec(10).pow(minorUnits(currency))).toFixed(0));

export const fromMinor = (amount: bigint, currency: string): Dec =>
  new Dec(amount.toString()).div(new Dec(10).pow(minorUnits(currency)));

export function asCreditGrant(g: StoredGrant): CreditGrant {
  return {
    id: g.id,
    currency: g.currency,
    amount: toMinor(g.amount, g.currency),
    priority: g.priority,
    effectiveAt: g.effectiveAt,
    expiresAt: g.expiresAt,
    voidedAt: g.voidedAt,
    meters: g.meters,
  };
}

interface LedgerOptions {
  /** Events may be this old when they arrive (TALLY_EVENT_MAX_AGE_DAYS). */
  maxEventAgeMs: number;
  /** Events may be this far ahead (TALLY_EVENT_MAX_FUTURE_SECONDS): a period that starts soon may have usage. */
  maxEventFutureMs: number;
}

export class CreditLedgers {
  readonly #pricer = new SegmentPricer();
  readonly #frozen = new LRUCache<string, { fingerprint: string; charges: PeriodCharges }>({
    maxSize: FROZEN_CACHE_MAX_INCREMENTS,
    sizeCalculation: (v) => v.charges.increments.length + 1,
  });
  /** Periods still open to events, with the usage they were priced at (usageVersion). */
  readonly #open = new LRUCache<string, { fingerprint: string; version: string; charges: PeriodCharges }>({
    maxSize: FROZEN_CACHE_MAX_INCREMENTS,
    sizeCalculation: (v) => v.charges.increments.length + 1,
  });
  /** Per customer: the replay after its closed periods, and what it was computed from. */
  readonly #checkpoints = new LRUCache<string, { fingerprint: string; replay: Replay }>({ max: CHECKPOINTS_MAX });

  constructor(
    private readonly db: Db,
    private readonly opts: LedgerOptions,
  ) {}

  /**
   * The customer's ledger at `now`, and `also`'s result read in the same snapshot. The ledger is undefined when the
   * customer has no grant (invoices and summaries are then exactly as without credits).
   */
  async read<T>(
    customer: string,
    now: Date,
    also: (tx: Queryable) => Promise<T>,
  ): Promise<{ ledger: CreditLedger | undefined; value: T }> {
    // No grant: nothing to replay, and the caller's read is exactly what it was before credits existed.
    const { rows } = await this.db.query("SELECT 1 FROM credit_grants WHERE customer_id = $1 LIMIT 1", [customer]);
    if (rows.length === 0) return { ledger: undefined, value: await also(this.db) };
    return this.db.transaction(async (tx) => {
      await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", []);
      const ledger = await this.ledgerIn(tx, customer, now);
      return { ledger, value: await also(tx) };
    });
  }

  /**
   * The ledger read through `tx` (the caller's transaction; the limit evaluation holds its customer's lock), over the
   * periods of the customer's billing calendar (read here unless the caller has it).
   */
  async ledgerIn(
    tx: Queryable,
    customer: string,
    now: Date,
    calendar?: BillingCalendar,
  ): Promise<CreditLedger | undefined> {
    const grants = await listGrants(tx, customer);
    if (grants.length === 0) return undefined;
    const earliest = grants.reduce((t, g) => (g.effectiveAt < t ? g.effectiveAt : t), now);
    // The customer's own billing periods: each period's credit lines are those of its invoice.
    const periods: Period[] = (calendar ?? (await calendarOf(tx, customer))).periodsBetween(
      earliest,
      new Date(now.getTime() + this.opts.maxEventFutureMs),
    );
    const aggregations = new Map((await listMeters(tx)).map((m) => [m.key, m.aggregation]));
    const aggregationOf = (meter: string): Aggregation | undefined => aggregations.get(meter);
    const pricings = await periodPricings(tx, customer, periods, aggregationOf);
    const closedBefore = now.getTime() - this.opts.maxEventAgeMs - FROZEN_MARGIN_MS;
    const byPeriod = new Map<number, PeriodCharges>();
    const toPrice = [];
    const versions = new Map<number, string>();
    for (const p of pricings) {
      const start = p.period.start.getTime();
      const known = this.#frozen.get(`${customer}\u0000${start}`);
      if (known && known.fingerprint === p.fingerprint) {
        byPeriod.set(start, known.charges);
        continue;
      }
      // A period still open to events: its charges change only with its events, and events are only ever added, so
      // each meter's event count over the period (one totals read) tells whether anything arrived since it was priced.
      const version = await usageVersion(tx, customer, p.period);
      const seen = this.#open.get(`${customer}\u0000${start}`);
      if (seen && seen.fingerprint === p.fingerprint && seen.version === version) {
        byPeriod.set(start, seen.charges);
        continue;
      }
      versions.set(start, version);
      toPrice.push(p);
    }
    // Consecutive runs of periods to price are read together (usually just the open ones at the end).
    for (let i = 0; i < toPrice.length; ) {
      let j = i + 1;
      while (j < toPrice.length && toPrice[j]?.period.start.getTime() === toPrice[j - 1]?.period.end.getTime()) j++;
      for (const c of await periodCharges(tx, customer, toPrice.slice(i, j), aggregationOf, this.#pricer)) {
        const start = c.pricing.period.start.getTime();
        byPeriod.set(start, c);
        const fingerprint = c.pricing.fingerprint;
        if (c.pricing.period.end.getTime() <= closedBefore) {
          this.#frozen.set(`${customer}\u0000${start}`, { fingerprint, charges: c });
        } else {
          this.#open.set(`${customer}\u0000${start}`, { fingerprint, version: versions.get(start) ?? "", charges: c });
        }
      }
      i = j;
    }
    const replay = this.#replay(customer, grants, pricings, byPeriod, closedBefore);
    const burn = replay.result(now.getTime());
    return { customer, asOf: now, grants, burn, periods: byPeriod };
  }

  /**
   * The burn-down replay over every period. The replay of the closed periods is kept (keyed by the grants and those
   * periods' pricing); only the open periods are replayed on each read.
   */
  #replay(
    customer: string,
    grants: StoredGrant[],
    pricings: PeriodPricing[],
    byPeriod: Map<number, PeriodCharges>,
    closedBefore: number,
  ): Replay {
    const credited = grants.map(asCreditGrant);
    const closed = pricings.filter((p) => p.period.end.getTime() <= closedBefore);
    const open = pricings.slice(closed.length);
    const fingerprint = JSON.stringify([
      credited.map((g) => [g.id, g.amount.toString(), g.effectiveAt, g.expiresAt, g.voidedAt, g.priority, g.meters]),
      closed.map((p) => p.fingerprint),
    ]);
    const kept = this.#checkpoints.get(customer);
    let replay: Replay;
    if (kept && kept.fingerprint === fingerprint) {
      replay = kept.replay.clone();
    } else {
      replay = new Replay(credited, { entries: false });
      for (const p of closed) replay.apply(byPeriod.get(p.period.start.getTime())?.increments ?? []);
      const end = closed.at(-1)?.period.end.getTime();
      if (end !== undefined) {
        replay.forfeitUntil(end).closePeriodsBefore(end);
        this.#checkpoints.set(customer, { fingerprint, replay: replay.clone() });
      }
    }
    for (const p of open) replay.apply(byPeriod.get(p.period.start.getTime())?.increments ?? []);
    return replay;
  }
}

/** Each meter's event count over a period: it changes with every event that arrives for the period. */
async function usageVersion(q: Queryable, customer: string, period: Period): Promise<string> {
  const counts = await rangeFigures(q, { from: period.start, to: period.end, customer }, "count");
  return counts
    .map((t) => `${t.meter}:${t.count}`)
    .sort()
    .join(",");
}

/** The balance at the ledger's asOf in `currency`: the remaining amounts of the active grants. */
export function balanceOf(ledger: CreditLedger, currency: string): Dec {
  let total = 0n;
  for (const g of ledger.grants) {
    const b = ledger.burn.grants.get(g.id);
    if (b?.status === "active" && g.currency === currency) total += b.remaining;
  }
  return fromMinor(total, currency);
}

/** The balance that can pay for `meter` now (the grants active now that cover it). */
export function meterBalance(ledger: CreditLedger, meter: string, currency: string): Dec {
  return fromMinor(coveringBalance(ledger.burn, ledger.grants.map(asCreditGrant), meter, currency), currency);
}

/** The credits applied to a period, per grant (non-zero only, in burn order), in the grant's currency. */
export function creditsOf(ledger: CreditLedger, period: Period): { grant: StoredGrant; amount: Dec }[] {
  const applied = ledger.burn.appliedByPeriod.get(period.start.getTime());
  if (!applied) return [];
  return ledger.grants
    .filter((g) => (applied.get(g.id) ?? 0n) !== 0n)
    .sort((a, b) => burnOrder(asCreditGrant(a), asCreditGrant(b)))
    .map((g) => ({ grant: g, amount: fromMinor(applied.get(g.id) as bigint, g.currency) }));
}
