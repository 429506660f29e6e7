// The burn-down of prepaid credits (pure, no I/O): grants and the hourly increments of each period's usage charges
// in, every draw, give-back and forfeit out — an append-only ledger whose sums answer every balance, invoice credit
// and block. Amounts are whole minor units of the grant's currency (bigint): charges are sums of lines rounded to
// the minor unit, so their increments are too, and nothing here ever rounds.
//
// The rules (PRODUCT.md, "Prepaid credits"):
//   - hour by hour, each increase of a (period, meter)'s usage charges is drawn from the grants active in that hour
//     that cover the meter and bill in the period's currency, in order of priority, earliest expires_at (none
//     last), earliest effective_at, then id; what no grant covers is invoiced;
//   - a grant covers every hour that overlaps [effective_at, end), end = the earlier of expires_at and voided_at
//     (bought at 10:30, it pays the hour from 10:00; expiring or voided at 10:30, it still pays that hour);
//   - its remainder carries across periods and is forfeited when its last covered hour ends;
//   - a decrease gives credit back to the draws of that (period, meter), newest first; a grant no longer active
//     forfeits what comes back. A decrease beyond what credits paid reduces the invoiced part;
//   - within an hour, decreases come before increases (credit given back can pay that hour), meters in key order.

const HOUR_MS = 3_600_000;

export interface CreditGrant {
  id: string;
  currency: string;
  /** Whole minor units of `currency`. */
  amount: bigint;
  /** 0–100; lower burns first. */
  priority: number;
  effectiveAt: Date;
  expiresAt: Date | null;
  voidedAt: Date | null;
  /** The meters it pays for; null: every meter. */
  meters: readonly string[] | null;
}

/** The change of one (period, meter)'s usage charges over one hour, in whole minor units (may be negative). */
export interface ChargeIncrement {
  /** Start of the billing period (epoch ms). */
  period: number;
  /** Start of the hour (epoch ms, aligned). */
  hour: number;
  meter: string;
  currency: string;
  amount: bigint;
}

type EntryKind = "draw" | "give_back" | "forfeit";

export interface LedgerEntry {
  kind: EntryKind;
  grant: string;
  /** The hour it belongs to (for a forfeit: the hour it happens at, the end of the grant's last hour). */
  hour: number;
  /** Draws and give-backs: the period and meter whose charges they pay. */
  period: number | null;
  meter: string | null;
  /** Always positive. */
  amount: bigint;
}

type GrantStatus = "pending" | "active" | "expired" | "voided";

export interface GrantBalance {
  id: string;
  granted: bigint;
  /** Draws less give-backs. */
  applied: bigint;
  forfeited: bigint;
  remaining: bigint;
  status: GrantStatus;
}

export interface BurnDown {
  entries: LedgerEntry[];
  grants: Map<string, GrantBalance>;
  /** Net credits applied per period (epoch ms) and grant: the invoice's credit lines. */
  appliedByPeriod: Map<number, Map<string, bigint>>;
  asOf: number;
}

const alignDownHour = (ms: number) => Math.floor(ms / HOUR_MS) * HOUR_MS;
const alignUpHour = (ms: number) => Math.ceil(ms / HOUR_MS) * HOUR_MS;

/** When the grant stops covering: the earlier of expires_at and voided_at, or +∞. */
function coverageEnd(g: CreditGrant): number {
  const ends = [g.expiresAt, g.voidedAt].filter((d): d is Date => d !== null).map((d) => d.getTime());
  return ends.length > 0 ? Math.min(...ends) : Number.POSITIVE_INFINITY;
}

/** Whether the grant pays for charges of the hour starting at `hour`: the hour overlaps [effective_at, end). */
export function coversHour(g: CreditGrant, hour: number): boolean {
  const end = coverageEnd(g);
  return end > g.effectiveAt.getTime() && hour < end && hour + HOUR_MS > g.effectiveAt.getTime();
}

/** The instant its remainder is forfeited: the end of the last hour it covers (∞ when it never ends). */
function forfeitAt(g: CreditGrant): number {
  const end = coverageEnd(g);
  return Number.isFinite(end) ? alignUpHour(end) : end;
}

function covers(g: CreditGrant, meter: string): boolean {
  return g.meters === null || g.meters.includes(meter);
}

