// Pure rules of the Stripe sync: identifiers, event timestamps, Stripe's 35-day window, and how a pair's ledger
// rows become sends — whole units with the rounding remainder carried per billing period, so the sent total stays
// within one unit of scale × Tally's total.
import { createHash } from "node:crypto";
import { Decimal } from "decimal.js";
import { Dec, formatDecimal, ZERO } from "../pricing/money.js";
import { addBuckets, alignDown } from "../rollups/buckets.js";
import type { LedgerKind, PendingFields, WorkRow } from "./types.js";

/** Stripe takes meter events up to 35 days old. */
const STRIPE_WINDOW_MS = 35 * 86_400_000;
/** Room for a send in flight (and clocks a little apart) so an event never crosses the edge on its way. */
const WINDOW_MARGIN_MS = 60_000;
/** Stripe's `payload.value`: a whole number of at most 15 significant digits. */
const MAX_UNITS = new Dec("999999999999999");

/** The oldest event timestamp a send may carry now. */
export function windowStart(now: Date): Date {
  return new Date(now.getTime() - STRIPE_WINDOW_MS + WINDOW_MARGIN_MS);
}

const unitOf = (kind: LedgerKind) => (kind === "hour" ? "hour" : "month");

/**
 * Stripe's last sendable second of a ledger bucket (an hour; for 'period' rows the customer's billing period, which
 * ends at `end`: a UTC month when not given), its one definition: the latest timestamp that still lands in the
 * bucket's Stripe period. Sends carry it when they can (as late as possible for the window), and a row can reach
 * Stripe as long as this second is inside the window. Periods end on whole hours, so a period's last sendable second
 * is its last hour's: SQL tests a 'period' row by the hour before its end.
 */
export function lastSendableSecond(kind: LedgerKind, start: Date, end = addBuckets(start, unitOf(kind), 1)): Date {
  return new Date(end.getTime() - 1000);
}

/**
 * The oldest hour and UTC month whose last sendable second is inside the window now: SQL compares hour buckets (and
 * the last hour of each period) with `hour` (a parameter), so it applies lastSendableSecond rather than restating it.
 */
export function firstSendable(now: Date): { window: Date; hour: Date; period: Date } {
  const window = windowStart(now);
  const first = (kind: LedgerKind) => {
    const start = alignDown(window, unitOf(kind));
    return lastSendableSecond(kind, start) >= window ? start : addBuckets(start, unitOf(kind), 1);
  };
  return { window, hour: first("hour"), period: first("period") };
}

/** An hour's sends carry its last second: inside the hour (so the right period), as late as possible (the window). */
export function hourTimestamp(bucket: Date): Date {
  return lastSendableSecond("hour", bucket);
}

/**
 * A running value carries the current second, kept inside its period (ending at `end`; a UTC month when not given)
 * and after the previous send, so a meter with formula `last` takes the newest value. After the period has ended,
 * corrections carry its last second.
 */
export function periodTimestamp(period: Date, now: Date, previous: Date | null, end?: Date): Date {
  const lastSecond = lastSendableSecond("period", period, end).getTime();
  let t = Math.floor(Math.min(now.getTime(), lastSecond) / 1000) * 1000;
  if (previous && t <= previous.getTime()) t = Math.min(previous.getTime() + 1000, lastSecond);
  return new Date(t);
}

/** The timestamp the row's next (or pending) send carries. */
export function sendTimestamp(
  row: Pick<WorkRow, "kind" | "bucket" | "period" | "periodEnd" | "pending" | "lastSentTimestamp">,
  now: Date,
): Date {
  if (row.pending) return row.pending.timestamp;
  return row.kind === "hour"
    ? hourTimestamp(row.bucket)
    : periodTimestamp(row.period, now, row.lastSentTimestamp, row.periodEnd);
}

export const isSendable = (timestamp: Date, now: Date): boolean => timestamp >= windowStart(now);

