// The price models, one pure function each: a quantity in, the priced lines out (amounts not yet rounded).
// Tiers are inclusive of their `up_to` (Stripe's convention): with up_to 10,000 the 10,000th unit is in tier 1.
import { type Dec, ZERO } from "./money.js";

export type Model = "per_unit" | "graduated" | "volume" | "package";
export const MODELS: readonly Model[] = ["per_unit", "graduated", "volume", "package"];

export interface Tier {
  /** Upper bound, inclusive; null: no bound (the last tier). */
  upTo: Dec | null;
  unitPrice: Dec;
  flatPrice: Dec;
}

/** How a quantity is priced: a model and the fields it needs. */
export interface PriceSpec {
  model: Model;
  unitPrice: Dec | null;
  tiers: Tier[] | null;
  packageSize: Dec | null;
  packagePrice: Dec | null;
}

/** A per-dimension price: combinations whose values fit `match` (null: the property is absent) use `spec`. */
export interface PriceOverride {
  match: Record<string, string | null>;
  spec: PriceSpec;
}

/** One version of a meter's price in a plan. */
export interface PriceVersion extends PriceSpec {
  meter: string;
  effectiveFrom: Date;
  baseFee: Dec | null;
  /** Dimensions each combination of which is priced on its own (its own quantity, tiers and lines). */
  groupBy?: string[] | null;
  /** The first override whose match fits a group prices it; otherwise the version's own spec does. */
  overrides?: PriceOverride[] | null;
}

/** The spec that prices a group with these values: the first fitting override, else the version itself. */
export function specFor(version: PriceVersion, dimensions: Readonly<Record<string, string | null>>): PriceVersion {
  const fits = (o: PriceOverride) => Object.entries(o.match).every(([k, v]) => (dimensions[k] ?? null) === v);
  const override = version.overrides?.find(fits);
  return override ? { ...version, ...override.spec } : version;
}

/** A priced part of a segment: the whole segment, or one graduated tier of it. */
export interface RatedLine {
  quantity: Dec;
  amount: Dec;
  /** 1-based tier number (graduated and volume). */
  tier?: number;
  unitPrice?: Dec;
  flatPrice?: Dec;
  packages?: Dec;
}

function ratePerUnit(quantity: Dec, unitPrice: Dec): RatedLine[] {
  return [{ quantity, amount: quantity.times(unitPrice), unitPrice }];
}

/** Each tier prices the units that fall inside it; its flat price is charged once at least one unit does. */
function rateGraduated(quantity: Dec, tiers: Tier[]): RatedLine[] {
  const lines: RatedLine[] = [];
  let floor = ZERO;
  for (const [i, tier] of tiers.entries()) {
    if (quantity.lte(floor)) break;
    const ceiling = tier.upTo === null || quantity.lt(tier.upTo) ? quantity : tier.upTo;
    const units = ceiling.minus(floor);
    lines.push({
      quantity: units,
      amount: units.times(tier.unitPrice).plus(tier.flatPrice),
      tier: i + 1,
      unitPrice: tier.unitPrice,
      flatPrice: tier.flatPrice,
    });
    if (tier.upTo === null) break;
    floor = tier.upTo;
  }
  return lines;
}

/** The one tier that contains the total prices every unit, plus its flat price. No usage, no charge. */
function rateVolume(quantity: Dec, tiers: Tier[]): RatedLine[] {
  if (quantity.lte(0)) return [{ quantity: ZERO, amount: ZERO }];
  const index = tiers.findIndex((t) => t.upTo === null || quantity.lte(t.upTo));
  const tier = tiers[index] as Tier;
  return [
    {
      quantity,
      amount: quantity.times(tier.unitPrice).plus(tier.flatPrice),
      tier: index + 1,
      unitPrice: tier.unitPrice,
      flatPrice: tier.flatPrice,
    },
  ];
}

/** Whole packages: ceil(quantity / size) × package price. */
function ratePackage(quantity: Dec, size: Dec, price: Dec): RatedLine[] {
  if (quantity.lte(0)) return [{ quantity: ZERO, amount: ZERO, packages: ZERO }];
  const whole = quantity.dividedToIntegerBy(size);
  const packages = whole.times(size).eq(quantity) ? whole : whole.plus(1);
  return [{ quantity, amount: packages.times(price), packages, unitPrice: price }];
}

/**
 * Prices one segment's quantity with one version. A negative quantity (more corrections than usage) bills
 * nothing, as on Stripe.
 */
export function rate(version: PriceVersion, quantity: Dec): RatedLine[] {
  const q = quantity.isNegative() ? ZERO : quantity;
  switch (version.model) {
    case "per_unit":
      return ratePerUnit(q, version.unitPrice as Dec);
    case "graduated":
      return rateGraduated(q, version.tiers as Tier[]);
    case "volume":
      return rateVolume(q, version.tiers as Tier[]);
    case "package":
      return ratePackage(q, version.packageSize as Dec, version.packagePrice as Dec);
  }
}

/** The tier that prices the next unit after `quantity`, and how many units remain before the next tier. */
export function nextUnitTier(quantity: Dec, tiers: Tier[]): { index: number; tier: Tier; unitsToNextTier: Dec | null } {
  const q = quantity.isNegative() ? ZERO : quantity;
  const index = tiers.findIndex((t) => t.upTo === null || q.lt(t.upTo));
  const tier = tiers[index] as Tier;
  return { index: index + 1, tier, unitsToNextTier: tier.upTo === null ? null : tier.upTo.minus(q) };
}
