// The rules of limits (pure): which limit applies, what state a value puts a (customer, meter) in, when a block
// holds, and when a customer is close enough to a threshold to be evaluated right after ingest.
import { type Dec, dec } from "../pricing/money.js";

export type LimitUnit = "quantity" | "amount";
export type LimitState = "ok" | "soft" | "blocked";

export interface Limit {
  soft: Dec | null;
  hard: Dec | null;
  unit: LimitUnit;
}

interface Evaluated {
  state: LimitState;
  /** The hard threshold the block was reached at (kept while the block holds). */
  blockedAtHard: Dec | null;
  /** Levels whose threshold the value has reached (an alert each, recorded once). */
  reached: { level: "soft" | "hard"; threshold: Dec }[];
}

/** Why a limit as given cannot be set (soft and hard both absent, or soft above hard), or undefined when it can. */
export function limitProblem(
  soft: Dec | null,
  hard: Dec | null,
): { code: string; field: string; detail: string } | undefined {
  if (soft === null && hard === null) {
    return { code: "limit_empty", field: "hard", detail: "a limit needs a soft or a hard threshold (or both)" };
  }
  if (soft !== null && hard !== null && soft.gt(hard)) {
    return {
      code: "soft_above_hard",
      field: "soft",
      detail: `the soft threshold (${soft.toFixed()}) is above the hard one (${hard.toFixed()})`,
    };
  }
  return undefined;
}

/**
 * Reaching a threshold (value ≥ threshold) counts as crossing it. A block lasts for the rest of the period,
 * even if the value falls again (a `last` meter, a correction), until the hard limit is raised above the value
 * it was reached at or removed — `previous` is the state from earlier in the same period.
 */
export function evaluate(
  value: Dec,
  limit: Limit | undefined,
  previous: { state: LimitState; blockedAtHard: Dec | null; unit: LimitUnit | null } | undefined,
): Evaluated {
  if (!limit) return { state: "ok", blockedAtHard: null, reached: [] };
  const reached: Evaluated["reached"] = [];
  if (limit.soft && value.gte(limit.soft)) reached.push({ level: "soft", threshold: limit.soft });
  if (limit.hard && value.gte(limit.hard)) reached.push({ level: "hard", threshold: limit.hard });
  const stillBlocked =
    previous?.state === "blocked" &&
    previous.unit === limit.unit &&
    limit.hard !== null &&
    previous.blockedAtHard !== null &&
    limit.hard.lte(previous.blockedAtHard);
  if (limit.hard && value.gte(limit.hard)) return { state: "blocked", blockedAtHard: limit.hard, reached };
  if (stillBlocked) return { state: "blocked", blockedAtHard: previous.blockedAtHard, reached };
  if (limit.soft && value.gte(limit.soft)) return { state: "soft", blockedAtHard: null, reached };
  return { state: "ok", blockedAtHard: null, reached };
}

/** Within 10% of a threshold not yet reached: worth evaluating right after ingest rather than on schedule. */
const NEAR_FRACTION = dec("0.9");

export function isNear(estimate: Dec, limit: Limit): boolean {
  return [limit.soft, limit.hard].some((t) => t !== null && estimate.gte(t.times(NEAR_FRACTION)));
}

/** Half of what a credit_only pair's credits had left: ingest estimated to spend that much evaluates at once. */
const CREDIT_NEAR_FRACTION = 0.5;

/**
 * Whether what was ingested since a credit_only pair's state (`added`: the growth of its quantity) may spend half of
 * the credits it had left, at the period's average price so far; with no price known yet, any usage may. Only an
 * estimate to evaluate sooner: evaluation is exact, and runs within a second of any ingest anyway.
 */
export function mayRunOut(s: { quantity: Dec; amount: Dec | null; creditBalance: Dec | null }, added: number): boolean {
  if (added <= 0) return false;
  const q = s.quantity.toNumber();
  const amount = s.amount?.toNumber() ?? 0;
  if (q <= 0 || amount <= 0) return true;
  return (amount / q) * added >= CREDIT_NEAR_FRACTION * (s.creditBalance?.toNumber() ?? 0);
}

/** An estimate of where ingest took a limited pair's value (only to decide whether to evaluate; evaluation is exact). */
export function mayBeNear(
  s: { soft: Dec | null; hard: Dec | null; unit: LimitUnit | null; quantity: Dec; amount: Dec | null },
  delta: { sum: number; count: number; max: number },
): boolean {
  const limit = { soft: s.soft, hard: s.hard, unit: s.unit as LimitUnit };
  const q = s.quantity.toNumber();
  const grown = Math.max(q + delta.sum, q + delta.count, delta.max);
  if (s.unit === "quantity") return isNear(dec(grown), limit) || isNear(s.quantity, limit);
  const amount = s.amount?.toNumber() ?? 0;
  const estimate = q > 0 ? (amount * grown) / q : grown > 0 ? Number.MAX_SAFE_INTEGER : amount;
  return isNear(dec(Number.isFinite(estimate) ? estimate : Number.MAX_SAFE_INTEGER), limit);
}
