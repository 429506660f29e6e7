// The webhook event of a reached limit threshold (limit.soft_reached / limit.hard_reached), as docs/limits-and-
// entitlements.md documents it.
import type { Dec } from "../pricing/money.js";
import type { LimitState, LimitUnit } from "./rules.js";

interface ReachedLimit {
  customer: string;
  meter: string;
  level: "soft" | "hard";
  threshold: Dec;
  unit: LimitUnit | undefined;
  value: Dec;
  /** Money limits only. */
  currency: string | null;
  /** The customer's billing period the alert belongs to. */
  period: { start: Date; end: Date };
  state: LimitState;
  triggeredAt: Date;
}

export function limitReachedEvent(id: string, now: Date, r: ReachedLimit): string {
  return JSON.stringify({
    id,
    type: r.level === "hard" ? "limit.hard_reached" : "limit.soft_reached",
    created_at: now.toISOString(),
    data: {
      customer: r.customer,
      meter: r.meter,
      level: r.level,
      threshold: r.threshold.toFixed(),
      unit: r.unit,
      value: r.value.toFixed(),
      currency: r.currency ?? undefined,
      period: { start: r.period.start.toISOString(), end: r.period.end.toISOString() },
      period_start: r.period.start.toISOString(),
      period_end: r.period.end.toISOString(),
      state: r.state,
      triggered_at: r.triggeredAt.toISOString(),
    },
  });
}
