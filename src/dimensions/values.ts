// Dimension values (pure): an event's value for a dimension is its property's string, or null when absent. A
// combination of values is stored once per meter under a canonical key: the JSON array of the values in the meter's
// dimension order. Every value absent (or a meter without dimensions) is set 0, which has no row.

type DimensionValues = (string | null)[];
/** `{"model": "gpt-4o", "token_type": null}`: values by dimension, as answers show them. */
export type Dimensions = Record<string, string | null>;

export const NO_DIMENSIONS = 0;

export function valuesOf(dimensions: readonly string[], properties: Readonly<Record<string, string>> | null) {
  return dimensions.map((d) => properties?.[d] ?? null);
}

/** The canonical key of a combination, or null when every value is absent (set 0). */
export function combinationKey(values: DimensionValues): string | null {
  return values.every((v) => v === null) ? null : JSON.stringify(values);
}

/** The values present, by dimension (what dimension_sets.dimensions holds). */
export function presentValues(dimensions: readonly string[], values: DimensionValues): Record<string, string> {
  const out: Record<string, string> = {};
  dimensions.forEach((d, i) => {
    const v = values[i];
    if (v !== null && v !== undefined) out[d] = v;
  });
  return out;
}

/** Byte order of dimension values with null last, as grouped answers are ordered (COLLATE "C" NULLS LAST). */
export function compareValues(a: DimensionValues, b: DimensionValues): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? null;
    const y = b[i] ?? null;
    if (x === y) continue;
    if (x === null) return 1;
    if (y === null) return -1;
    return Buffer.compare(Buffer.from(x, "utf8"), Buffer.from(y, "utf8"));
  }
  return 0;
}
