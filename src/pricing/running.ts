// A meter's quantity built up stretch by stretch (hour by hour) over a range, equal at every step to the figure of
// the range so far as the invoice reads it (rollups/totals.ts) — what the readers that price a period hour by hour
// need (prepaid credits, Stripe amounts). Pure. A stretch carries what its aggregation combines exactly:
//   - sum, count: the stretch's sum or count (they add up); max, min: its max or min; last: its last value (stretches
//     are joined in time order);
//   - avg: its sum, beside its event count: the quantity of a range is its own sum ÷ its own count, never an
//     average of averages;
//   - unique_count: the values seen in the range for the first time in the stretch (rollups/firstSeen.ts), so they
//     add up to the range's distinct count. A stretch's own distinct count would not.
import type { Aggregation } from "../catalog/schemas.js";
import { Dec, ZERO } from "./money.js";

/** What a stretch of a range contributes to the range's quantity (see the top of the file). */
export interface Stretch {
  value: Dec;
  /** Its events: what an avg divides by. */
  count: Dec;
}

/** Rolled-up figures of a stretch, as the rollups name them in totals (rollups/totals.ts Totals). */
type StretchFigures = Record<"sum" | "count" | "max" | "min" | "last", string>;

/**
 * The rolled-up figure each aggregation's stretches are made of (unique_count: none, its stretches are first-seen
 * counts). Readers that reduce rollup rows in SQL to this one figure take it from here.
 */
export const COMBINES_FROM: Record<Exclude<Aggregation, "unique_count">, keyof StretchFigures> = {
  sum: "sum",
  count: "count",
  max: "max",
  min: "min",
  last: "last",
  avg: "sum",
};

/** A stretch from its rolled-up figures (any aggregation but unique_count). */
export function stretchOf(
  aggregation: Aggregation,
  f: Pick<StretchFigures, "count"> & Partial<StretchFigures>,
): Stretch {
  if (aggregation === "unique_count") throw new Error("a unique_count stretch is a first-seen count (firstSeen.ts)");
  const figure = f[COMBINES_FROM[aggregation]];
  if (figure === undefined) throw new Error(`no ${COMBINES_FROM[aggregation]} figure for ${aggregation}`);
  return { value: new Dec(figure), count: new Dec(f.count) };
}

/** A unique_count stretch: `added` values seen in the range for the first time in it. */
export const firstSeenStretch = (added: number | string): Stretch => ({ value: new Dec(added), count: ZERO });

/** Two consecutive stretches (`earlier` ends where `later` starts) as one. */
export function joinStretches(aggregation: Aggregation, earlier: Stretch, later: Stretch): Stretch {
  const count = earlier.count.plus(later.count);
  switch (aggregation) {
    case "max":
      return { value: Dec.max(earlier.value, later.value), count };
    case "min":
      return { value: Dec.min(earlier.value, later.value), count };
    case "last":
      return { value: later.value, count };
    default:
      // sum, count, avg (its sum) and unique_count (first-seen counts) add up.
      return { value: earlier.value.plus(later.value), count };
  }
}

/**
 * The quantity of the stretches joined so far: the range's figure. An avg is the sum ÷ the count rounded half away
 * from zero to 9 decimal places, as the rollups round it (rollups/levels.ts AVG_OF); exact: at Dec's 100 significant
 * digits a quotient of such numbers cannot come close enough to a rounding tie to be rounded differently.
 */
export function quantityOfStretch(aggregation: Aggregation, s: Stretch): Dec {
  if (aggregation !== "avg") return s.value;
  if (s.count.isZero()) return ZERO;
  return s.value.div(s.count).toDecimalPlaces(9, Dec.ROUND_HALF_UP);
}
