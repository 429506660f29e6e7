// Period arithmetic for pricing (pure): which price version prices which part of a billing period.
// The period is split wherever a subscription starts or ends and wherever a price version takes effect; each
// segment is priced on its own by the version in effect at its start, tiers counting from zero in each
// segment (Stripe's behaviour for a price change inside a period).
import type { PriceVersion } from "./models.js";

export interface Period {
  start: Date;
  end: Date;
}

export interface SubscriptionSpan {
  plan: string;
  start: Date;
  /** null: open-ended. */
  end: Date | null;
}

export interface PlanPrices {
  key: string;
  name: string;
  currency: string;
  /** Every version of every meter's price, in any order. */
  versions: PriceVersion[];
}

export interface Segment {
  plan: string;
  meter: string;
  version: PriceVersion;
  start: Date;
  end: Date;
}

export interface BaseFee {
  plan: string;
  meter: string;
  version: PriceVersion;
  /** The part of the period the subscription covers. */
  start: Date;
  end: Date;
}

/** The version in effect at t: the greatest effective_from ≤ t. `versions` ascending by effective_from. */
function versionAt(versions: PriceVersion[], t: Date): PriceVersion | undefined {
  let found: PriceVersion | undefined;
  for (const v of versions) {
    if (v.effectiveFrom <= t) found = v;
    else break;
  }
  return found;
}

const later = (a: Date, b: Date) => (a > b ? a : b);
const earlier = (a: Date, b: Date) => (a < b ? a : b);

/** Versions grouped by meter, each group ascending by effective_from. */
function byMeter(versions: PriceVersion[]): Map<string, PriceVersion[]> {
  const out = new Map<string, PriceVersion[]>();
  for (const v of versions) {
    const list = out.get(v.meter) ?? [];
    list.push(v);
    out.set(v.meter, list);
  }
  for (const list of out.values()) list.sort((a, b) => a.effectiveFrom.getTime() - b.effectiveFrom.getTime());
  return out;
}

/**
 * Splits a period into priced segments and base fees. A part of a subscription before its plan's first version
 * of a meter's price is not priced. The base fee of each subscription in the period is charged once, by the
 * version in effect at the later of the period's start and the subscription's start (no proration).
 */
export function planPeriod(
  period: Period,
  subscriptions: SubscriptionSpan[],
  plans: ReadonlyMap<string, PlanPrices>,
): { segments: Segment[]; baseFees: BaseFee[] } {
  const segments: Segment[] = [];
  const baseFees: BaseFee[] = [];
  const ordered = [...subscriptions].sort((a, b) => a.start.getTime() - b.start.getTime());
  for (const sub of ordered) {
    const start = later(sub.start, period.start);
    const end = sub.end ? earlier(sub.end, period.end) : period.end;
    if (start >= end) continue;
    const plan = plans.get(sub.plan);
    if (!plan) continue;
    for (const [meter, versions] of byMeter(plan.versions)) {
      const cuts = [start, ...versions.map((v) => v.effectiveFrom).filter((t) => t > start && t < end), end];
      for (let i = 0; i + 1 < cuts.length; i++) {
        const from = cuts[i] as Date;
        const version = versionAt(versions, from);
        if (version) segments.push({ plan: plan.key, meter, version, start: from, end: cuts[i + 1] as Date });
      }
      const atStart = versionAt(versions, start);
      if (atStart?.baseFee && !atStart.baseFee.isZero()) {
        baseFees.push({ plan: plan.key, meter, version: atStart, start, end });
      }
    }
  }
  return { segments, baseFees };
}
