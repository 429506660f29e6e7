// Period arithmetic for pricing (pure): which price version prices which part of a billing period.
// The period is split wherever a subscription starts or ends and wherever a price version takes effect; each
// segment is priced on its own by the version in effect at its start, tiers counting from zero in each
// segment (Stripe's behaviour for a price change inside a period).
import type { PriceVersion } from "./models.js";
import type { Dec } from "./money.js";
import {
  billedPart,
  type Proration,
  type ProrationMode,
  prorationOf,
  type QuantityChange,
  quantitySegments,
} from "./proration.js";

export interface Period {
  start: Date;
  end: Date;
}

export interface SubscriptionSpan {
  plan: string;
  start: Date;
  /** null: open-ended. */
  end: Date | null;
  /** How fees treat the change into this subscription (default prorate). */
  proration?: ProrationMode | undefined;
  /** How fees treat its end: a cancellation's, or the next subscription's (default prorate). */
  endProration?: ProrationMode | undefined;
  /** Until then usage is priced 0 and fees are not charged (a trial). */
  trialEnd?: Date | null | undefined;
  /** The quantities of fixed charges, each effective from its instant (those before `start` give the first). */
  quantities?: readonly QuantityChange[] | undefined;
}

/** One effective-dated version of a plan's fixed charge (seats, licences): a unit price per period. */
export interface FixedChargeVersion {
  key: string;
  name: string;
  unitPrice: Dec;
  effectiveFrom: Date;
}

export interface PlanPrices {
  key: string;
  name: string;
  currency: string;
  /** Every version of every meter's price, in any order. */
  versions: PriceVersion[];
  /** Every version of every fixed charge, in any order. */
  fixedCharges?: FixedChargeVersion[];
}

export interface Segment {
  plan: string;
  meter: string;
  version: PriceVersion;
  start: Date;
  end: Date;
  /** Before the subscription's trial_end: its usage is priced 0. */
  trial?: boolean;
}

export interface BaseFee {
  kind: "base_fee";
  plan: string;
  meter: string;
  version: PriceVersion;
  /** The part of the period the fee is billed for. */
  start: Date;
  end: Date;
  /** null: the whole period (the full fee). */
  proration: Proration | null;
}

/** One (fixed charge, quantity segment) of a period. */
export interface FixedFee {
  kind: "fixed";
  plan: string;
  charge: string;
  name: string;
  unitPrice: Dec;
  quantity: Dec;
  start: Date;
  end: Date;
  proration: Proration | null;
}

export type Fee = BaseFee | FixedFee;

/** The version in effect at t: the greatest effective_from ≤ t. `versions` ascending by effective_from. */
function versionAt<V extends { effectiveFrom: Date }>(versions: readonly V[], t: Date): V | undefined {
  let found: V | undefined;
  for (const v of versions) {
    if (v.effectiveFrom <= t) found = v;
    else break;
  }
  return found;
}

const later = (a: Date, b: Date) => (a > b ? a : b);
const earlier = (a: Date, b: Date) => (a < b ? a : b);

/** Versions grouped by a key (meter, charge), each group ascending by effective_from. */
function grouped<V extends { effectiveFrom: Date }>(versions: readonly V[], keyOf: (v: V) => string): Map<string, V[]> {
  const out = new Map<string, V[]>();
  for (const v of versions) {
    const list = out.get(keyOf(v)) ?? [];
    list.push(v);
    out.set(keyOf(v), list);
  }
  for (const list of out.values()) list.sort((a, b) => a.effectiveFrom.getTime() - b.effectiveFrom.getTime());
  return out;
}

/**
 * Splits a period into priced segments and fees. A part of a subscription before its plan's first version of a
 * meter's price is not priced; usage before a trial's end is priced 0 (its segments say `trial`). Base fees and
 * fixed charges are billed for the part billedPart says (prorated by hours unless told otherwise), each by the
 * version in effect at the later of the period's start and the subscription's start; a fixed charge gives one fee
 * per segment of constant quantity.
 */
export function planPeriod(
  period: Period,
  subscriptions: SubscriptionSpan[],
  plans: ReadonlyMap<string, PlanPrices>,
): { segments: Segment[]; fees: Fee[] } {
  const segments: Segment[] = [];
  const fees: Fee[] = [];
  const ordered = [...subscriptions].sort((a, b) => a.start.getTime() - b.start.getTime());
  for (const sub of ordered) {
    const start = later(sub.start, period.start);
    const end = sub.end ? earlier(sub.end, period.end) : period.end;
    if (start >= end) continue;
    const plan = plans.get(sub.plan);
    if (!plan) continue;
    const follows = ordered.some((o) => o !== sub && o.end?.getTime() === sub.start.getTime());
    const billed = billedPart(period, { ...sub, follows });
    const trialEnd = sub.trialEnd && sub.trialEnd > start ? earlier(sub.trialEnd, end) : null;
    for (const [meter, versions] of grouped(plan.versions, (v) => v.meter)) {
      const changes = versions.map((v) => v.effectiveFrom);
      const cuts = [start, ...[...changes, ...(trialEnd ? [trialEnd] : [])].filter((t) => t > start && t < end), end]
        .sort((a, b) => a.getTime() - b.getTime())
        .filter((t, i, all) => i === 0 || t.getTime() !== (all[i - 1] as Date).getTime());
      for (let i = 0; i + 1 < cuts.length; i++) {
        const from = cuts[i] as Date;
        const version = versionAt(versions, from);
        const trial = trialEnd !== null && from < trialEnd;
        const segment = { plan: plan.key, meter, version, start: from, end: cuts[i + 1] as Date };
        if (version) segments.push(trial ? { ...segment, version, trial } : { ...segment, version });
      }
      const atStart = versionAt(versions, start);
      if (billed && atStart?.baseFee && !atStart.baseFee.isZero()) {
        const proration = prorationOf(billed, period);
        fees.push({ kind: "base_fee", plan: plan.key, meter, version: atStart, ...billed, proration });
      }
    }
    if (billed) fees.push(...fixedFees(period, plan, sub, start, billed));
  }
  return { segments, fees };
}

/** The fixed-charge fees of one subscription's billed part: one per (charge, segment of constant quantity). */
function fixedFees(period: Period, plan: PlanPrices, sub: SubscriptionSpan, start: Date, billed: Period): FixedFee[] {
  const out: FixedFee[] = [];
  for (const [charge, versions] of grouped(plan.fixedCharges ?? [], (v) => v.key)) {
    const version = versionAt(versions, start);
    if (!version) continue;
    const changes = (sub.quantities ?? []).filter((q) => q.charge === charge);
    for (const q of quantitySegments(billed, changes)) {
      out.push({
        kind: "fixed",
        plan: plan.key,
        charge,
        name: version.name,
        unitPrice: version.unitPrice,
        quantity: q.quantity,
        start: q.start,
        end: q.end,
        proration: prorationOf(q, period),
      });
    }
  }
  return out;
}