/**
 * The ledger tracks a billing period while it overlaps Stripe's window (from the start of the customer's period that
 * holds the window's start): older usage can never be sent, and the reconciliation shows its difference.
 */
export const isTracked = (period: { end: Date }, now: Date): boolean => period.end > windowStart(now);

/**
 * Deterministic: the same send (row, sequence number) always has the same identifier, so a retry after a timeout
 * or a crash is recognised by Stripe; the next delta of the row has the next sequence number. `install` keeps a
 * new database from reusing identifiers an earlier one sent.
 */
export function identifierFor(
  install: string,
  row: { customer: string; meter: string; kind: LedgerKind; bucket: Date },
  seq: number,
): string {
  const iso = row.bucket.toISOString();
  const hash = createHash("sha256")
    .update([install, row.customer, row.meter, row.kind, iso, String(seq)].join("\u0000"))
    .digest("hex")
    .slice(0, 40);
  const compact =
    row.kind === "hour"
      ? `${iso.slice(0, 10).replaceAll("-", "")}T${iso.slice(11, 13)}`
      : iso.slice(0, 7).replace("-", "");
  return `tly_${compact}_${seq}_${hash}`;
}

export type Planned =
  | { kind: "send"; row: WorkRow; pending: PendingFields }
  /** Nothing to send (the change rounds to no whole unit, or Stripe already has the value): covered moves on. */
  | { kind: "skip"; row: WorkRow }
  | { kind: "too_large"; row: WorkRow; units: string };

const round = (d: Dec) => d.toDecimalPlaces(0, Decimal.ROUND_HALF_UP);

/**
 * Plans the next send of each row of one pair (rows without a pending send, inside the window, not in error),
 * in bucket order. `carries` holds each period's carry (keyed by the period's ISO start) and is updated in place.
 */
export function planPair(rows: WorkRow[], carries: Map<string, Dec>, ctx: { install: string; now: Date }): Planned[] {
  const out: Planned[] = [];
  for (const row of [...rows].sort((a, b) => a.bucket.getTime() - b.bucket.getTime())) {
    const scale = new Dec(row.scale);
    let units: Dec;
    let carryAfter: Dec | undefined;
    const key = row.period.toISOString();
    if (row.kind === "hour") {
      // What this row still owes in scaled units, plus what earlier rounding of the period left over.
      const exact = scale.times(row.target).minus(new Dec(row.coveredScale).times(row.covered));
      const owed = exact.plus(carries.get(key) ?? ZERO);
      units = round(owed);
      carryAfter = owed.minus(units);
      if (units.isZero()) {
        carries.set(key, carryAfter);
        out.push({ kind: "skip", row });
        continue;
      }
    } else {
      units = round(scale.times(row.target));
      if (units.eq(row.sentUnits)) {
        out.push({ kind: "skip", row });
        continue;
      }
    }
    if (units.abs().gt(MAX_UNITS)) {
      out.push({ kind: "too_large", row, units: formatDecimal(units) });
      continue;
    }
    if (carryAfter) carries.set(key, carryAfter);
    const seq = row.seq + 1;
    out.push({
      kind: "send",
      row,
      pending: {
        identifier: identifierFor(ctx.install, row, seq),
        units: formatDecimal(units),
        target: row.target,
        scale: row.scale,
        timestamp: sendTimestamp({ ...row, pending: null }, ctx.now),
      },
    });
  }
  return out;
}

/**
 * The carry change that undoes a refused send: the send's units and its exact scaled change leave the period,
 * so Σ units + carry = Σ scale × covered still holds.
 */
export function carryRevert(row: Pick<WorkRow, "covered" | "coveredScale">, pending: PendingFields): Dec {
  const exact = new Dec(pending.scale).times(pending.target).minus(new Dec(row.coveredScale).times(row.covered));
  return new Dec(pending.units).minus(exact);
}
