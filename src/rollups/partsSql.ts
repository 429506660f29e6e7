// The SQL of a series' parts (pure): the rollup and raw-event parts of a plan as one UNION ALL, and the grouping of
// parts into answer rows (per bucket and the keys not bound to one value, and per group of dimension values).
import { type DimensionQuery, groupColumns, groupValuesSql } from "./dimensionSql.js";
import { EVENT_FIGURES, type Granularity, LEVEL, type Level, type RollupColumn } from "./levels.js";

/** One range of one relation that the answer is assembled from. */
export interface SeriesPart {
  /** The rollup level read, or raw events. */
  source: Level | "event";
  from: Date;
  to: Date;
  /** Only inside these buckets (the dirty parents). */
  within?: { level: Level; buckets: Date[] };
  /** Leave out these buckets of the source level (dirty ones). */
  exclude: Date[];
}

const pgArray = (ds: Date[]) => `{${ds.map((d) => `"${d.toISOString()}"`).join(",")}}`;

/** What the parts of one statement share: bound parameters, the answer's bucket, the keys they carry, filters. */
export interface PartsContext {
  g: Granularity | "total" | "first";
  bind: (v: unknown) => string;
  /** A bucket expression at the answer's granularity. */
  out: (expr: string) => string;
  /** The keys a part carries, each followed by ", ". */
  carried: (alias: string) => string;
  partKeys: string[];
  filters: (alias: string) => string;
  rawMeterFilter: string;
}

const KEY_TYPES: Record<string, string> = { customer_id: "text", meter: "text", dimension_set: "integer" };

/** The parts of a series (raw events summed per hour, rollup rows) as one UNION ALL with the same columns. */
export function partsUnion(parts: SeriesPart[], figures: RollupColumn[], c: PartsContext): string {
  const { g, bind, out, carried, partKeys, filters, rawMeterFilter } = c;
  const selects = parts.map((p) => {
    const isRaw = p.source === "event";
    const col = isRaw ? "e.ts" : "v.bucket";
    const within = p.within
      ? ` JOIN unnest(${bind(pgArray(p.within.buckets))}::timestamptz[]) AS w(b) ON ${col} >= w.b AND ${col} < w.b + INTERVAL '${LEVEL[p.within.level].span}'`
      : "";
    const range = `${col} >= ${bind(p.from)}::timestamptz AND ${col} < ${bind(p.to)}::timestamptz`;
    const exclude = p.exclude.length > 0 ? ` AND ${col} <> ALL (${bind(pgArray(p.exclude))}::timestamptz[])` : "";
    if (isRaw) {
      // Events are summed per hour and dimension set here, as the hourly rollup holds them.
      return `
      SELECT ${out("date_trunc('hour', e.ts, 'UTC')")}, ${carried("e")}${figures.map((c) => EVENT_FIGURES[c].expr).join(", ")}
      FROM usage_events e${within}
      WHERE ${range}${filters("e")}${rawMeterFilter}
      GROUP BY date_trunc('hour', e.ts, 'UTC'), e.customer_id, e.meter, e.dimension_set`;
    }
    // A rollup of the answer's own level has its buckets aligned already. (Combining a finer level's rows right at
    // the scan, before the union, was tried: on a server its aggregates' cost made PostgreSQL start parallel
    // workers, and summaries took 70% longer.)
    return `
      SELECT ${p.source === g ? "v.bucket" : out("v.bucket")}, ${carried("v")}${figures.map((c) => `v.${c}`).join(", ")}
      FROM ${LEVEL[p.source as Level].table} v${within}
      WHERE ${range}${filters("v")}${exclude}`;
  });
  return selects.length > 0
    ? selects.join("\n      UNION ALL")
    : emptyPart(
        partKeys,
        figures.map((c) => EVENT_FIGURES[c].type),
      );
}

/** A part with no rows, of the given columns after the bucket and keys. */
export const emptyPart = (partKeys: string[], types: string[]) => `
      SELECT NULL::timestamptz, ${partKeys.map((k) => `NULL::${KEY_TYPES[k]}, `).join("")}
             ${types.map((t) => `NULL::${t}`).join(", ")} WHERE false`;

/**
 * Answer rows from a union of parts: grouped per bucket and the keys not bound to one value (`keys`), and when
 * grouping, per the values of the group_by dimensions (g1..gn, read from dimension_sets). `columns`: the union's
 * column names; `fixed`: the customer and meter columns of the answer; `select`: the combined columns. `first`: not
 * per bucket, its bucket the first one.
 */
export function groupParts(
  q: DimensionQuery,
  s: {
    union: string;
    columns: string;
    fixed: string;
    keys: string[];
    select: string;
    bind: (v: unknown) => string;
    first?: boolean;
  },
): string {
  const groupBy = q.groupBy ?? [];
  const bucket = s.first ? "min(bucket) AS bucket" : "bucket";
  const grouping = (keys: string[]) =>
    s.first && keys.length === 0
      ? "HAVING count(*) > 0"
      : `GROUP BY ${(s.first ? keys : ["bucket", ...keys]).join(", ")}`;
  if (groupBy.length === 0) {
    return `
    SELECT ${bucket}, ${s.fixed}, ${s.select}
    FROM (${s.union}
    ) AS parts ${s.columns}
    ${grouping(s.keys)}`;
  }
  const gs = groupColumns(groupBy);
  return `
    SELECT ${bucket}, ${s.fixed}, ${gs.join(", ")}, ${s.select}
    FROM (
      SELECT parts.*, ${groupValuesSql(groupBy, s.bind).join(", ")}
      FROM (${s.union}
      ) AS parts ${s.columns}
      LEFT JOIN dimension_sets d ON d.id = parts.dimension_set
    ) AS grouped
    ${grouping([...s.keys, ...gs])}`;
}
