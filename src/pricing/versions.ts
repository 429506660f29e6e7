// The rules of a price version, in one place (pure): which fields each model needs, tier order, no negative
// prices, and for per-dimension prices: overrides only with group_by, matching only grouped dimensions. Each problem
// carries a stable code (tier_not_ascending, missing_field, ...) and the field it is about.
import { MODELS, type Model, type PriceOverride, type PriceSpec, type PriceVersion, type Tier } from "./models.js";
import { Dec } from "./money.js";

const MAX_PRICE_DECIMALS = 12;
const MAX_QUANTITY_DECIMALS = 9;
const MAX_TIERS = 100;
const MAX_OVERRIDES = 100;

interface SpecInput {
  model: Model;
  unit_price?: string | undefined;
  tiers?: { up_to: string | null; unit_price: string; flat_price?: string | undefined }[] | undefined;
  package_size?: string | undefined;
  package_price?: string | undefined;
}

export interface OverrideInput extends SpecInput {
  match: Record<string, string | null>;
}

export interface PriceVersionInput extends SpecInput {
  meter: string;
  effective_from: Date;
  base_fee?: string | undefined;
  group_by?: string[] | undefined;
  overrides?: OverrideInput[] | undefined;
}

interface VersionProblem {
  field: string;
  code: string;
  message: string;
}

type Problem = (field: string, code: string, message: string) => void;

const FIELDS_OF: Record<Model, readonly (keyof SpecInput)[]> = {
  per_unit: ["unit_price"],
  graduated: ["tiers"],
  volume: ["tiers"],
  package: ["package_size", "package_price"],
};
const MODEL_FIELDS: (keyof SpecInput)[] = ["unit_price", "tiers", "package_size", "package_price"];

function decimals(text: string): number {
  return (text.split(".")[1] ?? "").replace(/0+$/, "").length;
}

function checkPrice(problem: Problem, field: string, text: string | undefined): Dec | null {
  if (text === undefined) return null;
  const d = new Dec(text);
  if (d.isNegative()) problem(field, "negative_price", "must not be negative");
  if (decimals(text) > MAX_PRICE_DECIMALS)
    problem(field, "too_many_decimals", `has more than ${MAX_PRICE_DECIMALS} decimal places`);
  return d;
}

