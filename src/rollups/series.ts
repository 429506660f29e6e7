// Exact usage per bucket, read from the materialized rollups (usage_*_mat, the same relations on both engines)
// wherever they are known to be complete, and assembled from the level below everywhere else:
//   - a bucket is served by its level's rollup when it lies below that level's watermark (materialized by the
//     refresh job) and holds no dirty hour (an hour marked by ingest since the last refresh);
//   - otherwise it is built from the level below — days of such a month, hours of such a day — and, for hours
//     not yet materialized or dirty, from raw events.
// So an acknowledged event counts at once (late ones included), a read touches raw events only for the current
// hour and the few dirty ones, and the work is bounded by the number of buckets.
//
// The watermarks and dirty hours are read first (readState), and the plan is made from them in TypeScript, so
// the statement holds only the ranges that are not empty, as constants: PostgreSQL and TimescaleDB exclude
// partitions and chunks when planning, which is most of the cost of a small read. Reading the state first is
// safe: a watermark read earlier is lower (the read only takes more from below), an hour clean when the state
// was read stays complete in its rollup, and every event acknowledged before the read began was marked before it.

import type { Aggregation } from "../catalog/schemas.js";
import { staleHoursSql } from "../changes/hours.js";
import { jsonRows } from "../db/jsonRows.js";
import type { Queryable } from "../db/types.js";
import { addBuckets, alignDown } from "./buckets.js";
import { type DimensionQuery, filterSetsSql, groupColumns } from "./dimensionSql.js";
import { type DistinctMeter, distinctSource, distinctUnion, planDistinct } from "./distinctSql.js";
import {
  COMBINED_COLUMNS,
  FIGURE_COLUMNS,
  figureColumns,
  type Granularity,
  LEVEL,
  type Level,
  ROLLUP_COLUMN_LIST,
  selectColumns,
} from "./levels.js";
import { groupParts, type PartsContext, partsUnion, type SeriesPart } from "./partsSql.js";

export type { Granularity } from "./levels.js";
export type { SeriesPart } from "./partsSql.js";

export interface SeriesQuery extends DimensionQuery {
  granularity: Granularity;
  /** Inclusive, aligned to the granularity. */
  from: Date;
  /** Exclusive, aligned to the granularity. */
  to: Date;
  customer?: string | undefined;
  meter?: string | undefined;
}

interface SeriesRow {
  bucket: Date;
  customer_id: string;
  meter: string;
  value_sum: string;
  event_count: string;
  value_max: string;
  value_min: string;
  /** sum ÷ count, rounded half away from zero to 9 decimal places (levels.ts AVG_OF). */
  value_avg: string;
  last_value: string;
  last_key: string;
  last_at: Date;
  /** The number of distinct values of a unique_count meter's property in the bucket; null for other meters. */
  distinct_count: string | null;
  /** Grouped reads: the values of the group_by dimensions, in order (null: absent). */
  dimension_values?: (string | null)[];
}

/** A row of a series read for one figure (runSeriesFigures): the meter's aggregation and the event count. */
interface FigureRow {
  bucket: Date;
  customer_id: string;
  meter: string;
  value: string;
  event_count: string;
  dimension_values?: (string | null)[];
}

/** What the rollups hold: below each level's watermark (null: nothing yet) they are complete but for dirty hours. */
export interface RollupState {
  watermarks: Record<Level, Date | null>;
  /** Hours below the hourly watermark with events not yet refreshed into the rollups, ascending. */
  dirty: Date[];
  /** The unique_count meters (their distinct counts are read from usage_distinct and raw events, not rollups). */
  distinct?: DistinctMeter[];
}

/** Below each level's watermark the rollups are complete (but for dirty hours); null: nothing materialized yet. */
export async function readWatermarks(db: Queryable): Promise<RollupState["watermarks"]> {
  const { rows } = await db.query<{ level: Level; watermark: Date }>(
    "SELECT level, watermark FROM rollup_watermarks WHERE watermark <> '-infinity'",
    [],
  );
  const wm: RollupState["watermarks"] = { hour: null, day: null, month: null };
  for (const r of rows) wm[r.level] = r.watermark;
  return wm;
}

