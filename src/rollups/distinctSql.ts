// Distinct counts of unique_count meters in series and totals (pure). A distinct count does not add up across
// buckets (a month's active users are not the sum of its days'), so the rollups cannot hold it: every answer counts
// the distinct values of its own range, exactly, from usage_distinct — one row per value per (customer, meter,
// dimension set, UTC day), with the first instant it was seen that day, written by ingest in the events' own
// transaction for the events it stored — and from raw events where whole days do not fit:
//   - whole days of the range: every row of those days;
//   - a day's start up to an instant t (a range that ends mid-day): the rows of that day first seen before t, since
//     a value occurs in [day, t) exactly when its first occurrence that day is before t;
//   - a day from an instant on (a range that starts mid-day), and the hours of an hourly series: the raw events of
//     those hours, through the (customer_id, meter, ts) index.
// The table is complete at every commit, so no watermark, dirty hour or refresh is involved.
import { addBuckets, alignDown } from "./buckets.js";
import { textArray } from "./dimensionSql.js";
import type { Granularity } from "./levels.js";
import { emptyPart, type PartsContext } from "./partsSql.js";

/** A unique_count meter and the event property whose distinct values it counts. */
export interface DistinctMeter {
  meter: string;
  property: string;
}

/** One range of one source of distinct values. */
interface DistinctPart {
  /** Every row of whole days; the rows of one day (`from`) first seen before `to`; or raw events. */
  source: "days" | "day_start" | "event";
  from: Date;
  to: Date;
}

/** Where the distinct values of [from, to) at granularity g (or one total) come from. Pure. */
export function planDistinct(g: Granularity | "total", from: Date, to: Date): DistinctPart[] {
  if (from >= to) return [];
  if (g === "hour") return [{ source: "event", from, to }];
  if (g !== "total") return [{ source: "days", from, to }];
  const fromDay = alignDown(from, "day");
  const firstDay = fromDay < from ? addBuckets(fromDay, "day", 1) : from;
  const lastDay = alignDown(to, "day");
  // From mid-day to later that day: raw events.
  if (firstDay > lastDay) return [{ source: "event", from, to }];
  const parts: DistinctPart[] = [];
  if (from < firstDay) parts.push({ source: "event", from, to: firstDay });
  if (firstDay < lastDay) parts.push({ source: "days", from: firstDay, to: lastDay });
  if (lastDay < to) parts.push({ source: "day_start", from: lastDay, to });
  return parts;
}

/** Whose values a read counts: one meter's property, or every unique_count meter's (a read of all meters). */
type DistinctSource = { property: string } | { meters: readonly DistinctMeter[] };

/**
 * The distinct parts of a statement as one UNION ALL of (bucket, keys…, value), sharing the context (bound
 * customer, meter, dimension filter) of the statement's rollup parts.
 */
export function distinctUnion(parts: DistinctPart[], of: DistinctSource, c: PartsContext): string {
  const { g, bind, out, carried, filters } = c;
  const selects = parts.map((p) => {
    if (p.source === "event") {
      const [join, value] =
        "property" in of
          ? ["", `(e.properties ->> ${bind(of.property)}::text) COLLATE "C"`]
          : [
              ` JOIN unnest(${bind(textArray(of.meters.map((m) => m.meter)))}::text[], ${bind(textArray(of.meters.map((m) => m.property)))}::text[]) AS u(meter, property) ON u.meter = e.meter`,
              '(e.properties ->> u.property) COLLATE "C"',
            ];
      return `
      SELECT ${out("date_trunc('hour', e.ts, 'UTC')")}, ${carried("e")}${value}
      FROM usage_events e${join}
      WHERE e.ts >= ${bind(p.from)}::timestamptz AND e.ts < ${bind(p.to)}::timestamptz${filters("e")}`;
    }
    const where =
      p.source === "days"
        ? `x.day >= ${bind(p.from)}::timestamptz AND x.day < ${bind(p.to)}::timestamptz`
        : `x.day = ${bind(p.from)}::timestamptz AND x.first_ts < ${bind(p.to)}::timestamptz`;
    return `
      SELECT ${g === "day" ? "x.day" : out("x.day")}, ${carried("x")}x.value
      FROM usage_distinct x
      WHERE ${where}${filters("x")}`;
  });
  return selects.length > 0 ? selects.join("\n      UNION ALL") : emptyPart(c.partKeys, ["text"]);
}

/**
 * Which distinct values a read counts: those of its one meter if that meter is a unique_count, every unique_count
 * meter's for a read of all meters; none for a read of another figure.
 */
export function distinctSource(
  meters: readonly DistinctMeter[] | undefined,
  meter: string | undefined,
  figure: string | undefined,
): DistinctSource | undefined {
  if (!meters || meters.length === 0 || (figure !== undefined && figure !== "unique_count")) return undefined;
  if (meter === undefined) return { meters };
  const m = meters.find((x) => x.meter === meter);
  return m ? { property: m.property } : undefined;
}
