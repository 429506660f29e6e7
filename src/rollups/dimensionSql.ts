// The SQL of dimension reads (pure): which dimension sets a filter keeps, and the values a grouping reads, both
// from dimension_sets (set 0 — no dimensions, every value absent — has no row: all its values are null).

/** Per dimension, the values kept (null: the property is absent). Keys AND, values OR. */
export type DimensionFilter = Record<string, (string | null)[]>;

export interface DimensionQuery {
  /** Dimensions to group by, in order (empty: no grouping). */
  groupBy?: readonly string[] | undefined;
  filter?: DimensionFilter | undefined;
}

/** A PostgreSQL text[] literal (bound as a string, so it also inlines into COPY statements). */
export function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`).join(",")}}`;
}

/**
 * `IN (...)` over dimension_set ids that pass the filter, or "" without a filter. `meter`: its bound parameter,
 * when the read is about one meter (sets are per meter).
 */
export function filterSetsSql(
  filter: DimensionFilter | undefined,
  meter: string | undefined,
  bind: (v: unknown) => string,
): string {
  const keys = Object.keys(filter ?? {});
  if (!filter || keys.length === 0) return "";
  const conds: string[] = [];
  let nullEverywhere = true;
  for (const k of keys) {
    const wanted = filter[k] ?? [];
    const present = wanted.filter((v): v is string => v !== null);
    const takesNull = wanted.includes(null);
    if (!takesNull) nullEverywhere = false;
    const key = bind(k);
    const parts = [
      ...(present.length > 0 ? [`(d.dimensions ->> ${key}::text) = ANY (${bind(textArray(present))}::text[])`] : []),
      ...(takesNull ? [`NOT (d.dimensions ? ${key}::text)`] : []),
    ];
    conds.push(`(${parts.join(" OR ") || "false"})`);
  }
  const sets = `SELECT d.id FROM dimension_sets d WHERE ${meter ? `d.meter = ${meter} AND ` : ""}${conds.join(" AND ")}`;
  return ` IN (${sets}${nullEverywhere ? " UNION ALL SELECT 0" : ""})`;
}

/** The columns that hold a grouped row's values, in group_by order: g1, g2, ... */
export function groupColumns(groupBy: readonly string[] | undefined): string[] {
  return (groupBy ?? []).map((_, i) => `g${i + 1}`);
}

/** Select-list expressions of the grouped values (groupColumns) from a LEFT JOIN of dimension_sets `d`. */
export function groupValuesSql(groupBy: readonly string[], bind: (v: unknown) => string): string[] {
  const names = groupColumns(groupBy);
  return groupBy.map((k, i) => `d.dimensions ->> ${bind(k)}::text AS ${names[i]}`);
}
