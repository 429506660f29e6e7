// The rules of a price version, in one place (pure): which fields each model needs, tier order, no negative
// prices. Each problem carries a stable code (tier_not_ascending, missing_field, ...) and the field it is about.
import { MODELS, type Model, type PriceVersion, type Tier } from "./models.js";
import { Dec } from "./money.js";

export const MAX_PRICE_DECIMALS = 12;
export const MAX_QUANTITY_DECIMALS = 9;
export const MAX_TIERS = 100;

export interface PriceVersionInput {
  meter: string;
  effective_from: Date;
  model: Model;
  unit_price?: string | undefined;
  tiers?: { up_to: string | null; unit_price: string; flat_price?: string | undefined }[] | undefined;
  package_size?: string | undefined;
  package_price?: string | undefined;
  base_fee?: string | undefined;
}

export interface VersionProblem {
  field: string;
  code: string;
  message: string;
}

const FIELDS_OF: Record<Model, readonly (keyof PriceVersionInput)[]> = {
  per_unit: ["unit_price"],
  graduated: ["tiers"],
  volume: ["tiers"],
  package: ["package_size", "package_price"],
};
const MODEL_FIELDS: (keyof PriceVersionInput)[] = ["unit_price", "tiers", "package_size", "package_price"];

function decimals(text: string): number {
  return (text.split(".")[1] ?? "").replace(/0+$/, "").length;
}

export function checkPriceVersion(
  input: PriceVersionInput,
): { ok: true; version: PriceVersion } | { ok: false; problems: VersionProblem[] } {
  const problems: VersionProblem[] = [];
  const problem = (field: string, code: string, message: string) => problems.push({ field, code, message });
  if (!MODELS.includes(input.model)) problem("model", "unknown_model", `must be one of ${MODELS.join(", ")}`);
  const needed = FIELDS_OF[input.model] ?? [];
  for (const field of needed) {
    if (input[field] === undefined) problem(field, "missing_field", `is required for the ${input.model} model`);
  }
  for (const field of MODEL_FIELDS) {
    if (!needed.includes(field) && input[field] !== undefined) {
      problem(field, "field_not_allowed", `does not apply to the ${input.model} model`);
    }
  }
  const price = (field: string, text: string | undefined): Dec | null => {
    if (text === undefined) return null;
    const d = new Dec(text);
    if (d.isNegative()) problem(field, "negative_price", "must not be negative");
    if (decimals(text) > MAX_PRICE_DECIMALS)
      problem(field, "too_many_decimals", `has more than ${MAX_PRICE_DECIMALS} decimal places`);
    return d;
  };
  const unitPrice = price("unit_price", input.unit_price);
  const packagePrice = price("package_price", input.package_price);
  const baseFee = price("base_fee", input.base_fee);
  let packageSize: Dec | null = null;
  if (input.package_size !== undefined) {
    packageSize = new Dec(input.package_size);
    if (packageSize.lte(0)) problem("package_size", "package_size_not_positive", "must be greater than 0");
    if (decimals(input.package_size) > MAX_QUANTITY_DECIMALS)
      problem("package_size", "too_many_decimals", `has more than ${MAX_QUANTITY_DECIMALS} decimal places`);
  }

  let tiers: Tier[] | null = null;
  if (input.tiers !== undefined && needed.includes("tiers")) {
    tiers = [];
    if (input.tiers.length === 0) problem("tiers", "no_tiers", "must hold at least one tier");
    if (input.tiers.length > MAX_TIERS) problem("tiers", "too_many_tiers", `must hold at most ${MAX_TIERS} tiers`);
    let previous: Dec | null = null;
    for (const [i, t] of input.tiers.entries()) {
      const at = `tiers[${i}]`;
      const last = i === input.tiers.length - 1;
      let upTo: Dec | null = null;
      if (t.up_to === null) {
        if (!last) problem(`${at}.up_to`, "unbounded_tier_not_last", "only the last tier may have up_to null");
      } else {
        upTo = new Dec(t.up_to);
        if (upTo.lte(0)) problem(`${at}.up_to`, "tier_up_to_not_positive", "must be greater than 0");
        else if (previous && upTo.lte(previous))
          problem(`${at}.up_to`, "tier_not_ascending", `must be greater than the previous tier's up_to (${previous})`);
        if (decimals(t.up_to) > MAX_QUANTITY_DECIMALS)
          problem(`${at}.up_to`, "too_many_decimals", `has more than ${MAX_QUANTITY_DECIMALS} decimal places`);
        if (last) problem(`${at}.up_to`, "last_tier_not_unbounded", "the last tier must have up_to null (no bound)");
        previous = upTo;
      }
      tiers.push({
        upTo,
        unitPrice: price(`${at}.unit_price`, t.unit_price) as Dec,
        flatPrice: price(`${at}.flat_price`, t.flat_price) ?? new Dec(0),
      });
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    version: {
      meter: input.meter,
      effectiveFrom: input.effective_from,
      model: input.model,
      unitPrice,
      tiers,
      packageSize,
      packagePrice,
      baseFee,
    },
  };
}