export async function readState(db: Queryable, from: Date, to: Date): Promise<RollupState> {
  const { rows } = await db.query<{
    hour: Date | null;
    day: Date | null;
    month: Date | null;
    dirty: Date[];
    distinct_meters: string[];
    distinct_properties: string[];
  }>(
    `WITH wm AS (
       SELECT max(watermark) FILTER (WHERE level = 'hour') AS hour,
              max(watermark) FILTER (WHERE level = 'day') AS day,
              max(watermark) FILTER (WHERE level = 'month') AS month
       FROM rollup_watermarks
     )
     SELECT nullif(wm.hour, '-infinity') AS hour, nullif(wm.day, '-infinity') AS day,
            nullif(wm.month, '-infinity') AS month,
            ARRAY(${staleHoursSql("$1", "LEAST($2, wm.hour)")} ORDER BY 1) AS dirty,
            ARRAY(SELECT key FROM meters WHERE aggregation = 'unique_count' ORDER BY key) AS distinct_meters,
            ARRAY(SELECT unique_property FROM meters WHERE aggregation = 'unique_count' ORDER BY key)
              AS distinct_properties
     FROM wm`,
    [from, to],
  );
  const r = rows[0];
  return {
    watermarks: { hour: r?.hour ?? null, day: r?.day ?? null, month: r?.month ?? null },
    dirty: (r?.dirty ?? []).map((d) => new Date(d)),
    distinct: (r?.distinct_meters ?? []).map((meter, i) => ({ meter, property: r?.distinct_properties[i] ?? "" })),
  };
}

const maxDate = (a: Date, b: Date | null) => (b !== null && b > a ? b : a);
const minDate = (...ds: Date[]) => ds.reduce((a, b) => (b < a ? b : a));

function distinctAligned(hours: Date[], level: Level): Date[] {
  return [...new Set(hours.map((h) => alignDown(h, level).getTime()))].map((t) => new Date(t));
}

/** Which ranges of which relations answer [from, to) at granularity g. Pure. */
export function planSeries(g: Granularity, from: Date, to: Date, state: RollupState): SeriesPart[] {
  const wm = state.watermarks;
  const dirtyAt = (level: Level) => distinctAligned(state.dirty, level);
  const parts: SeriesPart[] = [];
  const add = (p: SeriesPart) => {
    if (p.from < p.to) parts.push(p);
  };
  // The series' own level: clean buckets below its watermark.
  const own = wm[g];
  if (own) add({ source: g, from, to: minDate(to, own), exclude: dirtyAt(g) });
  // Each level below fills in for the buckets of its parent that the parent's rollup cannot serve: those at or
  // above the parent's watermark, and the dirty ones below it.
  let parent: Level = g;
  for (let level = LEVEL[g].below; level; parent = level, level = LEVEL[level].below) {
    const levelWm = wm[level];
    const parentWm = wm[parent];
    if (!levelWm) continue;
    const upTo = minDate(to, levelWm);
    add({ source: level, from: maxDate(from, parentWm), to: upTo, exclude: dirtyAt(level) });
    const dirtyParents = parentWm ? dirtyAt(parent).filter((p) => p < parentWm) : [];
    const first = dirtyParents[0];
    const last = dirtyParents.at(-1);
    if (parentWm && first && last) {
      add({
        source: level,
        from: maxDate(from, first),
        to: minDate(upTo, parentWm, addBuckets(last, parent, 1)),
        within: { level: parent, buckets: dirtyParents },
        exclude: dirtyAt(level),
      });
    }
  }
  // Raw events: at and above the hourly watermark, and in dirty hours below it.
  add({ source: "event", from: maxDate(from, wm.hour), to, exclude: [] });
  const first = state.dirty[0];
  const last = state.dirty.at(-1);
  if (first && last) {
    add({
      source: "event",
      from: maxDate(from, first),
      to: minDate(to, addBuckets(last, "hour", 1)),
      within: { level: "hour", buckets: state.dirty },
      exclude: [],
    });
  }
  return parts;
}

/**
 * Which ranges of which relations hold [from, to) for a total over it (any instants, not only bucket
 * boundaries): whole months, days and hours from the coarsest rollup that fits, partial hours at either end from
 * raw events. Pure.
 */