/** The burn order: priority, earliest expires_at (none last), earliest effective_at, id. */
export function burnOrder(a: CreditGrant, b: CreditGrant): number {
  const expiry = (g: CreditGrant) => g.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  if (a.priority !== b.priority) return a.priority - b.priority;
  if (expiry(a) !== expiry(b)) return expiry(a) < expiry(b) ? -1 : 1;
  if (a.effectiveAt.getTime() !== b.effectiveAt.getTime()) return a.effectiveAt.getTime() - b.effectiveAt.getTime();
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The grant's standing at `asOf`: not yet covering, covering, or past its last hour (expired or voided). */
export function statusAt(g: CreditGrant, asOf: number): GrantStatus {
  if (forfeitAt(g) <= asOf) {
    const voided = g.voidedAt !== null && g.voidedAt.getTime() <= (g.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY);
    return voided ? "voided" : "expired";
  }
  return asOf < alignDownHour(g.effectiveAt.getTime()) ? "pending" : "active";
}

/** Increments in ledger order: by hour, decreases before increases, then meter key. */
function incrementOrder(a: ChargeIncrement, b: ChargeIncrement): number {
  if (a.hour !== b.hour) return a.hour - b.hour;
  const sign = (x: ChargeIncrement) => (x.amount < 0n ? 0 : 1);
  if (sign(a) !== sign(b)) return sign(a) - sign(b);
  return a.meter < b.meter ? -1 : a.meter > b.meter ? 1 : a.period - b.period;
}

interface Draw {
  grant: string;
  amount: bigint;
}

/** A grant as the replay uses it: its fields as numbers, and what it has left. */
interface Live {
  grant: CreditGrant;
  id: string;
  currency: string;
  meters: ReadonlySet<string> | null;
  from: number;
  end: number;
  forfeitAt: number;
  left: bigint;
  applied: bigint;
  forfeited: bigint;
}

/**
 * The burn-down as a replay that can be resumed: increments are applied in ledger order, and a copy taken between
 * two calls (`clone`) continues exactly as the original would. The ledger keeps one after the periods no event
 * can reach any more, and replays only the open periods on each read.
 */
export class Replay {
  readonly #ordered: Live[];
  readonly #byId: Map<string, Live>;
  readonly #byForfeit: Live[];
  #next = 0;
  /** null: entries are not kept (the service needs only the sums). */
  #entries: LedgerEntry[] | null;
  #applied = new Map<number, Map<string, bigint>>();
  /** The draws of each (period, meter) that a decrease can give back, newest last. */
  #stacks = new Map<number, Map<string, Draw[]>>();
  /** The last hour applied (increments must not go back before it). */
  #hour = Number.NEGATIVE_INFINITY;

  constructor(grants: readonly CreditGrant[], opts: { entries?: boolean } = {}, from?: Replay) {
    const before = from ? from.#byId : new Map<string, Live>();
    this.#entries = (from ? from.#entries !== null : (opts.entries ?? true)) ? [] : null;
    this.#ordered = [...grants].sort(burnOrder).map((g) => ({
      grant: g,
      id: g.id,
      currency: g.currency,
      meters: g.meters === null ? null : new Set(g.meters),
      from: g.effectiveAt.getTime(),
      end: coverageEnd(g),
      forfeitAt: forfeitAt(g),
      left: before.get(g.id)?.left ?? g.amount,
      applied: before.get(g.id)?.applied ?? 0n,
      forfeited: before.get(g.id)?.forfeited ?? 0n,
    }));
    this.#byId = new Map(this.#ordered.map((g) => [g.id, g]));
    this.#byForfeit = [...this.#ordered].sort((a, b) => a.forfeitAt - b.forfeitAt);
    if (from) {
      this.#next = from.#next;
      this.#entries = from.#entries ? [...from.#entries] : null;
      this.#applied = new Map([...from.#applied].map(([p, m]) => [p, new Map(m)]));
      this.#stacks = new Map(
        [...from.#stacks].map(([p, byMeter]) => [
          p,
          new Map([...byMeter].map(([m, st]) => [m, st.map((d) => ({ ...d }))])),
        ]),
      );
      this.#hour = from.#hour;
    }
  }

  /** An independent copy of this replay's state (the grants must be the same). */
  clone(): Replay {
    return new Replay(
      this.#ordered.map((g) => g.grant),
      {},
      this,
    );
  }

  /** Forgets what could be given back to periods that started before `t` (no increment can reach them any more). */
  closePeriodsBefore(t: number): this {
    for (const p of this.#stacks.keys()) if (p < t) this.#stacks.delete(p);
    return this;
  }

  #record(e: LedgerEntry): void {
    this.#entries?.push(e);
    const g = this.#byId.get(e.grant) as Live;
    if (e.kind === "draw") g.applied += e.amount;
    else if (e.kind === "give_back") g.applied -= e.amount;
    else g.forfeited += e.amount;
  }

  /** Forfeits the remainders of the grants whose last covered hour ended at or before `t`. */
  forfeitUntil(t: number): this {
    for (; this.#next < this.#byForfeit.length && (this.#byForfeit[this.#next] as Live).forfeitAt <= t; this.#next++) {
      const g = this.#byForfeit[this.#next] as Live;
      if (g.left > 0n) {
        this.#record({
          kind: "forfeit",
          grant: g.id,
          hour: g.forfeitAt,
          period: null,
          meter: null,
          amount: g.left,
        });
        g.left = 0n;
      }
    }
    return this;
  }

  /** Applies increments (any order among themselves; zero ones are skipped), none before the last hour applied. */
  apply(increments: readonly ChargeIncrement[]): this {
    const sorted = increments.filter((i) => i.amount !== 0n).sort(incrementOrder);
    const first = sorted[0];
    if (first && first.hour < this.#hour) throw new Error("credit replay: increments must not go back in time");
    for (const inc of sorted) {
      this.forfeitUntil(inc.hour);
      this.#hour = inc.hour;
      const byMeter = this.#stacks.get(inc.period) ?? new Map<string, Draw[]>();
      this.#stacks.set(inc.period, byMeter);
      const stack = byMeter.get(inc.meter) ?? [];
      byMeter.set(inc.meter, stack);
      if (inc.amount > 0n) this.#draw(inc, stack);
      else this.#giveBack(inc, stack);
    }
    return this;
  }

  #book(period: number, grant: string, amount: bigint): void {
    const m = this.#applied.get(period) ?? new Map<string, bigint>();
    this.#applied.set(period, m);
    m.set(grant, (m.get(grant) ?? 0n) + amount);
  }

  #draw(inc: ChargeIncrement, stack: Draw[]): void {
    let due = inc.amount;
    const hourEnd = inc.hour + HOUR_MS;
    for (const g of this.#ordered) {
      if (g.left === 0n || inc.hour >= g.end || hourEnd <= g.from || g.end <= g.from) continue;
      if (g.currency !== inc.currency || (g.meters !== null && !g.meters.has(inc.meter))) continue;
      const take = g.left < due ? g.left : due;
      g.left -= take;
      due -= take;
      stack.push({ grant: g.id, amount: take });
      this.#record({
        kind: "draw",
        grant: g.id,
        hour: inc.hour,
        period: inc.period,
        meter: inc.meter,
        amount: take,
      });
      this.#book(inc.period, g.id, take);
      if (due === 0n) break;
    }
  }

  #giveBack(inc: ChargeIncrement, stack: Draw[]): void {
    let back = -inc.amount;
    while (back > 0n && stack.length > 0) {
      const top = stack[stack.length - 1] as Draw;
      const give = top.amount < back ? top.amount : back;
      top.amount -= give;
      if (top.amount === 0n) stack.pop();
      back -= give;
      this.#record({
        kind: "give_back",
        grant: top.grant,
        hour: inc.hour,
        period: inc.period,
        meter: inc.meter,
        amount: give,
      });
      this.#book(inc.period, top.grant, -give);
      const g = this.#byId.get(top.grant) as Live;
      if (g.forfeitAt <= inc.hour) {
        this.#record({ kind: "forfeit", grant: g.id, hour: inc.hour, period: null, meter: null, amount: give });
      } else {
        g.left += give;
      }
    }
  }

  /** The ledger at `asOf` (the grants' remainders forfeited up to then); the replay itself is left unchanged. */
  result(asOf: number): BurnDown {
    const at = this.clone().forfeitUntil(asOf);
    const balances = new Map<string, GrantBalance>(
      at.#ordered.map((g) => [
        g.id,
        {
          id: g.id,
          granted: g.grant.amount,
          applied: g.applied,
          forfeited: g.forfeited,
          remaining: g.left,
          status: statusAt(g.grant, asOf),
        },
      ]),
    );
    return { entries: at.#entries ?? [], grants: balances, appliedByPeriod: at.#applied, asOf };
  }
}

/** Replays the increments (any order; zero ones are skipped) against the grants, up to `asOf` (epoch ms). */
export function burnDown(
  grants: readonly CreditGrant[],
  increments: readonly ChargeIncrement[],
  asOf: number,
): BurnDown {
  return new Replay(grants).apply(increments).result(asOf);
}

/**
 * What is left to pay for `meter` at the ledger's asOf: the remaining amounts of the grants active then that cover
 * the meter and bill in `currency` (a credit_only customer is blocked on the meter when this is zero).
 */
export function coveringBalance(
  result: BurnDown,
  grants: readonly CreditGrant[],
  meter: string,
  currency: string,
): bigint {
  let total = 0n;
  for (const g of grants) {
    const b = result.grants.get(g.id);
    if (b?.status === "active" && g.currency === currency && covers(g, meter)) total += b.remaining;
  }
  return total;
}
