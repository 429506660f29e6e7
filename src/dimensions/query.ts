// Dimension reads as clients ask for them (pure): `group_by=model,token_type` and `filter[model]=gpt-4o` (a key
// repeated for OR, different keys AND, an empty value for "absent"), checked against the dimensions a meter has.
import { badRequest, type FieldError } from "../errors.js";
import type { DimensionFilter } from "../rollups/dimensionSql.js";

interface DimensionRead {
  groupBy: string[];
  filter: DimensionFilter | undefined;
}

const FILTER_KEY = /^filter\[(.*)\]$/;

/**
 * Reads group_by and filter[...] from a raw query object (Express's simple parser: repeated keys are arrays).
 * `allowed`: the dimensions that may be named; `what` says whose they are, for messages.
 */
export function parseDimensionRead(
  query: Record<string, unknown>,
  allowed: readonly string[],
  what: string,
): DimensionRead {
  const errors: FieldError[] = [];
  const known = (k: string) => allowed.includes(k);
  const dims = allowed.length > 0 ? `(${allowed.join(", ")})` : "(it has none)";
  const groupBy: string[] = [];
  const raw = query.group_by;
  if (Array.isArray(raw)) errors.push({ field: "group_by", message: "give group_by once, as a comma-separated list" });
  else if (typeof raw === "string" && raw !== "") {
    for (const k of raw.split(",")) {
      if (!known(k)) errors.push({ field: "group_by", message: `"${k}" is not a dimension of ${what} ${dims}` });
      else if (groupBy.includes(k)) errors.push({ field: "group_by", message: `"${k}" is named twice` });
      else groupBy.push(k);
    }
  }
  let filter: DimensionFilter | undefined;
  for (const [key, value] of Object.entries(query)) {
    const m = FILTER_KEY.exec(key);
    if (!m) continue;
    const k = m[1] as string;
    if (!known(k)) {
      errors.push({ field: key, message: `"${k}" is not a dimension of ${what} ${dims}` });
      continue;
    }
    const values = (Array.isArray(value) ? value : [value]).map(String);
    filter ??= {};
    filter[k] = [...new Set(values)].map((v) => (v === "" ? null : v));
  }
  if (errors.length > 0) {
    throw badRequest(
      "invalid_dimensions",
      `the query string is invalid: ${errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`,
      errors,
    );
  }
  return { groupBy, filter };
}

/** The values of a grouped row as an object, keys in group_by order. */
export function dimensionsObject(groupBy: readonly string[], values: readonly (string | null)[] | undefined) {
  return Object.fromEntries(groupBy.map((k, i) => [k, values?.[i] ?? null])) as Record<string, string | null>;
}