export function planCover(from: Date, to: Date, state: RollupState): SeriesPart[] {
  const parts: SeriesPart[] = [];
  const raw = (a: Date, b: Date) => {
    if (a < b) parts.push({ source: "event", from: a, to: b, exclude: [] });
  };
  const firstHour = alignDown(from, "hour") < from ? addBuckets(alignDown(from, "hour"), "hour", 1) : from;
  const lastHour = alignDown(to, "hour");
  if (firstHour >= lastHour) {
    raw(from, to);
    return parts;
  }
  raw(from, firstHour);
  let t = firstHour;
  while (t < lastHour) {
    let level: Level = "hour";
    let end = minDate(lastHour, addBuckets(alignDown(t, "day"), "day", 1));
    for (const candidate of ["month", "day"] as const) {
      const fits = alignDown(t, candidate).getTime() === t.getTime() && addBuckets(t, candidate, 1) <= lastHour;
      if (fits) {
        level = candidate;
        end =
          candidate === "month"
            ? alignDown(lastHour, "month")
            : minDate(alignDown(lastHour, "day"), addBuckets(alignDown(t, "month"), "month", 1));
        break;
      }
    }
    parts.push(...planSeries(level, t, end, state));
    t = end;
  }
  raw(lastHour, to);
  return parts;
}

/** A series statement: its rows unordered, and the ORDER BY list (on its own column names) of a series' order. */
interface SeriesSql {
  text: string;
  params: unknown[];
  /** customer, meter, bucket, then the group values byte-wise with absent last. Whoever reads the rows applies it. */
  orderBy: string;
}

/** What a series statement reads of the parts of a plan. */
interface SeriesSqlQuery extends DimensionQuery {
  granularity: Granularity | "total" | "first";
  customer?: string | undefined;
  /** Only these customers (a read of a group of customers). */
  customers?: readonly string[] | undefined;
  meter?: string | undefined;
  figure?: Aggregation | undefined;
  /** The unique_count meters and the read's range: distinct counts are counted over it (distinctSql.ts). */
  distinct?: { meters: readonly DistinctMeter[] | undefined; from: Date; to: Date } | undefined;
}

/**
 * The statement for a plan, with its parameters. Pure. `total`: one row per (customer, meter) for all parts;
 * `first`: the same, its bucket the first bucket of the parts' rows (an hour, or a day of a daily rollup read whole).
 * Rows carry every figure (SeriesRow), or with `figure` only that aggregation as `value` and the count (FigureRow).
 */
export function buildSeriesSql(
  q: SeriesSqlQuery,
  parts: SeriesPart[],
  /** Parameters bound already, when the statement is a part of a larger one (its own are appended). */
  params: unknown[] = [],
): SeriesSql {
  const g = q.granularity;
  const bind = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const customer = q.customer !== undefined ? bind(q.customer) : undefined;
  const meter = q.meter !== undefined ? bind(q.meter) : undefined;
  const customers = q.customers !== undefined ? bind(q.customers) : undefined;
  const sets = filterSetsSql(q.filter, meter, bind);
  const filters = (alias: string) =>
    (customer ? ` AND ${alias}.customer_id = ${customer}` : "") +
    (customers ? ` AND ${alias}.customer_id = ANY (${customers}::text[])` : "") +
    (meter ? ` AND ${alias}.meter = ${meter}` : "") +
    (sets ? ` AND ${alias}.dimension_set${sets}` : "");
  // Raw events of one customer but all meters: walk the (customer_id, meter, ts) index meter by meter.
  const rawMeterFilter = customer && !meter ? " AND e.meter IN (SELECT key FROM meters)" : "";
  const out = (expr: string) =>
    g === "total" ? "NULL::timestamptz" : g === "hour" || g === "first" ? expr : `date_trunc('${g}', ${expr}, 'UTC')`;
  // What the parts carry: the keys not bound to one value, the dimension set when grouping, and the rollup
  // columns the answer is combined from.
  const groupBy = q.groupBy ?? [];
  const keys = [customer ? undefined : "customer_id", meter ? undefined : "meter"].filter((k) => k !== undefined);
  const partKeys = groupBy.length > 0 ? [...keys, "dimension_set"] : keys;
  const figures = q.figure ? FIGURE_COLUMNS[q.figure] : ROLLUP_COLUMN_LIST;
  const carried = (alias: string) => partKeys.map((k) => `${alias}.${k}, `).join("");
  const ctx: PartsContext = { g, bind, out, carried, partKeys, filters, rawMeterFilter };
  // Every bucket combines its parts (rows of several sources, several dimension sets) as the rollups do: the sum
  // of sums, the count of counts, the max of maxes, the last of lasts. Grouped, the rows carry their values.
  // A customer or meter the read is about is the same in every row: it is selected, not carried, grouped or sorted.
  const combined = q.figure ? figureColumns(q.figure) : COMBINED_COLUMNS;
  const fixed = `${customer ? `${customer}::text AS customer_id` : "customer_id"}, ${meter ? `${meter}::text AS meter` : "meter"}`;
  const gs = groupColumns(groupBy);
  const orderBy = ["customer_id", "meter", "bucket", ...gs.map((x) => `${x} COLLATE "C" NULLS LAST`)].join(", ");
  const main = groupParts(q, {
    union: partsUnion(parts, figures, ctx),
    columns: `(bucket, ${[...partKeys, ...figures].join(", ")})`,
    fixed,
    keys,
    select: selectColumns(combined),
    bind,
    first: g === "first",
  });
  const of = q.distinct ? distinctSource(q.distinct.meters, q.meter, q.figure) : undefined;
  // (A distinct count has no first bucket: `first` reads do not count distinct values.)
  if (!q.distinct || !of || g === "first") return { text: main, params, orderBy };
  // A distinct count does not combine from parts: the same rows again, each with the count of distinct values of its
  // own range in the distinct count's column (NULL in the others), and one row per answer row of the two.
  const target = q.figure ? "value" : "distinct_count";
  const distinct = groupParts(q, {
    union: distinctUnion(planDistinct(g, q.distinct.from, q.distinct.to), of, ctx),
    columns: `(bucket, ${[...partKeys, "v"].join(", ")})`,
    fixed,
    keys,
    select: combined
      .map((c) => `${c.name === target ? "count(DISTINCT v)::text" : `NULL::${c.type}`} AS ${c.name}`)
      .join(", "),
    bind,
  });
  const answerKeys = ["bucket", "customer_id", "meter", ...gs].join(", ");
  return {
    text: `
    SELECT ${answerKeys}, ${combined.map((c) => `max(${c.name}) AS ${c.name}`).join(", ")}
    FROM (${main}
      UNION ALL${distinct}
    ) AS answer
    GROUP BY ${answerKeys}`,
    params,
    orderBy,
  };
}