/** A model and its fields (a version's own, or an override's); `at` prefixes the fields ("overrides[0]."). */
function checkSpec(input: SpecInput, at: string, problem: Problem): PriceSpec {
  if (!MODELS.includes(input.model)) problem(`${at}model`, "unknown_model", `must be one of ${MODELS.join(", ")}`);
  const needed = FIELDS_OF[input.model] ?? [];
  for (const field of needed) {
    if (input[field] === undefined)
      problem(`${at}${field}`, "missing_field", `is required for the ${input.model} model`);
  }
  for (const field of MODEL_FIELDS) {
    if (!needed.includes(field) && input[field] !== undefined) {
      problem(`${at}${field}`, "field_not_allowed", `does not apply to the ${input.model} model`);
    }
  }
  const unitPrice = checkPrice(problem, `${at}unit_price`, input.unit_price);
  const packagePrice = checkPrice(problem, `${at}package_price`, input.package_price);
  let packageSize: Dec | null = null;
  if (input.package_size !== undefined) {
    packageSize = new Dec(input.package_size);
    if (packageSize.lte(0)) problem(`${at}package_size`, "package_size_not_positive", "must be greater than 0");
    if (decimals(input.package_size) > MAX_QUANTITY_DECIMALS)
      problem(`${at}package_size`, "too_many_decimals", `has more than ${MAX_QUANTITY_DECIMALS} decimal places`);
  }

  let tiers: Tier[] | null = null;
  if (input.tiers !== undefined && needed.includes("tiers")) {
    tiers = [];
    if (input.tiers.length === 0) problem(`${at}tiers`, "no_tiers", "must hold at least one tier");
    if (input.tiers.length > MAX_TIERS) problem(`${at}tiers`, "too_many_tiers", `must hold at most ${MAX_TIERS} tiers`);
    let previous: Dec | null = null;
    for (const [i, t] of input.tiers.entries()) {
      const tierAt = `${at}tiers[${i}]`;
      const last = i === input.tiers.length - 1;
      let upTo: Dec | null = null;
      if (t.up_to === null) {
        if (!last) problem(`${tierAt}.up_to`, "unbounded_tier_not_last", "only the last tier may have up_to null");
      } else {
        upTo = new Dec(t.up_to);
        if (upTo.lte(0)) problem(`${tierAt}.up_to`, "tier_up_to_not_positive", "must be greater than 0");
        else if (previous && upTo.lte(previous))
          problem(
            `${tierAt}.up_to`,
            "tier_not_ascending",
            `must be greater than the previous tier's up_to (${previous})`,
          );
        if (decimals(t.up_to) > MAX_QUANTITY_DECIMALS)
          problem(`${tierAt}.up_to`, "too_many_decimals", `has more than ${MAX_QUANTITY_DECIMALS} decimal places`);
        if (last)
          problem(`${tierAt}.up_to`, "last_tier_not_unbounded", "the last tier must have up_to null (no bound)");
        previous = upTo;
      }
      tiers.push({
        upTo,
        unitPrice: checkPrice(problem, `${tierAt}.unit_price`, t.unit_price) as Dec,
        flatPrice: checkPrice(problem, `${tierAt}.flat_price`, t.flat_price) ?? new Dec(0),
      });
    }
  }
  return { model: input.model, unitPrice, tiers, packageSize, packagePrice };
}

/** group_by without repeats; overrides only with group_by, matching only its dimensions. */
function checkGroups(input: PriceVersionInput, problem: Problem): PriceOverride[] | null {
  const groupBy = input.group_by;
  if (groupBy !== undefined) {
    if (groupBy.length === 0)
      problem("group_by", "empty_group_by", "must name at least one dimension (or be left out)");
    groupBy.forEach((k, i) => {
      if (groupBy.indexOf(k) !== i) problem(`group_by[${i}]`, "repeated_dimension", `"${k}" is named twice`);
    });
  }
  const overrides = input.overrides;
  if (overrides === undefined) return null;
  if (!groupBy || groupBy.length === 0) {
    problem("overrides", "overrides_without_group_by", "overrides price groups: name the dimensions in group_by");
  }
  if (overrides.length > MAX_OVERRIDES)
    problem("overrides", "too_many_overrides", `must hold at most ${MAX_OVERRIDES} overrides`);
  return overrides.map((o, i) => {
    const at = `overrides[${i}].`;
    if (Object.keys(o.match).length === 0) problem(`${at}match`, "empty_match", "must name at least one dimension");
    for (const k of Object.keys(o.match)) {
      if (groupBy && !groupBy.includes(k)) {
        problem(`${at}match.${k}`, "match_not_grouped", `"${k}" is not in group_by (${groupBy.join(", ")})`);
      }
    }
    return { match: o.match, spec: checkSpec(o, at, problem) };
  });
}

export function checkPriceVersion(
  input: PriceVersionInput,
): { ok: true; version: PriceVersion } | { ok: false; problems: VersionProblem[] } {
  const problems: VersionProblem[] = [];
  const problem: Problem = (field, code, message) => problems.push({ field, code, message });
  const spec = checkSpec(input, "", problem);
  const baseFee = checkPrice(problem, "base_fee", input.base_fee);
  const overrides = checkGroups(input, problem);
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    version: {
      meter: input.meter,
      effectiveFrom: input.effective_from,
      ...spec,
      baseFee,
      ...(input.group_by ? { groupBy: input.group_by } : {}),
      ...(overrides ? { overrides } : {}),
    },
  };
}