/**
 * Reads the rollup state and builds the statement for one series query. `distinctCounts: false`: a reader that has
 * no use for the buckets' distinct counts (they stay NULL) saves their read.
 */
export async function prepareSeries(
  db: Queryable,
  q: SeriesQuery & { figure?: Aggregation; distinctCounts?: boolean },
): Promise<SeriesSql> {
  const state = await readState(db, q.from, q.to);
  const distinct = q.distinctCounts === false ? undefined : { meters: state.distinct, from: q.from, to: q.to };
  return buildSeriesSql({ ...q, distinct }, planSeries(q.granularity, q.from, q.to, state));
}

export async function runSeries(db: Queryable, q: SeriesQuery): Promise<SeriesRow[]> {
  const { text, params, orderBy } = await prepareSeries(db, q);
  const { rows } = await db.query<SeriesRow>(`${text}\n    ORDER BY ${orderBy}`, params);
  return withDimensionValues(rows, q.groupBy);
}

/**
 * A series of one figure, the meter's aggregation, and the event count per bucket: what GET /v1/usage answers.
 * As one JSON text: a grouped answer has hundreds of rows, which the embedded engine hands over a third faster so.
 */
export async function runSeriesFigures(db: Queryable, q: SeriesQuery, figure: Aggregation): Promise<FigureRow[]> {
  const { text, params, orderBy } = await prepareSeries(db, { ...q, figure });
  const gs = groupColumns(q.groupBy);
  const cells = await jsonRows<(string | number | null)[]>(db, {
    cells: ["extract(epoch FROM bucket) * 1000", "customer_id", "meter", "value", "event_count", ...gs].join(", "),
    source: `(${text}) AS s`,
    orderBy,
    params,
  });
  return cells.map((c) => ({
    bucket: new Date(c[0] as number),
    customer_id: c[1] as string,
    meter: c[2] as string,
    value: c[3] as string,
    event_count: String(c[4]),
    ...(gs.length > 0 ? { dimension_values: c.slice(5) as (string | null)[] } : {}),
  }));
}

/**
 * Grouped rows hold their values in columns g1..gn (not a text[]: PGlite reads a NULL element of an array as the
 * string "NULL"); this gathers them into `dimension_values`.
 */
function withDimensionValues<R extends { dimension_values?: (string | null)[] }>(
  rows: R[],
  groupBy: readonly string[] | undefined,
): R[] {
  const gs = groupColumns(groupBy);
  if (gs.length === 0) return rows;
  for (const r of rows) {
    const cells = r as unknown as Record<string, string | null>;
    r.dimension_values = gs.map((g) => cells[g] ?? null);
  }
  return rows;
}
